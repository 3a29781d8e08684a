//! The process's offline speech engines, shared by every call (and by every app of a process,
//! as in the tests: one Piper model and one pool of Whisper workers per assets directory):
//! checked at start (a missing asset stops `serve` with the command that installs it),
//! loaded by the first call that needs them (a second or two, during which that call's media
//! already runs), then kept. Not at start: a server that takes no call, such as the test
//! suite's many, never pays for them.

use std::path::Path;
use std::sync::Arc;

use agent::offline::{Assets, OfflineSpeech, WhisperWorkers};
use tokio::sync::OnceCell;

/// Whisper workers decoding at once: one per core of this 2-core class of machine.
const STT_WORKERS: usize = 2;

/// Where a call's agent gets its speech engines.
#[derive(Clone, Debug)]
pub enum AgentSpeech {
    /// The offline engines of the assets directory.
    Offline(Arc<Speech>),
    /// `agent::instant`'s stand-ins, for benchmarks of the platform alone.
    Instant,
}

/// The engines of each assets directory this process uses.
static SHARED: std::sync::Mutex<Vec<Arc<Speech>>> = std::sync::Mutex::new(Vec::new());

pub struct Speech {
    assets: Assets,
    /// Set once loading succeeded; a failed load is tried again by the next call.
    loaded: OnceCell<Loaded>,
}

/// The loaded engines.
#[derive(Clone)]
pub struct Loaded {
    pub offline: OfflineSpeech,
    pub stt: Arc<WhisperWorkers>,
}

impl std::fmt::Debug for Speech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speech").field("assets", &self.assets.dir()).field("loaded", &self.loaded.initialized()).finish()
    }
}

impl Speech {
    /// Finds the assets (`--assets-dir`, `UPONAI_ASSETS_DIR`, else the user cache) and checks
    /// them; the error names `scripts/assets`.
    pub fn check(assets_dir: Option<&Path>) -> Result<Arc<Self>, agent::offline::AssetsError> {
        let assets = Assets::locate(assets_dir);
        assets.check()?;
        let mut shared = SHARED.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(speech) = shared.iter().find(|speech| speech.assets.dir() == assets.dir()) {
            return Ok(speech.clone());
        }
        let speech = Arc::new(Self { assets, loaded: OnceCell::new() });
        shared.push(speech.clone());
        Ok(speech)
    }

    /// The engines, loading them on first use.
    pub async fn engines(&self) -> Result<Loaded, agent::provider::ProviderError> {
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                let offline = OfflineSpeech::load(&self.assets).await?;
                let stt = WhisperWorkers::new(&self.assets, &agent::offline::whisper::worker_program(), STT_WORKERS);
                stt.warm_up().await?;
                Ok::<_, agent::provider::ProviderError>(Loaded { offline, stt })
            })
            .await?;
        Ok(loaded.clone())
    }
}
