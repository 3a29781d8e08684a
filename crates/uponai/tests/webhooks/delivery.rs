//! Events of real calls, delivered to a real HTTP receiver: signed, in order per call, retried
//! while the receiver is down, slow or failing, and kept across a kill -9.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{KEY, ServerProcess, TestApp, spawn_app, spawn_app_with};
use crate::receiver::{Answer, Receiver, events, events_of, signature_is_valid};
use crate::sipp::{Sipp, Transport, agent_with, free_port, import_on_trunk, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";
const FAILED: [&str; 3] = ["call_failed", "call_ended", "call_analyzed"];

async fn set_workspace_webhook(app: &TestApp, url: &str) {
    let reply = app.patch("/update-workspace-settings", json!({"webhook_url": url})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// A number on a trunk that refuses TCP connections: every call fails at once, never connected.
async fn number_on_a_dead_trunk(app: &TestApp, agent_extra: Value) {
    let agent_id = agent_with(app, agent_extra).await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    import_on_trunk(app, FROM, closed, Transport::Tcp, &agent_id, json!({})).await;
}

async fn place_call(app: &TestApp, to: &str) -> String {
    let reply = app.post("/v2/create-phone-call", json!({"from_number": FROM, "to_number": to})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["call_id"].as_str().unwrap().to_owned()
}

/// The deliveries of a call once none is still being attempted: a receiver has the request
/// before the attempt's result is committed.
async fn settled_deliveries(app: &TestApp, call_id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = deliveries(app, call_id).await;
        if found.iter().all(|d| d["status"] != "pending") || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliveries(app: &TestApp, call_id: &str) -> Vec<Value> {
    let reply = app.get(&format!("/list-call-webhooks/{call_id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

/// The keys of an object, to compare a payload's call with Get Call's.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn wait_until_ongoing(app: &TestApp, call_id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get(&format!("/v2/get-call/{call_id}")).await.body["call_status"] != "ongoing" {
        assert!(tokio::time::Instant::now() < deadline, "call was not answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_answered_call_sends_signed_started_ended_and_analyzed_in_order() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Answer::Ok).await;
    set_workspace_webhook(&app, &receiver.url()).await;
    let sipp = Sipp::uas("answer_wait_bye.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;

    let call_id = place_call(&app, TO).await;
    wait_until_ongoing(&app, &call_id).await;
    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, StatusCode::NO_CONTENT);
    let call = wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 3).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();

    assert_eq!(events_of(&received, &call_id), ["call_started", "call_ended", "call_analyzed"]);
    assert_eq!(received.len(), 3, "each event once: {:?}", events(&received));
    assert!(received.iter().all(|r| signature_is_valid(r, KEY)), "signed with the webhook key");
    assert_eq!(received.iter().map(|r| &r.event_id).collect::<HashSet<_>>().len(), 3, "an id per event");
    let (started, ended, analyzed) = (&received[0].json["call"], &received[1].json["call"], &received[2].json["call"]);
    assert_eq!(started["call_status"], "ongoing");
    assert!(started["telephony_identifier"]["sip_call_id"].is_string(), "{started}");
    assert_eq!(ended["call_status"], "ended");
    assert_eq!(ended["disconnection_reason"], "manual_stopped");
    assert!(ended["call_analysis"].is_null(), "call_ended comes without the analysis");
    assert_eq!(analyzed["call_analysis"]["in_voicemail"], false, "{analyzed}");
    assert_eq!(analyzed["duration_ms"], call["duration_ms"]);
    assert_eq!(keys(analyzed), keys(&call), "the payload's call has Get Call's shape");
    for key in ["transcript", "transcript_object", "latency", "recording_url", "call_cost"] {
        assert!(call.as_object().unwrap().contains_key(key), "Get Call has {key} (null until known): {call}");
    }
}

#[tokio::test]
async fn a_failed_dial_sends_call_failed_and_no_call_started() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Answer::Ok).await;
    set_workspace_webhook(&app, &receiver.url()).await;
    let sipp = Sipp::uas_from_template("reject.xml", Transport::Udp, &[("__STATUS__", "486")]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;

    let call_id = place_call(&app, TO).await;
    wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 3).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();

    assert_eq!(events_of(&received, &call_id), FAILED);
    let failed = &received[0].json["call"];
    assert_eq!((failed["call_status"].as_str(), failed["disconnection_reason"].as_str()), (Some("not_connected"), Some("dial_busy")));
    assert_eq!(received[2].json["call"]["call_analysis"]["call_successful"], false);
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_and_then_arrive_in_order_per_call() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let port = free_port();
    set_workspace_webhook(&app, &format!("http://127.0.0.1:{port}/hook")).await;
    number_on_a_dead_trunk(&app, json!({})).await;

    let mut calls = Vec::new();
    for i in 0..5 {
        calls.push(place_call(&app, &format!("+1212555{:04}", 1000 + i)).await);
    }
    for call_id in &calls {
        wait_for_end(&app, call_id, Duration::from_secs(10)).await;
    }
    // Down: the first event of each call is retried, the later ones wait behind it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let first = deliveries(&app, &calls[0]).await;
        if first[0]["attempts"].as_i64().unwrap() >= 3 {
            assert!(first[0]["last_error"].as_str().unwrap().contains("could not connect"), "{first:?}");
            assert!(first[0]["next_attempt_timestamp"].is_i64());
            assert_eq!(first[1]["attempts"], 0, "call_ended waits for call_failed");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retries seen: {first:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let receiver = Receiver::start_on(port, Answer::Ok).await;
    receiver.wait_for(Duration::from_secs(15), |r| r.len() >= 15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 15, "a delivered event is not sent again: {:?}", events(&received));
    for call_id in &calls {
        assert_eq!(events_of(&received, call_id), FAILED, "{call_id}");
        assert!(deliveries(&app, call_id).await.iter().all(|d| d["status"] == "delivered"));
    }
    assert!(received.iter().all(|r| signature_is_valid(r, KEY)));
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_gets_the_event_again_under_the_same_id() {
    let app = spawn_app().await;
    let workspace_receiver = Receiver::start(Answer::Ok).await;
    set_workspace_webhook(&app, &workspace_receiver.url()).await;
    let slow = Receiver::start(Answer::SlowFirstAttempt(Duration::from_millis(1_500))).await;
    // The agent's own URL replaces the workspace's, with its own timeout.
    number_on_a_dead_trunk(&app, json!({"webhook_url": slow.url(), "webhook_timeout_ms": 1_000, "webhook_events": ["call_failed"]})).await;

    let call_id = place_call(&app, TO).await;
    let received = slow.wait_for(Duration::from_secs(10), |r| r.iter().any(|r| r.attempt == 2)).await;

    assert!(received.iter().all(|r| r.event() == "call_failed"), "only the chosen events: {:?}", events(&received));
    assert_eq!(received.iter().map(|r| r.event_id.as_str()).collect::<HashSet<_>>().len(), 1, "same event id on the retry");
    let delivery = &settled_deliveries(&app, &call_id).await[0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    assert_eq!(delivery["attempt_log"][0]["error"], "no answer within 1000 ms");
    assert_eq!(delivery["attempt_log"][1]["status_code"], 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(workspace_receiver.received().is_empty(), "the workspace URL is not used for this agent");
}

#[tokio::test]
async fn an_event_given_up_does_not_block_the_next_and_can_be_redelivered() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |s| s.webhook_retry.max_attempts = 2).await;
    let receiver = Receiver::start(Answer::Status(500)).await;
    set_workspace_webhook(&app, &receiver.url()).await;
    number_on_a_dead_trunk(&app, json!({})).await;

    let call_id = place_call(&app, TO).await;
    receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 6).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let given_up = loop {
        let items = deliveries(&app, &call_id).await;
        if items.iter().all(|d| d["status"] == "failed") {
            break items;
        }
        assert!(tokio::time::Instant::now() < deadline, "{items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(given_up.iter().all(|d| d["attempts"] == 2 && d["last_status_code"] == 500), "{given_up:?}");
    assert_eq!(events_of(&receiver.received(), &call_id), FAILED, "each tried in order, none blocking the next");

    receiver.answer(Answer::Ok);
    let event_id = given_up[1]["event_id"].as_str().unwrap();
    let reply = app.post(&format!("/redeliver-webhook/{event_id}"), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "pending");
    receiver.wait_for(Duration::from_secs(5), |r| r.len() >= 7).await;
    let redelivered = &receiver.received()[6];
    assert_eq!((redelivered.event(), redelivered.event_id.as_str()), ("call_ended", event_id));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while deliveries(&app, &call_id).await[1]["status"] != "delivered" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unknown = app.post("/redeliver-webhook/evt_00000000000000000000000000000000", json!({})).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.get("/list-call-webhooks/call_00000000000000000000000000000000").await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_agent_can_choose_its_events_and_opt_in_to_transcript_updated() {
    let app = spawn_app().await;
    let receiver = Receiver::start(Answer::Ok).await;
    let sipp = Sipp::uas("answer_wait_bye.xml", Transport::Tcp, &[]);
    let agent_id = agent_with(&app, json!({"webhook_url": receiver.url(), "webhook_events": ["call_ended", "transcript_updated"]})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Tcp, &agent_id, json!({})).await;

    let call_id = place_call(&app, TO).await;
    wait_until_ongoing(&app, &call_id).await;
    app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await;
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 2).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(events_of(&receiver.received(), &call_id), ["transcript_updated", "call_ended"]);
    assert_eq!(received[0].json["call"]["call_status"], "ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_delivered_before_a_kill_9_are_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fast_retries = ["--webhook-retry-base-ms", "200", "--webhook-retry-cap-ms", "500"];
    let mut server = ServerProcess::start(dir.path(), &fast_retries);
    server
        .api(
            Method::PATCH,
            "/update-workspace-settings",
            Some(json!({"concurrency_limit": 100, "cps_config": {"custom": 5}, "webhook_url": format!("http://127.0.0.1:{port}/hook")})),
        )
        .await;
    let llm = server.api(Method::POST, "/create-retell-llm", Some(json!({"begin_message": ""}))).await;
    let agent = server
        .api(
            Method::POST,
            "/create-agent",
            Some(json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm["llm_id"]}})),
        )
        .await;
    let closed = format!("sip:127.0.0.1:{};transport=tcp", free_port());
    server
        .api(
            Method::POST,
            "/import-phone-number",
            Some(
                json!({"phone_number": FROM, "termination_uri": closed, "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}]}),
            ),
        )
        .await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let call = server
            .api(Method::POST, "/v2/create-phone-call", Some(json!({"from_number": FROM, "to_number": format!("+1212555{:04}", 2000 + i)})))
            .await;
        calls.push(call["call_id"].as_str().unwrap().to_owned());
    }
    // Wait until every call's events are in the outbox and being retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut queued = HashSet::new();
    'wait: loop {
        queued.clear();
        for call_id in &calls {
            let items = server.api(Method::GET, &format!("/list-call-webhooks/{call_id}"), None).await["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if items.len() < 3 || items[0]["attempts"].as_i64().unwrap() < 1 {
                assert!(tokio::time::Instant::now() < deadline, "events not queued: {items:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'wait;
            }
            queued.extend(items.iter().map(|d| d["event_id"].as_str().unwrap().to_owned()));
        }
        break;
    }

    server.kill_9();
    let receiver = Receiver::start_on(port, Answer::Ok).await;
    let mut server = ServerProcess::start(dir.path(), &fast_retries);
    let received = receiver.wait_for(Duration::from_secs(15), |r| r.len() >= 9).await;
    server.kill_9();

    for call_id in &calls {
        assert_eq!(events_of(&received, call_id), FAILED, "{call_id}");
    }
    let delivered: HashSet<String> = received.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(delivered, queued, "every event queued before the kill, under its id, nothing else");
    assert!(received.iter().all(|r| signature_is_valid(r, KEY)));
}
