//! Shared by the `api` and `sip` test binaries; each uses part of it.
#![allow(dead_code)]

//! `spawn_app` and typed helpers on `TestApp`.

use std::net::SocketAddr;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uponai::App;
use uponai::config::Settings;

pub const KEY: &str = "key_test_0123456789abcdef";

pub struct TestApp {
    pub addr: SocketAddr,
    /// SIP (UDP and TCP) on 127.0.0.1.
    pub sip_addr: SocketAddr,
    pub key: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    /// The app's SIP endpoint, to watch or stop it from a test.
    pub sip_endpoint: sip::Endpoint,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp dir")).await
}

pub async fn spawn_app_in(data_dir: tempfile::TempDir) -> TestApp {
    spawn_app_with(data_dir, |_| {}).await
}

/// Spawns the app after `adjust` has changed its settings.
pub async fn spawn_app_with(data_dir: tempfile::TempDir, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings {
        http: "127.0.0.1:0".parse().unwrap(),
        sip: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        bootstrap_api_key: Some(KEY.to_owned()),
        // Below the ephemeral range (32768+), and above 10000-19999 where sipp.rs picks sipp's ports.
        rtp_ports: 20_000..=29_999,
        external_ip: None,
        public_url: None,
        no_audio_timeout: std::time::Duration::from_secs(30),
        inbound_queue: std::time::Duration::from_secs(2),
        // Fast retries, so tests of a failing receiver finish in seconds.
        webhook_retry: uponai::webhooks::RetryPolicy {
            max_attempts: 16,
            base: std::time::Duration::from_millis(200),
            cap: std::time::Duration::from_millis(1000),
        },
        // Receivers and trunks of the tests are on 127.0.0.1; the guard's own tests turn it on.
        allow_private_targets: true,
        // The assets `./scripts/test` installed (the default directory).
        assets_dir: None,
        instant_speech: false,
        llm_base_url: None,
        llm_api_key: None,
        llm_model: None,
        deepgram_api_key: None,
        deepgram_url: None,
        elevenlabs_api_key: None,
        elevenlabs_url: None,
        // Tests place many calls at once; the default CPS of 1 is raised per test where
        // pacing is what is being tested.
    };
    adjust(&mut settings);
    let app = App::build(settings).await.expect("app builds");
    let addr = app.http_addr();
    let sip_addr = app.sip_addr();
    let sip_endpoint = app.sip_endpoint();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp { addr, sip_addr, key: KEY.to_owned(), client: reqwest::Client::new(), data_dir, sip_endpoint, shutdown, server }
}

/// A response: status and parsed JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error message, asserting the error body shape.
    pub fn message(&self) -> &str {
        assert_eq!(self.body["status"], "error", "not an error body: {}", self.body);
        self.body["message"].as_str().expect("message is a string")
    }
}

impl TestApp {
    /// Stops the server and returns its data directory for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.server.await.expect("server task").expect("server ran cleanly");
        self.data_dir
    }

    /// What `run_until_stopped` returned, if it returns within `timeout` without being asked.
    pub async fn exited_within(self, timeout: std::time::Duration) -> Option<anyhow::Result<()>> {
        tokio::time::timeout(timeout, self.server).await.ok().map(|joined| joined.expect("server task"))
    }

    /// A key of a new workspace `name`, made with the real `uponai keys create --new-workspace`
    /// against this app's data directory.
    /// Runs `uponai keys create` beside the running server. Awaited, not blocking: the
    /// server runs on this test's runtime, and blocking its thread while the CLI waits
    /// for the database would hold the server's open transactions hostage.
    pub async fn new_workspace_key(&self, name: &str) -> String {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_uponai"))
            .args(["keys", "create", "--new-workspace", name, "--name", name, "--data-dir"])
            .arg(self.data_path())
            .output()
            .await
            .expect("uponai runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        stdout.lines().nth(1).expect("secret on the second line").to_owned()
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    pub async fn request_as(&self, key: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("http://{}{}", self.addr, path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        Reply { status, body, headers }
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.request_as(Some(&self.key.clone()), method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None).await
    }

    /// Lifts the workspace's pacing (10,000 concurrent calls, 500 CPS on custom trunks) for
    /// tests that place many calls and are not about pacing.
    pub async fn raise_limits(&self) {
        let reply = self.patch("/update-workspace-settings", json!({"concurrency_limit": 10_000, "cps_config": {"custom": 500}})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    /// Creates a Retell LLM and returns its id.
    pub async fn create_llm(&self, body: Value) -> String {
        let reply = self.post("/create-retell-llm", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["llm_id"].as_str().unwrap().to_owned()
    }

    /// Creates an agent on a fresh LLM and returns the agent id.
    pub async fn create_agent(&self, name: &str) -> String {
        let llm_id = self.create_llm(json!({"general_prompt": "You are helpful.", "begin_message": "Hello"})).await;
        let reply = self
            .post(
                "/create-agent",
                json!({
                    "agent_name": name,
                    "voice_id": "espeak-en-us-male",
                    "response_engine": {"type": "retell-llm", "llm_id": llm_id},
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["agent_id"].as_str().unwrap().to_owned()
    }

    /// Imports a custom number bound to `outbound` agents (weight 1 split evenly).
    pub async fn import_number(&self, number: &str, outbound: &[&str]) -> Value {
        let weight = 1.0 / outbound.len().max(1) as f64;
        let agents: Vec<Value> = outbound.iter().map(|id| json!({"agent_id": id, "weight": weight})).collect();
        let reply = self
            .post(
                "/import-phone-number",
                json!({
                    "phone_number": number,
                    "termination_uri": "sip:127.0.0.1:5090;transport=udp",
                    "sip_trunk_auth_username": "trunkuser",
                    "sip_trunk_auth_password": "trunksecret",
                    "outbound_agents": if agents.is_empty() { Value::Null } else { json!(agents) },
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }
}

/// The server as a real process, so that it can be killed with SIGKILL.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `uponai serve` on `data_dir` with `extra_args`, and waits until it listens.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_uponai"))
            .args(["serve", "--http", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--rtp-ports", "21000-21999", "--allow-private-targets"])
            .args(extra_args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("UPONAI_API_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("uponai runs");
        let stdout = child.stdout.take().unwrap();
        let mut url = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("uponai listening on ") {
                url = rest.split_whitespace().next().unwrap().to_owned();
                break;
            }
        }
        Self { child, url }
    }

    /// A request with the bootstrap key; the JSON reply (`Null` when empty).
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url)).bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let text = request.send().await.unwrap().text().await.unwrap();
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails mid-way must not leave its server running (it would load the rest of
/// the suite, and outlive it).
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
