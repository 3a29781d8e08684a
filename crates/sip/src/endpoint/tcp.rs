//! One TCP connection: a reader task that frames messages and a writer task with a bounded
//! queue. The endpoint task owns the `Connection`; dropping it stops both tasks and closes
//! the socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::msg::{self, MAX_MESSAGE_BYTES, Message, Response};

/// Messages queued for one connection's writer; a peer that does not read is dropped when
/// its queue is full rather than buffered without bound.
const WRITE_QUEUE: usize = 64;
/// A write that makes no progress for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What connection tasks report to the endpoint task.
#[derive(Debug)]
pub(super) enum TcpEvent {
    Connected {
        addr: SocketAddr,
        connection: Connection,
    },
    ConnectFailed {
        addr: SocketAddr,
        error: String,
    },
    Message {
        message: Message,
        source: SocketAddr,
    },
    /// A malformed request's answer (400 or 505), sent before its connection closes.
    Malformed {
        response: Response,
        source: SocketAddr,
    },
    /// The reader or writer of connection `id` stopped. Only that connection is forgotten:
    /// a newer one from the same address may already have replaced it.
    Closed {
        addr: SocketAddr,
        id: u64,
    },
}

/// An open connection, as the endpoint task holds it.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) id: u64,
    /// Accepted from a peer (counted against the caps), rather than opened by us.
    pub(super) accepted: bool,
    pub(super) opened: Instant,
    /// A whole message has arrived on it: a connection in use, never evicted for a newer one.
    pub(super) has_spoken: bool,
    writer: mpsc::Sender<Vec<u8>>,
    tasks: [AbortHandle; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Connection {
    /// Queues bytes for the writer; `false` if the connection is gone or its queue is full.
    pub(super) fn try_send(&self, bytes: Vec<u8>) -> bool {
        self.writer.try_send(bytes).is_ok()
    }
}

/// Starts the reader and writer of `stream`.
pub(super) fn spawn(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    accepted: bool,
    idle_timeout: Duration,
    events: mpsc::Sender<TcpEvent>,
) -> Connection {
    let (reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer_events = events.clone();
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let _ = writer_events.send(TcpEvent::Closed { addr: peer, id }).await;
    });
    let read_task = tokio::spawn(async move {
        read_messages(reader, peer, idle_timeout, &events).await;
        let _ = events.send(TcpEvent::Closed { addr: peer, id }).await;
    });
    Connection {
        id,
        accepted,
        opened: Instant::now(),
        has_spoken: false,
        writer: tx,
        tasks: [write_task.abort_handle(), read_task.abort_handle()],
    }
}

/// Frames messages until the peer closes, sends garbage, exceeds the maximum message size,
/// or is too slow: a connection that has not yet carried a whole message, and a message once
/// begun, each get `idle_timeout`. Between messages a connection that has spoken may stay
/// quiet (a trunk's connection carries the BYE at the end of a long call).
async fn read_messages(mut reader: OwnedReadHalf, peer: SocketAddr, idle_timeout: Duration, events: &mpsc::Sender<TcpEvent>) {
    let opened = Instant::now();
    let mut has_spoken = false;
    let mut message_started: Option<Instant> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    loop {
        let deadline = if has_spoken { message_started.map(|at| at + idle_timeout) } else { Some(opened + idle_timeout) };
        let read = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), reader.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_) => {
                    tracing::debug!(%peer, "closing a TCP connection that did not send a whole message in time");
                    return;
                }
            },
            None => reader.read(&mut chunk).await,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            match msg::parse(&buf, true) {
                Ok((message, used)) => {
                    buf.drain(..used);
                    has_spoken = true;
                    message_started = None;
                    if events.send(TcpEvent::Message { message, source: peer }).await.is_err() {
                        return;
                    }
                }
                Err(msg::ParseError::Incomplete) => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        // Whitespace alone is a keep-alive; drop it so the buffer stays small.
                        buf.clear();
                    } else if buf.len() > MAX_MESSAGE_BYTES {
                        tracing::debug!(%peer, "closing a TCP connection whose message passed the maximum size");
                        return;
                    } else if message_started.is_none() {
                        message_started = Some(Instant::now());
                    }
                    break;
                }
                Err(msg::ParseError::Invalid(why)) => {
                    tracing::debug!(%peer, why, "closing TCP connection after a malformed message");
                    // Answered if it was a request we can address an answer to (RFC 3261
                    // §16.3 / RFC 4475); the stream cannot be resynchronised, so it closes.
                    if let Some(response) = msg::bad_request_response(&buf) {
                        let _ = events.send(TcpEvent::Malformed { response, source: peer }).await;
                    }
                    return;
                }
            }
        }
    }
}
