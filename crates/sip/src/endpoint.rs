//! The endpoint: the only I/O in this crate. One task owns the UDP socket, the TCP listener
//! and connections, and every transaction; it feeds them messages and timer ticks and
//! performs their actions. Everyone else holds a cheap `Endpoint` handle.

mod tcp;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use self::tcp::{Connection, TcpEvent};
use crate::msg::{self, MAX_MESSAGE_BYTES, Message, Method, Request, Response};
use crate::transaction::{Action, ClientTransaction, ServerTransaction};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    pub fn via_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
}

/// Where a message goes or came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: TransportKind,
}

/// How the endpoint listens and what it lets peers hold.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// UDP and TCP listen on this address (the same port; port 0 picks one).
    pub bind: SocketAddr,
    pub tcp: TcpLimits,
}

/// What TCP peers may hold. Connections we open ourselves (to trunks) are not counted.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Accepted connections open at once; lowered to half the process's open-file limit so
    /// that a flood of connections cannot starve the rest of the process of descriptors.
    pub max_connections: usize,
    /// Accepted connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// A connection that has not sent a whole message, or whose message has been arriving,
    /// for this long is closed.
    pub idle_timeout: Duration,
}

impl TcpLimits {
    /// 512 connections, 32 per address, 120 s to send a message.
    pub fn recommended() -> Self {
        Self { max_connections: 512, max_connections_per_ip: 32, idle_timeout: Duration::from_secs(120) }
    }
}

/// What a client transaction reports to its user.
#[derive(Debug)]
pub enum ClientEvent {
    Response(Response),
    /// No final response in time (Timer B/F).
    Timeout,
    /// The transport failed (connection refused, ICMP unreachable on send).
    TransportError(String),
}

/// A request that did not belong to an existing transaction.
#[derive(Debug)]
pub struct Incoming {
    pub request: Request,
    pub source: Target,
    /// `None` for ACK and CANCEL (the endpoint already answered the CANCEL).
    pub tx: Option<ServerTxHandle>,
}

/// Answers one received request. If it is never used, the transaction answers 500 itself
/// once its answer limit passes (`transaction::INVITE_ANSWER_LIMIT`).
#[derive(Clone, Debug)]
pub struct ServerTxHandle {
    key: ServerKey,
    commands: mpsc::Sender<Command>,
}

impl ServerTxHandle {
    pub async fn respond(&self, response: Response) {
        // The endpoint gone means the process is stopping; nothing to answer then.
        let _ = self.commands.send(Command::Respond { key: self.key.clone(), response }).await;
    }
}

/// The handle to the endpoint task. Cheap to clone; the task stops when the last is dropped.
#[derive(Clone, Debug)]
pub struct Endpoint {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    /// Set once when the task has ended, and how.
    exit: watch::Receiver<Option<EndpointExit>>,
}

/// How the endpoint task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointExit {
    /// `close` was called, or every handle was dropped.
    Stopped,
    /// A bug: the task panicked (the message is logged at error level too).
    Panicked(String),
}

/// A server transaction's identity (RFC 3261 §17.2.3): the top Via's branch and sent-by, and
/// the method, where ACK and CANCEL name the INVITE they refer to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    method: Method,
}

/// A client transaction's identity for responses (§17.1.3): our branch and the CSeq method.
type ClientKey = (String, Method);

#[derive(Debug)]
enum Command {
    Send {
        request: Request,
        target: Target,
        events: mpsc::UnboundedSender<ClientEvent>,
    },
    Respond {
        key: ServerKey,
        response: Response,
    },
    Stateless {
        bytes: Vec<u8>,
        target: Target,
    },
    Close,
    #[cfg(test)]
    Panic,
}

/// A fresh branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("z9hG4bK{}", hex::encode(bytes))
}

