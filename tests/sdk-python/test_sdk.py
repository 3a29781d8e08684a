"""The official retell-sdk (unmodified) against uponai: every M1 endpoint through the SDK's
own methods, and the error classes it raises."""

import http.server
import itertools
import json
import socket
import threading
import time
from collections import Counter

import httpx
import pytest
import retell
from retell import Retell
from retell.lib.webhook_auth import verify
from retell.types import PhoneCallResponse

from conftest import KEY

VOICE = "espeak-en-us-male"
_numbers = itertools.count(100)


def fresh_number():
    """A distinct valid US number per test."""
    return f"+1415555{next(_numbers):04d}"


def make_agent(client, name="agent", **extra):
    llm = client.llm.create(general_prompt="You are helpful.", begin_message="Hello")
    return client.agent.create(
        response_engine={"type": "retell-llm", "llm_id": llm.llm_id}, voice_id=VOICE, agent_name=name, **extra
    )


def page_all(fetch):
    """Follows pagination_key until has_more is false; returns every item."""
    items, key = [], None
    while True:
        page = fetch(key)
        items.extend(page.items)
        if not page.has_more:
            assert page.pagination_key is None
            return items
        key = page.pagination_key


# --- Retell LLM -------------------------------------------------------------------------

def test_llm_create_retrieve_update_list_delete(client):
    llm = client.llm.create(
        general_prompt="Sell {{product}}.", begin_message="Hi", model="gpt-4.1", model_temperature=0.2,
        default_dynamic_variables={"product": "solar"},
        general_tools=[{"type": "end_call", "name": "end_call", "description": "hang up"}],
        states=[{"name": "intro", "state_prompt": "greet"}], starting_state="intro",
    )
    assert llm.llm_id.startswith("llm_") and llm.version == 0
    got = client.llm.retrieve(llm.llm_id)
    assert got.general_prompt == "Sell {{product}}." and got.default_dynamic_variables == {"product": "solar"}
    assert got.general_tools[0].name == "end_call" and got.states[0].name == "intro"
    updated = client.llm.update(llm.llm_id, begin_message="Hello there")
    assert updated.begin_message == "Hello there" and updated.general_prompt == "Sell {{product}}."
    assert client.llm.retrieve(llm.llm_id, version=0).begin_message == "Hello there"
    more = [client.llm.create(general_prompt=f"p{i}").llm_id for i in range(4)]
    listed = page_all(lambda key: client.llm.list(limit=2, sort_order="ascending", pagination_key=key) if key
                      else client.llm.list(limit=2, sort_order="ascending"))
    ids = [item.llm_id for item in listed]
    assert ids.index(llm.llm_id) < ids.index(more[0]) and set(more) <= set(ids) and len(ids) == len(set(ids))
    client.llm.delete(llm.llm_id)
    with pytest.raises(retell.UnprocessableEntityError) as err:
        client.llm.retrieve(llm.llm_id)
    assert err.value.body["status"] == "error"


def appointment_flow_nodes():
    return [
        {"id": "greet", "type": "conversation", "instruction": {"type": "static_text", "text": "Hi {{name}}, can you come Tuesday?"},
         "edges": [{"id": "yes", "transition_condition": {"type": "prompt", "prompt": "User said yes"}, "destination_node_id": "bye"}]},
        {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}},
    ]


def test_conversation_flow_create_retrieve_update_list_delete_and_an_agent_on_it(client):
    flow = client.conversation_flow.create(
        nodes=appointment_flow_nodes(), start_speaker="agent", start_node_id="greet",
        default_dynamic_variables={"name": "there"},
    )
    assert flow.conversation_flow_id.startswith("conversation_flow_") and flow.version == 0
    got = client.conversation_flow.retrieve(flow.conversation_flow_id)
    assert got.start_node_id == "greet" and got.nodes[0].id == "greet" and got.default_dynamic_variables == {"name": "there"}
    updated = client.conversation_flow.update(flow.conversation_flow_id, global_prompt="Be brief.")
    assert updated.global_prompt == "Be brief." and len(updated.nodes) == 2
    listed = client.conversation_flow.list(limit=100)
    assert flow.conversation_flow_id in [item.conversation_flow_id for item in listed.items]
    agent = client.agent.create(
        response_engine={"type": "conversation-flow", "conversation_flow_id": flow.conversation_flow_id},
        voice_id="piper-en_US-joe-medium",
    )
    assert agent.response_engine.type == "conversation-flow"
    # A flow whose edge leads nowhere is refused, naming the field.
    with pytest.raises(retell.BadRequestError) as err:
        client.conversation_flow.update(flow.conversation_flow_id, start_node_id="nowhere")
    assert "start_node_id" in err.value.body["message"]
    # In use by the agent: deleting needs force.
    with pytest.raises(retell.BadRequestError):
        client.conversation_flow.delete(flow.conversation_flow_id)
    client.conversation_flow.delete(flow.conversation_flow_id, force_delete=True)
    with pytest.raises(retell.UnprocessableEntityError):
        client.conversation_flow.retrieve(flow.conversation_flow_id)


