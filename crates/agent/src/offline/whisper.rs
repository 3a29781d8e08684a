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
        // At the lowest priority: on a busy machine, decoding waits and RTP
        // does not (a late transcript delays a turn; late audio breaks every call).
        let mut child = tokio::process::Command::new("nice")
            .args(["-n", "19"])
            .arg(&self.program)
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
        let mut request = Vec::with_capacity(4 + audio.len() * 2);
        request.extend_from_slice(&(audio.len() as u32).to_le_bytes());
        for sample in audio {
            request.extend_from_slice(&sample.to_le_bytes());
        }
        // A kept worker may be gone (it crashed, or the runtime whose reactor held its pipes
        // has ended); then one new worker gets the request.
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (mut worker, mut kept) = match idle {
            Some(worker) => (worker, true),
            None => (self.start().await?, false),
        };
        loop {
            match exchange(&mut worker, &request).await {
                Ok(Answer::Text(text)) => {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
                    return Ok(text);
                }
                // The worker answered: the request itself failed.
                Ok(Answer::Error(message)) => return Err(fail(message)),
                Err(error) if kept => {
                    tracing::info!(%error, "whisper.worker_replaced");
                    worker = self.start().await?;
                    kept = false;
                }
                Err(error) => return Err(fail(error)),
            }
        }
    }
}

enum Answer {
    Text(String),
    Error(String),
}

/// One request and its answer line; an `Err` means the worker is unusable (it is dropped,
/// which kills it).
async fn exchange(worker: &mut Worker, request: &[u8]) -> Result<Answer, String> {
    worker.stdin.write_all(request).await.map_err(|e| format!("worker gone: {e}"))?;
    worker.stdin.flush().await.map_err(|e| format!("worker gone: {e}"))?;
    let mut line = String::new();
    let n = worker.stdout.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the worker exited mid-request".into());
    }
    let line = line.trim_end();
    match line.strip_prefix("OK ") {
        // `<decode_ms> <no_speech_prob> <text>`
        Some(rest) => Ok(Answer::Text(rest.splitn(3, ' ').nth(2).unwrap_or("").trim().to_owned())),
        None => Ok(Answer::Error(line.strip_prefix("ERR ").unwrap_or(line).to_owned())),
    }
}

impl SpeechToText for WhisperWorkers {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(self.run(audio))
    }

    fn is_busy(&self) -> bool {
        self.slots.available_permits() == 0
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
