//! `custom-llm` agents on real calls to the simulator's persona, against a websocket server
//! written the way a customer writes one from Retell's docs and demo (config first, the
//! greeting as response 0, streamed responses by `response_id`, `ping_pong` echoed).

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uponai::sim::{Line, Persona, When};

use crate::helpers::spawn_app;
use crate::personas::agent_calls_persona;

const GREETING: &str = "Hi, this is Acme.";
const STALE: &str = "This answer is stale.";
const ANSWER: &str = "Thanks for calling, goodbye.";

/// What the server received on one connection: its path, then every message.
#[derive(Default)]
struct Log {
    path: String,
    messages: Vec<Value>,
}

struct CustomLlmServer {
    url: String,
    log: Arc<Mutex<Log>>,
}

impl CustomLlmServer {
    /// Serves one call: sends config, greets after call_details, echoes ping_pong; answers
    /// response 1 only once response 2 was asked for (so 1 is stale by then), and ends the
    /// call with response 2.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/llm-websocket", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let path = Arc::new(Mutex::new(String::new()));
            let seen = path.clone();
            // The callback's signature is tungstenite's, large error type and all.
            #[allow(clippy::result_large_err)]
            let callback = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
                *seen.lock().unwrap() = request.uri().path().to_owned();
                Ok(response)
            };
            let mut socket = tokio_tungstenite::accept_hdr_async(stream, callback).await.unwrap();
            shared.lock().unwrap().path = path.lock().unwrap().clone();
            let send = |value: Value| Message::text(value.to_string());
            socket.send(send(json!({"response_type": "config", "config": {"auto_reconnect": true, "call_details": true}}))).await.unwrap();
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let request: Value = serde_json::from_str(&text).unwrap();
                shared.lock().unwrap().messages.push(request.clone());
                let reply = match request["interaction_type"].as_str().unwrap_or_default() {
                    "call_details" => {
                        vec![json!({"response_type": "response", "response_id": 0, "content": GREETING, "content_complete": true})]
                    }
                    "ping_pong" => vec![json!({"response_type": "ping_pong", "timestamp": request["timestamp"]})],
                    "response_required" if request["response_id"] == 2 => vec![
                        json!({"response_type": "response", "response_id": 1, "content": STALE, "content_complete": true}),
                        json!({"response_type": "response", "response_id": 2, "content": "Thanks for calling, ", "content_complete": false}),
                        json!({"response_type": "response", "response_id": 2, "content": "goodbye.", "content_complete": true, "end_call": true}),
                    ],
                    _ => vec![],
                };
                for message in reply {
                    socket.send(send(message)).await.unwrap();
                }
            }
        });
        Self { url, log }
    }
}

fn at(ms: u64, say: &str) -> Line {
    Line { say: Some(say.to_owned()), press: None, beep_ms: None, when: When::At { ms } }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_llm_greets_its_stale_response_is_dropped_and_the_newer_one_is_spoken_then_ends_the_call() {
    let _serial = crate::serial().await;
    let server = CustomLlmServer::start().await;
    let app = spawn_app().await;
    let agent = json!({"voice_id": agent::offline::PIPER_VOICE_ID,
        "response_engine": {"type": "custom-llm", "llm_websocket_url": server.url}});
    let persona = Persona {
        name: "caller".into(),
        lines: vec![at(3_000, "I need some help with my order."), at(7_000, "Hello, are you still there?")],
        hang_up_after_ms: Some(15_000),
    };
    let (call, report) = agent_calls_persona(&app, agent, persona, json!({})).await;

    assert_eq!(call["disconnection_reason"], "agent_hangup", "{call}");
    let transcript = call["transcript"].as_str().unwrap();
    let agent_lines: Vec<&str> = transcript.lines().filter_map(|l| l.strip_prefix("Agent: ")).collect();
    assert_eq!(agent_lines, [GREETING, ANSWER], "{transcript}");
    let heard: String = report.heard.iter().map(|h| h.text.as_str()).collect::<Vec<_>>().join(" ");
    assert!(crate::calls::recall(ANSWER, &heard) >= 0.75, "the persona heard {heard:?}");
    assert!(!heard.to_lowercase().contains("stale"), "the stale answer was spoken: {heard:?}");

    let log = server.log.lock().unwrap();
    assert_eq!(log.path, format!("/llm-websocket/{}", call["call_id"].as_str().unwrap()));
    let kinds: Vec<&str> = log.messages.iter().map(|m| m["interaction_type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "call_details", "{kinds:?}");
    assert_eq!(log.messages[0]["call"]["call_id"], call["call_id"]);
    let required: Vec<&Value> = log.messages.iter().filter(|m| m["interaction_type"] == "response_required").collect();
    let ids: Vec<u64> = required.iter().map(|m| m["response_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "{kinds:?}");
    // Each request carries the transcript so far: the greeting, then the caller's turns.
    let last = required[1]["transcript"].as_array().unwrap();
    assert_eq!(last[0], json!({"role": "agent", "content": GREETING}));
    assert_eq!(last.iter().filter(|u| u["role"] == "user").count(), 2, "{last:?}");
    assert!(kinds.contains(&"update_only"), "{kinds:?}");
    assert!(kinds.contains(&"ping_pong"), "{kinds:?}");
    let rtt = &call["latency"]["llm_websocket_network_rtt"];
    assert!(rtt["num"].as_u64().unwrap_or(0) >= 1 && rtt["p50"].as_u64().unwrap() < 1_000, "{}", call["latency"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_llm_that_cannot_be_reached_ends_the_call_with_error_llm_websocket_open() {
    let _serial = crate::serial().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = spawn_app().await;
    let agent = json!({"voice_id": agent::offline::PIPER_VOICE_ID,
        "response_engine": {"type": "custom-llm", "llm_websocket_url": format!("ws://{closed}/llm")}});
    let persona = Persona { name: "caller".into(), lines: vec![at(1_000, "Hello?")], hang_up_after_ms: Some(30_000) };
    let (call, report) = agent_calls_persona(&app, agent, persona, json!({})).await;
    assert_eq!(call["disconnection_reason"], "error_llm_websocket_open", "{call}");
    assert_eq!(call["call_status"], "error", "{call}");
    assert_eq!(report.ended_by, "agent");
}
