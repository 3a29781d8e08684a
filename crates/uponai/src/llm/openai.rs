//! A streaming client of OpenAI's chat-completions API, as OpenAI, Groq, vLLM, the llama.cpp
//! server and Ollama serve it: `POST {base}/chat/completions` with `stream: true`, read as
//! server-sent events (`data: {chunk}` lines, `data: [DONE]` at the end). Content deltas are
//! handed on as they arrive; tool-call deltas are put together by their `index`.

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

/// The longest wait for the next bytes of a streamed answer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest server-sent-event line accepted (a chunk is a few hundred bytes).
const MAX_LINE_BYTES: usize = 1 << 20;
/// The most content and tool-call text one completion may carry.
const MAX_COMPLETION_BYTES: usize = 256 * 1024;
/// How much of an error body is kept for the log and the caller.
const MAX_ERROR_BODY: usize = 2_000;

/// Where a chat model is served.
#[derive(Clone, Debug)]
pub struct ChatEndpoint {
    /// The API's base, e.g. `https://api.openai.com/v1` (`/chat/completions` is added).
    pub base_url: Url,
    pub api_key: Option<String>,
    pub model: String,
}

/// A tool call the model made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The JSON text of the arguments, as the model wrote it.
    pub arguments: String,
}

/// Tokens a completion used, as the server counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A finished completion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the model server could not be reached: {0}")]
    Connect(String),
    #[error("the model server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model server sent nothing for {0:?}")]
    Idle(Duration),
    #[error("the model server sent a malformed stream: {0}")]
    Malformed(String),
}

/// One chat request.
pub struct ChatRequest<'a> {
    pub messages: &'a [Value],
    /// OpenAI function tools (`{type: "function", function: {name, description, parameters}}`).
    pub tools: &'a [Value],
    pub temperature: Option<f64>,
    /// Ask for a JSON object (`response_format`), for analysis.
    pub json_schema: Option<Value>,
}

/// Streams one completion; `on_text` gets each content delta as it arrives.
pub async fn stream_chat(
    http: &reqwest::Client,
    endpoint: &ChatEndpoint,
    request: ChatRequest<'_>,
    mut on_text: impl FnMut(&str),
) -> Result<Completion, ChatError> {
    let url = chat_url(&endpoint.base_url);
    let mut body = json!({
        "model": endpoint.model,
        "messages": request.messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = Value::Array(request.tools.to_vec());
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(schema) = request.json_schema {
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "analysis", "schema": schema}});
    }
    let mut builder = http.post(url).json(&body);
    if let Some(key) = &endpoint.api_key {
        builder = builder.bearer_auth(key);
    }
    let mut response = builder.send().await.map_err(|err| ChatError::Connect(error_chain(&err)))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(ChatError::Status { status: status.as_u16(), body: text.chars().take(MAX_ERROR_BODY).collect() });
    }
    let mut stream = EventStream::default();
    let mut completion = Assembly::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
            Err(_) => return Err(ChatError::Idle(IDLE_TIMEOUT)),
            Ok(Err(err)) => return Err(ChatError::Connect(error_chain(&err))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => bytes,
        };
        for data in stream.push(&chunk)? {
            if data == "[DONE]" {
                return Ok(completion.finish());
            }
            let chunk: Value = serde_json::from_str(&data).map_err(|err| ChatError::Malformed(format!("{err} in {data:.200}")))?;
            if let Some(text) = completion.add(&chunk)? {
                on_text(&text);
            }
        }
    }
    // Some servers close the stream without `[DONE]`; what came is the answer.
    Ok(completion.finish())
}

fn chat_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!("{}/chat/completions", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// The error and its causes, on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Splits a byte stream into server-sent-event `data` payloads.
#[derive(Default)]
struct EventStream {
    line: Vec<u8>,
}

impl EventStream {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ChatError> {
        let mut out = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                if self.line.len() >= MAX_LINE_BYTES {
                    return Err(ChatError::Malformed("an event line is too long".into()));
                }
                self.line.push(byte);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_owned();
            self.line.clear();
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_owned());
            }
        }
        Ok(out)
    }
}

/// A completion being put together from its chunks.
#[derive(Default)]
struct Assembly {
    content: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    n_bytes: usize,
}

impl Assembly {
    /// Adds a chunk; returns its content delta, if any.
    fn add(&mut self, chunk: &Value) -> Result<Option<String>, ChatError> {
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some(Usage { prompt_tokens: count("prompt_tokens"), completion_tokens: count("completion_tokens") });
        }
        if let Some(error) = chunk.get("error") {
            return Err(ChatError::Malformed(format!("the stream carried an error: {error:.300}")));
        }
        let Some(delta) = chunk.pointer("/choices/0/delta") else { return Ok(None) };
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(self.tool_calls.len() as u64);
            // A model makes a handful of calls at once; an index far beyond is a broken stream.
            let index = usize::try_from(index).ok().filter(|i| *i <= self.tool_calls.len() && *i < 32);
            let Some(index) = index else { return Err(ChatError::Malformed("a tool call index out of order".into())) };
            if index == self.tool_calls.len() {
                self.tool_calls.push(ToolCall::default());
            }
            let slot = &mut self.tool_calls[index];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                slot.id = id.to_owned();
            }
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                slot.name.push_str(name);
            }
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                self.n_bytes += arguments.len();
                slot.arguments.push_str(arguments);
            }
        }
        let text = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
        if let Some(text) = &text {
            self.n_bytes += text.len();
            self.content.push_str(text);
        }
        if self.n_bytes > MAX_COMPLETION_BYTES {
            return Err(ChatError::Malformed(format!("the completion passed {MAX_COMPLETION_BYTES} bytes")));
        }
        Ok(text)
    }

    fn finish(mut self) -> Completion {
        for (i, call) in self.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        Completion { content: self.content, tool_calls: self.tool_calls, usage: self.usage }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_tool_calls_assemble_by_index() {
        let mut stream = EventStream::default();
        let mut assembly = Assembly::default();
        let wire = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo.\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"get_\",\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"weather\",\"arguments\":\"ty\\\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut texts = Vec::new();
        let mut done = false;
        for piece in wire.as_bytes().chunks(7) {
            for data in stream.push(piece).unwrap() {
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                texts.extend(assembly.add(&serde_json::from_str(&data).unwrap()).unwrap());
            }
        }
        assert!(done);
        assert_eq!(texts, ["Hel", "lo."]);
        let completion = assembly.finish();
        assert_eq!(completion.content, "Hello.");
        assert_eq!(completion.tool_calls, [ToolCall { id: "c1".into(), name: "get_weather".into(), arguments: "{\"city\":1}".into() }]);
        assert_eq!(completion.usage, Some(Usage { prompt_tokens: 12, completion_tokens: 5 }));
    }

    #[test]
    fn hostile_streams_are_errors_not_panics() {
        let mut assembly = Assembly::default();
        let far = json!({"choices": [{"delta": {"tool_calls": [{"index": 1_000_000_000_000u64}]}}]});
        assert!(assembly.add(&far).is_err());
        let mut stream = EventStream::default();
        assert!(stream.push(&vec![b'x'; MAX_LINE_BYTES + 1]).is_err());
        let mut assembly = Assembly::default();
        let big = json!({"choices": [{"delta": {"content": "x".repeat(MAX_COMPLETION_BYTES + 1)}}]});
        assert!(assembly.add(&big).is_err());
        assert_eq!(chat_url(&Url::parse("http://h:1/v1/").unwrap()).as_str(), "http://h:1/v1/chat/completions");
    }
}
