use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn batch_requests_are_validated_task_by_task() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let task = |to: &str| json!({"to_number": to});
    let cases = [
        (json!({"from_number": "+14155550100", "tasks": []}), "tasks: must hold 1 to 10000"),
        (json!({"from_number": "+13105550100", "tasks": [task("+12125550123")]}), "from_number:"),
        (json!({"from_number": "+14155550100", "tasks": [task("+12125550123"), task("212")]}), "tasks[1].to_number:"),
        (
            json!({"from_number": "+14155550100", "tasks": [{"to_number": "+12125550123", "custom_sip_headers": {"Bad": "x"}}]}),
            "tasks[0].custom_sip_headers.Bad",
        ),
        (
            json!({"from_number": "+14155550100", "tasks": [{"to_number": "+12125550123", "retell_llm_dynamic_variables": {"n": 1}}]}),
            "tasks[0].retell_llm_dynamic_variables.n",
        ),
        (
            json!({"from_number": "+14155550100", "tasks": [task("+12125550123")], "reserved_concurrency": 20}),
            "reserved_concurrency: must be between 0 and 19",
        ),
        (
            json!({"from_number": "+14155550100", "tasks": [task("+12125550123")], "call_time_window": {"windows": [{"start": 600, "end": 500}]}}),
            "call_time_window.windows[0]",
        ),
        (
            json!({"from_number": "+14155550100", "tasks": [task("+12125550123")], "call_time_window": {"windows": [{"start": 0, "end": 60}], "timezone": "Nowhere/Land"}}),
            "call_time_window.timezone",
        ),
    ];
    for (body, message) in cases {
        let reply = app.post("/create-batch-call", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(message), "{body}: {}", reply.message());
    }
    assert_eq!(app.get("/v2/list-batch-calls").await.body["items"], json!([]), "nothing was queued");
}

#[tokio::test]
async fn a_scheduled_batch_reports_its_shape_and_progress() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let tomorrow = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 86_400_000) as i64;
    let created = app
        .post(
            "/create-batch-call",
            json!({"from_number": "+14155550100", "name": "spring", "trigger_timestamp": tomorrow,
                   "tasks": [{"to_number": "+12125550123", "retell_llm_dynamic_variables": {"name": "Ann"}}, {"to_number": "+12125550124"}],
                   "call_time_window": {"windows": [{"start": 540, "end": 1020}], "day": ["Monday", "Friday"], "timezone": "America/New_York"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let batch = created.body;
    assert!(batch["batch_call_id"].as_str().unwrap().starts_with("batch_call_"));
    assert_eq!(
        (batch["name"].as_str(), batch["total_task_count"].as_i64(), batch["scheduled_timestamp"].as_i64()),
        (Some("spring"), Some(2), Some(tomorrow))
    );
    assert_eq!(
        batch["call_time_window"],
        json!({"windows": [{"start": 540.0, "end": 1020.0}], "day": ["Monday", "Friday"], "timezone": "America/New_York"})
    );
    assert_eq!(batch["status"], "scheduled");
    assert_eq!(batch["progress"]["pending"], 2);
    let id = batch["batch_call_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/get-batch-call/{id}")).await.body["progress"]["called"], 0);
    assert_eq!(app.get("/v2/list-batch-calls").await.body["items"][0]["batch_call_id"], id);
    assert_eq!(app.get("/get-batch-call/batch_call_nope").await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_batch_command_submits_a_csv_and_follows_it_to_the_end() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    // A trunk that refuses connections: calls end at once, so the command's wait is short.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    app.post(
        "/import-phone-number",
        json!({"phone_number": "+14155550100", "termination_uri": format!("sip:{closed};transport=tcp"),
                                            "outbound_agents": [{"agent_id": agent_id, "weight": 1}]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("leads.csv");
    std::fs::write(&csv, "phone_number,first_name\n+12125550123,Ann\n+12125550124,Bo\n+12125550125,Cy\n").unwrap();
    // tokio's process, so the in-process server keeps serving while the command runs.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_uponai"))
        .args(["batch", "--from", "+14155550100", "--name", "csv run", "--url", &format!("http://{}", app.addr)])
        .arg("--csv")
        .arg(&csv)
        .env("UPONAI_API_KEY", &app.key)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output).await.expect("the command finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 tasks queued") && stdout.contains("completed"), "{stdout}");
    assert!(stderr.contains("3/3 done"), "progress shown: {stderr}");
    let calls = app.post("/v3/list-calls", json!({"sort_order": "ascending"})).await.body;
    let variables: Vec<_> =
        calls["items"].as_array().unwrap().iter().map(|c| c["retell_llm_dynamic_variables"]["first_name"].clone()).collect();
    assert_eq!(variables, vec![json!("Ann"), json!("Bo"), json!("Cy")]);
}
