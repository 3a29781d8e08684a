//! uponai: a self-hostable voice-AI calling platform with a Retell-compatible API.
//!
//! Layout, in the order data flows:
//! - `cli_batch`: the `uponai batch` command (an HTTP client of a running server).
//! - `demo`: `uponai demo`, everything on embedded defaults calling a simulated callee.
//! - `cli_simulate`: `uponai simulate`, an agent of a running server calls a persona (and the
//!   client the demo uses for the same).
//! - `config`, `telemetry`, `startup`: settings, logging, and `App` (build binds the
//!   listeners and exposes their ports; `run_until_stopped` serves).
//! - `api`: the HTTP edge (Retell-compatible routes, UponAI's own routes, OpenAPI).
//! - `sim`: simulated callees (personas) on a real SIP/RTP leg, with their own voice and
//!   ears; run by the simulation API.
//! - `dispatch`: decides when a registered outbound call is dialed.
//! - `admission`: concurrency slots and the CPS pacer (tickets held by call tasks).
//! - `calls`: how a call comes to exist, and the one task that owns it (SIP, media).
//! - `hosted`: hosted speech providers (Deepgram speech to text, ElevenLabs voices) behind
//!   the `agent` crate's speech traits.
//! - `llm`: response engines over the network (`retell-llm` on an OpenAI-compatible
//!   server) and the tools they call, behind the `agent` crate's engine trait.
//! - `egress`: the guard on every address we connect to for a tenant (URLs, trunks).
//! - `webhooks`: the events of calls' state changes, delivered from the store's outbox.
//! - `view`: the call object on the wire, shared by `api` and `webhooks`.
//! - `store`: the only SQL.
//! - `domain`: parsed types shared by all of the above; nothing in it is serialisable.

pub mod cli_batch;
pub mod cli_simulate;
pub mod config;
pub mod demo;
pub mod sim;
pub mod startup;
pub mod telemetry;

pub mod admission;
pub mod api;
pub mod calls;
pub mod dispatch;
pub mod domain;
pub mod egress;
pub mod hosted;
pub mod llm;
pub mod store;
pub mod view;
pub mod webhooks;

pub use startup::App;