/// A fresh tag or Call-ID part.
pub fn new_token() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Endpoint {
    /// Binds UDP and TCP and starts the endpoint task. Requests that start something new
    /// arrive on the returned channel; when it is full they are answered 503.
    pub async fn bind(config: EndpointConfig) -> std::io::Result<(Self, mpsc::Receiver<Incoming>)> {
        let (udp, tcp, local_addr) = bind_pair(config.bind).await?;
        let (commands_tx, commands_rx) = mpsc::channel(1024);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let (tcp_events_tx, tcp_events_rx) = mpsc::channel(1024);
        let mut limits = config.tcp;
        if let Some(max_open_files) = open_file_limit() {
            limits.max_connections = limits.max_connections.min(max_open_files / 2);
        }
        let task = EndpointTask {
            udp,
            tcp,
            limits,
            accept_paused_until: None,
            commands: commands_rx,
            commands_tx: commands_tx.downgrade(),
            incoming: incoming_tx,
            tcp_events: tcp_events_rx,
            tcp_events_tx,
            connections: HashMap::new(),
            next_connection_id: 0,
            pending: HashMap::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            invites_by_dialog: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_owners: HashMap::new(),
            next_tx_id: 0,
        };
        let (exit_tx, exit_rx) = watch::channel(None);
        let running = tokio::spawn(task.run());
        tokio::spawn(async move {
            let exit = match running.await {
                Ok(()) => EndpointExit::Stopped,
                Err(err) if err.is_panic() => {
                    let panic = err.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic".into());
                    tracing::error!(panic = %message, "the SIP endpoint task panicked");
                    EndpointExit::Panicked(message)
                }
                Err(_) => EndpointExit::Stopped,
            };
            let _ = exit_tx.send(Some(exit));
        });
        Ok((Self { commands: commands_tx, local_addr, exit: exit_rx }, incoming_rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A Via value for a new request from this endpoint.
    pub fn via(&self, transport: TransportKind) -> String {
        format!("SIP/2.0/{} {};branch={};rport", transport.via_name(), self.local_addr, new_branch())
    }

    /// Starts a client transaction; its responses, timeout or transport error arrive on the
    /// returned channel.
    pub async fn send_request(&self, request: Request, target: Target) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (events, rx) = mpsc::unbounded_channel();
        if self.commands.send(Command::Send { request, target, events: events.clone() }).await.is_err() {
            let _ = events.send(ClientEvent::TransportError("endpoint stopped".into()));
        }
        rx
    }

    /// Sends a message outside any transaction (the ACK for a 2xx).
    pub async fn send_stateless(&self, request: &Request, target: Target) {
        let _ = self.commands.send(Command::Stateless { bytes: request.to_bytes(), target }).await;
    }

    /// Stops the endpoint task: sockets close and transactions are dropped.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    /// Resolves when the endpoint task has ended, for whatever reason. A service treats this
    /// as fatal: nothing answers SIP any more.
    pub async fn closed(&self) -> EndpointExit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or(EndpointExit::Stopped),
            // The watcher is gone only if the runtime is shutting down.
            Err(_) => EndpointExit::Stopped,
        }
    }
}

/// UDP and TCP on one port. With port 0 the UDP port is picked first and may be taken for
/// TCP by someone else; a few tries find a port free for both.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    loop {
        let udp = UdpSocket::bind(addr).await?;
        let local_addr = udp.local_addr()?;
        match TcpListener::bind(local_addr).await {
            Ok(tcp) => return Ok((udp, tcp, local_addr)),
            Err(err) if attempts > 1 && err.kind() == std::io::ErrorKind::AddrInUse => attempts -= 1,
            Err(err) => return Err(err),
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), from /proc on Linux.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// The sent-by (host and port) of the top Via, lowercased; `None` without a Via.
fn top_via_sent_by(request: &Request) -> Option<String> {
    let via = *request.headers.get_all("via").first()?;
    let first_value = via.split(',').next()?;
    let before_params = first_value.split(';').next()?;
    let (_protocol, sent_by) = before_params.trim().split_once(char::is_whitespace)?;
    Some(sent_by.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase())
}

