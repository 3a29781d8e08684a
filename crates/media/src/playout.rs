//! What passes between the media task and the agent side of a call, and the sans-I/O
//! playout logic that decides, each 20 ms tick, which agent frame goes out.
//!
//! Agent audio is tagged with a generation (one per response). Cancelling a response is not
//! a message queued behind its audio: the agent side raises the [`PlayoutGate`], and at its
//! next tick the media task drops every queued frame of a cancelled generation. Playout
//! reports say, per generation, how many frames really went out and when the first and last
//! did, so the transcript keeps only what was played and latency is measured at the wire.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Frame, SILENCE};

/// Identifies one agent response's audio.
pub type Generation = u64;

/// A caller frame, stamped with the media clock.
#[derive(Clone, Debug)]
pub struct CallerFrame {
    /// Ticks since the session started (one per 20 ms).
    pub index: u64,
    /// When the frame was played out of the jitter buffer, since the session started.
    pub at: Duration,
    pub samples: Frame,
    /// No packet carried this frame: it is loss concealment or silence.
    pub concealed: bool,
}

/// A frame of agent audio.
#[derive(Clone, Debug)]
pub struct AgentFrame {
    pub generation: Generation,
    pub samples: Frame,
    /// The response's last frame: its playout ends when this one is sent.
    pub last: bool,
}

/// The generation below which agent audio is dropped. Shared by the agent side, which
/// raises it, and the media task, which reads it once a tick.
#[derive(Clone, Debug, Default)]
pub struct PlayoutGate(Arc<AtomicU64>);

impl PlayoutGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every frame of `generation` and older, queued or still to come.
    pub fn cancel_through(&self, generation: Generation) {
        self.0.fetch_max(generation.saturating_add(1), Ordering::Release);
    }

    /// The oldest generation still allowed out.
    pub fn first_allowed(&self) -> Generation {
        self.0.load(Ordering::Acquire)
    }
}

/// How one generation's audio went out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayoutReport {
    pub generation: Generation,
    /// Frames sent (20 ms each).
    pub frames: u32,
    /// When the first and the last frame were sent, since the session started.
    pub first_at: Duration,
    pub last_at: Duration,
    /// Ended by the gate (or a newer generation), not by its last frame.
    pub cancelled: bool,
}

/// Playout progress, reported on the session's event channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayoutEvent {
    Started { generation: Generation, at: Duration },
    Ended(PlayoutReport),
}

/// The playout state of a session (sans-I/O).
#[derive(Debug, Default)]
pub(crate) struct Playout {
    active: Option<PlayoutReport>,
    /// Frames dropped because their generation was cancelled.
    pub(crate) n_dropped: u64,
}

impl Playout {
    /// The frame to send at `now`: the next allowed agent frame from `queue`, or silence.
    /// Reports go to `events`.
    pub(crate) fn next(
        &mut self,
        mut queue: impl FnMut() -> Option<AgentFrame>,
        first_allowed: Generation,
        now: Duration,
        events: &mut Vec<PlayoutEvent>,
    ) -> Frame {
        if self.active.as_ref().is_some_and(|active| active.generation < first_allowed) {
            self.end(true, events);
        }
        let frame = loop {
            match queue() {
                Some(frame) if frame.generation < first_allowed => self.n_dropped += 1,
                other => break other,
            }
        };
        let Some(frame) = frame else { return SILENCE };
        if self.active.as_ref().is_some_and(|active| active.generation != frame.generation) {
            self.end(true, events);
        }
        let active = self.active.get_or_insert_with(|| {
            events.push(PlayoutEvent::Started { generation: frame.generation, at: now });
            PlayoutReport { generation: frame.generation, frames: 0, first_at: now, last_at: now, cancelled: false }
        });
        active.frames += 1;
        active.last_at = now;
        if frame.last {
            self.end(false, events);
        }
        frame.samples
    }

    /// Ends the active generation (when the session stops, too).
    pub(crate) fn end(&mut self, cancelled: bool, events: &mut Vec<PlayoutEvent>) {
        if let Some(mut report) = self.active.take() {
            report.cancelled = cancelled;
            events.push(PlayoutEvent::Ended(report));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn frame(generation: Generation, value: i16, last: bool) -> AgentFrame {
        AgentFrame { generation, samples: [value; crate::SAMPLES_PER_FRAME], last }
    }

    fn tick(playout: &mut Playout, queue: &mut VecDeque<AgentFrame>, gate: &PlayoutGate, n: u64) -> (Frame, Vec<PlayoutEvent>) {
        let mut events = Vec::new();
        let out = playout.next(|| queue.pop_front(), gate.first_allowed(), Duration::from_millis(20 * n), &mut events);
        (out, events)
    }

    #[test]
    fn a_response_reports_its_first_and_last_frame_times() {
        let (mut playout, gate) = (Playout::default(), PlayoutGate::new());
        let mut queue: VecDeque<_> = [frame(1, 5, false), frame(1, 6, false), frame(1, 7, true)].into();
        let (out, events) = tick(&mut playout, &mut queue, &gate, 1);
        assert_eq!(out[0], 5);
        assert_eq!(events, [PlayoutEvent::Started { generation: 1, at: Duration::from_millis(20) }]);
        // An underrun between sentences is silence, not an end.
        let (out, events) = tick(&mut playout, &mut VecDeque::new(), &gate, 2);
        assert_eq!((out, events), (SILENCE, vec![]));
        tick(&mut playout, &mut queue, &gate, 3);
        let (_, events) = tick(&mut playout, &mut queue, &gate, 4);
        let report = PlayoutReport {
            generation: 1,
            frames: 3,
            first_at: Duration::from_millis(20),
            last_at: Duration::from_millis(80),
            cancelled: false,
        };
        assert_eq!(events, [PlayoutEvent::Ended(report)]);
    }

    #[test]
    fn the_gate_drops_queued_audio_of_a_cancelled_generation_at_the_next_tick() {
        let (mut playout, gate) = (Playout::default(), PlayoutGate::new());
        let mut queue: VecDeque<_> = (0..50).map(|i| frame(1, 100, i == 49)).collect();
        tick(&mut playout, &mut queue, &gate, 1);
        tick(&mut playout, &mut queue, &gate, 2);
        gate.cancel_through(1);
        queue.push_back(frame(2, 9, false));
        let (out, events) = tick(&mut playout, &mut queue, &gate, 3);
        assert_eq!(out[0], 9, "the next generation's audio goes out in the same tick");
        assert!(matches!(&events[0], PlayoutEvent::Ended(PlayoutReport { generation: 1, frames: 2, cancelled: true, .. })));
        assert_eq!(events[1], PlayoutEvent::Started { generation: 2, at: Duration::from_millis(60) });
        assert_eq!(playout.n_dropped, 48);
    }

    #[test]
    fn a_cancelled_generation_with_nothing_queued_ends_at_the_next_tick() {
        let (mut playout, gate) = (Playout::default(), PlayoutGate::new());
        tick(&mut playout, &mut VecDeque::from([frame(4, 1, false)]), &gate, 1);
        gate.cancel_through(4);
        let (out, events) = tick(&mut playout, &mut VecDeque::new(), &gate, 2);
        assert_eq!(out, SILENCE);
        assert!(matches!(&events[..], [PlayoutEvent::Ended(PlayoutReport { generation: 4, frames: 1, cancelled: true, .. })]));
    }

    #[test]
    fn the_gate_only_rises() {
        let gate = PlayoutGate::new();
        gate.cancel_through(5);
        gate.cancel_through(2);
        assert_eq!(gate.first_allowed(), 6);
    }
}
