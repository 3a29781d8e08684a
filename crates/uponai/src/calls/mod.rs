//! Calls: how a call comes to exist and (from M2) the task that owns it.
//!
//! `create` turns a parsed request into a stored call: it finds the caller's number,
//! picks the agent (override, else a weighted pick of the number's outbound agents),
//! resolves the version, merges the per-call override, and records the call `registered`.
//! Every route that makes calls (the Retell routes, UponAI's own route, batches) goes
//! through it.

pub mod create;

pub use create::{create_call, CallLeg, CreateCallError, NewCall};
