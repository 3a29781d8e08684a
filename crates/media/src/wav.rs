//! 16-bit PCM WAV files written as a call goes, sizes patched on `finish`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

pub struct WavWriter {
    file: BufWriter<File>,
    channels: u16,
    n_data_bytes: u32,
}

impl WavWriter {
    pub fn create(path: &Path, channels: u16, sample_rate: u32) -> std::io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        let block_align = channels * 2;
        file.write_all(b"RIFF\0\0\0\0WAVEfmt ")?;
        file.write_all(&16u32.to_le_bytes())?;
        file.write_all(&1u16.to_le_bytes())?; // PCM
        file.write_all(&channels.to_le_bytes())?;
        file.write_all(&sample_rate.to_le_bytes())?;
        file.write_all(&(sample_rate * u32::from(block_align)).to_le_bytes())?;
        file.write_all(&block_align.to_le_bytes())?;
        file.write_all(&16u16.to_le_bytes())?;
        file.write_all(b"data\0\0\0\0")?;
        Ok(Self { file, channels, n_data_bytes: 0 })
    }

    /// Appends interleaved samples (`channels` per sample frame).
    pub fn write(&mut self, samples: &[i16]) -> std::io::Result<()> {
        debug_assert_eq!(samples.len() % usize::from(self.channels), 0);
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for sample in samples {
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        self.file.write_all(&bytes)?;
        self.n_data_bytes = self.n_data_bytes.saturating_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(4))?;
        self.file.write_all(&(36 + self.n_data_bytes).to_le_bytes())?;
        self.file.seek(SeekFrom::Start(40))?;
        self.file.write_all(&self.n_data_bytes.to_le_bytes())?;
        self.file.flush()
    }
}

/// Reads a 16-bit PCM WAV written by `WavWriter` (or any canonical one): `(channels, samples)`.
pub fn read(path: &Path) -> std::io::Result<(u16, Vec<i16>)> {
    let bytes = std::fs::read(path)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 16-bit PCM WAV");
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(invalid());
    }
    let mut offset = 12;
    let mut channels = 0;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size = u32::from_le_bytes([bytes[offset + 4], bytes[offset + 5], bytes[offset + 6], bytes[offset + 7]]) as usize;
        let body = offset + 8;
        if id == b"fmt " && body + 16 <= bytes.len() {
            channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
        }
        if id == b"data" {
            let end = (body + size).min(bytes.len());
            let samples = bytes[body..end].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
            return Ok((channels, samples));
        }
        offset = body + size + (size & 1);
    }
    Err(invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back() {
        let dir = std::env::temp_dir().join(format!("wav-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.wav");
        let mut writer = WavWriter::create(&path, 2, 8000).unwrap();
        writer.write(&[1, -1, 2, -2]).unwrap();
        writer.finish().unwrap();
        assert_eq!(read(&path).unwrap(), (2, vec![1, -1, 2, -2]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 8);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
