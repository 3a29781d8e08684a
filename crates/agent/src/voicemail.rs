//! Answering-machine detection on the first seconds of a connected call: a sans-I/O
//! detector fed the caller's VAD results and 20 ms frames, with the media clock as time.
//!
//! People answer with a short greeting ("Hello?", "Sam speaking") and then wait; machines
//! play a long, uninterrupted one and end it with a beep. So:
//! - a beep (a steady pure tone of 150 ms or more) is a machine;
//! - speech that runs on for [`MACHINE_SPEECH`] (pauses under [`JOINED_PAUSE`] joined) is a
//!   machine;
//! - a first utterance shorter than that, followed by [`HUMAN_PAUSE`] of silence, is a person;
//! - nothing decided by the detection timeout: a person (the call goes on).
//!
//! After a machine verdict, [`MachineDetector::ready_for_message`] says when to speak: after
//! the beep, or once the greeting has been quiet for [`GREETING_DONE`].

use std::time::Duration;

/// Speech this long without a real pause is a recorded greeting.
pub const MACHINE_SPEECH: Duration = Duration::from_millis(3_200);
/// Pauses shorter than this are inside one utterance.
pub const JOINED_PAUSE: Duration = Duration::from_millis(700);
/// Silence after a short first utterance that shows a person waiting for an answer.
pub const HUMAN_PAUSE: Duration = Duration::from_millis(900);
/// Silence after a machine's greeting (with no beep heard) after which the message starts.
pub const GREETING_DONE: Duration = Duration::from_millis(1_200);
/// A tone must last this long to be a beep.
const BEEP_MIN: Duration = Duration::from_millis(150);
const SPEECH_ON: f32 = 0.5;
const SPEECH_OFF: f32 = 0.35;
/// Frequencies searched for a beep (machines use 400 Hz to 2 kHz), 8 kHz audio.
const BEEP_LOW_HZ: u32 = 400;
const BEEP_HIGH_HZ: u32 = 2_000;
const BEEP_STEP_HZ: u32 = 25;
/// A frame is tonal when one frequency holds this share of its energy.
const TONE_SHARE: f64 = 0.6;
/// And is loud enough to be a beep, not line noise (RMS in 16-bit units).
const TONE_MIN_RMS: f64 = 300.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Human,
    /// `beep_at`: when a beep was recognised (150 ms into it), if one was heard.
    Machine {
        beep_at: Option<Duration>,
    },
}

/// The detector of one call.
#[derive(Debug)]
pub struct MachineDetector {
    timeout: Duration,
    verdict: Option<Verdict>,
    /// When the decision was made (media clock).
    decided_at: Option<Duration>,
    speaking: bool,
    /// The current utterance (pauses under `JOINED_PAUSE` joined): start and last speech.
    utterance: Option<(Duration, Duration)>,
    /// The tone now being heard: its frequency and start.
    tone: Option<(u32, Duration)>,
    beep_end: Option<Duration>,
    last_speech: Option<Duration>,
    now: Duration,
}

impl MachineDetector {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            verdict: None,
            decided_at: None,
            speaking: false,
            utterance: None,
            tone: None,
            beep_end: None,
            last_speech: None,
            now: Duration::ZERO,
        }
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    pub fn decided_at(&self) -> Option<Duration> {
        self.decided_at
    }

    /// A VAD result for the chunk `from..at`.
    pub fn vad(&mut self, from: Duration, at: Duration, probability: f32) {
        self.now = self.now.max(at);
        let speech = if self.speaking { probability >= SPEECH_OFF } else { probability >= SPEECH_ON };
        self.speaking = speech;
        if speech {
            self.last_speech = Some(at);
            self.utterance = match self.utterance {
                Some((start, last)) if from.saturating_sub(last) < JOINED_PAUSE => Some((start, at)),
                Some(_) | None if self.verdict.is_none() => Some((from, at)),
                other => other.map(|(start, _)| (start, at)),
            };
        }
        self.decide();
    }

    /// A 20 ms caller frame starting at `at` (for the beep).
    pub fn frame(&mut self, at: Duration, samples: &[i16]) {
        let end = at + Duration::from_millis(20);
        self.now = self.now.max(end);
        match (tone_of(samples), self.tone) {
            (Some(hz), Some((current, start))) if hz.abs_diff(current) <= 2 * BEEP_STEP_HZ => {
                if end.saturating_sub(start) >= BEEP_MIN {
                    self.beep_end = Some(end);
                }
                self.tone = Some((current, start));
            }
            (Some(hz), _) => self.tone = Some((hz, at)),
            (None, _) => self.tone = None,
        }
        self.decide();
    }

    fn decide(&mut self) {
        if let Some(Verdict::Machine { beep_at }) = &mut self.verdict {
            // A beep after the verdict still tells when to speak.
            if beep_at.is_none() {
                *beep_at = self.beep_end;
            }
            // (`beep_end` moves on while the tone lasts; the verdict keeps when it was heard.)
            return;
        }
        if self.verdict.is_some() {
            return;
        }
        let verdict = if self.beep_end.is_some() {
            Some(Verdict::Machine { beep_at: self.beep_end })
        } else if let Some((start, last)) = self.utterance {
            if last.saturating_sub(start) >= MACHINE_SPEECH {
                Some(Verdict::Machine { beep_at: None })
            } else if self.now.saturating_sub(last) >= HUMAN_PAUSE && !self.speaking {
                Some(Verdict::Human)
            } else {
                None
            }
        } else {
            None
        };
        let verdict = verdict.or((self.now >= self.timeout).then_some(Verdict::Human));
        if verdict.is_some() {
            self.verdict = verdict;
            self.decided_at = Some(self.now);
        }
    }

    /// After a machine verdict: whether the greeting is over, so a message can start (the
    /// beep has ended, or the greeting has been quiet for [`GREETING_DONE`]).
    pub fn ready_for_message(&self) -> bool {
        match self.verdict {
            Some(Verdict::Machine { beep_at: Some(_) }) => self.tone.is_none(),
            Some(Verdict::Machine { beep_at: None }) => {
                !self.speaking && self.last_speech.is_none_or(|last| self.now.saturating_sub(last) >= GREETING_DONE)
            }
            _ => false,
        }
    }
}