# --- Agents and versions ----------------------------------------------------------------

def test_agent_versions_publish_branch_and_delete(client):
    agent = make_agent(client, "Versioned", voice_speed=1.1, webhook_events=["call_started"])
    assert agent.version == 0 and agent.is_published is False
    assert client.agent.retrieve(agent.agent_id).voice_speed == 1.1
    client.agent.publish(agent.agent_id, version=0, version_title="launch")
    v0 = client.agent.retrieve(agent.agent_id, version=0)
    assert v0.is_published and v0.version_title == "launch"
    draft = client.agent.update(agent.agent_id, agent_name="Versioned 2")
    assert draft.version == 1 and draft.base_version == 0 and not draft.is_published
    with pytest.raises(retell.BadRequestError):
        client.agent.update(agent.agent_id, version=0, agent_name="nope")
    assert client.agent.retrieve(agent.agent_id, version="latest_published").agent_name == "Versioned"
    assert client.agent.update(agent.agent_id, version=1, volume=1.5).agent_name == "Versioned 2"
    branched = client.agent.create_version(agent.agent_id, base_version=0)
    assert branched.version == 2 and branched.agent_name == "Versioned"
    versions = client.agent.list_versions(agent.agent_id, sort_order="ascending")
    assert [(v.version, v.is_published) for v in versions.items] == [(0, True), (1, False), (2, False)]
    paged = page_all(lambda key: client.agent.list_versions(agent.agent_id, limit=1, pagination_key=key) if key
                     else client.agent.list_versions(agent.agent_id, limit=1))
    assert [v.version for v in paged] == [2, 1, 0]
    client.agent.delete_version(agent.agent_id, version=2)
    assert [v.version for v in client.agent.list_versions(agent.agent_id).items] == [1, 0]
    client.agent.delete(agent.agent_id)
    with pytest.raises(retell.UnprocessableEntityError):
        client.agent.retrieve(agent.agent_id)


def test_agent_list_is_one_summary_per_agent_with_paging(client):
    created = [make_agent(client, f"List {i}").agent_id for i in range(3)]
    client.agent.update(created[0], agent_name="List 0 renamed")
    items = page_all(lambda key: client.agent.list(limit=2, pagination_key=key) if key else client.agent.list(limit=2))
    ids = [item.agent_id for item in items]
    assert set(created) <= set(ids) and len(ids) == len(set(ids))
    names = {item.agent_id: item.agent_name for item in items}
    assert names[created[0]] == "List 0 renamed"
    found = client.agent.list(filter_criteria={"query": "List 0 renamed"}).items
    assert [item.agent_id for item in found] == [created[0]]


def test_agent_validation_errors_name_the_field(client):
    llm = client.llm.create()
    with pytest.raises(retell.BadRequestError) as err:
        client.agent.create(response_engine={"type": "retell-llm", "llm_id": llm.llm_id}, voice_id="no-such-voice")
    assert err.value.body["message"].startswith("voice_id")
    # A hosted provider's voice is accepted (spoken by the offline Piper voice for now).
    client.agent.create(response_engine={"type": "retell-llm", "llm_id": llm.llm_id}, voice_id="11labs-Adrian")
    with pytest.raises(retell.BadRequestError) as err:
        client.agent.create(response_engine={"type": "retell-llm", "llm_id": llm.llm_id}, voice_id=VOICE, ring_duration_ms=10)
    assert err.value.body["message"].startswith("ring_duration_ms")


def test_voices_list_and_retrieve(client):
    voices = client.voice.list()
    assert VOICE in [voice.voice_id for voice in voices]
    voice = client.voice.retrieve(VOICE)
    assert voice.provider == "platform" and voice.gender in ("male", "female")
    with pytest.raises(retell.UnprocessableEntityError):
        client.voice.retrieve("no-such-voice")


# --- Phone numbers ----------------------------------------------------------------------