/// Requests waiting for the user (the call router); past this they are answered 503.
const INCOMING_QUEUE: usize = 1024;
/// Server transactions alive at once; past this new requests are answered 503 statelessly.
const MAX_SERVER_TRANSACTIONS: usize = 16_384;
/// Messages kept for a TCP connection being opened.
const MAX_PENDING_PER_CONNECT: usize = 64;
/// How long accepting pauses after an accept error (EMFILE): the error repeats at once
/// otherwise, and the loop would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Timer entries handled per wake-up, so that timers cannot starve the sockets.
const TIMERS_PER_WAKE: usize = 4096;
/// Datagrams read per wake-up of the endpoint task.
const UDP_BATCH: usize = 64;
/// What we ask a peer to wait before retrying when we are overloaded.
const RETRY_AFTER_SECS: &str = "5";

struct ClientEntry {
    id: u64,
    tx: ClientTransaction,
    target: Target,
    events: mpsc::UnboundedSender<ClientEvent>,
}

struct ServerEntry {
    id: u64,
    tx: ServerTransaction,
    source: Target,
    /// `(Call-ID, CSeq number)` of an INVITE, to match the ACK of a 2xx (its own branch).
    dialog_key: Option<(String, u32)>,
}

/// Whose timer a heap entry is.
#[derive(Clone, Debug)]
enum TimerOwner {
    Client(ClientKey),
    Server(ServerKey),
}

struct EndpointTask {
    udp: UdpSocket,
    tcp: TcpListener,
    limits: TcpLimits,
    /// After an accept error, accepting resumes at this instant.
    accept_paused_until: Option<Instant>,
    commands: mpsc::Receiver<Command>,
    /// Handed to server transaction handles; weak so the task stops with the last handle.
    commands_tx: mpsc::WeakSender<Command>,
    incoming: mpsc::Sender<Incoming>,
    tcp_events: mpsc::Receiver<TcpEvent>,
    tcp_events_tx: mpsc::Sender<TcpEvent>,
    /// Open TCP connections, by peer address.
    connections: HashMap<SocketAddr, Connection>,
    next_connection_id: u64,
    /// Bytes waiting for a TCP connection being opened.
    pending: HashMap<SocketAddr, Vec<Vec<u8>>>,
    clients: HashMap<ClientKey, ClientEntry>,
    servers: HashMap<ServerKey, ServerEntry>,
    /// INVITE server transactions by `(Call-ID, CSeq number)`.
    invites_by_dialog: HashMap<(String, u32), ServerKey>,
    /// Deadlines of transactions, earliest first, by transaction id. An entry is stale when
    /// its transaction is gone or has moved its deadline; it is then skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_owners: HashMap<u64, TimerOwner>,
    next_tx_id: u64,
}

