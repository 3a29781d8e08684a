//! `uponai simulate`: has an agent of a running server call a persona (a simulated callee,
//! `sim`) through the simulation API, then prints the call's transcript and latency and what
//! the persona heard. `uponai demo` prints its conversation the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::sim::Persona;

/// A workspace's view of a server's API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned(), key: key.to_owned() }
    }

    /// Sends a request; the body of a 2xx answer, else an error with the server's message.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(method, path, body.as_ref()).await?.ok(path)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("reach {}", self.base))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer { status, retry_after, body })
    }

    /// `POST /uponai/create-simulation`, retrying a 429 (the workspace's concurrency or the
    /// simulator's CPS is taken) after the `retry-after-ms` it names, for up to a minute.
    async fn create_simulation(&self, body: &Value) -> anyhow::Result<Value> {
        const PATH: &str = "/uponai/create-simulation";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.send(reqwest::Method::POST, PATH, Some(body)).await?;
            let wait = answer.retry_after.unwrap_or(Duration::from_millis(500));
            if answer.status != reqwest::StatusCode::TOO_MANY_REQUESTS || tokio::time::Instant::now() + wait >= deadline {
                return answer.ok(PATH);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// GETs `path` every `every` until `done` picks a value from its body, or `deadline`.
    async fn poll<T>(
        &self,
        path: &str,
        every: Duration,
        deadline: tokio::time::Instant,
        done: impl Fn(&Value) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        loop {
            let body = self.call(reqwest::Method::GET, path, None).await?;
            if let Some(value) = done(&body)? {
                return Ok(value);
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{path}: not done in time");
            tokio::time::sleep(every).await;
        }
    }
}

/// One HTTP answer.
struct Answer {
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: Value,
}

impl Answer {
    /// The body of a 2xx answer, else an error with the server's message.
    fn ok(self, path: &str) -> anyhow::Result<Value> {
        let Self { status, body, .. } = self;
        anyhow::ensure!(status.is_success(), "{path}: {status}: {}", body["message"].as_str().unwrap_or(&body.to_string()));
        Ok(body)
    }
}

/// What a simulation left: Get Call and the persona's report.
pub struct Outcome {
    pub call: Value,
    pub report: Value,
}

/// Runs one simulation to its end: the agent `agent_id` calls `persona`.
pub async fn simulate(client: &Client, agent_id: &str, persona: &Persona, variables: &BTreeMap<String, String>) -> anyhow::Result<Outcome> {
    let body = json!({"agent_id": agent_id, "persona": persona, "retell_llm_dynamic_variables": variables});
    let created = client.create_simulation(&body).await?;
    let call_id = created["call_id"].as_str().context("call_id")?.to_owned();
    // A persona waits a minute at most for the call, and the call ends by its agent's
    // max_call_duration_ms at worst; this only bounds a stuck server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3_600);
    let report = client
        .poll(&format!("/uponai/get-simulation/{call_id}"), Duration::from_millis(250), deadline, |simulation| {
            match simulation["status"].as_str() {
                Some("ended") => Ok(Some(simulation["report"].clone())),
                Some("failed") => anyhow::bail!("simulation {call_id} failed: {}", simulation["error"]),
                _ => Ok(None),
            }
        })
        .await?;
    // The persona hears the hang-up before the call's end is stored.
    let call = client
        .poll(&format!("/v2/get-call/{call_id}"), Duration::from_millis(100), deadline, |call| {
            let ended = ["ended", "not_connected", "error"].contains(&call["call_status"].as_str().unwrap_or_default());
            Ok(ended.then(|| call.clone()))
        })
        .await?;
    Ok(Outcome { call, report })
}

/// Prints the transcript (a line per utterance), the latency table and what the persona heard.
pub fn print(outcome: &Outcome) {
    let Outcome { call, report } = outcome;
    println!("{}", call["transcript"].as_str().unwrap_or_default());
    let text = |value: &Value| value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    println!("\ncall {} ended: {} ({} ms)", text(&call["call_id"]), text(&call["disconnection_reason"]), call["duration_ms"]);
    if let Some(n) = call["stuck_turns"].as_u64().filter(|n| *n > 0) {
        println!("stuck turns (the agent missed its answer deadline): {n}");
    }
    println!("\nlatency (ms)    p50    p90    max    n");
    for name in ["e2e", "asr", "llm", "tts"] {
        let row = &call["latency"][name];
        let number = |field: &str| row[field].as_f64().unwrap_or(f64::NAN);
        if row.is_object() {
            println!("{name:<12} {:>6.0} {:>6.0} {:>6.0} {:>4}", number("p50"), number("p90"), number("max"), number("num"));
        }
    }
    println!("\nThe callee heard (its own Whisper, on its side of the wire):");
    for heard in report["heard"].as_array().into_iter().flatten() {
        let (start, end) = (heard["start"].as_f64().unwrap_or_default(), heard["end"].as_f64().unwrap_or_default());
        println!("  {start:>5.1}–{end:>5.1} s  {}", heard["text"].as_str().unwrap_or_default());
    }
    for said in report["said"].as_array().into_iter().flatten() {
        if let Some(ms) = said["agent_answered_after_ms"].as_u64() {
            println!("  the agent answered {:?} {ms} ms after the callee's last voice packet", said["text"].as_str().unwrap_or_default());
        }
    }
}

pub struct SimulateOptions<'a> {
    pub url: &'a str,
    pub api_key: &'a str,
    pub agent_id: &'a str,
    pub persona: &'a Path,
    /// `name=value` pairs.
    pub variables: &'a [String],
}

pub async fn run(options: SimulateOptions<'_>) -> anyhow::Result<()> {
    let raw = std::fs::read_to_string(options.persona).with_context(|| format!("read {}", options.persona.display()))?;
    let persona: Persona = serde_json::from_str(&raw).with_context(|| format!("{} is not a persona", options.persona.display()))?;
    if let Err((field, problem)) = persona.check() {
        anyhow::bail!("{}: {field}: {problem}", options.persona.display());
    }
    let mut variables = BTreeMap::new();
    for pair in options.variables {
        let (name, value) = pair.split_once('=').with_context(|| format!("--var {pair:?}: expected name=value"))?;
        variables.insert(name.to_owned(), value.to_owned());
    }
    let client = Client::new(options.url, options.api_key);
    println!("Agent {} is calling the persona {:?}…\n", options.agent_id, persona.name);
    let outcome = simulate(&client, options.agent_id, &persona, &variables).await?;
    print(&outcome);
    Ok(())
}
