//! A jitter buffer on RTP timestamps: packets of any duration (20 ms, 30 ms, …) are placed by
//! timestamp and played out as 20 ms frames, one per tick. A missing stretch is concealed by
//! the last frame, faded, then silence; a long jump (silence suppression) is skipped.

use std::collections::BTreeMap;

use crate::{Frame, SAMPLES_PER_FRAME, SILENCE};

const FRAME: i64 = SAMPLES_PER_FRAME as i64;
/// Samples kept at most (one second); a burst beyond this drops the oldest.
const MAX_SAMPLES: usize = 8_000;
/// A gap longer than this before the next packet is skipped, not played as silence.
const MAX_GAP: i64 = 50 * FRAME;

#[derive(Debug)]
pub struct JitterBuffer {
    /// Samples buffered before playout starts.
    depth: i64,
    /// Packets by timestamp relative to the first packet's.
    packets: BTreeMap<i64, Vec<i16>>,
    n_buffered: usize,
    base: Option<u32>,
    /// Relative timestamp of the next sample to play; `None` until playout starts.
    cursor: Option<i64>,
    last: Frame,
    /// Whether the last `pop` took any sample from a packet.
    filled_last: bool,
    concealed_in_a_row: u32,
    pub n_received: u64,
    pub n_late: u64,
    /// 20 ms frames concealed because their packets never came.
    pub n_lost: u64,
}

impl JitterBuffer {
    /// `depth` is in 20 ms frames.
    pub fn new(depth: usize) -> Self {
        Self {
            depth: i64::try_from(depth.max(1)).unwrap_or(1) * FRAME,
            packets: BTreeMap::new(),
            n_buffered: 0,
            base: None,
            cursor: None,
            last: SILENCE,
            filled_last: false,
            concealed_in_a_row: 0,
            n_received: 0,
            n_late: 0,
            n_lost: 0,
        }
    }

    /// Forgets the stream (a new SSRC's timestamps have nothing to do with the old one's):
    /// what is buffered is dropped and the next packet is a new base; counters are kept.
    pub fn restart(&mut self) {
        self.packets.clear();
        self.n_buffered = 0;
        self.base = None;
        self.cursor = None;
        self.last = SILENCE;
        self.concealed_in_a_row = 0;
    }

    pub fn push(&mut self, timestamp: u32, samples: &[i16]) {
        if samples.is_empty() {
            return;
        }
        let base = *self.base.get_or_insert(timestamp);
        // Signed distance, so wraparound and early-but-reordered packets both work.
        let position = i64::from(timestamp.wrapping_sub(base) as i32);
        let end = position + samples.len() as i64;
        if self.cursor.is_some_and(|cursor| end <= cursor) {
            self.n_late = self.n_late.saturating_add(1);
            return;
        }
        self.n_received = self.n_received.saturating_add(1);
        if let Some(old) = self.packets.insert(position, samples.to_vec()) {
            self.n_buffered -= old.len();
        }
        self.n_buffered += samples.len();
        while self.n_buffered > MAX_SAMPLES {
            if let Some((_, dropped)) = self.packets.pop_first() {
                self.n_buffered -= dropped.len();
            }
        }
    }

    fn buffered_span(&self) -> i64 {
        match (self.packets.first_key_value(), self.packets.last_key_value()) {
            (Some((first, _)), Some((last, samples))) => last + samples.len() as i64 - first,
            _ => 0,
        }
    }

    /// The frame for this 20 ms tick, and whether any packet carried it (`false`: silence
    /// or loss concealment).
    pub fn pop_stamped(&mut self) -> (Frame, bool) {
        let frame = self.pop();
        (frame, self.filled_last)
    }

