//! Settings: each from the command line, else the environment (`UPONAI_*`), else the TOML
//! config file, else the default. The option names are a contract other tooling relies on.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::webhooks::RetryPolicy;

pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_SIP: &str = "127.0.0.1:5060";
pub const DEFAULT_DATA_DIR: &str = "uponai-data";
pub const DEFAULT_RTP_PORTS: &str = "20000-29999";
pub const DEFAULT_NO_AUDIO_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_INBOUND_QUEUE_SECS: u64 = 40;

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
    /// Local UDP ports for RTP.
    pub rtp_ports: RangeInclusive<u16>,
    /// The address peers should send SIP and RTP to (Contact, SDP); defaults to the SIP
    /// bind address, or 127.0.0.1 when that is unspecified.
    pub external_ip: Option<IpAddr>,
    /// Base URL of this server as webhook consumers reach it (recording links).
    pub public_url: Option<String>,
    /// A call with no RTP from the other side for this long ends `error_no_audio_received`.
    pub no_audio_timeout: Duration,
    /// How long an inbound call at the concurrency limit rings waiting for a free slot.
    pub inbound_queue: Duration,
    /// How often and how long webhook deliveries are retried.
    pub webhook_retry: RetryPolicy,
    /// Lets tenants' URLs and trunks point at loopback, private and link-local addresses
    /// (the egress guard off): for single-tenant installs and tests with local receivers.
    pub allow_private_targets: bool,
    /// The offline speech assets (`scripts/assets` installs them); `None`: the default
    /// (`$UPONAI_ASSETS_DIR`, else `$XDG_CACHE_HOME/uponai/assets`, else `~/.cache/uponai/assets`).
    pub assets_dir: Option<PathBuf>,
    /// For benchmarks: agents hear and speak through instant stand-ins (`agent::instant`:
    /// loudness for speech, a transcript that counts words, a tone for a voice) instead of the
    /// offline engines, so a call measures the platform alone. Simulated callees keep the
    /// offline engines.
    pub instant_speech: bool,
    /// The model server of `retell-llm` agents, unless a workspace names its own
    /// (`llm_base_url`): an OpenAI-compatible API base such as `https://api.openai.com/v1`.
    /// Operator configuration: not subject to the egress guard.
    pub llm_base_url: Option<url::Url>,
    pub llm_api_key: Option<String>,
    /// The model name sent; `None`: the LLM's own `model`.
    pub llm_model: Option<String>,
    /// Hosted speech: Deepgram (agents with `custom_stt_config.provider: "deepgram"`) and
    /// ElevenLabs (`11labs-<voice id>` voices), by key; the URLs default to the vendors'.
    pub deepgram_api_key: Option<String>,
    pub deepgram_url: Option<url::Url>,
    pub elevenlabs_api_key: Option<String>,
    pub elevenlabs_url: Option<url::Url>,
}

/// One layer of optional settings: the config file's shape (the same names as the flags),
/// and what the command line and the environment give (`Overrides`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub http: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub api_key: Option<String>,
    pub rtp_ports: Option<String>,
    pub external_ip: Option<IpAddr>,
    pub public_url: Option<String>,
    pub no_audio_timeout_secs: Option<u64>,
    pub inbound_queue_secs: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub webhook_retry_base_ms: Option<u64>,
    pub webhook_retry_cap_ms: Option<u64>,
    pub allow_private_targets: Option<bool>,
    pub assets_dir: Option<PathBuf>,
    pub instant_speech: Option<bool>,
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<String>,
    pub llm_model: Option<String>,
    pub deepgram_api_key: Option<String>,
    pub deepgram_url: Option<String>,
    pub elevenlabs_api_key: Option<String>,
    pub elevenlabs_url: Option<String>,
}

impl FileSettings {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
    }
}

/// Values given on the command line or in the environment (clap merges those two): the same
/// layer of optional values as the config file, one field per option.
pub type Overrides = FileSettings;

/// `20000-29999` → `20000..=29999`.
pub fn parse_port_range(raw: &str) -> anyhow::Result<RangeInclusive<u16>> {
    let (lo, hi) = raw.split_once('-').context("expected LOW-HIGH, e.g. 20000-29999")?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    anyhow::ensure!(lo > 0 && hi > lo, "the range must be increasing and above 0");
    Ok(lo..=hi)
}

