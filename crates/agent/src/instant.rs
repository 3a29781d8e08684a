//! Instant stand-in providers: they take no time and no model, so a call that uses them
//! measures the platform alone (the media path, the agent task, the engine and the channels
//! between them). The service offers them for benchmarks (`serve --instant-speech`); the
//! agent's own tests use them in virtual time.
//!
//! What they do is simple enough to predict exactly: loud audio is speech, a transcript
//! counts the caller's loud frames, and a reply is a tone as long as its words.

use crate::provider::{BoxFuture, ProviderError, SpeechToText, TextToSpeech, Vad};

/// A sample louder than this makes its chunk speech.
const LOUD: u16 = 1000;
/// Loud 20 ms frames per "word" of [`CountingStt`]: 400 ms.
const FRAMES_PER_WORD: usize = 20;
/// Samples of tone per word of [`ToneTts`]: 100 ms at 8 kHz.
const SAMPLES_PER_WORD: usize = 800;

/// Loud audio is speech: a 20 ms chunk with any sample above 1000 has probability 0.95,
/// any other 0.02.
pub struct LoudnessVad;

impl Vad for LoudnessVad {
    fn chunk_samples(&self) -> usize {
        160
    }
    fn probability(&mut self, chunk: &[i16]) -> Result<f32, ProviderError> {
        Ok(if is_loud(chunk) { 0.95 } else { 0.02 })
    }
}

/// "Transcribes" one word per 400 ms of loud audio, `word1 word2 …`, at once.
pub struct CountingStt;

impl SpeechToText for CountingStt {
    fn name(&self) -> &str {
        "instant-stt"
    }
    fn transcribe(&self, audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
        let loud = audio.chunks(160).filter(|chunk| is_loud(chunk)).count();
        let words: Vec<String> = (1..=loud / FRAMES_PER_WORD).map(|i| format!("word{i}")).collect();
        Box::pin(async move { Ok(words.join(" ")) })
    }
}

/// Speaks 100 ms of a 400 Hz tone per word, at once.
pub struct ToneTts;

impl TextToSpeech for ToneTts {
    fn name(&self) -> &str {
        "instant-tts"
    }
    fn synthesize(&self, text: String, _speed: f32) -> BoxFuture<'_, Result<Vec<i16>, ProviderError>> {
        let n = text.split_whitespace().count() * SAMPLES_PER_WORD;
        // 400 Hz at 8 kHz: a period of 20 samples, the same in every frame.
        let tone = (0..n).map(|i| (3000.0 * (std::f32::consts::TAU * (i % 20) as f32 / 20.0).sin()) as i16).collect();
        Box::pin(async move { Ok(tone) })
    }
}

fn is_loud(chunk: &[i16]) -> bool {
    chunk.iter().any(|s| s.unsigned_abs() > LOUD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stand_ins_do_what_they_say() {
        let mut vad = LoudnessVad;
        assert!(vad.probability(&[0; 160]).unwrap() < 0.5);
        assert!(vad.probability(&[0, 1500, 0, 0]).unwrap() > 0.5);
        // 1 s of loud audio, 0.5 s quiet: two words.
        let mut audio = vec![2000i16; 8000];
        audio.extend([0; 4000]);
        assert_eq!(CountingStt.transcribe(audio).await.unwrap(), "word1 word2");
        let tone = ToneTts.synthesize("three short words".into(), 1.0).await.unwrap();
        assert_eq!(tone.len(), 2400);
        assert!(tone.chunks(160).all(is_loud), "every frame of the tone is speech to LoudnessVad");
    }
}
