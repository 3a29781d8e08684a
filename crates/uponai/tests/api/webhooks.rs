//! Webhook targets in the settings and on agents: validation and defaults. Delivery itself is
//! tested in the `webhooks` binary against a real receiver.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_workspace_webhook_url_is_set_shown_and_removed() {
    let app = spawn_app().await;
    let settings = app.get("/get-workspace-settings").await.body;
    assert!(settings["webhook_url"].is_null());
    assert_eq!(settings["webhook_timeout_ms"], 10_000, "the hosted API's default timeout");

    let reply = app
        .patch(
            "/update-workspace-settings",
            json!({"webhook_url": "https://hooks.example.com/retell?x={{customer}}", "webhook_timeout_ms": 5000}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["webhook_url"], "https://hooks.example.com/retell?x={{customer}}");
    assert_eq!(reply.body["webhook_timeout_ms"], 5000);

    let reply = app.patch("/update-workspace-settings", json!({"webhook_url": null})).await;
    assert!(reply.body["webhook_url"].is_null());
    assert_eq!(app.get("/get-workspace-settings").await.body["webhook_timeout_ms"], 5000, "left out keeps its value");
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"webhook_url": "ftp://hooks.example.com"}), "webhook_url"),
        (json!({"webhook_url": "not a url"}), "webhook_url"),
        (json!({"webhook_timeout_ms": 10}), "webhook_timeout_ms"),
    ] {
        let reply = app.patch("/update-workspace-settings", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(field), "{}", reply.message());
    }
    let reply = app.post("/create-agent", json!({"response_engine": {"type": "custom-llm", "llm_websocket_url": "wss://x.example"}, "voice_id": "espeak-en-us-male", "webhook_events": ["call_failed", "call_exploded"]})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.message().starts_with("webhook_events"), "{}", reply.message());
}
