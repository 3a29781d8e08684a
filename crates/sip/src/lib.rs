//! A focused SIP user agent (RFC 3261) for placing and answering calls through trunks.
//!
//! Layout, bottom up:
//! - `msg`: bytes ↔ `Request`/`Response` (pure; `Incomplete` for stream transports).
//! - `uri`: SIP URIs and name-addrs.
//! - `transaction`: client and server transactions with their retransmission timers,
//!   sans-I/O (`(state, input, now) → actions`).
//! - `auth`: digest answers to 401/407 (MD5, SHA-256, qop=auth).
//! - `dialog`: Call-ID, tags, CSeq and route set of an established call; builds ACK and BYE.
//! - `endpoint`: the only I/O: UDP and TCP sockets ↔ the transaction state machines.
//!
//! Architecture Invariant: this crate knows nothing of SDP (a body is opaque bytes), RTP,
//! agents, HTTP or the database.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod msg;
pub mod transaction;
pub mod uri;

pub use endpoint::{Endpoint, EndpointConfig, Incoming, ServerTxHandle, TransportKind};
pub use msg::{Headers, Message, Method, ParseError, Request, Response};
pub use uri::{NameAddr, SipUri};
