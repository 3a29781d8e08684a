//! A webhook receiver on a real HTTP listener: it records every request and answers as the
//! test tells it to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 204 at once.
    Ok,
    /// This status at once.
    Status(u16),
    /// A first attempt of an event (by `x-uponai-delivery-attempt`) only after this long;
    /// later attempts at once.
    SlowFirstAttempt(Duration),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub event_id: String,
    pub attempt: u32,
    pub signature: Option<String>,
    pub body: String,
    pub json: Value,
}

impl Received {
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }

    pub fn call_id(&self) -> &str {
        self.json["call"]["call_id"].as_str().unwrap_or_default()
    }
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Self {
        Self::start_on(0, answer).await
    }

    /// Listens on `port` (0: any free port).
    pub async fn start_on(port: u16, answer: Answer) -> Self {
        let shared = Shared { log: Arc::default(), answer: Arc::new(Mutex::new(answer)) };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("receiver binds");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, shared, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(tokio::time::Instant::now() < deadline, "receiver waited {timeout:?}; got {:#?}", events(&received));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `(call_id, event)` of each request, in arrival order.
pub fn events(received: &[Received]) -> Vec<(String, String)> {
    received.iter().map(|r| (r.call_id().to_owned(), r.event().to_owned())).collect()
}

/// The events a call got, in arrival order, each once (a retried event counts once).
pub fn events_of(received: &[Received], call_id: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    received.iter().filter(|r| r.call_id() == call_id && seen.insert(r.event_id.clone())).map(|r| r.event().to_owned()).collect()
}

/// The check the SDKs make, written out independently: `v=<ms>,d=<hex HMAC-SHA256(key, body + ms)>`.
pub fn signature_is_valid(received: &Received, key: &str) -> bool {
    let Some(header) = &received.signature else { return false };
    let Some((v, d)) = header.strip_prefix("v=").and_then(|rest| rest.split_once(",d=")) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(received.body.as_bytes());
    mac.update(v.as_bytes());
    hex::encode(mac.finalize().into_bytes()) == d
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let attempt: u32 = header("x-uponai-delivery-attempt").and_then(|n| n.parse().ok()).unwrap_or(0);
    let answer = *shared.answer.lock().unwrap();
    if let Answer::SlowFirstAttempt(delay) = answer
        && attempt == 1
    {
        tokio::time::sleep(delay).await;
    }
    shared.log.lock().unwrap().push(Received {
        event_id: header("x-uponai-event-id").unwrap_or_default(),
        attempt,
        signature: header("x-retell-signature"),
        json: serde_json::from_str(&body).unwrap_or(Value::Null),
        body,
    });
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Ok | Answer::SlowFirstAttempt(_) => StatusCode::NO_CONTENT,
    }
}
