//! How a reply becomes audio, and what of it was heard: sentence-by-sentence synthesis into
//! the call's frames, and the words that a number of played frames carried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{AgentEnd, FRAME_SAMPLES, Mouth, Response, Speech};
use crate::conversation::millis;
use crate::provider::{ProviderError, Reply, ReplyPart, TextToSpeech, with_deadline};
use crate::text::{sentences, speech_parts, take_piece};
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
        let mut speaker = Speaker::new(generation, voice, mouth, progress, cancel);
        for piece in parts {
            if !speaker.say(piece).await {
                return;
            }
        }
        speaker.finish().await;
    }
}

/// What the engine task hands the speaking task at its end.
pub(super) type EngineDone = oneshot::Receiver<Result<Reply, ProviderError>>;

/// Speaks a reply as the engine makes it: text parts are taken piece by piece
/// (`take_piece`) and each piece is synthesised and queued as soon as it is complete, while
/// the engine goes on; tool events are passed to the agent loop as they come. The engine
/// must produce its first part (or its reply) within `first_deadline`.
#[allow(clippy::too_many_arguments)] // One reply's whole context.
pub(super) async fn speak_stream(
    generation: Generation,
    mut parts: mpsc::UnboundedReceiver<ReplyPart>,
    mut done: EngineDone,
    first_deadline: Duration,
    started: Instant,
    voice: Voice,
    mouth: Arc<dyn Mouth>,
    progress: mpsc::Sender<Speech>,
    cancel: CancellationToken,
) {
    let mut speaker = Speaker::new(generation, voice, mouth, progress, cancel);
    let mut text = String::new();
    let (mut heard_from_engine, mut spoke) = (false, false);
    let deadline = tokio::time::sleep(first_deadline);
    tokio::pin!(deadline);
    let failed = |error| Speech::Failed { generation, error: AgentEnd::Engine(error) };
    let reply = loop {
        let part = tokio::select! {
            biased;
            () = speaker.cancel.cancelled() => return,
            Some(part) = parts.recv() => part,
            result = &mut done => match result {
                Ok(Ok(reply)) => break reply,
                Ok(Err(error)) => {
                    let _ = speaker.progress.send(failed(error)).await;
                    return;
                }
                // The engine task was cancelled (barge-in) or panicked.
                Err(_) => {
                    if !speaker.cancel.is_cancelled() {
                        let _ = speaker.progress.send(failed(ProviderError::failed("engine", "the engine task ended"))).await;
                    }
                    return;
                }
            },
            () = &mut deadline, if !heard_from_engine => {
                let _ = speaker.progress.send(failed(ProviderError::Timeout { provider: "engine".into(), after: first_deadline })).await;
                return;
            }
        };
        heard_from_engine = true;
        match part {
            ReplyPart::Text(more) => {
                if !spoke && !more.trim().is_empty() {
                    spoke = true;
                    let _ = speaker.progress.send(Speech::FirstText { generation, engine_ms: millis(started.elapsed()) }).await;
                }
                text.push_str(&more);
                while let Some(piece) = take_piece(&mut text, speaker.n_pieces == 0) {
                    if !speaker.say(piece).await {
                        return;
                    }
                }
            }
            ReplyPart::Flush => {
                let pieces = if speaker.n_pieces == 0 { speech_parts(&text) } else { sentences(&text) };
                text.clear();
                for piece in pieces {
                    if !speaker.say(piece).await {
                        return;
                    }
                }
            }
            ReplyPart::Tool(event) => {
                let _ = speaker.progress.send(Speech::Tool { generation, event }).await;
            }
        }
    };
    // Parts sent before the engine returned are all in the channel.
    while let Ok(part) = parts.try_recv() {
        match part {
            ReplyPart::Text(more) => text.push_str(&more),
            ReplyPart::Flush => {}
            ReplyPart::Tool(event) => {
                let _ = speaker.progress.send(Speech::Tool { generation, event }).await;
            }
        }
    }
    if !reply.text.trim().is_empty() {
        text.push(' ');
        text.push_str(&reply.text);
    }
    let rest = if speaker.n_pieces == 0 { speech_parts(&text) } else { sentences(&text) };
    if !spoke {
        let _ = speaker.progress.send(Speech::FirstText { generation, engine_ms: millis(started.elapsed()) }).await;
    }
    let silent = !spoke && rest.is_empty();
    let _ = speaker.progress.send(Speech::Reply { generation, reply, silent }).await;
    if silent {
        return;
    }
    for piece in rest {
        if !speaker.say(piece).await {
            return;
        }
    }
    speaker.finish().await;
}

