//! Speech-to-text through `uponai-whisper` worker processes (crates/whisper): Whisper
//! tiny.en on the assets' CTranslate2. A process, not a library: the service links nothing
//! of CTranslate2 (so it starts without it) and a crash in it fails one request, not the
//! server. Workers are started on demand up to a limit and kept for the next utterance;
//! one that errs or misses its deadline is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use super::assets::{self, Assets};
use crate::provider::{BoxFuture, ProviderError, SpeechToText};

/// Model load takes 0.2–0.5 s; a busy machine may take longer.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// What the worker refuses beyond (30 s at 8 kHz).
const MAX_SAMPLES: usize = 30 * 8_000;
const NAME: &str = "whisper-tiny.en";

/// The worker program, the model and a pool of running workers.
pub struct WhisperWorkers {
    program: PathBuf,
    model: PathBuf,
    library_dir: PathBuf,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl WhisperWorkers {
    /// At most `max_workers` decode at once (one core each).
    pub fn new(assets: &Assets, program: &Path, max_workers: usize) -> Arc<Self> {
        Arc::new(Self {
            program: program.to_owned(),
            model: assets.path(assets::files::WHISPER_DIR),
            library_dir: assets.path(assets::files::CTRANSLATE2_DIR),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(max_workers.max(1)),
        })
    }

    /// Starts one worker now, so the first caller does not wait for the model to load.
    pub async fn warm_up(&self) -> Result<(), ProviderError> {
        let worker = self.start().await?;
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        Ok(())
    }

    async fn start(&self) -> Result<Worker, ProviderError> {
        let fail = |message: String| ProviderError::failed(NAME, message);
        let mut child = tokio::process::Command::new(&self.program)
            .arg(&self.model)
            .env("LD_LIBRARY_PATH", &self.library_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start {} ({e}); it is built by ./scripts/test or ./scripts/demo", self.program.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("no pipes".into()));
        };
        let mut worker = Worker { child, stdin, stdout: BufReader::new(stdout) };
        let mut line = String::new();
        let read = tokio::time::timeout(START_DEADLINE, worker.stdout.read_line(&mut line)).await;
        match read {
            Ok(Ok(_)) if line.trim() == "READY" => Ok(worker),
            Ok(_) => {
                let status = worker.child.try_wait().ok().flatten();
                Err(fail(format!("the worker did not start (exit {status:?}); check the assets with scripts/assets --check")))
            }
            Err(_) => Err(fail(format!("the worker did not load the model in {START_DEADLINE:?}"))),
        }
    }

    async fn run(&self, audio: Vec<i16>) -> Result<String, ProviderError> {
        let fail = |message: String| ProviderError::failed(NAME, message);
        if audio.is_empty() {
            return Ok(String::new());
        }
        // The most recent 30 s: the end of a long turn matters most to the answer.
        let audio = &audio[audio.len().saturating_sub(MAX_SAMPLES)..];
        let _slot = self.slots.acquire().await.map_err(|_| fail("closed".into()))?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.start().await?,
        };
        let mut request = Vec::with_capacity(4 + audio.len() * 2);
        request.extend_from_slice(&(audio.len() as u32).to_le_bytes());
        for sample in audio {
            request.extend_from_slice(&sample.to_le_bytes());
        }
        // On any failure the worker is dropped, which kills it.
        worker.stdin.write_all(&request).await.map_err(|e| fail(format!("worker gone: {e}")))?;
        worker.stdin.flush().await.map_err(|e| fail(format!("worker gone: {e}")))?;
        let mut line = String::new();
        let n = worker.stdout.read_line(&mut line).await.map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            return Err(fail("the worker exited mid-request".into()));
        }
        let line = line.trim_end();
        let text = if let Some(rest) = line.strip_prefix("OK ") {
            // `<decode_ms> <no_speech_prob> <text>`
            rest.splitn(3, ' ').nth(2).unwrap_or("").trim().to_owned()
        } else {
            return Err(fail(line.strip_prefix("ERR ").unwrap_or(line).to_owned()));
        };
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        Ok(text)
    }
}

impl SpeechToText for WhisperWorkers {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(self.run(audio))
    }
}

/// Where the worker program is: `$UPONAI_WHISPER_BIN`, else beside the running executable
/// (or one directory up, for test binaries in `target/*/deps`).
pub fn worker_program() -> PathBuf {
    if let Some(path) = std::env::var_os("UPONAI_WHISPER_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = dir.join("uponai-whisper");
    if beside.exists() {
        return beside;
    }
    dir.parent().map(|up| up.join("uponai-whisper")).filter(|p| p.exists()).unwrap_or(beside)
}
