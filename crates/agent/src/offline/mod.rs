//! The offline speech engines, loaded from the assets directory once per process: Silero
//! VAD and the Piper voice through ONNX Runtime; Whisper through CTranslate2 in a worker
//! process (`whisper`).

pub mod assets;
mod child;
pub mod espeak;
pub mod phonemize;
pub mod piper;
pub mod resample;
mod runtime;
pub mod silero;
pub mod whisper;

use std::time::Instant;

pub use assets::{Assets, AssetsError};
pub use piper::PiperVoice;
pub use silero::{SileroModel, SileroVad};
pub use whisper::WhisperWorkers;

use crate::provider::{ProviderError, TextToSpeech};

/// The id of the offline Piper voice (what `list-voices` shows, and what agents get when
/// their voice is not installed).
pub const PIPER_VOICE_ID: &str = "piper-en_US-joe-medium";

/// The loaded offline engines.
#[derive(Clone)]
pub struct OfflineSpeech {
    pub vad: SileroModel,
    pub voice: PiperVoice,
}

impl OfflineSpeech {
    /// Checks the assets and loads the models (about a second), then warms the voice up
    /// (its first run is slower than the rest).
    pub async fn load(assets: &Assets) -> Result<Self, ProviderError> {
        assets.check().map_err(|e| ProviderError::failed("assets", e))?;
        // Loading is a second of CPU: off the async threads, where every call's media runs.
        let paths = assets.clone();
        let (vad, voice) = tokio::task::spawn_blocking(move || {
            let environment = runtime::environment(&paths.path(assets::files::ONNXRUNTIME))?;
            let vad = SileroModel::new(runtime::session(environment, &paths.path(assets::files::SILERO))?);
            let session = runtime::session(environment, &paths.path(assets::files::PIPER_MODEL))?;
            let voice = PiperVoice::new(PIPER_VOICE_ID, session, &paths.path(assets::files::PIPER_CONFIG))?;
            Ok::<_, ProviderError>((vad, voice))
        })
        .await
        .map_err(|e| ProviderError::failed("offline speech", e))??;
        let started = Instant::now();
        voice.synthesize("Hello.".into(), 1.0).await?;
        tracing::info!(warm_up_ms = started.elapsed().as_millis() as u64, "offline_speech.loaded");
        Ok(Self { vad, voice })
    }
}