    /// The frame for this 20 ms tick.
    pub fn pop(&mut self) -> Frame {
        self.filled_last = false;
        let start = match self.cursor {
            Some(cursor) => cursor,
            None if self.buffered_span() >= self.depth => *self.packets.keys().next().unwrap_or(&0),
            None => return SILENCE,
        };
        let Some(&next_key) = self.packets.keys().next() else {
            // Underrun: the stream paused or ended; wait without advancing.
            self.cursor = Some(start);
            return SILENCE;
        };
        let start = if next_key - start > MAX_GAP { next_key } else { start };
        let end = start + FRAME;
        let mut frame = SILENCE;
        let mut n_filled = 0;
        for (&position, samples) in self.packets.range(..end) {
            let from = position.max(start);
            let to = (position + samples.len() as i64).min(end);
            for t in from..to {
                // In range: `t - position` < len and `t - start` < FRAME.
                frame[(t - start) as usize] = samples[(t - position) as usize];
                n_filled += 1;
            }
        }
        let consumed: Vec<i64> = self.packets.iter().filter(|(p, s)| **p + s.len() as i64 <= end).map(|(p, _)| *p).collect();
        for position in consumed {
            if let Some(samples) = self.packets.remove(&position) {
                self.n_buffered -= samples.len();
            }
        }
        self.cursor = Some(end);
        if n_filled > 0 {
            self.filled_last = true;
            self.last = frame;
            self.concealed_in_a_row = 0;
            return frame;
        }
        self.n_lost = self.n_lost.saturating_add(1);
        self.concealed_in_a_row = self.concealed_in_a_row.saturating_add(1);
        if self.concealed_in_a_row > 2 {
            return SILENCE;
        }
        for sample in &mut self.last {
            *sample /= 2;
        }
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(value: i16, n: usize) -> Vec<i16> {
        vec![value; n]
    }

    #[test]
    fn reordered_packets_play_in_timestamp_order() {
        let mut buffer = JitterBuffer::new(2);
        buffer.push(1160, &samples(2, 160));
        assert_eq!(buffer.pop(), SILENCE, "waits for depth");
        buffer.push(1000, &samples(1, 160));
        buffer.push(1320, &samples(3, 160));
        assert_eq!(buffer.pop()[0], 1);
        assert_eq!(buffer.pop()[0], 2);
        assert_eq!(buffer.pop()[0], 3);
    }

    #[test]
    fn thirty_millisecond_packets_become_twenty_millisecond_frames() {
        let mut buffer = JitterBuffer::new(1);
        for i in 0..4u32 {
            buffer.push(i * 240, &samples(i as i16 + 1, 240));
        }
        let frames: Vec<Frame> = (0..6).map(|_| buffer.pop()).collect();
        assert_eq!((frames[0][0], frames[0][159]), (1, 1));
        assert_eq!((frames[1][0], frames[1][79], frames[1][80], frames[1][159]), (1, 1, 2, 2));
        assert_eq!((frames[2][0], frames[2][159]), (2, 2));
        assert_eq!((frames[5][0], frames[5][159]), (4, 4));
        assert_eq!(buffer.n_lost, 0);
    }

    #[test]
    fn a_lost_packet_is_concealed_and_late_ones_dropped() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(0, &samples(100, 160));
        assert_eq!(buffer.pop()[0], 100);
        buffer.push(320, &samples(300, 160));
        assert_eq!(buffer.pop()[0], 50, "the frame at 160 is lost: last frame, faded");
        assert_eq!(buffer.pop()[0], 300);
        buffer.push(160, &samples(200, 160));
        assert_eq!((buffer.n_late, buffer.n_lost), (1, 1));
    }

    #[test]
    fn a_restart_takes_the_next_packet_as_a_new_base() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(1000, &samples(1, 160));
        assert_eq!(buffer.pop()[0], 1);
        buffer.restart();
        // Half the timestamp space away: before the restart this would be "late".
        buffer.push(1000 + 0x8000_0000, &samples(2, 160));
        assert_eq!(buffer.pop()[0], 2);
        assert_eq!((buffer.n_received, buffer.n_late), (2, 0));
    }

    #[test]
    fn timestamps_wrap() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(u32::MAX - 159, &samples(1, 160));
        buffer.push(0, &samples(2, 160));
        assert_eq!(buffer.pop()[0], 1);
        assert_eq!(buffer.pop()[0], 2);
    }

    #[test]
    fn an_underrun_waits_and_a_long_jump_is_skipped() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(0, &samples(5, 160));
        buffer.pop();
        assert_eq!(buffer.pop(), SILENCE);
        buffer.push(160, &samples(6, 160));
        assert_eq!(buffer.pop()[0], 6, "resumes where it paused");
        buffer.push(160 + 8000 * 10, &samples(7, 160));
        assert_eq!(buffer.pop()[0], 7, "ten seconds of suppressed silence are skipped");
        assert_eq!(buffer.n_lost, 0);
    }
}
