//! Local servers that speak real protocols, scripted by the tests: an OpenAI-compatible
//! chat-completions server that streams its answers as server-sent events token by token
//! (what OpenAI, vLLM or llama.cpp send), and a tool endpoint that records what it is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// One piece of a scripted answer.
#[derive(Clone, Debug)]
pub enum Chunk {
    /// Content, streamed one word per event.
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// Time before the next event.
    Wait(Duration),
}

/// What the model answers to the `n`th request (from 0), given its body.
pub type Script = Arc<dyn Fn(usize, &Value) -> Vec<Chunk> + Send + Sync>;

#[derive(Clone)]
struct ModelState {
    script: Script,
    requests: Arc<Mutex<Vec<Value>>>,
}

pub struct ModelServer {
    /// The API base to configure (`…/v1`).
    pub base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    pub async fn start(script: Script) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ModelState { script, requests: requests.clone() };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url, requests, _server: server }
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn complete(State(state): State<ModelState>, headers: HeaderMap, body: String) -> Response {
    let Ok(mut request) = serde_json::from_str::<Value>(&body) else {
        return Response::builder().status(StatusCode::BAD_REQUEST).body(Body::from("not JSON")).unwrap();
    };
    request["_authorization"] = json!(headers.get("authorization").and_then(|v| v.to_str().ok()));
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(request.clone());
        requests.len() - 1
    };
    let chunks = (state.script)(n, &request);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let event =
            |delta: Value| format!("data: {}\n\n", json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}));
        let _ = tx.send(Ok(event(json!({"role": "assistant"})))).await;
        let mut n_tools = 0;
        for chunk in chunks {
            match chunk {
                Chunk::Wait(pause) => tokio::time::sleep(pause).await,
                Chunk::Text(text) => {
                    for token in text.split_inclusive(' ') {
                        let _ = tx.send(Ok(event(json!({"content": token})))).await;
                    }
                }
                Chunk::ToolCall { id, name, arguments } => {
                    // Split as OpenAI does: the name first, the arguments in pieces.
                    let index = n_tools;
                    n_tools += 1;
                    let first = json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
                    let _ = tx.send(Ok(event(first))).await;
                    let mid = arguments.len() / 2;
                    let mid = (mid..=arguments.len()).find(|i| arguments.is_char_boundary(*i)).unwrap_or(arguments.len());
                    for piece in [&arguments[..mid], &arguments[mid..]] {
                        let _ = tx.send(Ok(event(json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})))).await;
                    }
                }
            }
        }
        let usage = json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}});
        let _ = tx.send(Ok(format!("data: {usage}\n\n"))).await;
        let _ = tx.send(Ok("data: [DONE]\n\n".to_owned())).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}

/// A request a tool endpoint received.
#[derive(Clone, Debug)]
pub struct ToolRequest {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct ToolState {
    answer: String,
    log: Arc<Mutex<Vec<ToolRequest>>>,
}

pub struct ToolServer {
    pub base_url: String,
    log: Arc<Mutex<Vec<ToolRequest>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl ToolServer {
    /// Answers every request 200 with `answer`.
    pub async fn start(answer: &str) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = ToolState { answer: answer.to_owned(), log: log.clone() };
        let app = axum::Router::new().fallback(tool).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url, log, _server: server }
    }

    pub fn received(&self) -> Vec<ToolRequest> {
        self.log.lock().unwrap().clone()
    }
}

async fn tool(State(state): State<ToolState>, method: axum::http::Method, uri: Uri, headers: HeaderMap, body: String) -> String {
    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.log.lock().unwrap().push(ToolRequest { method: method.to_string(), uri: uri.to_string(), headers, body });
    state.answer.clone()
}
