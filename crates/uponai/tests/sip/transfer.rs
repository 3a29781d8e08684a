//! Cold transfer by SIP REFER, against sipp as the trunk: a flow's `transfer_call` node
//! sends REFER with the destination; the trunk's acceptance (and its NOTIFY) ends our part of
//! the call with `call_transfer`; a refusal leaves the agent on the call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::model_server::{Chunk, ModelServer, Script};
use crate::receiver::{Answer, Receiver};
use crate::sipp::{Sipp, Transport, import_on_trunk, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";
const DESTINATION: &str = "+14155550199";

async fn transferring_agent(app: &TestApp) -> String {
    let flow = json!({"start_speaker": "agent", "start_node_id": "xfer", "nodes": [
        {"id": "xfer", "type": "transfer_call", "instruction": {"type": "static_text", "text": "Transferring you now."},
         "transfer_destination": {"type": "predefined", "number": "{{desk}}"},
         "transfer_option": {"type": "cold_transfer"}, "edges": []}
    ]});
    let reply = app.post("/create-conversation-flow", flow).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let engine = json!({"type": "conversation-flow", "conversation_flow_id": reply.body["conversation_flow_id"]});
    let reply = app.post("/create-agent", json!({"voice_id": "espeak-en-us-male", "response_engine": engine})).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    reply.body["agent_id"].as_str().unwrap().to_owned()
}

async fn call(app: &TestApp, sipp: &Sipp, desk: &str) -> serde_json::Value {
    let agent_id = transferring_agent(app).await;
    call_with(app, sipp, desk, &agent_id).await
}

async fn call_with(app: &TestApp, sipp: &Sipp, desk: &str, agent_id: &str) -> serde_json::Value {
    import_on_trunk(app, FROM, sipp.addr(), Transport::Udp, agent_id, json!({})).await;
    let body = json!({"from_number": FROM, "to_number": TO, "retell_llm_dynamic_variables": {"desk": desk}});
    let reply = app.post("/v2/create-phone-call", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    wait_for_end(app, reply.body["call_id"].as_str().unwrap(), Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_transfer_node_refers_the_trunk_to_the_destination_and_leaves_with_call_transfer() {
    let app = spawn_app().await;
    // The Refer-To sipp checks (a regular expression, in an XML attribute): the number at the
    // trunk's host.
    let refer_to = format!("&lt;sip:\\{DESTINATION}@127\\.0\\.0\\.1:[0-9]+&gt;");
    let sipp = Sipp::uas_from_template("answer_accept_refer.xml", Transport::Udp, &[("__REFER_TO__", &refer_to)]);
    let call = call(&app, &sipp, DESTINATION).await;
    assert_eq!(call["disconnection_reason"], "call_transfer", "{call}");
    assert_eq!(call["transfer_destination"], DESTINATION);
    assert_eq!(call["transcript"], "Agent: Transferring you now.");
    // sipp saw the REFER it expected, sent its NOTIFY, and took our BYE.
    sipp.finish(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_refused_transfer_leaves_the_agent_on_the_call() {
    let app = spawn_app().await;
    let sipp = Sipp::uas_from_template("answer_refuse_refer.xml", Transport::Udp, &[]);
    let call = call(&app, &sipp, DESTINATION).await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    assert!(call["transfer_destination"].is_null(), "{call}");
    sipp.finish(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_destination_that_is_not_a_number_or_sip_uri_never_reaches_the_wire() {
    let app = spawn_app().await;
    // sipp would fail on a REFER (it expects none: it answers, then hangs up).
    let sipp = Sipp::uas_from_template(
        "answer_persona_hangup.xml",
        Transport::Udp,
        &[("__PCAP__", "/usr/share/sip-tester/g711a.pcap"), ("__HANGUP_MS__", "4000")],
    );
    let call = call(&app, &sipp, "+1415\r\nX-Evil: yes").await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    assert!(call["transfer_destination"].is_null(), "{call}");
    sipp.finish(Duration::from_secs(10)).await.unwrap();
}

/// A `retell-llm` agent whose model opens the call by transferring it (its `transfer_call`
/// tool, to `{{desk}}`), and says sorry if it is told the transfer failed.
async fn llm_transfer(sipp_template: &str, refer_to: &str) -> (serde_json::Value, Vec<serde_json::Value>, Sipp, Receiver) {
    let script: Script = Arc::new(|n, _| match n {
        0 => vec![
            Chunk::Text("Transferring you now.".into()),
            Chunk::ToolCall { id: "call_t1".into(), name: "to_desk".into(), arguments: "{}".into() },
        ],
        _ => vec![Chunk::Text("Sorry, the transfer did not work.".into())],
    });
    let model = ModelServer::start(script).await;
    let base_url = url::Url::parse(&model.base_url).unwrap();
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |settings| settings.llm_base_url = Some(base_url)).await;
    let llm = app
        .create_llm(json!({"general_prompt": "Transfer every caller.", "general_tools": [{"type": "transfer_call", "name": "to_desk",
            "transfer_destination": {"type": "predefined", "number": "{{desk}}"}, "transfer_option": {"type": "cold_transfer"}}]}))
        .await;
    let hooks = Receiver::start(Answer::Ok).await;
    let events = ["transfer_started", "transfer_bridged", "transfer_cancelled", "call_ended"];
    let agent = json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm},
        "webhook_url": hooks.url(), "webhook_events": events});
    let reply = app.post("/create-agent", agent).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let agent_id = reply.body["agent_id"].as_str().unwrap().to_owned();
    let sipp = Sipp::uas_from_template(sipp_template, Transport::Udp, &[("__REFER_TO__", refer_to)]);
    let call = call_with(&app, &sipp, DESTINATION, &agent_id).await;
    // The conversation's requests (the post-call analysis may have been asked too).
    let chat = model.requests().into_iter().filter(|r| r.get("response_format").is_none()).collect();
    (call, chat, sipp, hooks)
}

#[tokio::test]
async fn an_llm_s_transfer_call_tool_refers_the_trunk_to_the_destination() {
    let refer_to = format!("&lt;sip:\\{DESTINATION}@127\\.0\\.0\\.1:[0-9]+&gt;");
    let (call, requests, sipp, hooks) = llm_transfer("answer_accept_refer.xml", &refer_to).await;
    assert_eq!(call["disconnection_reason"], "call_transfer", "{call}");
    assert_eq!(call["transfer_destination"], DESTINATION);
    let items = call["transcript_with_tool_calls"].as_array().unwrap_or_else(|| panic!("{call}"));
    let roles: Vec<&str> = items.iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["agent", "tool_call_invocation", "tool_call_result"], "{items:?}");
    assert_eq!(items[0]["content"], "Transferring you now.");
    assert_eq!(items[1]["name"], "to_desk");
    assert_eq!(requests.len(), 1, "{requests:?}");
    // The transfer's events, in order, each naming the destination.
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let done = |r: &[crate::receiver::Received]| crate::receiver::events_of(r, &call_id).contains(&"call_ended".to_owned());
    let received = hooks.wait_for(Duration::from_secs(20), done).await;
    assert_eq!(crate::receiver::events_of(&received, &call_id), ["transfer_started", "transfer_bridged", "call_ended"]);
    let started = received.iter().find(|r| r.event() == "transfer_started").unwrap();
    assert_eq!(started.json["transfer_destination"], json!({"number": DESTINATION}));
    assert_eq!(started.json["transfer_option"], json!({"type": "cold_transfer"}));
    assert_eq!(started.json["call"]["call_status"], "ongoing");
    sipp.finish(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_refused_llm_transfer_keeps_the_call_up_and_the_model_is_told() {
    let (call, requests, sipp, hooks) = llm_transfer("answer_refuse_refer.xml", "").await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    assert!(call["transfer_destination"].is_null(), "{call}");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let told = requests[1]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(told.contains("transfer failed") && told.contains("403"), "{told}");
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let done = |r: &[crate::receiver::Received]| crate::receiver::events_of(r, &call_id).contains(&"call_ended".to_owned());
    let received = hooks.wait_for(Duration::from_secs(20), done).await;
    assert_eq!(crate::receiver::events_of(&received, &call_id), ["transfer_started", "transfer_cancelled", "call_ended"]);
    sipp.finish(Duration::from_secs(10)).await.unwrap();
}