def test_import_retrieve_update_list_delete_number(client):
    a, b = make_agent(client, "A"), make_agent(client, "B")
    number = fresh_number()
    imported = client.phone_number.import_(
        phone_number=number, termination_uri="sip:trunk.example.com:5080;transport=tcp",
        sip_trunk_auth_username="user", sip_trunk_auth_password="s3cret", transport="UDP", nickname="main",
        inbound_agents=[{"agent_id": a.agent_id, "weight": 1}],
        allowed_outbound_country_list=["US", "CA"],
    )
    assert imported.phone_number == number and imported.phone_number_type == "custom"
    got = client.phone_number.retrieve(number)
    assert got.sip_outbound_trunk_config.auth_username == "user"
    assert got.sip_outbound_trunk_config.transport == "UDP"
    assert "s3cret" not in got.model_dump_json()
    assert got.inbound_agents[0].agent_id == a.agent_id and not got.outbound_agents
    updated = client.phone_number.update(
        number, nickname="split", auth_password="n3w",
        outbound_agents=[{"agent_id": a.agent_id, "weight": 0.7}, {"agent_id": b.agent_id, "weight": 0.3, "agent_version": 0}],
    )
    assert updated.nickname == "split" and [w.weight for w in updated.outbound_agents] == [0.7, 0.3]
    numbers = page_all(lambda key: client.phone_number.list(limit=1, pagination_key=key) if key
                       else client.phone_number.list(limit=1))
    assert number in [n.phone_number for n in numbers]
    client.phone_number.update(number, outbound_agents=None, inbound_agents=None)
    client.phone_number.delete(number)
    with pytest.raises(retell.UnprocessableEntityError):
        client.phone_number.retrieve(number)


def test_weights_are_validated(client):
    a, b = make_agent(client), make_agent(client)
    number = fresh_number()
    client.phone_number.import_(phone_number=number, termination_uri="trunk.example.com")
    with pytest.raises(retell.BadRequestError) as err:
        client.phone_number.update(number, outbound_agents=[{"agent_id": a.agent_id, "weight": 0.6}, {"agent_id": b.agent_id, "weight": 0.6}])
    assert err.value.body["message"].startswith("outbound_agents")
    with pytest.raises(retell.BadRequestError) as err:
        client.phone_number.update(number, inbound_agents=[{"agent_id": "agent_0000", "weight": 1}])
    assert err.value.body["message"].startswith("inbound_agents[0].agent_id")


def test_create_number_on_the_workspace_provider_trunk(client, server):
    httpx.patch(f"{server['url']}/update-workspace-settings", headers={"Authorization": f"Bearer {client.api_key}"},
                json={"twilio_trunk": {"termination_uri": "example.pstn.twilio.com", "auth_username": "u", "auth_password": "p"}}).raise_for_status()
    agent = make_agent(client)
    number = fresh_number()
    created = client.phone_number.create(phone_number=number, area_code=415, number_provider="twilio",
                                         outbound_agents=[{"agent_id": agent.agent_id, "weight": 1}])
    assert created.phone_number_type == "retell-twilio" and created.area_code == 415
    with pytest.raises(retell.BadRequestError) as err:
        client.phone_number.create(area_code=415)
    assert err.value.body["message"].startswith("phone_number")


# --- Calls ------------------------------------------------------------------------------

@pytest.fixture
def outbound(client):
    agent = make_agent(client, "Caller")
    number = fresh_number()
    client.phone_number.import_(phone_number=number, termination_uri="trunk.example.com",
                                outbound_agents=[{"agent_id": agent.agent_id, "weight": 1}])
    return agent, number


def test_create_phone_call_with_every_parameter(client, outbound):
    agent, number = outbound
    other = make_agent(client, "Override")
    client.agent.publish(other.agent_id, version=0)
    call = client.call.create_phone_call(
        from_number=number, to_number="+12125550123",
        override_agent_id=other.agent_id, override_agent_version=0,
        agent_override={"agent": {"voice_speed": 1.1, "enable_backchannel": True}, "retell_llm": {"begin_message": "Hi {{name}}"}},
        metadata={"crm_id": "A-7", "n": 3}, retell_llm_dynamic_variables={"name": "John Doe", "blood_group": "B+"},
        custom_sip_headers={"X-Custom-Header": "Custom Value"}, ignore_e164_validation=False,
        idempotency_key="crm-a7-attempt-1",
    )
    assert call.call_status == "registered" and call.call_type == "phone_call" and call.direction == "outbound"
    assert call.agent_id == other.agent_id and call.agent_version == 0
    assert call.from_number == number and call.to_number == "+12125550123"
    assert call.metadata == {"crm_id": "A-7", "n": 3}
    assert call.retell_llm_dynamic_variables == {"name": "John Doe", "blood_group": "B+"}
    assert call.custom_sip_headers == {"X-Custom-Header": "Custom Value"}
    again = client.call.create_phone_call(from_number=number, to_number="+12125550123", idempotency_key="crm-a7-attempt-1")
    assert again.call_id == call.call_id
    latest = client.call.create_phone_call(from_number=number, to_number="+12125550123",
                                           override_agent_id=other.agent_id, override_agent_version="latest")
    assert latest.agent_version == 0
    raw = client.call.create_phone_call(from_number=number, to_number="1001", ignore_e164_validation=True)
    assert raw.to_number == "1001"
    got = client.call.retrieve(call.call_id)
    assert got.call_id == call.call_id and got.metadata == call.metadata


