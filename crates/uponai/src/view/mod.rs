//! The wire view of a call, shared by the two edges that show it: `api` (Get Call, list, …)
//! and `webhooks` (every event's `call`). Serde types like those of `api`, kept here so that
//! neither edge imports the other.
//!
//! - `call`: `CallResponse`, the call object, rendered from a stored row.
//! - `recording_links`: the signed, expiring recording URLs in it.
//!
//! Architecture Invariant: `view` reads store rows and domain types; it knows nothing of HTTP
//! handlers, delivery or call tasks.

mod call;
mod recording_links;

pub use call::CallResponse;
pub use recording_links::{DEFAULT_LINK_TTL_MS, RecordingLinks, is_safe_name};
