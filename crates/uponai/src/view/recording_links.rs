//! Expiring signed links to a call's recordings, which work without the API key.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::now_ms;

/// How long a link stays valid by default (the hosted API's 24 h).
pub const DEFAULT_LINK_TTL_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug)]
pub struct RecordingLinks {
    secret: Vec<u8>,
    base_url: String,
    dir: PathBuf,
}

impl RecordingLinks {
    /// Where the recording `file` (a name that passed `is_safe_name`) is kept.
    pub fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Reads the data directory's link secret, creating it on first use.
    pub fn load_or_create(data_dir: &Path, base_url: String, dir: PathBuf) -> anyhow::Result<Self> {
        let path = data_dir.join("recording-links.secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())?,
            Err(_) => {
                let secret: [u8; 32] = rand::random();
                std::fs::write(&path, hex::encode(secret))?;
                secret.to_vec()
            }
        };
        Ok(Self { secret, base_url: base_url.trim_end_matches('/').to_owned(), dir })
    }

    fn signature(&self, file: &str, expires: i64) -> String {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{file}:{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A link to `file` valid for `ttl_ms`.
    pub fn url(&self, file: &str, ttl_ms: i64) -> String {
        let expires = now_ms() + ttl_ms;
        format!("{}/recordings/{file}?expires={expires}&signature={}", self.base_url, self.signature(file, expires))
    }

    /// Removes a call's recording files (those its document names and those its call task
    /// writes), so that links already handed out answer 404. Files already gone are fine.
    pub async fn remove_files_of(&self, call: &crate::store::CallRow) -> std::io::Result<()> {
        let named = ["recording_file", "recording_multi_channel_file"]
            .into_iter()
            .filter_map(|field| call.document.get(field).and_then(serde_json::Value::as_str).map(str::to_owned));
        let written = [format!("{}.wav", call.call_id), format!("{}.stereo.wav", call.call_id)];
        for file in named.chain(written).filter(|file| is_safe_name(file)) {
            match tokio::fs::remove_file(self.dir.join(&file)).await {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn verify(&self, file: &str, expires: i64, signature: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{file}:{expires}").as_bytes());
        let Ok(given) = hex::decode(signature) else { return false };
        expires >= now_ms() && mac.verify_slice(&given).is_ok()
    }
}

/// A bare file name of the recordings directory: no separators, no leading dot.
pub fn is_safe_name(file: &str) -> bool {
    !file.is_empty() && file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) && !file.starts_with('.')
}
