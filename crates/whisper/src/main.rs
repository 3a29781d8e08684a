//! `uponai-whisper MODEL_DIR`: the speech-to-text worker the service spawns (a process, so
//! that the service links nothing of CTranslate2 and a crash in it ends one request, not
//! the server).
//!
//! Protocol on stdin/stdout, one request at a time: the worker prints `READY` once the
//! model is loaded; a request is a u32 little-endian sample count N then N 16-bit
//! little-endian samples at 8 kHz (N = 0: exit); the answer is one line,
//! `OK <decode_ms> <no_speech_prob> <text>` or `ERR <message>`. CTranslate2 logs go to
//! stderr.

mod mel;
mod model;
mod tokens;

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// 30 s at 8 kHz: the most the model hears; a longer request is refused, not truncated.
const MAX_SAMPLES: usize = 30 * 8_000;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: uponai-whisper MODEL_DIR");
        std::process::exit(2);
    };
    let model = match model::Model::load(&dir) {
        Ok(model) => model,
        Err(error) => {
            eprintln!("uponai-whisper: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = serve(&model) {
        eprintln!("uponai-whisper: {error}");
        std::process::exit(1);
    }
}

fn serve(model: &model::Model) -> std::io::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut output = BufWriter::new(std::io::stdout().lock());
    writeln!(output, "READY")?;
    output.flush()?;
    loop {
        let mut header = [0u8; 4];
        if input.read_exact(&mut header).is_err() {
            return Ok(());
        }
        let n = u32::from_le_bytes(header) as usize;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_SAMPLES {
            writeln!(output, "ERR request of {n} samples, more than {MAX_SAMPLES}")?;
            output.flush()?;
            // The samples follow regardless; skip them to stay in step.
            std::io::copy(&mut (&mut input).take(n as u64 * 2), &mut std::io::sink())?;
            continue;
        }
        let mut raw = vec![0u8; n * 2];
        input.read_exact(&mut raw)?;
        let samples: Vec<i16> = raw.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let started = Instant::now();
        match model.transcribe(&samples) {
            Ok(heard) => {
                let text = heard.text.replace(['\n', '\r'], " ");
                writeln!(output, "OK {} {:.3} {}", started.elapsed().as_millis(), heard.no_speech_prob, text)?;
            }
            Err(error) => writeln!(output, "ERR {}", error.replace(['\n', '\r'], " "))?,
        }
        output.flush()?;
    }
}
