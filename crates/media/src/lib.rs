//! Call media: G.711 audio over RTP, as typed 20 ms PCM frames.
//!
//! Layout, pure first:
//! - `g711`: μ-law and A-law sample codecs.
//! - `rtp`: packet parse/serialize.
//! - `sdp`: the audio offer/answer → `MediaParams`.
//! - `jitter`: reorder buffer with loss concealment (sans-I/O).
//! - `dtmf`: RFC 4733 telephone-events in and out.
//! - `wav`: 16-bit PCM WAV files (the recordings).
//! - `playout`: what passes to and from the agent side: stamped caller frames, agent frames
//!   tagged with a generation, the gate that cancels a generation, and playout reports.
//! - `session`: the Tokio adapter: one task per call pacing RTP out every 20 ms, decoding RTP
//!   in, and recording both directions.
//!
//! Architecture Invariant: this crate never sees a SIP message; it is handed negotiated
//! `MediaParams`. The media path never awaits anyone but its socket: frames that cannot be
//! handed on are dropped, never buffered without bound.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod playout;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod wav;

/// Samples per channel per second.
pub const SAMPLE_RATE: u32 = 8_000;
/// 20 ms at 8 kHz.
pub const SAMPLES_PER_FRAME: usize = 160;

/// One 20 ms frame of 16-bit mono PCM at 8 kHz.
pub type Frame = [i16; SAMPLES_PER_FRAME];

pub const SILENCE: Frame = [0; SAMPLES_PER_FRAME];

pub use playout::{AgentFrame, CallerFrame, Generation, PlayoutEvent, PlayoutGate, PlayoutReport};
pub use sdp::{Codec, MediaParams};
pub use session::{MediaEvent, MediaSession, MediaStats, RtpPorts};
