//! The simulation API's edge: what it refuses, and where it says the fault is. (Simulations
//! that run are in the conversation tests, where the speech engines are.)

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_bad_persona_or_agent_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let llm_id = app.create_llm(json!({"begin_message": "Hello"})).await;
    let agent = app
        .post("/create-agent", json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm_id}}))
        .await;
    let agent_id = agent.body["agent_id"].as_str().unwrap();
    let line = |line: serde_json::Value| json!({"agent_id": agent_id, "persona": {"name": "p", "lines": [line]}});
    let cases = [
        (line(json!({"press": "1; rm -rf /"})), "persona.lines[0].press"),
        (line(json!({})), "persona.lines[0]"),
        (line(json!({"say": "x".repeat(501)})), "persona.lines[0].say"),
        (line(json!({"say": "hi", "when": {"type": "at", "ms": 4_000_000_000u64}})), "persona.lines[0].when"),
        (line(json!({"say": "hi", "when": {"type": "warp"}})), "persona"),
        (line(json!({"say": "hi", "shout": true})), "persona"),
        (
            json!({"agent_id": agent_id, "persona": {"name": "p", "lines": [], "hang_up_after_ms": 9_999_999_999u64}}),
            "persona.hang_up_after_ms",
        ),
        (json!({"agent_id": agent_id, "persona": {"name": "p", "lines": vec![json!({"say": "a"}); 51]}}), "persona.lines"),
        (json!({"agent_id": "not-an-agent", "persona": {"name": "p", "lines": []}}), "agent_id"),
        (json!({"agent_id": agent_id, "agent_version": 99, "persona": {"name": "p", "lines": []}}), "agent_version"),
    ];
    for (body, field) in cases {
        let reply = app.post("/uponai/create-simulation", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body} → {}", reply.body);
        assert_eq!(reply.body["status"], "error");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{body}: {message}");
    }
    // Nothing was placed.
    let calls = app.post("/v3/list-calls", json!({})).await;
    assert_eq!(calls.body["items"].as_array().map(Vec::len), Some(0), "{}", calls.body);
}

#[tokio::test]
async fn a_call_that_is_not_a_simulation_has_no_simulation() {
    let app = spawn_app().await;
    let llm_id = app.create_llm(json!({"begin_message": "Hello"})).await;
    let agent = app
        .post("/create-agent", json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm_id}}))
        .await;
    let reply = app.post("/v2/register-phone-call", json!({"agent_id": agent.body["agent_id"]})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap();
    for path in [
        format!("/uponai/get-simulation/{call_id}"),
        "/uponai/get-simulation/call_0123abcd".into(),
        "/uponai/get-simulation/nonsense".into(),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", reply.body);
        assert_eq!(reply.body["status"], "error");
    }
}
