//! Inbound calls with sipp as the caller.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sipp::{Sipp, Transport, agent_with, best_correlation, channel, download_recording, pcap_audio, rms};

const NUMBER: &str = "+14155550100";

/// Imports NUMBER on a trunk at 127.0.0.1 (so calls from 127.0.0.1 are its trunk's).
async fn import(app: &TestApp, inbound_agent: Option<&str>) {
    let agents = match inbound_agent {
        Some(agent_id) => json!([{"agent_id": agent_id, "weight": 1}]),
        None => Value::Null,
    };
    let reply = app
        .post("/import-phone-number", json!({"phone_number": NUMBER, "termination_uri": "127.0.0.1:5999", "inbound_agents": agents}))
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
}

async fn only_call(app: &TestApp) -> Value {
    let calls = app.post("/v3/list-calls", json!({})).await.body;
    let items = calls["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{calls}");
    app.get(&format!("/v2/get-call/{}", items[0]["call_id"].as_str().unwrap())).await.body
}

async fn a_bound_number_answers(transport: Transport) {
    let app = spawn_app().await;
    let agent_id = agent_with(&app, json!({})).await;
    import(&app, Some(&agent_id)).await;
    let sipp = Sipp::uac("call_in.xml", transport, "127.0.0.1", app.sip_addr, NUMBER);
    sipp.finish(Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = only_call(&app).await;
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["agent_id"], agent_id);
    assert_eq!(call["from_number"], "+13105550199");
    assert_eq!(call["to_number"], NUMBER);
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("user_hangup")), "{call}");
    let stereo = download_recording(call["recording_multi_channel_url"].as_str().unwrap()).await;
    let caller = channel(&stereo, 0);
    assert!(rms(&caller) > 500.0);
    let correlation = best_correlation(&caller, &pcap_audio()[4_000..12_000], 8_000 * 2);
    assert!(correlation > 0.95, "{correlation}");
}

#[tokio::test]
async fn a_number_with_an_inbound_agent_answers_over_udp() {
    a_bound_number_answers(Transport::Udp).await;
}

#[tokio::test]
async fn a_number_with_an_inbound_agent_answers_over_tcp() {
    a_bound_number_answers(Transport::Tcp).await;
}

#[tokio::test]
async fn a_number_without_an_inbound_agent_rejects_the_call() {
    let app = spawn_app().await;
    import(&app, None).await;
    let sipp = Sipp::uac("call_in_refused.xml", Transport::Udp, "127.0.0.1", app.sip_addr, NUMBER);
    sipp.finish(Duration::from_secs(20)).await.unwrap();
    assert_eq!(app.post("/v3/list-calls", json!({})).await.body["items"], json!([]));
}

#[tokio::test]
async fn a_call_from_outside_the_numbers_trunk_is_refused() {
    let app = spawn_app().await;
    let agent_id = agent_with(&app, json!({})).await;
    import(&app, Some(&agent_id)).await;
    // 127.0.0.2 is loopback too, but not the trunk's address.
    let sipp = Sipp::uac("call_in_refused.xml", Transport::Udp, "127.0.0.2", app.sip_addr, NUMBER);
    sipp.finish(Duration::from_secs(20)).await.unwrap();
    assert_eq!(app.post("/v3/list-calls", json!({})).await.body["items"], json!([]));
}

#[tokio::test]
async fn a_registered_call_is_joined_by_dialing_its_call_id() {
    let app = spawn_app().await;
    let agent_id = agent_with(&app, json!({})).await;
    let registered =
        app.post("/v2/register-phone-call", json!({"agent_id": agent_id, "from_number": "+13105550199", "to_number": NUMBER})).await.body;
    let call_id = registered["call_id"].as_str().unwrap();
    let sipp = Sipp::uac("call_in.xml", Transport::Udp, "127.0.0.1", app.sip_addr, call_id);
    sipp.finish(Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = app.get(&format!("/v2/get-call/{call_id}")).await.body;
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("user_hangup")), "{call}");
    // Dialing the same id again finds nothing.
    let again = Sipp::uac("call_in_refused.xml", Transport::Udp, "127.0.0.1", app.sip_addr, call_id);
    assert!(again.finish(Duration::from_secs(15)).await.is_err(), "a finished call cannot be joined again");
}