def test_create_phone_call_errors(client, outbound):
    agent, number = outbound
    cases = [
        ({"to_number": "12125550123"}, "to_number"),
        ({"retell_llm_dynamic_variables": {"age": 42}}, "retell_llm_dynamic_variables.age"),
        ({"custom_sip_headers": {"Bad-Header": "x"}}, "custom_sip_headers.Bad-Header"),
        ({"override_agent_id": "agent_nope"}, "override_agent_id"),
    ]
    for extra, field in cases:
        params = {"from_number": number, "to_number": "+12125550123", **extra}
        with pytest.raises(retell.BadRequestError) as err:
            client.call.create_phone_call(**params)
        assert err.value.status_code == 400 and err.value.body["message"].startswith(field), err.value.body
    with pytest.raises(retell.BadRequestError) as err:
        client.call.create_phone_call(from_number="+13105550199", to_number="+12125550123")
    assert err.value.body["message"].startswith("from_number")


def test_ab_split_through_the_sdk(client):
    a, b = make_agent(client, "A"), make_agent(client, "B")
    number = fresh_number()
    client.phone_number.import_(phone_number=number, termination_uri="trunk.example.com",
                                outbound_agents=[{"agent_id": a.agent_id, "weight": 0.5}, {"agent_id": b.agent_id, "weight": 0.5}])
    picked = Counter(client.call.create_phone_call(from_number=number, to_number="+12125550123").agent_id for _ in range(60))
    # 60 fair coin flips: both sides below 10 has probability < 1e-6.
    assert picked[a.agent_id] >= 10 and picked[b.agent_id] >= 10 and sum(picked.values()) == 60


def test_register_list_update_delete_calls(client, outbound):
    agent, number = outbound
    registered = client.call.register_phone_call(agent_id=agent.agent_id, direction="inbound",
                                                 from_number="+13105550100", to_number=number, metadata={"src": "pbx"})
    assert registered.call_status == "registered" and registered.direction == "inbound"
    made = [client.call.create_phone_call(from_number=number, to_number=f"+1212555013{i}", metadata={"wave": "w9"}) for i in range(3)]
    wave = client.call.list(filter_criteria={"metadata": [{"type": "string", "op": "eq", "key": "wave", "value": "w9"}],
                                             "direction": {"type": "enum", "op": "in", "value": ["outbound"]},
                                             "agent": [{"agent_id": agent.agent_id}]},
                            sort_order="ascending")
    assert [c.call_id for c in wave.items] == [c.call_id for c in made]
    paged = page_all(lambda key: client.call.list(limit=2, pagination_key=key) if key else client.call.list(limit=2))
    ids = [c.call_id for c in paged]
    assert len(ids) == len(set(ids)) and {c.call_id for c in made} | {registered.call_id} <= set(ids)
    # The outbound calls leave `registered` as soon as the dialer fails to resolve the trunk, so
    # the status filter is checked on the inbound registration, which stays registered until stopped.
    waiting = client.call.list(filter_criteria={"call_status": {"type": "enum", "op": "in", "value": ["registered"]},
                                                "to_number": {"type": "string", "op": "eq", "value": number}})
    assert [c.call_id for c in waiting.items] == [registered.call_id]
    by_callee = client.call.list(filter_criteria={"to_number": {"type": "string", "op": "eq", "value": "+12125550131"}})
    assert [c.call_id for c in by_callee.items] == [made[1].call_id]
    client.call.stop(registered.call_id)
    stopped = client.call.retrieve(registered.call_id)
    assert stopped.call_status == "not_connected" and stopped.disconnection_reason == "manual_stopped"
    updated = client.call.update(made[0].call_id, metadata={"wave": "w10"})
    assert updated.metadata == {"wave": "w10"}
    client.call.delete(made[0].call_id)
    with pytest.raises(retell.UnprocessableEntityError):
        client.call.retrieve(made[0].call_id)


