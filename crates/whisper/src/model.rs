//! Whisper tiny.en through ct2rs's low-level binding.

use std::path::Path;

use agent::offline::resample::Resampler;
use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};

use crate::mel::{HOP, MelExtractor, N_FRAMES, N_MELS, SAMPLE_RATE};
use crate::tokens::ByteDecoder;

/// English-only models take no language or task tokens (the multilingual prompt makes
/// tiny.en answer "." to much of its input).
const PROMPT: [&str; 2] = ["<|startoftranscript|>", "<|notimestamps|>"];
/// Above this the model itself says the audio holds no speech (its "you" / "Thank you."
/// hallucinations on noise come with ~0.93).
const NO_SPEECH: f32 = 0.6;

pub(crate) struct Model {
    whisper: Whisper,
    mel: MelExtractor,
    tokens: ByteDecoder,
    upsample: Resampler,
    options: WhisperOptions,
}

/// One utterance's result.
pub(crate) struct Heard {
    pub(crate) text: String,
    pub(crate) no_speech_prob: f32,
}

impl Model {
    pub(crate) fn load(dir: &Path) -> Result<Self, String> {
        let config = Config {
            device: Device::CPU,
            // The file is float16, which a CPU would run as float32 (25 % slower).
            compute_type: ComputeType::INT8,
            num_threads_per_replica: 1,
            ..Default::default()
        };
        let whisper = Whisper::new(dir, config).map_err(|e| format!("load {}: {e}", dir.display()))?;
        if whisper.is_multilingual() || whisper.n_mels() != N_MELS {
            return Err(format!("{} is not an English-only 80-mel Whisper model", dir.display()));
        }
        let options = WhisperOptions { beam_size: 5, return_scores: true, return_no_speech_prob: true, ..Default::default() };
        Ok(Self { whisper, mel: MelExtractor::new(), tokens: ByteDecoder::new(), upsample: Resampler::line_to_whisper(), options })
    }

    /// Transcribes 8 kHz samples (at most 30 s are heard).
    pub(crate) fn transcribe(&self, line: &[i16]) -> Result<Heard, String> {
        let line: Vec<f32> = line.iter().map(|s| f32::from(*s) / 32768.0).collect();
        let audio = self.upsample.process(&line);
        let mut features = self.mel.compute(&audio);
        // The encoder's cost follows its window, not the speech: the full 30 s costs ~0.6 s
        // of CPU per utterance, 10 s ~0.2 s. The window is three times the speech (at least
        // 10 s): at twice, short phrases sometimes came back repeated; shorter windows loop.
        let speech_frames = audio.len() / HOP;
        let frames = (3 * speech_frames).div_ceil(100).saturating_mul(100).clamp(1000, N_FRAMES);
        if frames != N_FRAMES {
            features = features.chunks(N_FRAMES).flat_map(|row| row[..frames].to_vec()).collect();
        }
        let view = StorageView::new(&[1, N_MELS, frames], &mut features, Device::CPU).map_err(|e| e.to_string())?;
        let mut options = self.options.clone();
        // Bounds a repetition loop by the audio's length (~8 tokens a second is plenty).
        let seconds = audio.len() as f32 / SAMPLE_RATE as f32;
        options.max_length = options.max_length.min(16 + (8.0 * seconds).ceil() as usize);
        // No 4-token sequence twice: the shape of the loops seen on short windows, and rare
        // in one caller turn.
        options.no_repeat_ngram_size = 4;
        let results = self.whisper.generate(&view, &[PROMPT.to_vec()], &options).map_err(|e| e.to_string())?;
        let Some(result) = results.first() else { return Err("no result".into()) };
        let no_speech_prob = result.no_speech_prob;
        let text = match result.sequences.first() {
            Some(sequence) if no_speech_prob <= NO_SPEECH => self.tokens.decode(sequence),
            _ => String::new(),
        };
        Ok(Heard { text, no_speech_prob })
    }
}
