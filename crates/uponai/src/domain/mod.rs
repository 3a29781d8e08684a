//! Domain types: parsed once at the edge, trusted everywhere after.
//!
//! Nothing here is `Serialize`; the `api` module converts by hand. Each newtype has one
//! constructor that validates (`parse`, `generate`), so a value of the type is proof of its
//! invariants.

pub mod agent;
pub mod call;
pub mod ids;
pub mod limits;
pub mod phone;
pub mod sip_header;
pub mod time_window;
pub mod trunk;
pub mod version;
pub mod weights;

pub use call::{CallStatus, CallType, Direction, DisconnectionReason, Termination, TerminationResult};
pub use ids::{AgentId, CallId, EventId, FlowId, KeyId, LlmId, WorkspaceId};
pub use phone::{DialString, E164};
pub use trunk::{TerminationUri, Transport};
pub use version::AgentVersionRef;
pub use weights::{AgentWeight, AgentWeights};

/// Milliseconds since the Unix epoch: the unit of every timestamp on the wire and in the store.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