# --- Auth and tenancy -------------------------------------------------------------------

def test_authentication_errors(server):
    bad = Retell(api_key="key_wrong", base_url=server["url"])
    with pytest.raises(retell.AuthenticationError) as err:
        bad.agent.list()
    assert err.value.status_code == 401 and err.value.body["message"] == "API key is missing or invalid."


def test_identity_names_the_workspace(client):
    me = client.identity.retrieve()
    assert me.org_id.startswith("ws_") and me.org_name == "default"


def test_another_workspace_sees_nothing(client, other_client, outbound):
    agent, number = outbound
    with pytest.raises(retell.UnprocessableEntityError):
        other_client.agent.retrieve(agent.agent_id)
    with pytest.raises(retell.UnprocessableEntityError):
        other_client.phone_number.retrieve(number)
    assert other_client.agent.list().items == []
    with pytest.raises(retell.BadRequestError):
        other_client.call.create_phone_call(from_number=number, to_number="+12125550123")


# --- Webhooks ---------------------------------------------------------------------------

class _Hooks(http.server.BaseHTTPRequestHandler):
    """Records each POST: (raw body text, x-retell-signature)."""
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).received.append((body, self.headers.get("x-retell-signature")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhooks_verify_with_the_sdks_own_verify(client):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        agent = make_agent(client, "Hooked", webhook_url=url, webhook_timeout_ms=5000)
        number = fresh_number()
        # A trunk refusing connections: the call fails at once and sends call_failed, call_ended, call_analyzed.
        client.phone_number.import_(phone_number=number, termination_uri=f"127.0.0.1:{_closed_port()};transport=tcp",
                                    outbound_agents=[{"agent_id": agent.agent_id, "weight": 1}])
        call = client.call.create_phone_call(from_number=number, to_number="+12125550123", metadata={"crm": "42"})
        deadline = time.monotonic() + 15
        while len(_Hooks.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.shutdown()
    assert len(_Hooks.received) == 3, _Hooks.received
    for body, signature in _Hooks.received:
        assert verify(body, KEY, signature), "retell.lib.webhook_auth.verify accepts the signature"
        assert client.verify(body, KEY, signature), "and so does the client's verify"
        assert not verify(body.replace("call_", "cal_", 1), KEY, signature), "a changed body fails"
        assert not verify(body, "key_some_other_key", signature), "another key fails"
    payloads = [json.loads(body) for body, _ in _Hooks.received]
    assert [p["event"] for p in payloads] == ["call_failed", "call_ended", "call_analyzed"]
    for p in payloads:
        parsed = PhoneCallResponse.model_validate(p["call"])
        assert parsed.call_id == call.call_id and parsed.metadata == {"crm": "42"}
    assert payloads[0]["call"]["disconnection_reason"] == "telephony_provider_unavailable"
    analyzed = PhoneCallResponse.model_validate(payloads[2]["call"])
    assert analyzed.call_analysis is not None and analyzed.call_analysis.call_successful is False
    fetched = client.call.retrieve(call.call_id)
    assert fetched.call_analysis == analyzed.call_analysis and fetched.call_status == "not_connected"


# --- Pacing (kept last: it adds objects to the second workspace) ------------------------

def test_a_burst_gets_rate_limit_error_and_the_sdks_own_retry_succeeds(other_client):
    """The second workspace has the default 1 call per second on custom trunks."""
    llm = other_client.llm.create()
    agent = other_client.agent.create(response_engine={"type": "retell-llm", "llm_id": llm.llm_id}, voice_id=VOICE)
    number = fresh_number()
    other_client.phone_number.import_(phone_number=number, termination_uri="127.0.0.1:9",
                                      outbound_agents=[{"agent_id": agent.agent_id, "weight": 1}])
    other_client.call.create_phone_call(from_number=number, to_number="+12125550123")
    with pytest.raises(retell.RateLimitError) as err:
        other_client.call.create_phone_call(from_number=number, to_number="+12125550124")
    assert err.value.status_code == 429 and err.value.body["message"].startswith("rate_limited")
    wait_ms = float(err.value.response.headers["retry-after-ms"])
    # Up to a second plus the pacer's 50 ms wire margin; Retry-After is whole seconds, rounded up.
    assert 0 < wait_ms <= 1050 and int(err.value.response.headers["retry-after"]) == -(-int(wait_ms) // 1000)
    started = time.monotonic()
    call = other_client.call.create_phone_call(from_number=number, to_number="+12125550125", max_retries=3)
    assert call.call_status == "registered"
    assert time.monotonic() - started < 2.5, "the SDK waited the advertised time, not its own backoff"
