use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_in};

#[tokio::test]
async fn a_data_directory_survives_a_restart_with_every_object_intact() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("durable").await;
    app.post(&format!("/publish-agent-version/{agent_id}"), json!({"version": 0})).await;
    app.import_number("+14155550100", &[&agent_id]).await;
    // A dial-in call waits for its INVITE, so its record does not change across the restart.
    let registered = app
        .post("/v2/register-phone-call", json!({"agent_id": agent_id, "metadata": {"m": 1}, "retell_llm_dynamic_variables": {"n": "v"}}))
        .await
        .body;
    let registered_path = format!("/v2/get-call/{}", registered["call_id"].as_str().unwrap());
    // An outbound call is dialed at once; a restart cuts its dial short.
    let dialed = app
        .post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123", "metadata": {"m": 2}}))
        .await
        .body;
    let dialed_path = format!("/v2/get-call/{}", dialed["call_id"].as_str().unwrap());
    let before = (
        app.get(&format!("/get-agent/{agent_id}")).await.body,
        app.get("/get-phone-number/+14155550100").await.body,
        app.get(&registered_path).await.body,
        app.get("/v2/list-retell-llms").await.body,
    );

    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir).await;

    let after = (
        app.get(&format!("/get-agent/{agent_id}")).await.body,
        app.get("/get-phone-number/+14155550100").await.body,
        app.get(&registered_path).await.body,
        app.get("/v2/list-retell-llms").await.body,
    );
    assert_eq!(before, after);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=latest_published")).await.status, StatusCode::OK);
    let dialed_after = app.get(&dialed_path).await.body;
    assert_eq!(dialed_after["metadata"], json!({"m": 2}));
    assert!(
        ["ended", "error", "not_connected"].contains(&dialed_after["call_status"].as_str().unwrap()),
        "a call whose dial died with the process is ended, not left dialing: {dialed_after}"
    );
    assert!(dialed_after["disconnection_reason"].is_string());
}
