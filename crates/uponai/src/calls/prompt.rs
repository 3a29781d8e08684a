//! The agent side of a call until the voice agent exists: it plays the agent's begin message
//! once, spoken by the offline espeak-ng voice if that program is installed, else it stays
//! silent. Caller audio is received and discarded.
//!
//! The text is tenant input: it goes to espeak-ng on stdin, never as an argument (an
//! argument such as `-f/proc/self/environ` would be an option), and the process is killed
//! if it runs past `SYNTHESIS_DEADLINE` or the call ends first.

use std::process::Stdio;
use std::time::Duration;

use media::{AgentFrame, CallerFrame, Frame, SAMPLES_PER_FRAME};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long espeak-ng may take to speak a begin message.
const SYNTHESIS_DEADLINE: Duration = Duration::from_secs(10);

/// Plays `text` (if any) into `to_caller`, paced by the channel, and drains `from_caller`.
pub async fn run(
    text: Option<String>,
    to_caller: mpsc::Sender<AgentFrame>,
    mut from_caller: mpsc::Receiver<CallerFrame>,
    cancel: CancellationToken,
) {
    let frames = match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => tokio::select! {
            () = cancel.cancelled() => return,
            frames = synthesize(&text) => frames.unwrap_or_default(),
        },
        None => Vec::new(),
    };
    let mut frames = frames.into_iter();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            frame = from_caller.recv() => if frame.is_none() { return },
            permit = to_caller.reserve(), if frames.len() > 0 => {
                match (permit, frames.next()) {
                    (Ok(permit), Some(samples)) => permit.send(AgentFrame { generation: 1, samples, last: frames.len() == 0 }),
                    _ => return,
                }
            }
        }
    }
}

/// The espeak-ng invocation: fixed arguments only; the text comes on stdin.
fn espeak_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("espeak-ng");
    command
        .args(["-v", "en-us", "--stdout", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Speaks `text` with espeak-ng and returns 8 kHz frames; `None` if espeak-ng is missing,
/// fails, or misses the deadline (then it is killed).
async fn synthesize(text: &str) -> Option<Vec<Frame>> {
    let mut child = espeak_command().spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let text = text.as_bytes().to_vec();
    // Written beside the read, so a long text cannot fill both pipes and stall.
    let feed = async move {
        let _ = stdin.write_all(&text).await;
        drop(stdin);
    };
    let (output, ()) = tokio::time::timeout(SYNTHESIS_DEADLINE, async { tokio::join!(child.wait_with_output(), feed) }).await.ok()?;
    let output = output.ok()?;
    if !output.status.success() {
        return None;
    }
    let path = std::env::temp_dir().join(format!("uponai-prompt-{}.wav", rand::random::<u64>()));
    tokio::fs::write(&path, &output.stdout).await.ok()?;
    let read = media::wav::read(&path);
    let _ = tokio::fs::remove_file(&path).await;
    let (_, samples) = read.ok()?;
    let rate = wav_rate(&output.stdout).unwrap_or(22_050);
    Some(to_frames(&resample(&samples, rate, media::SAMPLE_RATE)))
}

fn wav_rate(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(24..28)?.try_into().ok()?))
}

/// Linear-interpolation resampling; enough for a spoken prompt on an 8 kHz line.
fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if samples.is_empty() || from == to {
        return samples.to_vec();
    }
    let n_out = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..n_out)
        .map(|i| {
            let position = i as f64 * f64::from(from) / f64::from(to);
            let index = position as usize;
            let fraction = position - index as f64;
            let a = f64::from(samples[index.min(samples.len() - 1)]);
            let b = f64::from(samples[(index + 1).min(samples.len() - 1)]);
            (a + (b - a) * fraction) as i16
        })
        .collect()
}

fn to_frames(samples: &[i16]) -> Vec<Frame> {
    samples
        .chunks(SAMPLES_PER_FRAME)
        .map(|chunk| {
            let mut frame = [0i16; SAMPLES_PER_FRAME];
            frame[..chunk.len()].copy_from_slice(chunk);
            frame
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_duration_and_shape() {
        let ramp: Vec<i16> = (0..22_050).map(|i| (i % 1000) as i16).collect();
        let out = resample(&ramp, 22_050, 8_000);
        assert_eq!(out.len(), 8_000);
        assert_eq!(to_frames(&out).len(), 50);
    }

    #[test]
    fn no_text_is_ever_an_argument_of_espeak() {
        let command = espeak_command();
        let args: Vec<_> = command.as_std().get_args().collect();
        assert_eq!(args, ["-v", "en-us", "--stdout", "--stdin"]);
    }

    /// With espeak-ng installed (apt-get install espeak-ng), a begin message that looks like
    /// an option is spoken as text: seconds of audio, not this process's whole environment
    /// (the test binary inherits cargo's, thousands of characters). Without it, no audio.
    #[tokio::test]
    async fn a_begin_message_that_looks_like_an_option_is_spoken_as_text() {
        let environment = std::fs::read("/proc/self/environ").unwrap_or_default();
        let frames = synthesize("-f/proc/self/environ").await;
        let installed = std::process::Command::new("espeak-ng").arg("--version").output().is_ok();
        if !installed {
            assert!(frames.is_none());
            return;
        }
        let seconds = frames.expect("espeak-ng speaks").len() as f64 * 0.02;
        assert!(environment.len() > 1000, "the environment is long enough to tell apart: {} bytes", environment.len());
        assert!((0.5..8.0).contains(&seconds), "spoke {seconds} s for a 20-character text");
    }
}
