//! The voice agent of one call: it hears the caller, decides when a turn ends, answers, and
//! is interrupted, knowing nothing of HTTP, SQL, SIP or the media crate.
//!
//! # Layout
//! - [`turn`]: the sans-I/O turn-taking state machine (VAD, transcripts and playout reports
//!   in, decisions out, time as an input).
//! - [`provider`]: the object-safe traits of VAD, speech-to-text, text-to-speech and the
//!   response engine (**API Boundary**), and the deadline every provider call runs under.
//! - [`conversation`]: the transcript and latency samples a call produces.
//! - [`flow`]: Retell's conversation flows as a response engine, with the offline matcher of
//!   `prompt` conditions; [`template`]: `{{variable}}` filling.
//! - [`text`]: sentence splitting.
//! - [`session`]: the agent task of one call, the Tokio adapter around `turn`.
//! - [`instant`]: stand-in providers that take no time, to measure the platform alone.
//! - [`voicemail`]: answering-machine detection (sans-I/O), for outbound calls.
//! - [`offline`]: the embedded engines, loaded from the assets directory: Silero VAD and the
//!   Piper voice (ONNX Runtime, opened at run time), Whisper (a CTranslate2 worker process).

pub mod conversation;
pub mod flow;
pub mod instant;
pub mod offline;
pub mod provider;
pub mod session;
pub mod template;
pub mod text;
pub mod turn;
pub mod voicemail;

pub use conversation::{Conversation, Entry, ToolEvent};
pub use session::{AgentEnd, AgentEvent, AgentSettings, Heard, Mouth, Providers};
pub use turn::{Decision, Input, TurnConfig, Turns};
