//! Batch campaigns against sipp: pacing, the calling window, and a kill -9 mid-batch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ServerProcess, spawn_app};
use crate::sipp::{Sipp, Transport, agent_with};

fn busiest_second(times: &[f64]) -> usize {
    (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t - times[i] < 1.0).count()).max().unwrap_or(0)
}

fn tasks(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"to_number": format!("+1212555{:04}", 1000 + i), "custom_sip_headers": {"X-Task": i.to_string()}})).collect()
}

/// `X-Task` → the Call-IDs sipp saw INVITEs for.
fn call_ids_per_task(invites: &[(f64, String)]) -> HashMap<String, HashSet<String>> {
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for (_, text) in invites {
        let header = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
        if let (Some(task), Some(call_id)) = (header("X-Task:"), header("Call-ID:")) {
            seen.entry(task).or_default().insert(call_id);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_hundred_tasks_runs_at_its_trunks_cps() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let sipp = Sipp::uas_traced("reject.xml", Transport::Udp, &[("__STATUS__", "486")]);
    app.patch("/update-workspace-settings", json!({"concurrency_limit": 1000, "cps_config": {"custom": 30}})).await;
    let agent_id = agent_with(&app, json!({})).await;
    let number = json!({"phone_number": "+14155550100", "termination_uri": format!("sip:{};transport=udp", sipp.addr()),
                        "outbound_agents": [{"agent_id": agent_id, "weight": 1}]});
    assert_eq!(app.post("/import-phone-number", number).await.status, reqwest::StatusCode::CREATED);
    let batch = app.post("/create-batch-call", json!({"from_number": "+14155550100", "tasks": tasks(300)})).await.body;
    let id = batch["batch_call_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let progress = app.get(&format!("/get-batch-call/{id}")).await.body;
        if progress["status"] == "completed" && progress["progress"]["calls"].get("registered").is_none() {
            assert_eq!(progress["progress"]["called"], 300, "{progress}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch did not finish: {progress}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invites = sipp.stop_and_read_invites().await;
    let per_task = call_ids_per_task(&invites);
    assert_eq!(per_task.len(), 300, "every task dialed");
    assert!(per_task.values().all(|ids| ids.len() == 1), "no task dialed twice");
    let mut times: Vec<f64> = invites.iter().map(|(t, _)| *t).collect();
    times.sort_by(f64::total_cmp);
    let busiest = busiest_second(&times);
    assert!((25..=30).contains(&busiest), "paced at 30 CPS: busiest second held {busiest}");
    let span = times.last().unwrap() - times.first().unwrap();
    // At most 30 a second makes 300 take 10 s at least; the upper bound only catches a pacer
    // stuck far behind, as a loaded 2-core CI machine stretches the run (13.06 s seen once).
    assert!((9.5..20.0).contains(&span), "300 INVITEs at 30 CPS take about 10 s: {span}");
    let listed = app
        .post("/v3/list-calls", json!({"filter_criteria": {"batch_call_id": {"type": "string", "op": "eq", "value": id}}, "limit": 1000}))
        .await
        .body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_outside_its_calling_window_waits() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let sipp = Sipp::uas_traced("reject.xml", Transport::Udp, &[("__STATUS__", "486")]);
    let agent_id = agent_with(&app, json!({})).await;
    let number = json!({"phone_number": "+14155550100", "termination_uri": format!("sip:{};transport=udp", sipp.addr()),
                        "outbound_agents": [{"agent_id": agent_id, "weight": 1}]});
    app.post("/import-phone-number", number).await;
    // A one-hour window starting two hours from now (UTC).
    let minute_now = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60 % 1440) as i64;
    let start = (minute_now + 120) % 1380;
    let window = json!({"windows": [{"start": start, "end": start + 60}], "timezone": "UTC"});
    let batch =
        app.post("/create-batch-call", json!({"from_number": "+14155550100", "tasks": tasks(3), "call_time_window": window})).await.body;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let progress = app.get(&format!("/get-batch-call/{}", batch["batch_call_id"].as_str().unwrap())).await.body;
    assert_eq!((progress["status"].as_str(), progress["progress"]["pending"].as_i64()), (Some("scheduled"), Some(3)), "{progress}");
    assert!(sipp.stop_and_read_invites().await.is_empty(), "nothing dialed outside the window");
}

fn start_server(data_dir: &std::path::Path) -> ServerProcess {
    ServerProcess::start(data_dir, &[])
}

async fn api(server: &ServerProcess, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    server.api(method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_survives_kill_9_without_dialing_any_task_twice() {
    let _serial = crate::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let sipp = Sipp::uas_traced("reject.xml", Transport::Udp, &[("__STATUS__", "486")]);
    let mut server = start_server(dir.path());
    api(
        &server,
        reqwest::Method::PATCH,
        "/update-workspace-settings",
        Some(json!({"concurrency_limit": 1000, "cps_config": {"custom": 25}})),
    )
    .await;
    let llm = api(&server, reqwest::Method::POST, "/create-retell-llm", Some(json!({"begin_message": ""}))).await;
    let agent = api(
        &server,
        reqwest::Method::POST,
        "/create-agent",
        Some(json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm["llm_id"]}})),
    )
    .await;
    api(&server, reqwest::Method::POST, "/import-phone-number", Some(json!({"phone_number": "+14155550100", "termination_uri": format!("sip:{};transport=udp", sipp.addr()), "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}]}))).await;
    let batch =
        api(&server, reqwest::Method::POST, "/create-batch-call", Some(json!({"from_number": "+14155550100", "tasks": tasks(250)}))).await;
    let id = batch["batch_call_id"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_secs(4)).await;
    server.kill_9();
    let server = start_server(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let progress = api(&server, reqwest::Method::GET, &format!("/get-batch-call/{id}"), None).await;
        if progress["status"] == "completed" && progress["progress"]["calls"].get("registered").is_none() {
            assert_eq!(progress["progress"]["called"], 250, "{progress}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch did not finish after the restart: {progress}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invites = sipp.stop_and_read_invites().await;
    let per_task = call_ids_per_task(&invites);
    let twice: Vec<_> = per_task.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "tasks dialed twice: {twice:?}");
    // At most once, not exactly once: a call claimed for dialing in the instant before the
    // kill, whose INVITE had not left yet, is ended by the restart (error_unknown) and never
    // dialed, rather than risk a second INVITE. Every undialed task must be such a call.
    let filter = json!({"filter_criteria": {"batch_call_id": {"type": "string", "op": "eq", "value": id}}, "limit": 1000});
    let listed = api(&server, reqwest::Method::POST, "/v3/list-calls", Some(filter)).await;
    let calls = listed["items"].as_array().unwrap();
    assert_eq!(calls.len(), 250, "one call per task");
    let cut_by_the_kill = calls.iter().filter(|c| c["disconnection_reason"] == "error_unknown").count();
    let undialed = 250 - per_task.len();
    assert!(undialed <= cut_by_the_kill && cut_by_the_kill <= 5, "{undialed} tasks undialed, {cut_by_the_kill} calls cut by the kill");
    let mut times: Vec<f64> = invites.iter().map(|(t, _)| *t).collect();
    times.sort_by(f64::total_cmp);
    let busiest = busiest_second(&times);
    let gaps: Vec<String> = times.windows(2).map(|w| format!("{:.0}", (w[1] - w[0]) * 1000.0)).collect();
    assert!(busiest <= 25, "paced across the restart too: {busiest} in one second; gaps (ms) {}", gaps.join(" "));
    let mut server = server;
    server.child.kill().unwrap();
}
