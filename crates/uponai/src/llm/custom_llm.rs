//! The `custom-llm` response engine: Retell's LLM websocket protocol, to the customer's
//! server at `{llm_websocket_url}/{call_id}`.
//!
//! A link task owns the socket for the whole call. It connects (3 attempts of 7 s, 3 s
//! apart: `error_llm_websocket_open`), answers `config` (sending `call_details` when asked),
//! sends `ping_pong` every 2 s once `auto_reconnect` is on and reconnects after 5 s without
//! one from the server (twice; four times after an abnormal close), tells the server of every
//! transcript change (`update_only`), and sends the engine's `response_required` and
//! `reminder_required`. What the server sends goes to the engine: `response` chunks by
//! `response_id` (a stale id is dropped; 0 is the greeting), `agent_interrupt`, tool calls.
//! A close with 1000 hangs up (`agent_hangup`); other closes, binary frames and text that is
//! not JSON end the call with the `error_llm_websocket_*` reason. Fields of the wrong type
//! are dropped, as Retell drops them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::provider::{BoxFuture, EngineEvent, EngineInput, EngineLink, ProviderError, Reply, ReplyPart, Request, ResponseEngine};
use agent::{Conversation, Entry, ToolEvent};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use url::Url;

use crate::egress::Egress;

const PROVIDER: &str = "custom-llm";
const OPEN_ATTEMPTS: u32 = 3;
const OPEN_TIMEOUT: Duration = Duration::from_secs(7);
const OPEN_RETRY_AFTER: Duration = Duration::from_secs(3);
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_LOST_AFTER: Duration = Duration::from_secs(5);
const RECONNECTS_AFTER_SILENCE: u32 = 2;
const RECONNECTS_AFTER_ABNORMAL_CLOSE: u32 = 4;
/// How long the agent waits for the greeting (`response_id` 0) before it lets the caller
/// speak first.
const GREETING_WAIT: Duration = Duration::from_secs(30);
/// The largest message taken from the server.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Round trips of the `ping_pong` exchange, in ms (`llm_websocket_network_rtt`).
pub type RttLog = Arc<Mutex<Vec<u32>>>;

/// What the link hands the engine.
#[derive(Debug)]
enum ServerPart {
    Response(Chunk),
    Interrupt(Chunk),
    Tool(ToolEvent),
    /// The link is gone: a hang-up (`None`) or the failure that ended it.
    Closed(Option<ProviderError>),
}

/// One `response` or `agent_interrupt` message.
#[derive(Debug, Default)]
struct Chunk {
    id: u64,
    content: String,
    complete: bool,
    end_call: bool,
    transfer_number: Option<String>,
    digit_to_press: Option<String>,
}

/// A request the engine asks the link to send.
struct Command {
    kind: &'static str,
    response_id: u64,
    history: Conversation,
}

