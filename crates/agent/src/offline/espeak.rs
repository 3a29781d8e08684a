//! The espeak-ng voices: model-free and robotic (hard to understand through a phone line:
//! 44 % WER for Whisper against 2 % for Piper), kept for agents that ask for them.
//!
//! The text is tenant input: it goes to espeak-ng on stdin, never as an argument (an
//! argument such as `-f/proc/self/environ` would be an option); the process is killed at
//! the deadline.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::child::{ChildError, run_with_input};
use super::resample::Resampler;
use crate::provider::{BoxFuture, ProviderError, TextToSpeech};

const DEADLINE: Duration = Duration::from_secs(10);
/// espeak-ng's output rate.
const RATE: u32 = 22_050;

/// One espeak-ng voice.
#[derive(Clone)]
pub struct EspeakVoice {
    id: String,
    /// espeak's own voice name (fixed by us from the id, never tenant text).
    voice: &'static str,
    resampler: Arc<Resampler>,
}

impl EspeakVoice {
    /// The voice of an `espeak-…` id, if it is one of ours.
    pub fn for_id(id: &str) -> Option<Self> {
        let voice = match id {
            "espeak-en-us-male" => "en-us",
            "espeak-en-us-female" => "en-us+f3",
            "espeak-en-gb-male" => "en-gb",
            _ => return None,
        };
        Some(Self { id: id.to_owned(), voice, resampler: Arc::new(Resampler::new(RATE, 8_000, 3_800.0, 138, 8.0)) })
    }

    /// The command: fixed arguments only.
    pub fn command(&self, words_per_minute: u32) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("espeak-ng");
        command
            .args(["-v", self.voice, "-s", &words_per_minute.to_string(), "--stdout", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn speak(&self, text: String, speed: f32) -> Result<Vec<i16>, ProviderError> {
        let fail = |message: String| ProviderError::failed("espeak-ng", message);
        let speed = if speed.is_finite() { speed.clamp(0.5, 2.0) } else { 1.0 };
        let mut command = self.command((175.0 * speed) as u32);
        let output = run_with_input(&mut command, text.into_bytes(), DEADLINE).await.map_err(|error| match error {
            ChildError::Spawn(e) => fail(format!("cannot run espeak-ng: {e}")),
            ChildError::NoStdin => fail("no stdin".into()),
            ChildError::Deadline => fail(format!("no audio in {DEADLINE:?}")),
            ChildError::Wait(e) => fail(e.to_string()),
        })?;
        // A WAV header of 44 bytes, then 16-bit mono at 22,050 Hz.
        let pcm = output.stdout.get(44..).unwrap_or_default();
        let samples: Vec<f32> = pcm.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect();
        Ok(self.resampler.process(&samples).iter().map(|s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16).collect())
    }
}

impl TextToSpeech for EspeakVoice {
    fn name(&self) -> &str {
        &self.id
    }

    fn synthesize(&self, text: String, speed: f32) -> BoxFuture<'_, Result<Vec<i16>, ProviderError>> {
        Box::pin(self.speak(text, speed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_text_is_ever_an_argument_of_espeak() {
        let voice = EspeakVoice::for_id("espeak-en-us-male").unwrap();
        let command = voice.command(175);
        let args: Vec<_> = command.as_std().get_args().collect();
        assert_eq!(args, ["-v", "en-us", "-s", "175", "--stdout", "--stdin"]);
        assert!(EspeakVoice::for_id("espeak--f/etc/passwd").is_none());
    }

    /// A text that looks like an option is spoken as text: seconds of audio, not this
    /// process's whole environment read aloud.
    #[tokio::test]
    async fn a_text_that_looks_like_an_option_is_spoken_as_text() {
        let voice = EspeakVoice::for_id("espeak-en-us-male").unwrap();
        let audio = voice.synthesize("-f/proc/self/environ".into(), 1.0).await.unwrap();
        let seconds = audio.len() as f64 / 8000.0;
        assert!((0.5..8.0).contains(&seconds), "spoke {seconds} s for a 20-character text");
    }
}
