//! Delivery under the egress guard and between tenants: a URL that becomes a private target
//! at send time is never called, failures say only what class they are, and one
//! workspace's black-hole receiver does not hold up another's events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::receiver::{Answer, Receiver};
use crate::sipp::{Transport, agent_with, free_port, import_on_trunk, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";

/// A number on a trunk that refuses TCP connections (loopback trunks are allowed even with
/// the guard on): every call fails at once.
async fn number_on_a_dead_trunk(app: &TestApp, from: &str, agent_extra: Value) {
    let agent_id = agent_with(app, agent_extra).await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    import_on_trunk(app, from, closed, Transport::Tcp, &agent_id, json!({})).await;
}

/// The deliveries of a call once its first event has `attempts` attempts recorded.
async fn deliveries_after(app: &TestApp, call_id: &str, attempts: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.get(&format!("/list-call-webhooks/{call_id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let items = reply.body["items"].as_array().unwrap().clone();
        if items.first().is_some_and(|first| first["attempts"].as_u64().unwrap_or(0) >= attempts) {
            return items;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt recorded: {items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_variable_host_that_fills_to_127_0_0_1_is_refused_at_send_time_and_never_called() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |settings| settings.allow_private_targets = false).await;
    let receiver = Receiver::start(Answer::Ok).await;
    let port = receiver.addr.port();
    // Saved: the name "{{hook_host}}" does not resolve, so it is checked at connect time.
    number_on_a_dead_trunk(&app, FROM, json!({"webhook_url": format!("http://{{{{hook_host}}}}:{port}/hook")})).await;

    let body = json!({"from_number": FROM, "to_number": TO, "retell_llm_dynamic_variables": {"hook_host": "127.0.0.1"}});
    let reply = app.post("/v2/create-phone-call", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    wait_for_end(&app, &call_id, Duration::from_secs(10)).await;
    let items = deliveries_after(&app, &call_id, 2).await;

    let error = items[0]["last_error"].as_str().unwrap_or_default();
    assert_eq!(error, "refused target: 127.0.0.1 is a loopback address", "{items:?}");
    assert_eq!(items[0]["url"], format!("http://127.0.0.1:{port}/hook"), "{items:?}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn a_failed_connection_is_reported_without_the_operating_systems_reason() {
    let app = spawn_app().await;
    let closed = free_port();
    let reply = app.patch("/update-workspace-settings", json!({"webhook_url": format!("http://127.0.0.1:{closed}/hook")})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    number_on_a_dead_trunk(&app, FROM, json!({})).await;

    let reply = app.post("/v2/create-phone-call", json!({"from_number": FROM, "to_number": TO})).await;
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    let items = deliveries_after(&app, &call_id, 1).await;

    assert_eq!(items[0]["last_error"], "could not connect", "no \"connection refused\": {items:?}");
}

/// Accepts connections and never answers; counts them.
async fn black_hole() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_workspace_with_a_black_hole_receiver_does_not_delay_another_workspaces_events() {
    let app = spawn_app().await;
    app.raise_limits().await;
    // Workspace A: 40 failed calls, more events than all slots, to a receiver that never answers.
    let (hole, accepted) = black_hole().await;
    let settings = json!({"webhook_url": format!("http://{hole}/hook"), "webhook_timeout_ms": 300_000});
    assert_eq!(app.patch("/update-workspace-settings", settings).await.status, StatusCode::OK);
    number_on_a_dead_trunk(&app, FROM, json!({})).await;
    for i in 0..40 {
        let reply = app.post("/v2/create-phone-call", json!({"from_number": FROM, "to_number": format!("+1212555{:04}", 100 + i)})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) < 8 {
        assert!(tokio::time::Instant::now() < deadline, "workspace A's attempts did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Workspace B, with its own key (made by the real CLI, a second process writing the
    // database while A's backlog is being written), number and receiver.
    let key_b = app.new_workspace_key("b").await;
    let as_b = |method: Method, path: &'static str, body: Value| {
        let app = &app;
        let key_b = key_b.clone();
        async move { app.request_as(Some(&key_b), method, path, Some(body)).await }
    };
    let receiver = Receiver::start(Answer::Ok).await;
    let reply = as_b(Method::PATCH, "/update-workspace-settings", json!({"webhook_url": receiver.url()})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let llm = as_b(Method::POST, "/create-retell-llm", json!({"begin_message": ""})).await;
    let agent = as_b(
        Method::POST,
        "/create-agent",
        json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm.body["llm_id"]}}),
    )
    .await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let import = json!({"phone_number": "+14155550111", "termination_uri": format!("sip:{closed};transport=tcp"),
        "outbound_agents": [{"agent_id": agent.body["agent_id"], "weight": 1}]});
    assert_eq!(as_b(Method::POST, "/import-phone-number", import).await.status, StatusCode::CREATED);
    let reply = as_b(Method::POST, "/v2/create-phone-call", json!({"from_number": "+14155550111", "to_number": TO})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // B's three events arrive while A's attempts hang for minutes.
    let received = receiver.wait_for(Duration::from_secs(15), |r| r.len() >= 3).await;
    assert_eq!(received.len(), 3, "B's events were delivered: {}", received.len());
    assert_eq!(accepted.load(Ordering::SeqCst), 8, "A holds at most 8 of the deliverer's slots");
}