impl Settings {
    pub fn resolve(overrides: Overrides, file: FileSettings) -> anyhow::Result<Self> {
        // The defaults are valid literals.
        let default_http = DEFAULT_HTTP.parse().expect("valid default HTTP address");
        let default_sip = DEFAULT_SIP.parse().expect("valid default SIP address");
        let rtp_ports = overrides.rtp_ports.or(file.rtp_ports).unwrap_or_else(|| DEFAULT_RTP_PORTS.to_owned());
        let default_retry = RetryPolicy::DEFAULT;
        let webhook_retry = RetryPolicy {
            max_attempts: overrides.webhook_max_attempts.or(file.webhook_max_attempts).unwrap_or(default_retry.max_attempts),
            base: overrides.webhook_retry_base_ms.or(file.webhook_retry_base_ms).map_or(default_retry.base, Duration::from_millis),
            cap: overrides.webhook_retry_cap_ms.or(file.webhook_retry_cap_ms).map_or(default_retry.cap, Duration::from_millis),
        };
        anyhow::ensure!(webhook_retry.max_attempts >= 1, "webhook_max_attempts must be at least 1");
        anyhow::ensure!(
            !webhook_retry.base.is_zero() && webhook_retry.base <= webhook_retry.cap,
            "webhook_retry_base_ms must be above 0 and at most webhook_retry_cap_ms"
        );
        Ok(Self {
            http: overrides.http.or(file.http).unwrap_or(default_http),
            sip: overrides.sip.or(file.sip).unwrap_or(default_sip),
            data_dir: overrides.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            bootstrap_api_key: overrides.api_key.or(file.api_key).filter(|key| !key.is_empty()),
            rtp_ports: parse_port_range(&rtp_ports).context("rtp_ports")?,
            external_ip: overrides.external_ip.or(file.external_ip),
            public_url: overrides.public_url.or(file.public_url),
            no_audio_timeout: Duration::from_secs(
                overrides.no_audio_timeout_secs.or(file.no_audio_timeout_secs).unwrap_or(DEFAULT_NO_AUDIO_TIMEOUT_SECS),
            ),
            inbound_queue: Duration::from_secs(
                overrides.inbound_queue_secs.or(file.inbound_queue_secs).unwrap_or(DEFAULT_INBOUND_QUEUE_SECS),
            ),
            webhook_retry,
            allow_private_targets: overrides.allow_private_targets.or(file.allow_private_targets).unwrap_or(false),
            assets_dir: overrides.assets_dir.or(file.assets_dir),
            instant_speech: overrides.instant_speech.or(file.instant_speech).unwrap_or(false),
            llm_base_url: match overrides.llm_base_url.or(file.llm_base_url).filter(|raw| !raw.is_empty()) {
                Some(raw) => Some(url::Url::parse(&raw).context("llm_base_url")?),
                None => None,
            },
            llm_api_key: overrides.llm_api_key.or(file.llm_api_key).filter(|key| !key.is_empty()),
            llm_model: overrides.llm_model.or(file.llm_model).filter(|model| !model.is_empty()),
            deepgram_api_key: overrides.deepgram_api_key.or(file.deepgram_api_key).filter(|key| !key.is_empty()),
            deepgram_url: match overrides.deepgram_url.or(file.deepgram_url).filter(|raw| !raw.is_empty()) {
                Some(raw) => Some(url::Url::parse(&raw).context("deepgram_url")?),
                None => None,
            },
            elevenlabs_api_key: overrides.elevenlabs_api_key.or(file.elevenlabs_api_key).filter(|key| !key.is_empty()),
            elevenlabs_url: match overrides.elevenlabs_url.or(file.elevenlabs_url).filter(|raw| !raw.is_empty()) {
                Some(raw) => Some(url::Url::parse(&raw).context("elevenlabs_url")?),
                None => None,
            },
        })
    }

    /// The hosted speech providers these settings have keys for.
    pub fn hosted_speech(&self) -> crate::hosted::HostedSpeech {
        let provider = |key: &Option<String>, url: &Option<url::Url>, default: &str| {
            key.clone().map(|api_key| crate::hosted::Provider {
                // The defaults are valid literals.
                base_url: url.clone().unwrap_or_else(|| url::Url::parse(default).expect("a valid default URL")),
                api_key,
            })
        };
        crate::hosted::HostedSpeech {
            deepgram: provider(&self.deepgram_api_key, &self.deepgram_url, "wss://api.deepgram.com"),
            elevenlabs: provider(&self.elevenlabs_api_key, &self.elevenlabs_url, "https://api.elevenlabs.io"),
        }
    }

    /// The egress guard these settings ask for.
    pub fn egress(&self) -> crate::egress::Egress {
        if self.allow_private_targets { crate::egress::Egress::allow_private_targets() } else { crate::egress::Egress::guarded() }
    }

    /// The address put in Contact headers and SDP.
    pub fn advertised_ip(&self) -> IpAddr {
        self.external_ip.unwrap_or_else(|| {
            let ip = self.sip.ip();
            if ip.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { ip }
        })
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
        let settings = Settings::resolve(overrides, file).unwrap();
        assert_eq!(settings.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.sip, DEFAULT_SIP.parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn port_ranges_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_port_range("20000-20100").unwrap(), 20000..=20100);
        assert!(parse_port_range("20100-20000").is_err());
        assert!(parse_port_range("abc").is_err());
    }

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        let default = Settings::resolve(Overrides::default(), FileSettings::default()).unwrap();
        assert!(!default.allow_private_targets);
        let file: FileSettings = toml::from_str("allow_private_targets = true").unwrap();
        assert!(Settings::resolve(Overrides::default(), file).unwrap().egress().allows_private());
    }

    #[test]
    fn unknown_config_keys_are_an_error() {
        assert!(toml::from_str::<FileSettings>("htpp = \"x\"").is_err());
    }
}