/// Synthesises the pieces of one reply and hands their frames to a feeder task that queues
/// them for the media, so that the next piece is synthesised while the last one is still
/// being queued (the media queue holds a second; a piece is longer). The feeder holds the
/// last frame back until the next one or the end, so that the reply's last frame carries
/// `last` even when the reply's length is not known in advance.
struct Speaker {
    generation: Generation,
    voice: Voice,
    progress: mpsc::Sender<Speech>,
    cancel: CancellationToken,
    n_pieces: usize,
    frames: Option<mpsc::UnboundedSender<[i16; FRAME_SAMPLES]>>,
    /// `true` once every frame is queued; `false`: cancelled, or the media is gone.
    feeder: Option<tokio::task::JoinHandle<bool>>,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        // Stopped before its end: nothing more of this reply goes out.
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
    }
}

impl Speaker {
    fn new(generation: Generation, voice: Voice, mouth: Arc<dyn Mouth>, progress: mpsc::Sender<Speech>, cancel: CancellationToken) -> Self {
        let (frames, mut queued) = mpsc::unbounded_channel::<[i16; FRAME_SAMPLES]>();
        let stop = cancel.clone();
        let feeder = tokio::spawn(async move {
            let mut held: Option<[i16; FRAME_SAMPLES]> = None;
            while let Some(frame) = queued.recv().await {
                if let Some(previous) = held.replace(frame)
                    && (stop.is_cancelled() || !mouth.speak(generation, previous, false).await)
                {
                    return false;
                }
            }
            let last = held.unwrap_or([0; FRAME_SAMPLES]);
            !stop.is_cancelled() && mouth.speak(generation, last, true).await
        });
        Self { generation, voice, progress, cancel, n_pieces: 0, frames: Some(frames), feeder: Some(feeder) }
    }

    /// `false`: stop (cancelled, the media is gone, or the voice failed).
    async fn say(&mut self, piece: String) -> bool {
        let generation = self.generation;
        let started = Instant::now();
        let name = self.voice.tts.name().to_owned();
        let audio = tokio::select! {
            () = self.cancel.cancelled() => return false,
            audio = with_deadline(&name, self.voice.deadline, self.voice.tts.synthesize(piece.clone(), self.voice.speed)) => audio,
        };
        let audio = match audio {
            Ok(audio) => audio,
            Err(error) => {
                let _ = self.progress.send(Speech::Failed { generation, error: AgentEnd::TextToSpeech(error) }).await;
                return false;
            }
        };
        let frames = frames_of(&audio, self.voice.volume);
        let n_frames = u32::try_from(frames.len()).unwrap_or(u32::MAX);
        let tts_ms = millis(started.elapsed());
        let first = self.n_pieces == 0;
        self.n_pieces += 1;
        let _ = self.progress.send(Speech::Sentence { generation, text: piece, frames: n_frames, tts_ms, first }).await;
        let Some(queue) = &self.frames else { return false };
        frames.into_iter().all(|frame| queue.send(frame).is_ok())
    }

    /// Waits for every frame to be queued (the last one marked), then reports the reply done.
    async fn finish(mut self) {
        self.frames = None;
        let Some(feeder) = self.feeder.take() else { return };
        if feeder.await.unwrap_or(false) {
            let _ = self.progress.send(Speech::Done { generation: self.generation }).await;
        }
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
