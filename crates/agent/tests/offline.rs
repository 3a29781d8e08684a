//! The embedded engines on the installed assets (`scripts/assets`, which `./scripts/test`
//! runs first): the Piper voice speaks, and Silero hears its speech and not the silence
//! around it.

use agent::offline::{Assets, OfflineSpeech};
use agent::provider::{TextToSpeech, Vad};

async fn speech() -> OfflineSpeech {
    let assets = Assets::locate(None);
    match OfflineSpeech::load(&assets).await {
        Ok(speech) => speech,
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test]
async fn the_piper_voice_speaks_a_sentence_at_a_natural_length_and_level() {
    let speech = speech().await;
    let audio = speech.voice.synthesize("I would like to reschedule my appointment to Tuesday at three.".into(), 1.0).await.unwrap();
    let seconds = audio.len() as f64 / 8000.0;
    assert!((2.0..6.0).contains(&seconds), "{seconds} s for 11 words");
    let peak = audio.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 8000, "peak {peak}");
    // Faster speech is shorter.
    let fast = speech.voice.synthesize("I would like to reschedule my appointment to Tuesday at three.".into(), 2.0).await.unwrap();
    assert!((fast.len() as f64) < audio.len() as f64 * 0.7, "{} vs {}", fast.len(), audio.len());
}

#[tokio::test]
async fn silero_hears_the_voice_and_not_the_silence_around_it() {
    let speech = speech().await;
    let voice = speech.voice.synthesize("Hello, this is Joe from the dental office.".into(), 1.0).await.unwrap();
    let mut audio = vec![0i16; 8000];
    audio.extend(&voice);
    audio.extend(vec![0i16; 8000]);
    let mut vad = speech.vad.detector();
    let n = vad.chunk_samples();
    let probabilities: Vec<f32> = audio.chunks_exact(n).map(|chunk| vad.probability(chunk).unwrap()).collect();
    let seconds_per_chunk = n as f64 / 8000.0;
    let at = |p: usize| p as f64 * seconds_per_chunk;
    let speech_chunks: Vec<usize> = (0..probabilities.len()).filter(|i| probabilities[*i] >= 0.5).collect();
    let first = at(*speech_chunks.first().expect("speech heard"));
    let last = at(*speech_chunks.last().unwrap());
    let voice_end = 1.0 + voice.len() as f64 / 8000.0;
    assert!((0.9..1.3).contains(&first), "speech starts at {first} s");
    assert!(last > voice_end - 0.6 && last < voice_end + 0.3, "speech ends at {last} s, voice at {voice_end} s");
    let silent = probabilities[..25].iter().chain(&probabilities[probabilities.len() - 20..]).all(|p| *p < 0.2);
    assert!(silent, "silence is silence: {probabilities:?}");
}
