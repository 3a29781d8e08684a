//! The voice agent of one call: it hears the caller, decides when a turn ends, answers, and
//! is interrupted, knowing nothing of HTTP, SQL or SIP.
//!
//! # Layout
//! - [`turn`]: the sans-I/O turn-taking state machine (VAD, transcripts and playout reports
//!   in, decisions out, time as an input).

pub mod turn;

pub use turn::{Decision, Input, TurnConfig, Turns};
