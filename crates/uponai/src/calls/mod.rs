//! Calls: how a call comes to exist, and the one task that owns it while it lives.
//!
//! - `create`: a parsed request → a stored, registered call (agent pick, version, override).
//! - `runtime`: what call tasks share; routes in-dialog SIP requests to the owning task.
//! - `trunk`: where a number's calls go (dial plan) and may come from (allow-list).
//! - `outcome`: SIP outcomes → the call's one `disconnection_reason` (pure).
//! - `outbound`, `inbound`: the two ways a call task starts; both end in `talk`.
//! - `storage`: what a call's `data_storage_setting` lets it keep (recording, transcript).
//! - `talk`: the connected call: media, the voice agent, and whatever ends it first.
//! - `transfer`: cold transfer by SIP REFER (the destination checked before it becomes a header).
//! - `conversation`: the agent crate's task wired to a call (settings, media, the engine
//!   until M7's LLMs, and the transcript and latency it leaves in the call document).
//! - `simulation`: a simulated call's record (persona, report) in its call document.
//! - `voice`: the process's offline speech engines, checked at start, loaded once.
//!
//! Architecture Invariant: exactly one task owns a call from dial (or answer) to its end, and
//! it records the end once; the store refuses a second end.

pub mod conversation;
pub mod create;
pub mod inbound;
pub mod outbound;
pub mod outcome;
pub mod runtime;
pub mod settings;
pub mod simulation;
pub mod storage;
pub mod talk;
pub mod transfer;
pub mod trunk;
pub mod voice;

pub use create::{CallLeg, CreateCallError, NewCall, PreparedCall, create_call, prepare_call};
pub use runtime::{CallRuntime, CallRuntimeConfig};
