//! Outbound calls with sipp as the trunk.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::sipp::{
    Sipp, Transport, agent_with, best_correlation, channel, download_recording, import_on_trunk, pcap_audio, rms, wait_for_end,
};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";

async fn place_call(app: &TestApp, extra: Value) -> String {
    let mut body = json!({"from_number": FROM, "to_number": TO});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let reply = app.post("/v2/create-phone-call", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["call_status"], "registered");
    reply.body["call_id"].as_str().unwrap().to_owned()
}

async fn answered_call_is_recorded_and_ends_when_the_callee_hangs_up(transport: Transport) {
    let app = spawn_app().await;
    let sipp = Sipp::uas("answer_play_hangup.xml", transport, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), transport, &agent_id, json!({})).await;

    let call_id = place_call(&app, json!({"custom_sip_headers": {"X-Campaign": "spring"}})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(30)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();

    assert_eq!(call["call_status"], "ended", "{call}");
    assert_eq!(call["disconnection_reason"], "user_hangup");
    let duration = call["duration_ms"].as_i64().unwrap();
    assert!((7_000..=10_000).contains(&duration), "sipp hangs up 8 s after answering: {duration}");
    assert_eq!(call["end_timestamp"].as_i64().unwrap() - call["start_timestamp"].as_i64().unwrap(), duration);
    assert!(call["telephony_identifier"]["sip_call_id"].is_string());
    let media = &call["media_stats"];
    assert!(media["packets_received"].as_u64().unwrap() > 200, "RTP arrived from sipp: {media}");
    assert!(media["packets_sent"].as_u64().unwrap() > 350, "we sent RTP every 20 ms: {media}");

    // The stereo recording: the left channel holds the pcap's audio, the right the (silent) agent.
    let stereo = download_recording(call["recording_multi_channel_url"].as_str().unwrap()).await;
    let (caller, agent) = (channel(&stereo, 0), channel(&stereo, 1));
    let reference = pcap_audio();
    assert!(rms(&caller) > 500.0, "caller channel carries audio: rms {}", rms(&caller));
    assert!(rms(&agent) < 1.0, "agent channel is silent: rms {}", rms(&agent));
    // Two seconds of the pcap, from its middle, found in the recording (any delay up to 2 s).
    let probe = &reference[16_000..32_000];
    let correlation = best_correlation(&caller, probe, 8_000 * 4);
    assert!(correlation > 0.95, "recorded caller audio matches the pcap: {correlation} {media}");
    let mono = download_recording(call["recording_url"].as_str().unwrap()).await;
    assert_eq!(mono.len(), caller.len(), "mono and stereo cover the same time");
}

#[tokio::test]
async fn answered_call_over_udp_is_recorded_and_ends_user_hangup() {
    answered_call_is_recorded_and_ends_when_the_callee_hangs_up(Transport::Udp).await;
}

#[tokio::test]
async fn answered_call_over_tcp_is_recorded_and_ends_user_hangup() {
    answered_call_is_recorded_and_ends_when_the_callee_hangs_up(Transport::Tcp).await;
}

async fn rejected_call_ends_not_connected(transport: Transport, status: &str, reason: &str) {
    let app = spawn_app().await;
    let sipp = Sipp::uas_from_template("reject.xml", transport, &[("__STATUS__", status)]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), transport, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (call["call_status"].as_str(), call["disconnection_reason"].as_str()),
        (Some("not_connected"), Some(reason)),
        "{status}: {call}"
    );
    assert!(call["start_timestamp"].is_null(), "never answered: {call}");
    assert!(call["end_timestamp"].is_i64() && call["duration_ms"] == 0);
}

#[tokio::test]
async fn busy_486_is_dial_busy() {
    rejected_call_ends_not_connected(Transport::Udp, "486", "dial_busy").await;
}

#[tokio::test]
async fn busy_486_over_tcp_is_dial_busy() {
    rejected_call_ends_not_connected(Transport::Tcp, "486", "dial_busy").await;
}

#[tokio::test]
async fn declined_603_is_user_declined() {
    rejected_call_ends_not_connected(Transport::Udp, "603", "user_declined").await;
}

#[tokio::test]
async fn not_found_404_is_invalid_destination() {
    rejected_call_ends_not_connected(Transport::Udp, "404", "invalid_destination").await;
}

#[tokio::test]
async fn unavailable_503_is_telephony_provider_unavailable() {
    rejected_call_ends_not_connected(Transport::Udp, "503", "telephony_provider_unavailable").await;
}

