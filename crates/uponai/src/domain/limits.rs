//! A workspace's limits: concurrent calls, and calls per second per provider (the spec's
//! table: Twilio default 1, max 5; Telnyx default 1, max 16; custom default 1, max
//! concurrency ÷ 20, at least 1).

use serde_json::{Map, Value};

pub const DEFAULT_CONCURRENCY: u32 = 20;
pub const MAX_CONCURRENCY: u32 = 10_000;
pub const DEFAULT_CPS: u32 = 1;
pub const TWILIO_MAX_CPS: u32 = 5;
pub const TELNYX_MAX_CPS: u32 = 16;

/// Whose trunk a number's calls leave through, for the CPS limit that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpsProvider {
    Twilio,
    Telnyx,
    Custom,
}

impl CpsProvider {
    /// From a number's `phone_number_type`.
    pub fn of_number_type(number_type: &str) -> Self {
        match number_type {
            "retell-twilio" => Self::Twilio,
            "retell-telnyx" => Self::Telnyx,
            _ => Self::Custom,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Custom => "custom",
        }
    }

    /// The highest CPS the provider allows at `concurrency`.
    pub fn max_cps(self, concurrency: u32) -> u32 {
        match self {
            Self::Twilio => TWILIO_MAX_CPS,
            Self::Telnyx => TELNYX_MAX_CPS,
            Self::Custom => (concurrency / 20).max(1),
        }
    }
}

/// Which trunk a call leaves through, and whose CPS limit applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRef {
    pub provider: CpsProvider,
    /// Identifies the trunk within the workspace (the termination URI for custom trunks).
    pub key: String,
}

/// The limits in force for one workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub concurrency: u32,
    pub twilio_cps: u32,
    pub telnyx_cps: u32,
    pub custom_cps: u32,
}

impl Limits {
    /// Reads the workspace settings document (validated when written); defaults where unset.
    pub fn from_settings(settings: &Map<String, Value>) -> Self {
        let number =
            |value: Option<&Value>, default: u32| value.and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
        let cps = settings.get("cps_config");
        let concurrency = number(settings.get("concurrency_limit"), DEFAULT_CONCURRENCY);
        let limits = Self {
            concurrency,
            twilio_cps: number(cps.and_then(|c| c.get("twilio")), DEFAULT_CPS),
            telnyx_cps: number(cps.and_then(|c| c.get("telnyx")), DEFAULT_CPS),
            custom_cps: number(cps.and_then(|c| c.get("custom")), DEFAULT_CPS),
        };
        // A lowered concurrency limit lowers the custom ceiling with it.
        Self { custom_cps: limits.custom_cps.min(CpsProvider::Custom.max_cps(concurrency)), ..limits }
    }

    pub fn cps(&self, provider: CpsProvider) -> u32 {
        match provider {
            CpsProvider::Twilio => self.twilio_cps,
            CpsProvider::Telnyx => self.telnyx_cps,
            CpsProvider::Custom => self.custom_cps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_the_custom_ceiling_follow_the_spec_table() {
        let defaults = Limits::from_settings(&Map::new());
        assert_eq!(defaults, Limits { concurrency: 20, twilio_cps: 1, telnyx_cps: 1, custom_cps: 1 });
        assert_eq!(CpsProvider::Custom.max_cps(20), 1);
        assert_eq!(CpsProvider::Custom.max_cps(19), 1, "at least 1");
        assert_eq!(CpsProvider::Custom.max_cps(400), 20);
        let set = json!({"concurrency_limit": 200, "cps_config": {"twilio": 5, "telnyx": 16, "custom": 10}});
        let limits = Limits::from_settings(set.as_object().unwrap());
        assert_eq!((limits.cps(CpsProvider::Telnyx), limits.cps(CpsProvider::Custom)), (16, 10));
        let lowered = json!({"concurrency_limit": 40, "cps_config": {"custom": 10}});
        assert_eq!(Limits::from_settings(lowered.as_object().unwrap()).custom_cps, 2);
    }
}
