use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_in};

#[tokio::test]
async fn a_data_directory_survives_a_restart_with_every_object_intact() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("durable").await;
    app.post(&format!("/publish-agent-version/{agent_id}"), json!({"version": 0})).await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let call = app.post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123", "metadata": {"m": 1}})).await.body;
    let before = (
        app.get(&format!("/get-agent/{agent_id}")).await.body,
        app.get("/get-phone-number/+14155550100").await.body,
        app.get(&format!("/v2/get-call/{}", call["call_id"].as_str().unwrap())).await.body,
        app.get("/v2/list-retell-llms").await.body,
    );

    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir).await;

    let after = (
        app.get(&format!("/get-agent/{agent_id}")).await.body,
        app.get("/get-phone-number/+14155550100").await.body,
        app.get(&format!("/v2/get-call/{}", call["call_id"].as_str().unwrap())).await.body,
        app.get("/v2/list-retell-llms").await.body,
    );
    assert_eq!(before, after);
    assert_eq!(app.get(&format!("/get-agent/{agent_id}?version=latest_published")).await.status, StatusCode::OK);
}