async fn unanswered_call_is_cancelled_after_the_ring_duration(transport: Transport) {
    let app = spawn_app().await;
    let sipp = Sipp::uas("ring_forever.xml", transport, &[]);
    let agent_id = agent_with(&app, json!({"ring_duration_ms": 5000})).await;
    import_on_trunk(&app, FROM, sipp.addr(), transport, &agent_id, json!({})).await;
    let started = std::time::Instant::now();
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    // sipp only counts the call successful if our CANCEL arrived.
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(call["disconnection_reason"], "dial_no_answer", "{call}");
    assert_eq!(call["call_status"], "not_connected");
    let rang = started.elapsed();
    assert!(rang >= Duration::from_millis(4_900) && rang < Duration::from_secs(9), "rang {rang:?}");
}

#[tokio::test]
async fn ringing_never_answered_is_cancelled_over_udp() {
    unanswered_call_is_cancelled_after_the_ring_duration(Transport::Udp).await;
}

#[tokio::test]
async fn ringing_never_answered_is_cancelled_over_tcp() {
    unanswered_call_is_cancelled_after_the_ring_duration(Transport::Tcp).await;
}

async fn a_challenge_is_answered_with_the_trunk_credentials(scenario: &str, transport: Transport) {
    let app = spawn_app().await;
    let sipp = Sipp::uas(scenario, transport, &[("user", "trunkuser"), ("pass", "trunkpass")]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), transport, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("user_hangup")), "{call}");
}

#[tokio::test]
async fn a_401_challenge_is_answered_with_a_digest_sipp_verifies() {
    a_challenge_is_answered_with_the_trunk_credentials("challenge_401.xml", Transport::Udp).await;
}

#[tokio::test]
async fn a_407_challenge_is_answered_with_proxy_authorization() {
    a_challenge_is_answered_with_the_trunk_credentials("challenge_407.xml", Transport::Tcp).await;
}

#[tokio::test]
async fn a_wrong_trunk_password_is_telephony_provider_permission_denied() {
    let app = spawn_app().await;
    let sipp = Sipp::uas("challenge_401.xml", Transport::Udp, &[("user", "trunkuser"), ("pass", "the-real-password")]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(call["call_status"], "not_connected", "{call}");
    assert_eq!(call["disconnection_reason"], "telephony_provider_permission_denied");
}

#[tokio::test]
async fn we_hang_up_at_max_call_duration() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |s| s.no_audio_timeout = Duration::from_secs(600)).await;
    let sipp = Sipp::uas("answer_wait_bye.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, json!({"max_call_duration_ms": 60_000})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(90)).await;
    // sipp succeeds only when it receives our BYE.
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (call["call_status"].as_str(), call["disconnection_reason"].as_str()),
        (Some("ended"), Some("max_duration_reached")),
        "{call}"
    );
    let duration = call["duration_ms"].as_i64().unwrap();
    assert!((60_000..61_500).contains(&duration), "{duration}");
}

#[tokio::test]
async fn a_callee_that_sends_no_audio_is_hung_up_as_error_no_audio_received() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |s| s.no_audio_timeout = Duration::from_secs(2)).await;
    let sipp = Sipp::uas("answer_wait_bye.xml", Transport::Tcp, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Tcp, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(20)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(call["disconnection_reason"], "error_no_audio_received", "{call}");
    assert_eq!(call["call_status"], "error");
}

#[tokio::test]
async fn a_trunk_refusing_connections_is_telephony_provider_unavailable() {
    let app = spawn_app().await;
    let agent_id = agent_with(&app, json!({})).await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], crate::sipp::free_port()));
    import_on_trunk(&app, FROM, closed, Transport::Tcp, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    assert_eq!(
        (call["call_status"].as_str(), call["disconnection_reason"].as_str()),
        (Some("not_connected"), Some("telephony_provider_unavailable"))
    );
}

#[tokio::test]
async fn stop_call_cancels_a_ringing_call_and_hangs_up_a_connected_one() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |s| s.no_audio_timeout = Duration::from_secs(600)).await;
    let ringing = Sipp::uas("ring_forever.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, ringing.addr(), Transport::Udp, &agent_id, json!({})).await;
    let call_id = place_call(&app, json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, reqwest::StatusCode::NO_CONTENT);
    let call = wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    ringing.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (call["call_status"].as_str(), call["disconnection_reason"].as_str()),
        (Some("not_connected"), Some("manual_stopped")),
        "{call}"
    );

    let answering = Sipp::uas("answer_wait_bye.xml", Transport::Tcp, &[]);
    app.patch(&format!("/update-phone-number/{FROM}"), json!({"termination_uri": format!("sip:{};transport=tcp", answering.addr())})).await;
    let call_id = place_call(&app, json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get(&format!("/v2/get-call/{call_id}")).await.body["call_status"] != "ongoing" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call was not answered: {}",
            app.get(&format!("/v2/get-call/{call_id}")).await.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await;
    let call = wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    answering.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("manual_stopped")), "{call}");
    // Stopping an ended call changes nothing.
    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v2/get-call/{call_id}")).await.body["disconnection_reason"], "manual_stopped");
}