impl EndpointTask {
    async fn run(mut self) {
        // One byte more than a message may have, so that a truncated datagram shows.
        let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
        loop {
            let deadline = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Close) | None => break,
                    Some(command) => self.on_command(command).await,
                },
                received = self.udp.recv_from(&mut buf) => {
                    // Under a flood, drain a batch without going round the select each time.
                    let mut received = received;
                    for _ in 0..UDP_BATCH {
                        match received {
                            Ok((len, source)) if len > MAX_MESSAGE_BYTES => {
                                tracing::debug!(%source, "dropped an oversize SIP datagram");
                            }
                            Ok((len, source)) => self.on_datagram(&buf[..len], source).await,
                            // ICMP errors surface here on Linux; the transaction timers cover them.
                            Err(err) => tracing::debug!(error = %err, "udp receive"),
                        }
                        received = self.udp.try_recv_from(&mut buf);
                        if received.as_ref().is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock) {
                            break;
                        }
                    }
                },
                accepted = self.tcp.accept(), if self.accept_paused_until.is_none() => match accepted {
                    Ok((stream, peer)) => self.adopt_connection(stream, peer),
                    Err(err) => {
                        tracing::warn!(error = %err, "TCP accept failed; pausing accepts");
                        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                },
                () = sleep_until(self.accept_paused_until) => self.accept_paused_until = None,
                Some(event) = self.tcp_events.recv() => self.on_tcp_event(event).await,
                () = sleep_until(deadline) => self.on_timers().await,
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Send { request, target, events } => {
                let Some(branch) = request.branch().map(str::to_owned) else {
                    let _ = events.send(ClientEvent::TransportError("request has no Via branch".into()));
                    return;
                };
                let key = (branch, request.cseq().1);
                let reliable = target.transport == TransportKind::Tcp;
                let (tx, actions) = ClientTransaction::start(request, reliable, now);
                let id = self.new_tx_id(TimerOwner::Client(key.clone()));
                if let Some(replaced) = self.clients.insert(key.clone(), ClientEntry { id, tx, target, events }) {
                    self.timer_owners.remove(&replaced.id);
                }
                self.perform_client(&key, actions).await;
            }
            Command::Respond { key, response } => {
                let Some(entry) = self.servers.get_mut(&key) else { return };
                let actions = entry.tx.respond(&response, now);
                let source = entry.source;
                self.perform_server(source, actions).await;
                self.after_server(&key);
            }
            Command::Stateless { bytes, target } => self.send_bytes(bytes, target).await,
            Command::Close => {}
            #[cfg(test)]
            Command::Panic => panic!("asked to panic"),
        }
    }

    async fn on_datagram(&mut self, bytes: &[u8], source: SocketAddr) {
        match msg::parse(bytes, false) {
            Ok((message, _)) => self.on_message(message, Target { addr: source, transport: TransportKind::Udp }).await,
            Err(err) => {
                // Keep-alive pings are a bare CRLF pair.
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                // A request with enough headers to address an answer gets 400 (505 for another
                // SIP version), statelessly and no larger than itself; anything else is dropped.
                match msg::bad_request_response(bytes) {
                    Some(response) => {
                        tracing::debug!(%source, error = %err, status = response.status, "answered a malformed SIP request");
                        self.send_bytes(response.to_bytes(), Target { addr: source, transport: TransportKind::Udp }).await;
                    }
                    None => tracing::debug!(%source, error = %err, "dropped malformed SIP datagram"),
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message, source: Target) {
        let now = Instant::now();
        match message {
            Message::Response(response) => {
                let Some(branch) = response.branch() else { return };
                let key = (branch.to_owned(), response.cseq().1);
                if let Some(entry) = self.clients.get_mut(&key) {
                    let actions = entry.tx.on_response(response, now);
                    self.perform_client(&key, actions).await;
                }
            }
            Message::Request(request) => self.on_request(request, source, now).await,
        }
    }

    async fn on_request(&mut self, request: Request, source: Target, now: Instant) {
        // A well-formed request we still refuse (an unknown URI scheme: 416) is answered
        // statelessly before it can start a transaction.
        if request.method != Method::Ack
            && let Some(refusal) = msg::check_request(&request)
        {
            self.send_bytes(refusal.to_bytes(), source).await;
            return;
        }
        let branch = request.branch().map(str::to_owned).unwrap_or_else(|| format!("{}-{}", request.call_id(), request.cseq().0));
        // Without a Via there is nowhere to answer; the source stands in so the key is whole.
        let sent_by = top_via_sent_by(&request).unwrap_or_else(|| source.addr.to_string());
        let key_for = |method: Method| ServerKey { branch: branch.clone(), sent_by: sent_by.clone(), method };
        let method = request.method.clone();
        match method {
            Method::Ack => {
                let invite_key = key_for(Method::Invite);
                if let Some(entry) = self.servers.get_mut(&invite_key) {
                    // The ACK of a failure response ends inside the transaction.
                    entry.tx.on_ack(now);
                    self.after_server(&invite_key);
                    return;
                }
                let dialog_key = (request.call_id().to_owned(), request.cseq().0);
                if let Some(invite_key) = self.invites_by_dialog.get(&dialog_key).cloned()
                    && let Some(entry) = self.servers.get_mut(&invite_key)
                {
                    entry.tx.on_ack(now);
                    self.after_server(&invite_key);
                }
                if let Err(err) = self.incoming.try_send(Incoming { request, source, tx: None }) {
                    tracing::warn!(error = %err, "SIP user is not keeping up; dropped an ACK");
                }
            }
            Method::Cancel => {
                let cancel_key = key_for(Method::Cancel);
                if let Some(entry) = self.servers.get_mut(&cancel_key) {
                    let actions = entry.tx.on_retransmission();
                    self.perform_server(source, actions).await;
                    return;
                }
                if self.servers.len() >= MAX_SERVER_TRANSACTIONS {
                    return self.refuse_statelessly(&request, source).await;
                }
                let invite_pending = self.servers.get(&key_for(Method::Invite)).is_some_and(|s| !s.tx.is_answered());
                let status = if invite_pending { (200, "OK") } else { (481, "Call/Transaction Does Not Exist") };
                let mut tx = ServerTransaction::new(&request, source.transport == TransportKind::Tcp, now);
                let actions = tx.respond(&Response::to(&request, status.0, status.1), now);
                self.insert_server(cancel_key.clone(), tx, source, None);
                self.perform_server(source, actions).await;
                self.after_server(&cancel_key);
                if invite_pending && let Err(err) = self.incoming.try_send(Incoming { request, source, tx: None }) {
                    tracing::warn!(error = %err, "SIP user is not keeping up; dropped a CANCEL");
                }
            }
            _ => {
                let key = key_for(method.clone());
                if let Some(entry) = self.servers.get_mut(&key) {
                    let actions = entry.tx.on_retransmission();
                    self.perform_server(source, actions).await;
                    return;
                }
                if self.servers.len() >= MAX_SERVER_TRANSACTIONS {
                    return self.refuse_statelessly(&request, source).await;
                }
                let Some(commands) = self.commands_tx.upgrade() else { return };
                let mut tx = ServerTransaction::new(&request, source.transport == TransportKind::Tcp, now);
                let mut actions = Vec::new();
                if method == Method::Invite {
                    actions = tx.respond(&Response::to(&request, 100, "Trying"), now);
                }
                let dialog_key = (method == Method::Invite).then(|| (request.call_id().to_owned(), request.cseq().0));
                let overloaded = Response::to(&request, 503, "Service Unavailable");
                self.insert_server(key.clone(), tx, source, dialog_key);
                self.perform_server(source, actions).await;
                let incoming = Incoming { request, source, tx: Some(ServerTxHandle { key: key.clone(), commands }) };
                if let Err(err) = self.incoming.try_send(incoming) {
                    // Answered here, in the transaction, so retransmissions get the same 503.
                    tracing::warn!(error = %err, "SIP user is not keeping up; answering 503");
                    let mut overloaded = overloaded;
                    overloaded.headers.push("Retry-After", RETRY_AFTER_SECS);
                    if let Some(entry) = self.servers.get_mut(&key) {
                        let actions = entry.tx.respond(&overloaded, now);
                        self.perform_server(source, actions).await;
                    }
                }
                self.after_server(&key);
            }
        }
    }

    /// Answers 503 without keeping a transaction (there are too many already).
    async fn refuse_statelessly(&mut self, request: &Request, source: Target) {
        tracing::warn!(n_transactions = self.servers.len(), "too many SIP server transactions; answering 503");
        let mut overloaded = Response::to(request, 503, "Service Unavailable");
        overloaded.headers.push("Retry-After", RETRY_AFTER_SECS);
        self.send_bytes(overloaded.to_bytes(), source).await;
    }

    fn new_tx_id(&mut self, owner: TimerOwner) -> u64 {
        self.next_tx_id += 1;
        self.timer_owners.insert(self.next_tx_id, owner);
        self.next_tx_id
    }

    fn insert_server(&mut self, key: ServerKey, tx: ServerTransaction, source: Target, dialog_key: Option<(String, u32)>) {
        let id = self.new_tx_id(TimerOwner::Server(key.clone()));
        if let Some(dialog_key) = &dialog_key {
            self.invites_by_dialog.insert(dialog_key.clone(), key.clone());
        }
        self.servers.insert(key, ServerEntry { id, tx, source, dialog_key });
    }

    /// After a server transaction moved: forget it if it ended, else schedule its timer.
    fn after_server(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get(key) else { return };
        if entry.tx.is_terminated() {
            let entry = self.servers.remove(key).expect("present: just looked up");
            self.timer_owners.remove(&entry.id);
            if let Some(dialog_key) = entry.dialog_key
                && self.invites_by_dialog.get(&dialog_key) == Some(key)
            {
                self.invites_by_dialog.remove(&dialog_key);
            }
        } else if let Some(at) = entry.tx.deadline() {
            self.timers.push(Reverse((at, entry.id)));
        }
    }

    async fn perform_client(&mut self, key: &ClientKey, actions: Vec<Action>) {
        let Some(entry) = self.clients.get(key) else { return };
        let (target, events) = (entry.target, entry.events.clone());
        for action in actions {
            match action {
                Action::Send(bytes) => self.send_bytes(bytes, target).await,
                Action::Deliver(response) => {
                    let _ = events.send(ClientEvent::Response(response));
                }
                Action::Timeout => {
                    let _ = events.send(ClientEvent::Timeout);
                }
            }
        }
        let Some(entry) = self.clients.get(key) else { return };
        if entry.tx.is_terminated() {
            let id = entry.id;
            self.clients.remove(key);
            self.timer_owners.remove(&id);
        } else if let Some(at) = entry.tx.deadline() {
            self.timers.push(Reverse((at, entry.id)));
        }
    }

    async fn perform_server(&mut self, source: Target, actions: Vec<Action>) {
        for action in actions {
            if let Action::Send(bytes) = action {
                self.send_bytes(bytes, source).await;
            }
        }
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        for _ in 0..TIMERS_PER_WAKE {
            let Some(Reverse((at, id))) = self.timers.peek().copied() else { return };
            if at > now {
                return;
            }
            self.timers.pop();
            match self.timer_owners.get(&id).cloned() {
                Some(TimerOwner::Client(key)) => {
                    let Some(entry) = self.clients.get_mut(&key).filter(|c| c.id == id) else { continue };
                    // A stale entry: the deadline moved (a newer entry is in the heap).
                    if entry.tx.deadline() != Some(at) {
                        continue;
                    }
                    let actions = entry.tx.on_timer(now);
                    self.perform_client(&key, actions).await;
                }
                Some(TimerOwner::Server(key)) => {
                    let Some(entry) = self.servers.get_mut(&key).filter(|s| s.id == id) else { continue };
                    if entry.tx.deadline() != Some(at) {
                        continue;
                    }
                    let actions = entry.tx.on_timer(now);
                    let source = entry.source;
                    self.perform_server(source, actions).await;
                    self.after_server(&key);
                }
                None => {}
            }
        }
    }

    async fn send_bytes(&mut self, bytes: Vec<u8>, target: Target) {
        match target.transport {
            TransportKind::Udp => {
                if let Err(err) = self.udp.send_to(&bytes, target.addr).await {
                    tracing::debug!(addr = %target.addr, error = %err, "udp send failed");
                    self.fail_target(target, err.to_string());
                }
            }
            TransportKind::Tcp => {
                if let Some(connection) = self.connections.get(&target.addr) {
                    if connection.try_send(bytes) {
                        return;
                    }
                    // Gone, or not reading what we send: either way it is no use any more.
                    self.connections.remove(&target.addr);
                    return self.fail_target(target, "connection closed or not reading".into());
                }
                let queue = self.pending.entry(target.addr).or_default();
                let first = queue.is_empty();
                if queue.len() >= MAX_PENDING_PER_CONNECT {
                    return;
                }
                queue.push(bytes);
                if first {
                    let events = self.tcp_events_tx.clone();
                    let (addr, idle_timeout) = (target.addr, self.limits.idle_timeout);
                    self.next_connection_id += 1;
                    let id = self.next_connection_id;
                    tokio::spawn(async move {
                        let event = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                            Ok(Ok(stream)) => {
                                let connection = tcp::spawn(stream, addr, id, false, idle_timeout, events.clone());
                                TcpEvent::Connected { addr, connection }
                            }
                            Ok(Err(err)) => TcpEvent::ConnectFailed { addr, error: err.to_string() },
                            Err(_) => TcpEvent::ConnectFailed { addr, error: "connect timed out".into() },
                        };
                        let _ = events.send(event).await;
                    });
                }
            }
        }
    }

    /// Fails every client transaction waiting on `target`.
    fn fail_target(&mut self, target: Target, error: String) {
        let timer_owners = &mut self.timer_owners;
        self.clients.retain(|_, entry| {
            if entry.target == target {
                let _ = entry.events.send(ClientEvent::TransportError(error.clone()));
                timer_owners.remove(&entry.id);
                false
            } else {
                true
            }
        });
    }

    /// Takes an accepted connection. One from an address that has too many already is closed
    /// at once (the peer learns, and the descriptor is freed). At the total cap the oldest
    /// connection that has never carried a message makes room; if every one has, the new one
    /// is closed.
    fn adopt_connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        let from_peer_ip = self.connections.iter().filter(|(addr, c)| c.accepted && addr.ip() == peer.ip()).count();
        if from_peer_ip >= self.limits.max_connections_per_ip {
            tracing::debug!(%peer, from_peer_ip, "refused a TCP connection: too many from its address");
            return;
        }
        let accepted = self.connections.values().filter(|c| c.accepted).count();
        if accepted >= self.limits.max_connections {
            let silent = self.connections.iter().filter(|(_, c)| c.accepted && !c.has_spoken).min_by_key(|(_, c)| c.opened);
            let Some(evicted) = silent.map(|(addr, _)| *addr) else {
                tracing::debug!(%peer, accepted, "refused a TCP connection: too many open");
                return;
            };
            tracing::debug!(%peer, %evicted, "closed a silent TCP connection to make room");
            self.connections.remove(&evicted);
        }
        self.next_connection_id += 1;
        let connection = tcp::spawn(stream, peer, self.next_connection_id, true, self.limits.idle_timeout, self.tcp_events_tx.clone());
        self.connections.insert(peer, connection);
    }

    async fn on_tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Connected { addr, connection } => {
                for bytes in self.pending.remove(&addr).unwrap_or_default() {
                    let _ = connection.try_send(bytes);
                }
                self.connections.insert(addr, connection);
            }
            TcpEvent::ConnectFailed { addr, error } => {
                self.pending.remove(&addr);
                self.fail_target(Target { addr, transport: TransportKind::Tcp }, error);
            }
            TcpEvent::Message { message, source } => {
                if let Some(connection) = self.connections.get_mut(&source) {
                    connection.has_spoken = true;
                }
                self.on_message(message, Target { addr: source, transport: TransportKind::Tcp }).await;
            }
            TcpEvent::Malformed { response, source } => {
                self.send_bytes(response.to_bytes(), Target { addr: source, transport: TransportKind::Tcp }).await;
            }
            TcpEvent::Closed { addr, id } => {
                if self.connections.get(&addr).is_some_and(|c| c.id == id) {
                    self.connections.remove(&addr);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
