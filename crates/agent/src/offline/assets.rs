//! Finding and checking the offline speech assets that `scripts/assets` installs.
//!
//! The manifest (`crates/agent/assets.json`) is compiled in; the install script reads the
//! same file. A process checks each file's size and the install stamp (what the script
//! verified, with each file's mtime) instead of hashing 300 MB at every start; the script's
//! `--check` re-hashes everything.

use std::path::{Path, PathBuf};

use serde::Deserialize;

const MANIFEST: &str = include_str!("../../assets.json");
/// Written by `scripts/assets` after it verified every file.
const STAMP: &str = "installed.json";

/// The offline assets directory.
#[derive(Clone, Debug)]
pub struct Assets {
    dir: PathBuf,
}

/// A missing or corrupt asset, naming the command that installs it.
#[derive(Debug, thiserror::Error)]
#[error("offline speech assets in {dir}: {problem}; install them with: scripts/assets --assets-dir {dir}")]
pub struct AssetsError {
    pub dir: String,
    pub problem: String,
}

#[derive(Deserialize)]
struct Manifest {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    files: Vec<File>,
}

#[derive(Deserialize)]
struct File {
    to: String,
    size: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct Stamp {
    files: std::collections::HashMap<String, Stamped>,
}

#[derive(Deserialize)]
struct Stamped {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

impl Assets {
    /// `--assets-dir`, else `$UPONAI_ASSETS_DIR`, else `$XDG_CACHE_HOME/uponai/assets`, else
    /// `~/.cache/uponai/assets` (the same rule as `scripts/assets`).
    pub fn locate(explicit: Option<&Path>) -> Self {
        let dir = match explicit {
            Some(dir) => dir.to_owned(),
            None => default_dir(),
        };
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Every file of the manifest is in place, as the install script verified it.
    pub fn check(&self) -> Result<(), AssetsError> {
        let error = |problem: String| AssetsError { dir: self.dir.display().to_string(), problem };
        // The manifest is compiled in; a parse failure is a build defect caught by the tests.
        let manifest: Manifest = serde_json::from_str(MANIFEST).map_err(|e| error(format!("bad manifest: {e}")))?;
        let stamp = std::fs::read_to_string(self.dir.join(STAMP)).map_err(|_| error("not installed".into()))?;
        let stamp: Stamp = serde_json::from_str(&stamp).map_err(|e| error(format!("unreadable {STAMP}: {e}")))?;
        for file in manifest.packages.iter().flat_map(|p| &p.files) {
            let path = self.dir.join(&file.to);
            let meta = std::fs::metadata(&path).map_err(|_| error(format!("{} is missing", file.to)))?;
            let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos());
            let stamped = stamp.files.get(&file.to);
            let verified = stamped.is_some_and(|s| s.sha256 == file.sha256 && s.size == meta.len() && Some(s.mtime_ns) == mtime_ns);
            if meta.len() != file.size || !verified {
                return Err(error(format!("{} is corrupt or was replaced since it was verified", file.to)));
            }
        }
        Ok(())
    }
}

fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPONAI_ASSETS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("uponai").join("assets")
}

/// The relative paths of the files the engines load.
pub mod files {
    pub const ONNXRUNTIME: &str = "onnxruntime/libonnxruntime.so.1.32.0";
    pub const SILERO: &str = "silero/silero_vad.onnx";
    pub const PIPER_MODEL: &str = "piper/en_US-joe-medium.onnx";
    pub const PIPER_CONFIG: &str = "piper/en_US-joe-medium.onnx.json";
    pub const WHISPER_DIR: &str = "whisper-tiny.en";
    pub const CTRANSLATE2_DIR: &str = "ctranslate2";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_parses_and_names_every_file_the_engines_load() {
        let manifest: Manifest = serde_json::from_str(MANIFEST).unwrap();
        let all: Vec<&str> = manifest.packages.iter().flat_map(|p| &p.files).map(|f| f.to.as_str()).collect();
        for needed in [files::ONNXRUNTIME, files::SILERO, files::PIPER_MODEL, files::PIPER_CONFIG] {
            assert!(all.contains(&needed), "{needed}");
        }
        assert!(all.iter().any(|f| f.starts_with(files::WHISPER_DIR)));
    }

    #[test]
    fn a_missing_install_is_an_error_naming_the_install_command() {
        let dir = std::env::temp_dir().join(format!("uponai-no-assets-{}", std::process::id()));
        let error = Assets::locate(Some(&dir)).check().unwrap_err().to_string();
        assert!(error.contains("scripts/assets --assets-dir") && error.contains("not installed"), "{error}");
    }
}