pub struct CustomLlmEngine {
    commands: mpsc::Sender<Command>,
    server: mpsc::UnboundedReceiver<ServerPart>,
    /// Interrupt chunks read while waiting for a response, kept for the interrupt's request.
    pending: VecDeque<ServerPart>,
    next_response_id: u64,
    link: Option<EngineLink>,
    closed: Option<Option<ProviderError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CustomLlmEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CustomLlmEngine {
    /// Starts connecting to `{base}/{call_id}` at once; `call` is the `call_details` payload;
    /// round trips are added to `rtt`.
    pub fn start(base: &str, call_id: &str, call: Value, egress: Egress, rtt: RttLog) -> Self {
        let (commands_tx, commands) = mpsc::channel(16);
        let (server_tx, server) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(16);
        let (transcript_tx, transcript) = watch::channel(Conversation::default());
        let url = format!("{}/{call_id}", base.trim_end_matches('/'));
        let link = Link { url, egress, call, server: server_tx, events: events_tx, rtt: rtt.clone(), flags: Flags::default() };
        let task = tokio::spawn(link.run(commands, transcript));
        Self {
            commands: commands_tx,
            server,
            pending: VecDeque::new(),
            next_response_id: 1,
            link: Some(EngineLink { events, transcript: transcript_tx }),
            closed: None,
            task,
        }
    }

    async fn answer(&mut self, request: Request) -> Result<Reply, ProviderError> {
        let Request { input, mut history, parts } = request;
        // The link keeps its own time (connection attempts, the greeting's wait).
        let _ = parts.send(ReplyPart::Flush);
        match input {
            EngineInput::Begin => {
                match tokio::time::timeout(GREETING_WAIT, self.read_response(0, false, &parts)).await {
                    Ok(reply) => reply,
                    // No greeting: the caller speaks first.
                    Err(_) => Ok(Reply::default()),
                }
            }
            EngineInput::Interrupt => self.read_response(0, true, &parts).await,
            // Retell's protocol has no voicemail request: the message is the agent's own.
            EngineInput::Voicemail { .. } => Ok(Reply::default()),
            other => {
                let kind = if matches!(other, EngineInput::Reminder { .. }) { "reminder_required" } else { "response_required" };
                let note = match &other {
                    EngineInput::Dtmf { digit } => Some(format!("(pressed {digit} on the keypad)")),
                    _ => None,
                };
                if let Some(note) = note {
                    let at = history.utterances.last().and_then(|u| u.words.last()).map(|w| w.end).unwrap_or_default();
                    history.utterances.push(agent::conversation::Utterance::spread(agent::conversation::Role::User, &note, at, at));
                }
                let response_id = self.next_response_id;
                self.next_response_id += 1;
                if let Some(closed) = &self.closed {
                    return closed_reply(closed);
                }
                let _ = self.commands.send(Command { kind, response_id, history }).await;
                self.read_response(response_id, false, &parts).await
            }
        }
    }

    /// Streams the chunks of response `id` (or of the latest interrupt) until it is complete.
    async fn read_response(&mut self, id: u64, interrupt: bool, parts: &mpsc::UnboundedSender<ReplyPart>) -> Result<Reply, ProviderError> {
        let mut reply = Reply::default();
        loop {
            if let Some(closed) = &self.closed {
                return closed_reply(closed);
            }
            let part = match self.pending.iter().position(|p| interrupt && matches!(p, ServerPart::Interrupt(_))) {
                Some(at) => self.pending.remove(at),
                None => self.server.recv().await,
            };
            let chunk = match part {
                None => {
                    self.closed = Some(Some(lost("the link task ended")));
                    continue;
                }
                Some(ServerPart::Closed(why)) => {
                    self.closed = Some(why);
                    continue;
                }
                Some(ServerPart::Tool(event)) => {
                    let _ = parts.send(ReplyPart::Tool(event));
                    continue;
                }
                Some(ServerPart::Interrupt(chunk)) if interrupt => chunk,
                Some(part @ ServerPart::Interrupt(_)) => {
                    self.pending.push_back(part);
                    continue;
                }
                Some(ServerPart::Response(chunk)) if !interrupt && chunk.id == id => chunk,
                Some(ServerPart::Response(chunk)) => {
                    tracing::debug!(stale = chunk.id, current = id, "custom_llm.stale_response_dropped");
                    continue;
                }
            };
            if !chunk.content.is_empty() {
                let _ = parts.send(ReplyPart::Text(chunk.content));
            }
            reply.end_call |= chunk.end_call;
            reply.transfer_to = chunk.transfer_number.or(reply.transfer_to);
            reply.send_dtmf = chunk.digit_to_press.or(reply.send_dtmf);
            if chunk.complete {
                // end_call wins over a transfer, a transfer over digits (Retell's order).
                if reply.end_call {
                    reply.transfer_to = None;
                }
                if reply.end_call || reply.transfer_to.is_some() {
                    reply.send_dtmf = None;
                }
                return Ok(reply);
            }
        }
    }
}

fn closed_reply(closed: &Option<ProviderError>) -> Result<Reply, ProviderError> {
    match closed {
        None => Ok(Reply { end_call: true, ..Reply::default() }),
        Some(error) => Err(error.clone()),
    }
}

impl ResponseEngine for CustomLlmEngine {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
        Box::pin(self.answer(request))
    }

    fn link(&mut self) -> Option<EngineLink> {
        self.link.take()
    }
}

fn ended(reason: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Ended { provider: PROVIDER.into(), reason: reason.into(), message: message.to_string() }
}

fn lost(message: impl std::fmt::Display) -> ProviderError {
    ended("error_llm_websocket_lost_connection", message)
}

/// What the server asked for with `config`.
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    auto_reconnect: bool,
    call_details: bool,
    transcript_with_tool_calls: bool,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How one connection ended.
enum Ending {
    /// The server closed with 1000.
    HungUp,
    Failed(ProviderError),
    /// Keepalives stopped, or the socket died without a close: reconnect if allowed.
    Silent,
    Abnormal(String),
    /// The engine is gone (the call ended).
    EngineGone,
}

struct Link {
    url: String,
    egress: Egress,
    call: Value,
    server: mpsc::UnboundedSender<ServerPart>,
    events: mpsc::Sender<EngineEvent>,
    rtt: RttLog,
    flags: Flags,
}

