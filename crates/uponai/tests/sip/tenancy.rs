//! What a call keeps and who it belongs to, with real calls: a deleted call's recordings go
//! with it, an agent that stores basic attributes only leaves no recording, and an inbound
//! call lands in the workspace that holds the number.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};
use crate::sipp::{Sipp, Transport, agent_with, download_recording, import_on_trunk, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";

/// An outbound call from FROM that sipp answers, plays 8 s of audio to and hangs up; the call
/// as it ended.
async fn answered_call(app: &TestApp, agent_extra: serde_json::Value) -> serde_json::Value {
    let sipp = Sipp::uas("answer_play_hangup.xml", Transport::Udp, &[]);
    let agent_id = agent_with(app, agent_extra).await;
    import_on_trunk(app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;
    // The scenario checks the INVITE carries this header.
    let body = json!({"from_number": FROM, "to_number": TO, "custom_sip_headers": {"X-Campaign": "spring"}});
    let reply = app.post("/v2/create-phone-call", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let call = wait_for_end(app, reply.body["call_id"].as_str().unwrap(), Duration::from_secs(40)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("user_hangup")), "{call}");
    call
}

/// The files in the data directory's recordings folder (none if it does not exist).
fn recording_files(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(app.data_path().join("recordings")) {
        Ok(entries) => {
            let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn deleting_a_call_removes_its_recordings_and_their_links_answer_404() {
    let app = spawn_app().await;
    let call = answered_call(&app, json!({})).await;
    let call_id = call["call_id"].as_str().unwrap();
    let links = [call["recording_url"].as_str().unwrap(), call["recording_multi_channel_url"].as_str().unwrap()];
    for link in links {
        assert!(!download_recording(link).await.is_empty());
    }
    assert_eq!(recording_files(&app), vec![format!("{call_id}.stereo.wav"), format!("{call_id}.wav")]);

    assert_eq!(app.delete(&format!("/v2/delete-call/{call_id}")).await.status, StatusCode::NO_CONTENT);

    assert_eq!(recording_files(&app), Vec::<String>::new());
    for link in links {
        let response = reqwest::get(link).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{link}");
    }
    assert_eq!(app.get(&format!("/v2/get-call/{call_id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_agent_storing_basic_attributes_only_leaves_no_recording_and_no_transcript() {
    let app = spawn_app().await;
    let call = answered_call(&app, json!({"data_storage_setting": "basic_attributes_only"})).await;
    assert_eq!(call["data_storage_setting"], "basic_attributes_only");
    assert!(call["recording_url"].is_null(), "{call}");
    assert!(call["recording_multi_channel_url"].is_null(), "{call}");
    assert!(call["transcript"].is_null() && call["transcript_object"].is_null(), "{call}");
    assert!(call["duration_ms"].as_i64().unwrap() > 5_000, "the call itself was kept: {call}");
    assert_eq!(recording_files(&app), Vec::<String>::new(), "no recording was ever written");
}

#[tokio::test]
async fn an_inbound_call_lands_only_in_the_workspace_that_holds_the_number() {
    let app = spawn_app().await;
    let other_key = app.new_workspace_key("other").await;
    let as_other = |method: Method, path: &'static str, body| {
        let (app, key) = (&app, other_key.clone());
        async move { app.request_as(Some(&key), method, path, body).await }
    };

    // Both workspaces have a number on a trunk at 127.0.0.1, each bound to its own agent.
    let agent_id = agent_with(&app, json!({})).await;
    let inbound = |agent: &str, number: &str| json!({"phone_number": number, "termination_uri": "127.0.0.1:5999", "inbound_agents": [{"agent_id": agent, "weight": 1}]});
    assert_eq!(app.post("/import-phone-number", inbound(&agent_id, FROM)).await.status, StatusCode::CREATED);
    let llm = as_other(Method::POST, "/create-retell-llm", Some(json!({"general_prompt": "Other."}))).await;
    let other_agent = as_other(
        Method::POST,
        "/create-agent",
        Some(json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm.body["llm_id"]}})),
    )
    .await;
    let other_agent_id = other_agent.body["agent_id"].as_str().unwrap().to_owned();
    let imported = as_other(Method::POST, "/import-phone-number", Some(inbound(&other_agent_id, "+14155550111"))).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);

    let sipp = Sipp::uac("call_in.xml", Transport::Udp, "127.0.0.1", app.sip_addr, FROM);
    sipp.finish(Duration::from_secs(30)).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let call = loop {
        let calls = app.post("/v3/list-calls", json!({})).await.body;
        let call = &calls["items"][0];
        if call["call_status"] == "ended" {
            break call.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the holder's call did not end: {calls}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((call["direction"].as_str(), call["agent_id"].as_str()), (Some("inbound"), Some(agent_id.as_str())), "{call}");
    let theirs = as_other(Method::POST, "/v3/list-calls", Some(json!({}))).await;
    assert_eq!((theirs.status, &theirs.body["items"]), (StatusCode::OK, &json!([])), "{}", theirs.body);
}
