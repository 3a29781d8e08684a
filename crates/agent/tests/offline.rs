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

/// Phrases a phone agent hears, without digits (Whisper writes "3" for "three").
const PHRASES: [&str; 6] = [
    "Hello, this is Joe from the dental office.",
    "I would like to reschedule my appointment to Tuesday afternoon.",
    "Yes, that works for me.",
    "No, I am busy next week.",
    "Can you call me back tomorrow morning?",
    "Please send the confirmation to my email address.",
];

/// Word error rate after lower-casing and dropping punctuation.
fn word_error_rate(reference: &str, heard: &str) -> (usize, usize) {
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(heard));
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut current = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(rw != hw)).min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    (previous[h.len()], r.len())
}

fn through_g711(audio: &[i16]) -> Vec<i16> {
    let codec = media::Codec::Pcmu;
    audio.iter().map(|s| codec.decode(codec.encode(*s))).collect()
}

#[tokio::test]
async fn whisper_hears_the_piper_voice_through_g711_with_few_errors() {
    let speech = speech().await;
    let program = agent::offline::whisper::worker_program();
    let stt = agent::offline::WhisperWorkers::new(&Assets::locate(None), &program, 1);
    let (mut errors, mut words) = (0, 0);
    for phrase in PHRASES {
        let audio = through_g711(&speech.voice.synthesize(phrase.into(), 1.0).await.unwrap());
        let heard = agent::provider::SpeechToText::transcribe(&*stt, audio).await.unwrap_or_else(|e| panic!("{e}"));
        let (e, n) = word_error_rate(phrase, &heard);
        println!("{phrase:?} -> {heard:?} ({e}/{n})");
        errors += e;
        words += n;
    }
    let wer = errors as f64 / words as f64;
    assert!(wer <= 0.10, "WER {:.1} % ({errors}/{words})", wer * 100.0);
}

#[tokio::test]
async fn whisper_hears_no_words_in_silence() {
    let program = agent::offline::whisper::worker_program();
    let stt = agent::offline::WhisperWorkers::new(&Assets::locate(None), &program, 1);
    let heard = agent::provider::SpeechToText::transcribe(&*stt, vec![0i16; 16_000]).await.unwrap();
    assert!(!agent::turn::has_words(&heard), "{heard:?}");
}
