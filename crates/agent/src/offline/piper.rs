//! The Piper voice `en_US-joe-medium` (VITS, 22,050 Hz) through ONNX Runtime: espeak-ng
//! phonemes → the voice's `phoneme_id_map` (`^ _ (p _)* $`) → one model run per sentence →
//! 8 kHz for the line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use super::phonemize::phonemize;
use super::resample::Resampler;
use crate::provider::{BoxFuture, ProviderError, TextToSpeech};

/// Piper's raw output peaks near 0.6; this brings speech near −3 dBFS on the line.
const GAIN: f32 = 1.4;

#[derive(Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    inference: InferenceConfig,
    espeak: EspeakConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

#[derive(Deserialize)]
struct EspeakConfig {
    voice: String,
}

/// A loaded Piper voice, shared by every call (runs are serialised on its one session).
#[derive(Clone)]
pub struct PiperVoice {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    session: Mutex<Session>,
    ids: HashMap<char, Vec<i64>>,
    espeak_voice: String,
    scales: [f32; 3],
    has_speaker_input: bool,
    resampler: Resampler,
}

impl PiperVoice {
    pub(crate) fn new(id: &str, session: Session, config: &Path) -> Result<Self, ProviderError> {
        let fail = |message: String| ProviderError::failed("piper", message);
        let text = std::fs::read_to_string(config).map_err(|e| fail(format!("{}: {e}", config.display())))?;
        let config: VoiceConfig = serde_json::from_str(&text).map_err(|e| fail(format!("voice config: {e}")))?;
        let mut ids = HashMap::new();
        for (key, value) in config.phoneme_id_map {
            let mut chars = key.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                ids.insert(c, value);
            }
        }
        for required in ['^', '_', '$'] {
            if !ids.contains_key(&required) {
                return Err(fail(format!("phoneme_id_map lacks {required:?}")));
            }
        }
        let has_speaker_input = session.inputs().iter().any(|input| input.name() == "sid");
        let resampler = Resampler::new(config.audio.sample_rate, 8_000, 3_800.0, 138, 8.0);
        let scales = [config.inference.noise_scale, config.inference.length_scale, config.inference.noise_w];
        let inner = Inner {
            id: id.to_owned(),
            session: Mutex::new(session),
            ids,
            espeak_voice: config.espeak.voice,
            scales,
            has_speaker_input,
            resampler,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn phoneme_ids(&self, phonemes: &[char]) -> Vec<i64> {
        let ids = &self.inner.ids;
        // Checked in `new`.
        let (bos, pad, eos) = (&ids[&'^'], &ids[&'_'], &ids[&'$']);
        let mut out = Vec::with_capacity(phonemes.len() * 2 + 3);
        out.extend(bos);
        out.extend(pad);
        for phoneme in phonemes {
            if let Some(id) = ids.get(phoneme) {
                out.extend(id);
                out.extend(pad);
            }
        }
        out.extend(eos);
        out
    }

    /// One sentence's phoneme ids to 8 kHz samples (blocking: ~0.1 s of CPU per second of
    /// speech).
    fn run(&self, ids: Vec<i64>, speed: f32) -> Result<Vec<i16>, ProviderError> {
        let fail = |e: ort::Error| ProviderError::failed("piper", e);
        let n = ids.len();
        let speed = if speed.is_finite() { speed.clamp(0.5, 2.0) } else { 1.0 };
        let [noise, length, noise_w] = self.inner.scales;
        let input = Tensor::from_array(([1usize, n], ids)).map_err(fail)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(fail)?;
        let scales = Tensor::from_array(([3usize], vec![noise, length / speed, noise_w])).map_err(fail)?;
        let audio: Vec<f32> = {
            // A poisoned lock: another run panicked; the session keeps no state between runs.
            let mut session = self.inner.session.lock().unwrap_or_else(|poison| poison.into_inner());
            let outputs = if self.inner.has_speaker_input {
                let speaker = Tensor::from_array(([1usize], vec![0i64])).map_err(fail)?;
                session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => speaker])
            } else {
                session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
            }
            .map_err(fail)?;
            outputs["output"].try_extract_tensor::<f32>().map_err(fail)?.1.to_vec()
        };
        let line = self.inner.resampler.process(&audio);
        Ok(line.iter().map(|s| (s * GAIN * 32767.0).clamp(-32768.0, 32767.0) as i16).collect())
    }
}

impl TextToSpeech for PiperVoice {
    fn name(&self) -> &str {
        &self.inner.id
    }

    fn synthesize(&self, text: String, speed: f32) -> BoxFuture<'_, Result<Vec<i16>, ProviderError>> {
        Box::pin(async move {
            let sentences = phonemize(&self.inner.espeak_voice, &text).await?;
            let mut audio = Vec::new();
            for phonemes in sentences {
                let ids = self.phoneme_ids(&phonemes);
                let voice = self.clone();
                let samples =
                    tokio::task::spawn_blocking(move || voice.run(ids, speed)).await.map_err(|e| ProviderError::failed("piper", e))??;
                audio.extend(samples);
            }
            Ok(audio)
        })
    }
}
