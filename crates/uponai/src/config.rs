//! Settings: each from the command line, else the environment (`UPONAI_*`), else the TOML
//! config file, else the default. The option names are a contract other tooling relies on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_SIP: &str = "127.0.0.1:5060";
pub const DEFAULT_DATA_DIR: &str = "uponai-data";

/// Everything `App::build` needs. No `Default`: a caller says what it means.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the control-plane HTTP API listens (port 0 picks a free port).
    pub http: SocketAddr,
    /// Where the SIP user agent listens (used from M2).
    pub sip: SocketAddr,
    /// Holds the SQLite database and, later, recordings.
    pub data_dir: PathBuf,
    /// When set, the key a fresh data directory is bootstrapped with (and added to the
    /// first workspace if missing on later starts).
    pub bootstrap_api_key: Option<String>,
}

/// The config file's shape: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub http: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub api_key: Option<String>,
}

impl FileSettings {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
    }
}

/// Values given on the command line or in the environment (clap merges those two).
#[derive(Debug, Default)]
pub struct Overrides {
    pub http: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub api_key: Option<String>,
}

impl Settings {
    pub fn resolve(overrides: Overrides, file: FileSettings) -> Self {
        // The defaults are valid literals.
        let default_http = DEFAULT_HTTP.parse().expect("valid default HTTP address");
        let default_sip = DEFAULT_SIP.parse().expect("valid default SIP address");
        Self {
            http: overrides.http.or(file.http).unwrap_or(default_http),
            sip: overrides.sip.or(file.sip).unwrap_or(default_sip),
            data_dir: overrides.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            bootstrap_api_key: overrides.api_key.or(file.api_key).filter(|key| !key.is_empty()),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("uponai.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_beats_file_beats_default() {
        let file: FileSettings = toml::from_str("http = \"0.0.0.0:9000\"\ndata_dir = \"/srv/uponai\"").unwrap();
        let overrides = Overrides { data_dir: Some("/tmp/x".into()), ..Overrides::default() };
        let settings = Settings::resolve(overrides, file);
        assert_eq!(settings.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.sip, DEFAULT_SIP.parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn unknown_config_keys_are_an_error() {
        assert!(toml::from_str::<FileSettings>("htpp = \"x\"").is_err());
    }
}
