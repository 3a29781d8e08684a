use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn requests_without_a_valid_key_are_refused_with_the_error_body() {
    let app = spawn_app().await;
    for key in [None, Some("key_not_a_real_one")] {
        let reply = app.request_as(key, Method::GET, "/list-voices", None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.message(), "API key is missing or invalid.");
    }
}

#[tokio::test]
async fn unknown_paths_answer_404_with_the_error_body() {
    let app = spawn_app().await;
    let reply = app.get("/no-such-endpoint").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["status"], "error");
}

/// Runs the `uponai` binary against the app's data directory.
fn uponai_cli(app: &crate::helpers::TestApp, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_uponai"))
        .args(args)
        .arg("--data-dir")
        .arg(app.data_path())
        .output()
        .expect("uponai runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_key_never_reads_or_changes_another_workspaces_data() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("mine").await;
    app.import_number("+14155550100", &[&agent_id]).await;

    let created = uponai_cli(&app, &["keys", "create", "--new-workspace", "other", "--name", "intruder"]);
    let other_key = created.lines().nth(1).expect("secret on the second line").to_owned();

    let as_other = |method, path: String, body| {
        let app = &app;
        let other_key = other_key.clone();
        async move { app.request_as(Some(&other_key), method, &path, body).await }
    };
    let reply = as_other(Method::GET, format!("/get-agent/{agent_id}"), None).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = as_other(Method::PATCH, format!("/update-agent/{agent_id}"), Some(json!({"agent_name": "x"}))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = as_other(Method::DELETE, format!("/delete-agent/{agent_id}"), None).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = as_other(Method::GET, "/get-phone-number/+14155550100".into(), None).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = as_other(Method::POST, "/v2/list-agents".into(), Some(json!({}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["items"], json!([]));
    let reply =
        as_other(Method::POST, "/v2/create-phone-call".into(), Some(json!({"from_number": "+14155550100", "to_number": "+14155550101"})))
            .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.message().starts_with("from_number:"), "{}", reply.message());

    // The owner still sees everything, unchanged.
    let reply = app.get(&format!("/get-agent/{agent_id}")).await;
    assert_eq!(reply.body["agent_name"], "mine");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let app = spawn_app().await;
    let created = uponai_cli(&app, &["keys", "create", "--name", "temporary"]);
    let mut lines = created.lines();
    let key_id = lines.next().unwrap().split_whitespace().next().unwrap().to_owned();
    let secret = lines.next().unwrap().to_owned();
    assert_eq!(app.request_as(Some(&secret), Method::GET, "/list-voices", None).await.status, StatusCode::OK);

    let listed = uponai_cli(&app, &["keys", "list"]);
    assert!(listed.contains(&key_id) && !listed.contains(&secret), "{listed}");
    uponai_cli(&app, &["keys", "revoke", &key_id]);
    assert_eq!(app.request_as(Some(&secret), Method::GET, "/list-voices", None).await.status, StatusCode::UNAUTHORIZED);
    assert!(uponai_cli(&app, &["keys", "list"]).contains("revoked"));
}
