use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn creating_an_agent_needs_an_engine_and_a_listed_voice() {
    let app = spawn_app().await;
    let llm_id = app.create_llm(json!({})).await;
    let engine = json!({"type": "retell-llm", "llm_id": llm_id});
    let cases = [
        (json!({"voice_id": "espeak-en-us-male"}), "response_engine"),
        (json!({"response_engine": engine}), "voice_id"),
        (json!({"response_engine": engine, "voice_id": "no-such-voice"}), "voice_id"),
        (
            json!({"response_engine": {"type": "retell-llm", "llm_id": "llm_0000"}, "voice_id": "espeak-en-us-male"}),
            "response_engine.llm_id",
        ),
        (
            json!({"response_engine": {"type": "custom-llm", "llm_websocket_url": "http://x"}, "voice_id": "espeak-en-us-male"}),
            "response_engine.llm_websocket_url",
        ),
        (json!({"response_engine": engine, "voice_id": "espeak-en-us-male", "ring_duration_ms": 1000}), "ring_duration_ms"),
        (json!({"response_engine": engine, "voice_id": "espeak-en-us-male", "max_call_duration_ms": 10}), "max_call_duration_ms"),
        (json!({"response_engine": engine, "voice_id": "espeak-en-us-male", "webhook_url": "not a url"}), "webhook_url"),
        (json!({"response_engine": engine, "voice_id": "espeak-en-us-male", "webhook_events": ["call_exploded"]}), "webhook_events"),
        (json!({"response_engine": engine, "voice_id": "espeak-en-us-male", "language": "english"}), "language"),
    ];
    for (body, field) in cases {
        let reply = app.post("/create-agent", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(field), "{body}: {}", reply.message());
    }
    let custom = app
        .post("/create-agent", json!({"response_engine": {"type": "custom-llm", "llm_websocket_url": "wss://llm.example.com/ws"}, "voice_id": "espeak-en-gb-male"}))
        .await;
    assert_eq!(custom.status, StatusCode::CREATED, "{}", custom.body);
}

#[tokio::test]
async fn stored_only_fields_are_returned_as_sent() {
    let app = spawn_app().await;
    let llm_id = app.create_llm(json!({})).await;
    let body = json!({
        "response_engine": {"type": "retell-llm", "llm_id": llm_id},
        "voice_id": "espeak-en-us-female",
        "agent_name": "Ava",
        "stt_mode": "accurate",
        "pronunciation_dictionary": [{"word": "uponai", "alphabet": "ipa", "phoneme": "əˈpɒnaɪ"}],
        "voicemail_option": {"action": {"type": "hangup"}},
        "post_call_analysis_data": [{"type": "string", "name": "intent", "description": "why"}],
        "webhook_events": ["call_started", "call_ended"],
        "language": ["en-US", "es-419"],
    });
    let created = app.post("/create-agent", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let agent_id = created.body["agent_id"].as_str().unwrap();
    let fetched = app.get(&format!("/get-agent/{agent_id}")).await.body;
    for key in body.as_object().unwrap().keys() {
        assert_eq!(fetched[key], body[key], "{key}");
    }
}

#[tokio::test]
async fn published_versions_are_immutable_and_edits_branch_a_new_draft() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("v").await;

    let published = app.post(&format!("/publish-agent-version/{agent_id}"), json!({"version": 0, "version_title": "launch"})).await;
    assert_eq!(published.status, StatusCode::OK);
    let v0 = app.get(&format!("/get-agent/{agent_id}?version=0")).await.body;
    assert_eq!(v0["is_published"], true);
    assert_eq!(v0["version_title"], "launch");
    assert!(v0["response_engine"]["version"].is_i64(), "the LLM version is pinned: {v0}");

    // Naming the published version is refused; editing "the latest" branches version 1.
    let refused = app.patch(&format!("/update-agent/{agent_id}?version=0"), json!({"agent_name": "changed"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let edited = app.patch(&format!("/update-agent/{agent_id}"), json!({"agent_name": "changed"})).await;
    assert_eq!(edited.status, StatusCode::OK);
    assert_eq!(edited.body["version"], 1);
    assert_eq!(edited.body["base_version"], 0);
    assert_eq!(edited.body["is_published"], false);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=0")).await.body["agent_name"], "v");

    // Drafts are edited in place.
    let again = app.patch(&format!("/update-agent/{agent_id}?version=1"), json!({"voice_speed": 1.5})).await;
    assert_eq!(again.body["version"], 1);
    assert_eq!(again.body["agent_name"], "changed");

    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=latest")).await.body["version"], 1);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=latest_published")).await.body["version"], 0);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=7")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=prod")).await.status, StatusCode::BAD_REQUEST);

    let versions = app.get(&format!("/list-agent-versions/{agent_id}?sort_order=ascending")).await.body;
    let listed: Vec<(i64, bool)> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["is_published"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, vec![(0, true), (1, false)]);

    let branched = app.post(&format!("/create-agent-version/{agent_id}"), json!({"base_version": 0})).await;
    assert_eq!(branched.status, StatusCode::CREATED);
    assert_eq!(branched.body["version"], 2);
    assert_eq!(branched.body["agent_name"], "v");
    assert_eq!(app.delete(&format!("/delete-agent-version/{agent_id}?version=2")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=2")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn list_agents_returns_one_summary_per_agent_and_filters_by_query() {
    let app = spawn_app().await;
    let sales = app.create_agent("Sales bot").await;
    let support = app.create_agent("Support bot").await;
    app.patch(&format!("/update-agent/{sales}"), json!({"agent_name": "Sales bot 2"})).await;
    app.post(&format!("/publish-agent-version/{sales}"), json!({"version": 0})).await;

    let all = app.post("/v2/list-agents?sort_order=ascending", json!({})).await.body;
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|i| i["agent_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![sales.as_str(), support.as_str()]);
    assert_eq!(all["items"][0]["channel"], "voice");

    let filtered = app.post("/v2/list-agents", json!({"filter_criteria": {"query": "support"}})).await.body;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["items"][0]["agent_id"], support);
}

#[tokio::test]
async fn an_agent_bound_to_a_number_cannot_be_deleted() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("bound").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let refused = app.delete(&format!("/delete-agent/{agent_id}")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().contains("+14155550100"));
    app.patch("/update-phone-number/+14155550100", json!({"outbound_agents": null})).await;
    assert_eq!(app.delete(&format!("/delete-agent/{agent_id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Agents written for the hosted service name its voices; until hosted TTS exists they are
/// accepted and spoken by the offline Piper voice, which list-voices shows first.
#[tokio::test]
async fn a_hosted_providers_voice_is_accepted_and_the_piper_voice_is_listed_first() {
    let app = spawn_app().await;
    let llm_id = app.create_llm(json!({})).await;
    let engine = json!({"type": "retell-llm", "llm_id": llm_id});
    let reply = app.post("/create-agent", json!({"response_engine": engine, "voice_id": "11labs-Adrian"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let voices = app.get("/list-voices").await.body;
    let first = voices[0]["voice_id"].as_str().unwrap();
    assert!(first.contains("piper") && first.contains("joe"), "{voices}");
}