/// The frequency of a frame that is one steady tone, if it is one (Goertzel over the beep
/// band; the tone must carry most of the frame's energy).
fn tone_of(samples: &[i16]) -> Option<u32> {
    let n = samples.len() as f64;
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    if n == 0.0 || (energy / n).sqrt() < TONE_MIN_RMS {
        return None;
    }
    let (mut best_hz, mut best_power) = (0, 0.0);
    for hz in (BEEP_LOW_HZ..=BEEP_HIGH_HZ).step_by(BEEP_STEP_HZ as usize) {
        let coefficient = 2.0 * (2.0 * std::f64::consts::PI * f64::from(hz) / 8_000.0).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &sample in samples {
            let s0 = f64::from(sample) + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
        if power > best_power {
            (best_hz, best_power) = (hz, power);
        }
    }
    // A pure tone's Goertzel power is energy * n / 2.
    (best_power / (energy * n / 2.0) >= TONE_SHARE).then_some(best_hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `speech` (start, end) spans as 32 ms VAD chunks and silent frames up to `until`,
    /// plus a tone from `tone` (start, end, Hz); returns the verdict and when it came.
    fn run(speech: &[(u64, u64)], tone: Option<(u64, u64, u32)>, until: u64) -> (Option<Verdict>, Option<Duration>, bool) {
        let mut detector = MachineDetector::new(ms(30_000));
        let mut t = 0;
        while t < until {
            let frame: Vec<i16> = match tone {
                Some((a, b, hz)) if (a..b).contains(&t) => (0..160)
                    .map(|i| {
                        (8_000.0 * (2.0 * std::f64::consts::PI * f64::from(hz) * (t as f64 / 1000.0 + i as f64 / 8000.0)).sin()) as i16
                    })
                    .collect(),
                _ => (0..160).map(|i| ((i * 7919) % 61) as i16 - 30).collect(),
            };
            detector.frame(ms(t), &frame);
            if t % 40 == 0 {
                let talking = speech.iter().any(|(a, b)| (*a..*b).contains(&t));
                detector.vad(ms(t), ms(t + 40), if talking { 0.9 } else { 0.05 });
            }
            t += 20;
        }
        (detector.verdict(), detector.decided_at(), detector.ready_for_message())
    }

    #[test]
    fn a_short_hello_then_silence_is_a_person() {
        let (verdict, at, _) = run(&[(300, 900)], None, 3_000);
        assert_eq!(verdict, Some(Verdict::Human));
        assert!(at.unwrap() < ms(2_000), "{at:?}");
    }

    #[test]
    fn a_long_greeting_is_a_machine_and_its_beep_says_when_to_speak() {
        // Six seconds of greeting with short breaths, then a 1 kHz beep.
        let (verdict, at, ready) = run(&[(200, 2_000), (2_400, 4_000), (4_300, 6_200)], Some((6_500, 7_000, 1_000)), 7_400);
        assert_eq!(verdict, Some(Verdict::Machine { beep_at: Some(ms(6_660)) }));
        assert!(at.unwrap() < ms(3_600), "decided at {at:?}");
        assert!(ready);
        // The same greeting without a beep: ready once it has been quiet a while.
        let (_, _, ready) = run(&[(200, 2_000), (2_400, 4_000), (4_300, 6_200)], None, 6_900);
        assert!(!ready);
        let (_, _, ready) = run(&[(200, 2_000), (2_400, 4_000), (4_300, 6_200)], None, 7_600);
        assert!(ready);
    }

    #[test]
    fn a_beep_alone_is_a_machine_and_speech_is_not_a_tone() {
        let (verdict, _, _) = run(&[], Some((1_000, 1_300, 800)), 1_600);
        assert_eq!(verdict, Some(Verdict::Machine { beep_at: Some(ms(1_160)) }));
        let (verdict, _, _) = run(&[], Some((1_000, 1_100, 800)), 1_600);
        assert_eq!(verdict, None, "100 ms is a click, not a beep");
        let (verdict, at, _) = run(&[], None, 30_100);
        assert_eq!((verdict, at.map(|t| t >= ms(30_000))), (Some(Verdict::Human), Some(true)), "the timeout");
    }
}