impl Link {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut transcript: watch::Receiver<Conversation>) {
        let (mut after_silence, mut after_abnormal) = (RECONNECTS_AFTER_SILENCE, RECONNECTS_AFTER_ABNORMAL_CLOSE);
        let mut last_request: Option<Value> = None;
        let mut first = true;
        loop {
            let attempts = if first { OPEN_ATTEMPTS } else { 1 };
            let mut socket = match self.open(attempts).await {
                Ok(socket) => socket,
                Err(why) => {
                    let error = if first { ended("error_llm_websocket_open", why) } else { lost(why) };
                    return self.close(Some(error)).await;
                }
            };
            if !first && let Some(request) = &last_request {
                // The request in flight when the connection dropped, again.
                let _ = socket.send(Message::text(request.to_string())).await;
            }
            first = false;
            let ending = self.serve(&mut socket, &mut commands, &mut transcript, &mut last_request).await;
            match ending {
                Ending::HungUp => return self.close(None).await,
                Ending::Failed(error) => return self.close(Some(error)).await,
                Ending::EngineGone => {
                    let _ = socket.close(Some(CloseFrame { code: CloseCode::Normal, reason: "call ended".into() })).await;
                    return;
                }
                Ending::Silent if after_silence > 0 => after_silence -= 1,
                Ending::Abnormal(_) if after_abnormal > 0 => after_abnormal -= 1,
                Ending::Silent => return self.close(Some(lost("no ping_pong from the server for 5 s"))).await,
                Ending::Abnormal(why) => return self.close(Some(lost(why))).await,
            }
            tracing::warn!(url = %self.url, "custom_llm.reconnecting");
        }
    }

    async fn close(&self, why: Option<ProviderError>) {
        let _ = self.server.send(ServerPart::Closed(why.clone()));
        let _ = self.events.send(EngineEvent::End(why)).await;
    }

    /// Connects, through the egress guard (the URL is the tenant's).
    async fn open(&self, attempts: u32) -> Result<Socket, String> {
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(OPEN_RETRY_AFTER).await;
            }
            match tokio::time::timeout(OPEN_TIMEOUT, self.connect()).await {
                Ok(Ok(socket)) => return Ok(socket),
                Ok(Err(why)) => last = why,
                Err(_) => last = format!("no connection within {OPEN_TIMEOUT:?}"),
            }
            tracing::warn!(url = %self.url, attempt = attempt + 1, why = %last, "custom_llm.open_failed");
        }
        Err(last)
    }

    async fn connect(&self) -> Result<Socket, String> {
        let url = Url::parse(&self.url).map_err(|err| format!("{:?} is not a URL: {err}", self.url))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err("the URL is not ws or wss".into());
        }
        self.egress.check_literal(&url).map_err(|refused| refused.to_string())?;
        let host = url.host_str().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addrs: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((host.as_str(), port)).await.map_err(|err| format!("{host}: {err}"))?.collect();
        let allowed: Vec<_> =
            addrs.iter().copied().filter(|addr| self.egress.allows_private() || self.egress.check_http_ip(addr.ip()).is_ok()).collect();
        let Some(addr) = allowed.first() else {
            return Err(format!("refused target: {host} has no address outside private and reserved ranges"));
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|err| format!("{addr}: {err}"))?;
        let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES)).max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (socket, _) = tokio_tungstenite::client_async_tls_with_config(url.as_str(), tcp, Some(config), None)
            .await
            .map_err(|err| super::openai::error_chain(&err))?;
        Ok(socket)
    }

    async fn serve(
        &mut self,
        socket: &mut Socket,
        commands: &mut mpsc::Receiver<Command>,
        transcript: &mut watch::Receiver<Conversation>,
        last_request: &mut Option<Value>,
    ) -> Ending {
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut last_pong = Instant::now();
        let mut feed_open = true;
        let mut interrupts_seen = std::collections::HashSet::new();
        loop {
            let outgoing = tokio::select! {
                command = commands.recv() => match command {
                    None => return Ending::EngineGone,
                    Some(command) => {
                        let request = json!({
                            "interaction_type": command.kind,
                            "response_id": command.response_id,
                            "transcript": transcript_json(&command.history),
                        });
                        let request = self.with_tool_calls(request, &command.history);
                        *last_request = Some(request.clone());
                        request
                    }
                },
                changed = transcript.changed(), if feed_open => match changed {
                    Err(_) => {
                        feed_open = false;
                        continue;
                    }
                    Ok(()) => {
                        let conversation = transcript.borrow_and_update().clone();
                        let update = json!({"interaction_type": "update_only", "transcript": transcript_json(&conversation)});
                        self.with_tool_calls(update, &conversation)
                    }
                },
                _ = ping.tick(), if self.flags.auto_reconnect => {
                    if last_pong.elapsed() > PING_LOST_AFTER {
                        return Ending::Silent;
                    }
                    json!({"interaction_type": "ping_pong", "timestamp": now_ms()})
                }
                message = socket.next() => {
                    let text = match message {
                        None => return Ending::Abnormal("the connection dropped".into()),
                        Some(Err(err)) => return Ending::Abnormal(err.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            let frame = CloseFrame { code: CloseCode::Invalid, reason: "binary frames are not accepted".into() };
                            let _ = socket.close(Some(frame)).await;
                            return Ending::Failed(ended("error_llm_websocket_corrupt_payload", "the server sent a binary frame"));
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return match frame.map(|f| f.code) {
                                Some(CloseCode::Normal) => Ending::HungUp,
                                code @ (None | Some(CloseCode::Status)) => Ending::Failed(ended("error_llm_websocket_open", format!("closed with {code:?}"))),
                                Some(code) => Ending::Failed(ended("error_llm_websocket_runtime", format!("closed with {code}"))),
                            };
                        }
                        Some(Ok(_)) => continue,
                    };
                    let Ok(message) = serde_json::from_str::<Value>(&text) else {
                        let frame = CloseFrame { code: CloseCode::Invalid, reason: "messages must be JSON".into() };
                        let _ = socket.close(Some(frame)).await;
                        return Ending::Failed(ended("error_llm_websocket_corrupt_payload", format!("not JSON: {:.100}", text.as_str())));
                    };
                    match self.on_message(&message, &mut last_pong, &mut interrupts_seen).await {
                        Some(reply) => reply,
                        None => continue,
                    }
                }
            };
            if socket.send(Message::text(outgoing.to_string())).await.is_err() {
                return Ending::Abnormal("the connection dropped while sending".into());
            }
        }
    }

    fn with_tool_calls(&self, mut message: Value, conversation: &Conversation) -> Value {
        if self.flags.transcript_with_tool_calls {
            message["transcript_with_tool_calls"] = Value::Array(with_tool_calls_json(conversation));
        }
        message
    }

    /// Handles one server message; returns a message to send back, if any.
    async fn on_message(
        &mut self,
        message: &Value,
        last_pong: &mut Instant,
        interrupts_seen: &mut std::collections::HashSet<u64>,
    ) -> Option<Value> {
        let text = |key: &str| message.get(key).and_then(Value::as_str).map(str::to_owned);
        let flag = |key: &str| message.get(key).and_then(Value::as_bool).unwrap_or(false);
        let chunk = || -> Option<Chunk> {
            let id = message.get("response_id").or_else(|| message.get("interrupt_id")).and_then(Value::as_u64)?;
            Some(Chunk {
                id,
                content: text("content").unwrap_or_default(),
                complete: flag("content_complete"),
                end_call: flag("end_call"),
                transfer_number: text("transfer_number").filter(|t| !t.is_empty()),
                digit_to_press: text("digit_to_press").filter(|t| !t.is_empty()),
            })
        };
        match message.get("response_type").and_then(Value::as_str).unwrap_or("response") {
            "config" => {
                let config = message.get("config");
                let on = |key: &str| config.and_then(|c| c.get(key)).and_then(Value::as_bool).unwrap_or(false);
                self.flags = Flags {
                    auto_reconnect: on("auto_reconnect"),
                    call_details: on("call_details"),
                    transcript_with_tool_calls: on("transcript_with_tool_calls"),
                };
                *last_pong = Instant::now();
                return self.flags.call_details.then(|| json!({"interaction_type": "call_details", "call": self.call}));
            }
            "ping_pong" => {
                *last_pong = Instant::now();
                if let Some(sent) = message.get("timestamp").and_then(Value::as_u64) {
                    let rtt = now_ms().saturating_sub(sent);
                    if rtt < 60_000
                        && let Ok(mut log) = self.rtt.lock()
                    {
                        log.push(rtt as u32);
                    }
                }
            }
            "response" => {
                if let Some(chunk) = chunk() {
                    let _ = self.server.send(ServerPart::Response(chunk));
                }
            }
            "agent_interrupt" => {
                if let Some(chunk) = chunk() {
                    let fresh = interrupts_seen.insert(chunk.id);
                    let _ = self.server.send(ServerPart::Interrupt(chunk));
                    if fresh {
                        let _ = self.events.send(EngineEvent::Interrupt).await;
                    }
                }
            }
            "tool_call_invocation" => {
                if let (Some(id), Some(name)) = (text("tool_call_id"), text("name")) {
                    let arguments = text("arguments").unwrap_or_else(|| "{}".into());
                    let _ = self.server.send(ServerPart::Tool(ToolEvent::Invocation { id, name, arguments }));
                }
            }
            "tool_call_result" => {
                if let Some(id) = text("tool_call_id") {
                    let content = text("content").unwrap_or_default();
                    let _ = self.server.send(ServerPart::Tool(ToolEvent::Result { id, content }));
                }
            }
            "update_agent" => {
                let config = message.get("agent_config");
                let number = |key: &str| config.and_then(|c| c.get(key)).and_then(Value::as_f64);
                let count = |key: &str| config.and_then(|c| c.get(key)).and_then(Value::as_u64);
                let update = agent::turn::TurnUpdate {
                    responsiveness: number("responsiveness"),
                    interruption_sensitivity: number("interruption_sensitivity"),
                    reminder_trigger_ms: count("reminder_trigger_ms"),
                    reminder_max_count: count("reminder_max_count").map(|n| n.min(100) as u32),
                };
                let _ = self.events.send(EngineEvent::UpdateTurns(update)).await;
            }
            other => tracing::debug!(response_type = %other, "custom_llm.message_ignored"),
        }
        None
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Retell's transcript: `[{role, content}]`.
fn transcript_json(conversation: &Conversation) -> Value {
    let items: Vec<Value> = conversation
        .utterances
        .iter()
        .filter(|u| !u.content.is_empty())
        .map(|u| json!({"role": u.role.as_str(), "content": u.content}))
        .collect();
    Value::Array(items)
}

fn with_tool_calls_json(conversation: &Conversation) -> Vec<Value> {
    conversation
        .entries()
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Utterance(u) if u.content.is_empty() => None,
            Entry::Utterance(u) => Some(json!({"role": u.role.as_str(), "content": u.content})),
            Entry::Tool(ToolEvent::Invocation { id, name, arguments }) => {
                Some(json!({"role": "tool_call_invocation", "tool_call_id": id, "name": name, "arguments": arguments}))
            }
            Entry::Tool(ToolEvent::Result { id, content }) => {
                Some(json!({"role": "tool_call_result", "tool_call_id": id, "content": content}))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts one connection, sends `message`, and keeps the socket open.
    async fn server_sending(message: Message) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            socket.send(message).await.unwrap();
            while socket.next().await.is_some() {}
        });
        url
    }

    async fn end_after(message: Message) -> Option<String> {
        let url = server_sending(message).await;
        let mut engine = CustomLlmEngine::start(&url, "call_1", json!({}), Egress::allow_private_targets(), RttLog::default());
        let mut link = engine.link().unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), link.events.recv()).await.unwrap().unwrap();
        match event {
            EngineEvent::End(None) => None,
            EngineEvent::End(Some(ProviderError::Ended { reason, .. })) => Some(reason),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn what_a_server_sends_that_breaks_the_protocol_ends_the_call_with_its_documented_reason() {
        let close = |code| Message::Close(Some(CloseFrame { code, reason: "".into() }));
        assert_eq!(end_after(close(CloseCode::Normal)).await, None, "1000 hangs up");
        assert_eq!(end_after(close(CloseCode::Error)).await.as_deref(), Some("error_llm_websocket_runtime"));
        assert_eq!(end_after(Message::binary(vec![1, 2, 3])).await.as_deref(), Some("error_llm_websocket_corrupt_payload"));
        assert_eq!(end_after(Message::text("{not json")).await.as_deref(), Some("error_llm_websocket_corrupt_payload"));
    }

    #[tokio::test]
    async fn a_websocket_url_on_a_private_address_is_never_connected_to() {
        let url = server_sending(Message::text("{}")).await;
        let mut engine = CustomLlmEngine::start(&url, "call_1", json!({}), Egress::guarded(), RttLog::default());
        let mut link = engine.link().unwrap();
        let event = tokio::time::timeout(Duration::from_secs(20), link.events.recv()).await.unwrap().unwrap();
        let EngineEvent::End(Some(ProviderError::Ended { reason, message, .. })) = event else { panic!("{event:?}") };
        assert_eq!(reason, "error_llm_websocket_open");
        assert!(message.contains("loopback"), "{message}");
    }
}
