//! A jitter buffer: reorders packets by sequence number and plays out one frame per tick,
//! concealing a lost frame by repeating the last one (faded) and filling gaps with silence.

use std::collections::BTreeMap;

use crate::{Frame, SILENCE};

/// Frames kept at most; a burst beyond this drops the oldest.
const MAX_FRAMES: usize = 50;

#[derive(Debug)]
pub struct JitterBuffer {
    /// Frames buffered before playout starts (the added delay, in 20 ms frames).
    depth: usize,
    frames: BTreeMap<u64, Frame>,
    /// Extended sequence number of the next frame to play; `None` until playout starts.
    next: Option<u64>,
    /// Extended sequence number of the highest packet seen (for wraparound).
    highest: Option<u64>,
    last: Frame,
    concealed_in_a_row: u32,
    pub n_received: u64,
    pub n_late: u64,
    pub n_lost: u64,
}

impl JitterBuffer {
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            frames: BTreeMap::new(),
            next: None,
            highest: None,
            last: SILENCE,
            concealed_in_a_row: 0,
            n_received: 0,
            n_late: 0,
            n_lost: 0,
        }
    }

    /// Extends a 16-bit sequence number to the one nearest the highest seen.
    fn extend(&self, sequence: u16) -> u64 {
        let Some(highest) = self.highest else { return u64::from(sequence) + (1 << 16) };
        let candidate = (highest & !0xFFFF) | u64::from(sequence);
        [candidate.wrapping_sub(1 << 16), candidate, candidate + (1 << 16)]
            .into_iter()
            .filter(|c| *c >= 1 << 16)
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(candidate)
    }

    pub fn push(&mut self, sequence: u16, frame: Frame) {
        let extended = self.extend(sequence);
        if self.next.is_some_and(|next| extended < next) {
            self.n_late += 1;
            return;
        }
        self.n_received += 1;
        self.highest = Some(self.highest.map_or(extended, |h| h.max(extended)));
        self.frames.insert(extended, frame);
        while self.frames.len() > MAX_FRAMES {
            self.frames.pop_first();
        }
    }

    /// The frame for this 20 ms tick.
    pub fn pop(&mut self) -> Frame {
        let next = match self.next {
            Some(next) => next,
            None if self.frames.len() >= self.depth => *self.frames.keys().next().unwrap_or(&0),
            None => return SILENCE,
        };
        if let Some(frame) = self.frames.remove(&next) {
            self.next = Some(next + 1);
            self.last = frame;
            self.concealed_in_a_row = 0;
            return frame;
        }
        if self.frames.is_empty() {
            // Underrun: the stream paused (or ended); wait without advancing.
            return SILENCE;
        }
        // A gap with later packets waiting: that packet is lost.
        self.n_lost += 1;
        self.next = Some(next + 1);
        self.concealed_in_a_row += 1;
        if self.concealed_in_a_row > 2 {
            return SILENCE;
        }
        let mut faded = self.last;
        for sample in &mut faded {
            *sample /= 2;
        }
        self.last = faded;
        faded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16) -> Frame {
        [value; crate::SAMPLES_PER_FRAME]
    }

    #[test]
    fn reordered_packets_play_in_sequence_order() {
        let mut buffer = JitterBuffer::new(2);
        buffer.push(11, frame(2));
        assert_eq!(buffer.pop(), SILENCE, "waits for depth");
        buffer.push(10, frame(1));
        buffer.push(12, frame(3));
        assert_eq!(buffer.pop()[0], 1);
        assert_eq!(buffer.pop()[0], 2);
        assert_eq!(buffer.pop()[0], 3);
    }

    #[test]
    fn a_lost_packet_is_concealed_and_late_ones_dropped() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(1, frame(100));
        assert_eq!(buffer.pop()[0], 100);
        buffer.push(3, frame(300));
        assert_eq!(buffer.pop()[0], 50, "packet 2 lost: last frame, faded");
        assert_eq!(buffer.pop()[0], 300);
        buffer.push(2, frame(200));
        assert_eq!(buffer.n_late, 1);
        assert_eq!(buffer.n_lost, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(65_535, frame(1));
        buffer.push(0, frame(2));
        assert_eq!(buffer.pop()[0], 1);
        assert_eq!(buffer.pop()[0], 2);
        buffer.push(1, frame(3));
        assert_eq!(buffer.pop()[0], 3);
    }

    #[test]
    fn an_underrun_waits_instead_of_skipping() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(5, frame(5));
        buffer.pop();
        assert_eq!(buffer.pop(), SILENCE);
        buffer.push(6, frame(6));
        assert_eq!(buffer.pop()[0], 6);
        assert_eq!(buffer.n_lost, 0);
    }
}
