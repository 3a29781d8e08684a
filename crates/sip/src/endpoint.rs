//! The endpoint: the only I/O in this crate. One task owns the UDP socket, the TCP listener
//! and connections, and every transaction; it feeds them messages and timer ticks and
//! performs their actions. Everyone else holds a cheap `Endpoint` handle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::msg::{self, Message, Method, Request, Response};
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

#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// UDP and TCP listen on this address (the same port; port 0 picks one).
    pub bind: SocketAddr,
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

/// Answers one received request.
#[derive(Clone, Debug)]
pub struct ServerTxHandle {
    key: TxKey,
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
}

type TxKey = (String, Method);

#[derive(Debug)]
enum Command {
    Send { request: Request, target: Target, events: mpsc::UnboundedSender<ClientEvent> },
    Respond { key: TxKey, response: Response },
    Stateless { bytes: Vec<u8>, target: Target },
}

#[derive(Debug)]
enum TcpEvent {
    Connected { addr: SocketAddr, writer: mpsc::UnboundedSender<Vec<u8>> },
    ConnectFailed { addr: SocketAddr, error: String },
    Message { message: Message, source: SocketAddr },
    Closed { addr: SocketAddr },
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
    /// arrive on the returned channel.
    pub async fn bind(config: EndpointConfig) -> std::io::Result<(Self, mpsc::Receiver<Incoming>)> {
        let (udp, tcp, local_addr) = bind_pair(config.bind).await?;
        let (commands_tx, commands_rx) = mpsc::channel(1024);
        let (incoming_tx, incoming_rx) = mpsc::channel(1024);
        let (tcp_events_tx, tcp_events_rx) = mpsc::unbounded_channel();
        let task = EndpointTask {
            udp,
            tcp,
            commands: commands_rx,
            commands_tx: commands_tx.downgrade(),
            incoming: incoming_tx,
            tcp_events: tcp_events_rx,
            tcp_events_tx,
            connections: HashMap::new(),
            pending: HashMap::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
        };
        tokio::spawn(task.run());
        Ok((Self { commands: commands_tx, local_addr }, incoming_rx))
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

struct ClientEntry {
    tx: ClientTransaction,
    target: Target,
    events: mpsc::UnboundedSender<ClientEvent>,
}

struct ServerEntry {
    tx: ServerTransaction,
    source: Target,
    /// `(Call-ID, CSeq number)`, to match the ACK of a 2xx (which has its own branch).
    dialog_key: (String, u32),
}

struct EndpointTask {
    udp: UdpSocket,
    tcp: TcpListener,
    commands: mpsc::Receiver<Command>,
    /// Handed to server transaction handles; weak so the task stops with the last handle.
    commands_tx: mpsc::WeakSender<Command>,
    incoming: mpsc::Sender<Incoming>,
    tcp_events: mpsc::UnboundedReceiver<TcpEvent>,
    tcp_events_tx: mpsc::UnboundedSender<TcpEvent>,
    /// Writers of open TCP connections, by peer address.
    connections: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    /// Bytes waiting for a TCP connection being opened.
    pending: HashMap<SocketAddr, Vec<Vec<u8>>>,
    clients: HashMap<TxKey, ClientEntry>,
    servers: HashMap<TxKey, ServerEntry>,
}

const MAX_DATAGRAM: usize = 65_535;

impl EndpointTask {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((len, source)) => self.on_datagram(&buf[..len], source).await,
                    // ICMP errors surface here on Linux; the transaction timers cover them.
                    Err(err) => tracing::debug!(error = %err, "udp receive"),
                },
                accepted = self.tcp.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        self.adopt_connection(stream, peer);
                    }
                },
                Some(event) = self.tcp_events.recv() => self.on_tcp_event(event).await,
                () = sleep_until(deadline) => self.on_timers().await,
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let clients = self.clients.values().filter_map(|c| c.tx.deadline());
        let servers = self.servers.values().filter_map(|s| s.tx.deadline());
        clients.chain(servers).min()
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
                self.clients.insert(key.clone(), ClientEntry { tx, target, events });
                self.perform_client(&key, actions).await;
            }
            Command::Respond { key, response } => {
                let Some(entry) = self.servers.get_mut(&key) else { return };
                let actions = entry.tx.respond(&response, now);
                let source = entry.source;
                for action in actions {
                    if let Action::Send(bytes) = action {
                        self.send_bytes(bytes, source).await;
                    }
                }
            }
            Command::Stateless { bytes, target } => self.send_bytes(bytes, target).await,
        }
    }

    async fn on_datagram(&mut self, bytes: &[u8], source: SocketAddr) {
        match msg::parse(bytes, false) {
            Ok((message, _)) => self.on_message(message, Target { addr: source, transport: TransportKind::Udp }).await,
            Err(err) => {
                // Keep-alive pings are a bare CRLF pair.
                if !bytes.iter().all(u8::is_ascii_whitespace) {
                    tracing::debug!(%source, error = %err, "dropped malformed SIP datagram");
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
                if self.clients.contains_key(&key) {
                    let actions = self.clients.get_mut(&key).map(|c| c.tx.on_response(response, now)).unwrap_or_default();
                    self.perform_client(&key, actions).await;
                }
            }
            Message::Request(request) => self.on_request(request, source, now).await,
        }
    }

    async fn on_request(&mut self, request: Request, source: Target, now: Instant) {
        let branch = request.branch().map(str::to_owned).unwrap_or_else(|| format!("{}-{}", request.call_id(), request.cseq().0));
        let method = request.method.clone();
        match method {
            Method::Ack => {
                let invite_key = (branch, Method::Invite);
                if let Some(entry) = self.servers.get_mut(&invite_key) {
                    // The ACK of a failure response ends inside the transaction.
                    entry.tx.on_ack(now);
                    return;
                }
                let dialog_key = (request.call_id().to_owned(), request.cseq().0);
                if let Some(entry) = self.servers.values_mut().find(|s| s.dialog_key == dialog_key) {
                    entry.tx.on_ack(now);
                }
                self.deliver(Incoming { request, source, tx: None });
            }
            Method::Cancel => {
                let cancel_key = (branch.clone(), Method::Cancel);
                if let Some(entry) = self.servers.get_mut(&cancel_key) {
                    let actions = entry.tx.on_retransmission();
                    self.perform_server(source, actions).await;
                    return;
                }
                let invite_pending = self.servers.get(&(branch.clone(), Method::Invite)).is_some_and(|s| !s.tx.is_answered());
                let status = if invite_pending { (200, "OK") } else { (481, "Call/Transaction Does Not Exist") };
                let mut tx = ServerTransaction::new(&request, source.transport == TransportKind::Tcp);
                let actions = tx.respond(&Response::to(&request, status.0, status.1), now);
                let dialog_key = (request.call_id().to_owned(), request.cseq().0);
                self.servers.insert(cancel_key, ServerEntry { tx, source, dialog_key });
                self.perform_server(source, actions).await;
                if invite_pending {
                    self.deliver(Incoming { request, source, tx: None });
                }
            }
            _ => {
                let key = (branch, method.clone());
                if let Some(entry) = self.servers.get_mut(&key) {
                    let actions = entry.tx.on_retransmission();
                    self.perform_server(source, actions).await;
                    return;
                }
                let mut tx = ServerTransaction::new(&request, source.transport == TransportKind::Tcp);
                let mut actions = Vec::new();
                if method == Method::Invite {
                    actions = tx.respond(&Response::to(&request, 100, "Trying"), now);
                }
                let dialog_key = (request.call_id().to_owned(), request.cseq().0);
                self.servers.insert(key.clone(), ServerEntry { tx, source, dialog_key });
                self.perform_server(source, actions).await;
                let Some(commands) = self.commands_tx.upgrade() else { return };
                self.deliver(Incoming { request, source, tx: Some(ServerTxHandle { key, commands }) });
            }
        }
    }

    /// Hands a request to the user; if the user is not keeping up, the request is dropped and
    /// the peer's retransmission tries again.
    fn deliver(&self, incoming: Incoming) {
        if let Err(err) = self.incoming.try_send(incoming) {
            tracing::warn!(error = %err, "SIP user is not keeping up; dropped a request");
        }
    }

    async fn perform_client(&mut self, key: &TxKey, actions: Vec<Action>) {
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
        if self.clients.get(key).is_some_and(|c| c.tx.is_terminated()) {
            self.clients.remove(key);
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
        let due: Vec<TxKey> =
            self.clients.iter().filter(|(_, c)| c.tx.deadline().is_some_and(|d| d <= now)).map(|(k, _)| k.clone()).collect();
        for key in due {
            let actions = self.clients.get_mut(&key).map(|c| c.tx.on_timer(now)).unwrap_or_default();
            self.perform_client(&key, actions).await;
            if self.clients.get(&key).is_some_and(|c| c.tx.is_terminated()) {
                self.clients.remove(&key);
            }
        }
        let due: Vec<TxKey> =
            self.servers.iter().filter(|(_, s)| s.tx.deadline().is_some_and(|d| d <= now)).map(|(k, _)| k.clone()).collect();
        for key in due {
            let Some(entry) = self.servers.get_mut(&key) else { continue };
            let actions = entry.tx.on_timer(now);
            let source = entry.source;
            self.perform_server(source, actions).await;
        }
        self.servers.retain(|_, s| !s.tx.is_terminated());
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
                if let Some(writer) = self.connections.get(&target.addr) {
                    if writer.send(bytes).is_ok() {
                        return;
                    }
                    self.connections.remove(&target.addr);
                    return self.fail_target(target, "connection closed".into());
                }
                let queue = self.pending.entry(target.addr).or_default();
                let first = queue.is_empty();
                queue.push(bytes);
                if first {
                    let events = self.tcp_events_tx.clone();
                    let addr = target.addr;
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                            Ok(Ok(stream)) => {
                                let writer = spawn_connection(stream, addr, events.clone());
                                let _ = events.send(TcpEvent::Connected { addr, writer });
                            }
                            Ok(Err(err)) => {
                                let _ = events.send(TcpEvent::ConnectFailed { addr, error: err.to_string() });
                            }
                            Err(_) => {
                                let _ = events.send(TcpEvent::ConnectFailed { addr, error: "connect timed out".into() });
                            }
                        }
                    });
                }
            }
        }
    }

    /// Fails every client transaction waiting on `target`.
    fn fail_target(&mut self, target: Target, error: String) {
        self.clients.retain(|_, entry| {
            if entry.target == target {
                let _ = entry.events.send(ClientEvent::TransportError(error.clone()));
                false
            } else {
                true
            }
        });
    }

    fn adopt_connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        let writer = spawn_connection(stream, peer, self.tcp_events_tx.clone());
        self.connections.insert(peer, writer);
    }

    async fn on_tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Connected { addr, writer } => {
                for bytes in self.pending.remove(&addr).unwrap_or_default() {
                    let _ = writer.send(bytes);
                }
                self.connections.insert(addr, writer);
            }
            TcpEvent::ConnectFailed { addr, error } => {
                self.pending.remove(&addr);
                self.fail_target(Target { addr, transport: TransportKind::Tcp }, error);
            }
            TcpEvent::Message { message, source } => {
                self.on_message(message, Target { addr: source, transport: TransportKind::Tcp }).await;
            }
            TcpEvent::Closed { addr } => {
                self.connections.remove(&addr);
            }
        }
    }
}

/// Spawns the reader and writer of one TCP connection; returns the writer's queue.
fn spawn_connection(stream: TcpStream, peer: SocketAddr, events: mpsc::UnboundedSender<TcpEvent>) -> mpsc::UnboundedSender<Vec<u8>> {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        'read: loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            loop {
                match msg::parse(&buf, true) {
                    Ok((message, used)) => {
                        buf.drain(..used);
                        if events.send(TcpEvent::Message { message, source: peer }).is_err() {
                            break 'read;
                        }
                    }
                    Err(msg::ParseError::Incomplete) => {
                        // Whitespace alone is a keep-alive; drop it so the buffer stays small.
                        if buf.iter().all(u8::is_ascii_whitespace) {
                            buf.clear();
                        }
                        break;
                    }
                    Err(msg::ParseError::Invalid(why)) => {
                        tracing::debug!(%peer, why, "closing TCP connection after a malformed message");
                        break 'read;
                    }
                }
            }
        }
        let _ = events.send(TcpEvent::Closed { addr: peer });
    });
    tx
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
