//! How a reply becomes audio, and what of it was heard: sentence-by-sentence synthesis into
//! the call's frames, and the words that a number of played frames carried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AgentEnd, FRAME_SAMPLES, Mouth, Response, Speech};
use crate::conversation::millis;
use crate::provider::{TextToSpeech, with_deadline};
use crate::text::speech_parts;
use crate::turn::Generation;

pub(super) struct Voice {
    pub(super) tts: Arc<dyn TextToSpeech>,
    pub(super) speed: f32,
    pub(super) volume: f32,
    pub(super) deadline: Duration,
}

/// Synthesises `text` piece by piece (its sentences, a long first one split at a clause:
/// `speech_parts`) and queues each piece's frames as soon as it is made (piece 1 plays while
/// piece 2 is synthesised).
pub(super) fn speak(
    generation: Generation,
    text: &str,
    voice: Voice,
    mouth: Arc<dyn Mouth>,
    progress: mpsc::Sender<Speech>,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let parts: Vec<String> = speech_parts(text);
    async move {
        let n = parts.len();
        for (i, sentence) in parts.into_iter().enumerate() {
            let started = Instant::now();
            let name = voice.tts.name().to_owned();
            let audio = tokio::select! {
                () = cancel.cancelled() => return,
                audio = with_deadline(&name, voice.deadline, voice.tts.synthesize(sentence.clone(), voice.speed)) => audio,
            };
            let audio = match audio {
                Ok(audio) => audio,
                Err(error) => {
                    let _ = progress.send(Speech::Failed { generation, error: AgentEnd::TextToSpeech(error) }).await;
                    return;
                }
            };
            let frames = frames_of(&audio, voice.volume);
            let n_frames = u32::try_from(frames.len()).unwrap_or(u32::MAX);
            let tts_ms = millis(started.elapsed());
            let _ = progress.send(Speech::Sentence { generation, text: sentence, frames: n_frames, tts_ms, first: i == 0 }).await;
            let last_sentence = i + 1 == n;
            let n_frames = frames.len();
            for (j, frame) in frames.into_iter().enumerate() {
                if cancel.is_cancelled() || !mouth.speak(generation, frame, last_sentence && j + 1 == n_frames).await {
                    return;
                }
            }
        }
        let _ = progress.send(Speech::Done { generation }).await;
    }
}

/// 20 ms frames of `audio` with `volume` applied; at least one frame, so that a reply
/// always has a last frame to end its playout.
fn frames_of(audio: &[i16], volume: f32) -> Vec<[i16; FRAME_SAMPLES]> {
    let gain = if volume.is_finite() { volume.clamp(0.0, 2.0) } else { 1.0 };
    let mut frames: Vec<[i16; FRAME_SAMPLES]> = audio
        .chunks(FRAME_SAMPLES)
        .map(|chunk| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (out, sample) in frame.iter_mut().zip(chunk) {
                *out = (f32::from(*sample) * gain).clamp(-32768.0, 32767.0) as i16;
            }
            frame
        })
        .collect();
    if frames.is_empty() {
        frames.push([0; FRAME_SAMPLES]);
    }
    frames
}

/// The words of `sentences` that `frames` frames of audio carried: whole sentences, then
/// the share of the cut sentence's words its played frames cover.
pub(super) fn played_text(sentences: &[(String, u32)], frames: u32) -> String {
    let mut left = frames;
    let mut words: Vec<&str> = Vec::new();
    for (text, n) in sentences {
        if left >= *n {
            words.extend(text.split_whitespace());
            left -= n;
            continue;
        }
        let all: Vec<&str> = text.split_whitespace().collect();
        let share = (all.len() as u64 * u64::from(left) / u64::from((*n).max(1))) as usize;
        words.extend(&all[..share.min(all.len())]);
        break;
    }
    words.join(" ")
}

/// The text of a cut response from the sentence that was cut on.
pub(super) fn unplayed_text(response: &Response) -> String {
    let full: Vec<&str> = response.sentences.iter().map(|(text, _)| text.as_str()).collect();
    let played = played_text(&response.sentences, response.sentences.iter().map(|(_, n)| n).sum::<u32>().saturating_sub(1));
    let n_played_words = played.split_whitespace().count();
    // Restart the cut sentence from its beginning: a resumed half-sentence sounds broken.
    let mut seen = 0;
    for (i, sentence) in full.iter().enumerate() {
        let words = sentence.split_whitespace().count();
        if seen + words > n_played_words {
            return full[i..].join(" ");
        }
        seen += words;
    }
    String::new()
}
