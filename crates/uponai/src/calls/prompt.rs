//! The agent side of a call until the voice agent exists: it plays the agent's begin message
//! once, spoken by the offline espeak-ng voice if that program is installed, else it stays
//! silent. Caller audio is received and discarded.

use media::{Frame, SAMPLES_PER_FRAME};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Plays `text` (if any) into `to_caller`, paced by the channel, and drains `from_caller`.
pub async fn run(text: Option<String>, to_caller: mpsc::Sender<Frame>, mut from_caller: mpsc::Receiver<Frame>, cancel: CancellationToken) {
    let frames = match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => tokio::task::spawn_blocking(move || synthesize(&text)).await.ok().flatten().unwrap_or_default(),
        None => Vec::new(),
    };
    let mut frames = frames.into_iter();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            frame = from_caller.recv() => if frame.is_none() { return },
            permit = to_caller.reserve(), if frames.len() > 0 => {
                match (permit, frames.next()) {
                    (Ok(permit), Some(frame)) => permit.send(frame),
                    _ => return,
                }
            }
        }
    }
}

/// Speaks `text` with espeak-ng and returns 8 kHz frames; `None` if espeak-ng is missing.
fn synthesize(text: &str) -> Option<Vec<Frame>> {
    let output = std::process::Command::new("espeak-ng").args(["-v", "en-us", "--stdout", text]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let path = std::env::temp_dir().join(format!("uponai-prompt-{}.wav", rand::random::<u64>()));
    std::fs::write(&path, &output.stdout).ok()?;
    let read = media::wav::read(&path);
    let _ = std::fs::remove_file(&path);
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
}
