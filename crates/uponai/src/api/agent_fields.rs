//! The agent configuration on the wire: create and update bodies, `agent_override.agent`,
//! and (flattened) the agent response.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use super::nullable;
use super::validate::{range_f64, range_i64, target_url, url};
use crate::egress::Egress;

/// Agent settings. Every field is optional here; create requires `response_engine` and
/// `voice_id`. Fields not listed are stored and returned as sent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct AgentFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_engine: Option<ResponseEngine>,
    /// A voice from `list-voices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub agent_name: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub voice_model: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub fallback_voice_ids: Option<Option<Vec<String>>>,
    /// 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_temperature: Option<f64>,
    /// 0.5 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_speed: Option<f64>,
    /// 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsiveness: Option<f64>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption_sensitivity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_backchannel: Option<bool>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_frequency: Option<f64>,
    /// A locale such as `en-US`, or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub webhook_url: Option<Option<String>>,
    /// Unset: `call_started`, `call_ended`, `call_analyzed` and `call_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<WebhookEvent>>, nullable)]
    pub webhook_events: Option<Option<Vec<WebhookEvent>>>,
    /// 1,000 to 300,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_timeout_ms: Option<i64>,
    /// 0 to 5,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_message_delay_ms: Option<i64>,
    /// How long an outbound call rings before it is given up: 5,000 to 300,000 (default 30,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_duration_ms: Option<i64>,
    /// 60,000 to 7,200,000 (default 3,600,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_call_duration_ms: Option<i64>,
    /// At least 10,000 (default 600,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_call_after_silence_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_trigger_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_max_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_storage_setting: Option<DataStorageSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in_signed_url: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub signed_url_expiration_ms: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<Object>>, nullable)]
    pub post_call_analysis_data: Option<Option<Vec<Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub post_call_analysis_model: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Object>, nullable)]
    pub voicemail_option: Option<Option<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub version_title: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub version_description: Option<Option<String>>,
    /// Create only; ignored on update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transfer_agent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub timezone: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_dtmf: Option<bool>,
    /// Everything else the hosted API accepts: stored and returned, not acted on yet.
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

/// What produces the agent's responses.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type")]
pub enum ResponseEngine {
    #[serde(rename = "retell-llm")]
    RetellLlm {
        llm_id: String,
        /// Pinned when the agent version is published; unset means the LLM's latest.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
        #[schema(value_type = Option<i64>, nullable)]
        version: Option<Option<i64>>,
    },
    #[serde(rename = "custom-llm")]
    CustomLlm { llm_websocket_url: String },
    #[serde(rename = "conversation-flow")]
    ConversationFlow {
        conversation_flow_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
        #[schema(value_type = Option<i64>, nullable)]
        version: Option<Option<i64>>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum Language {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    CallStarted,
    CallEnded,
    CallAnalyzed,
    /// uponai: a call that never connected (sent before its `call_ended`).
    CallFailed,
    TranscriptUpdated,
    TransferStarted,
    TransferBridged,
    TransferCancelled,
    TransferEnded,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DataStorageSetting {
    Everything,
    EverythingExceptPii,
    BasicAttributesOnly,
}

impl AgentFields {
    /// Checks what can be checked without the store: ranges, URLs, locales.
    pub fn validate(&self) -> Result<(), ApiError> {
        range_f64("voice_temperature", self.voice_temperature, 0.0, 2.0)?;
        range_f64("voice_speed", self.voice_speed, 0.5, 2.0)?;
        range_f64("volume", self.volume, 0.0, 2.0)?;
        range_f64("responsiveness", self.responsiveness, 0.0, 1.0)?;
        range_f64("interruption_sensitivity", self.interruption_sensitivity, 0.0, 1.0)?;
        range_f64("backchannel_frequency", self.backchannel_frequency, 0.0, 1.0)?;
        range_f64("reminder_trigger_ms", self.reminder_trigger_ms, 0.0, 3_600_000.0)?;
        range_i64("reminder_max_count", self.reminder_max_count, 0, 100)?;
        range_i64("webhook_timeout_ms", self.webhook_timeout_ms, 1_000, 300_000)?;
        range_i64("begin_message_delay_ms", self.begin_message_delay_ms, 0, 5_000)?;
        range_i64("ring_duration_ms", self.ring_duration_ms, 5_000, 300_000)?;
        range_i64("max_call_duration_ms", self.max_call_duration_ms, 60_000, 7_200_000)?;
        range_i64("end_call_after_silence_ms", self.end_call_after_silence_ms, 10_000, 7_200_000)?;
        range_i64("signed_url_expiration_ms", self.signed_url_expiration_ms.flatten(), 1_000, 31_536_000_000)?;
        if let Some(Some(raw)) = &self.webhook_url {
            url("webhook_url", raw, &["http", "https"])?;
        }
        match &self.language {
            Some(Language::One(locale)) => check_locale("language", locale)?,
            Some(Language::Many(locales)) => {
                if locales.is_empty() {
                    return Err(ApiError::field("language", "must not be an empty list"));
                }
                for (i, locale) in locales.iter().enumerate() {
                    check_locale(&format!("language[{i}]"), locale)?;
                }
            }
            None => {}
        }
        match &self.response_engine {
            Some(ResponseEngine::CustomLlm { llm_websocket_url }) => {
                url("response_engine.llm_websocket_url", llm_websocket_url, &["ws", "wss"])?;
            }
            Some(ResponseEngine::ConversationFlow { version: Some(Some(v)), .. }) if *v < 0 => {
                return Err(ApiError::field("response_engine.version", "must be non-negative"));
            }
            Some(ResponseEngine::RetellLlm { version: Some(Some(v)), .. }) if *v < 0 => {
                return Err(ApiError::field("response_engine.version", "must be non-negative"));
            }
            _ => {}
        }
        Ok(())
    }
}

impl AgentFields {
    /// Puts the URLs the platform will call through the egress guard (names resolved).
    pub async fn check_targets(&self, egress: Egress, prefix: &str) -> Result<(), ApiError> {
        if let Some(Some(raw)) = &self.webhook_url {
            target_url(egress, &format!("{prefix}webhook_url"), raw, &["http", "https"]).await?;
        }
        if let Some(ResponseEngine::CustomLlm { llm_websocket_url }) = &self.response_engine {
            target_url(egress, &format!("{prefix}response_engine.llm_websocket_url"), llm_websocket_url, &["ws", "wss"]).await?;
        }
        Ok(())
    }
}

/// `en-US`, `es-419`, `yue-CN`: a language subtag and a region subtag.
fn check_locale(field: &str, locale: &str) -> Result<(), ApiError> {
    let ok = locale.split_once('-').is_some_and(|(lang, region)| {
        (2..=3).contains(&lang.len())
            && lang.bytes().all(|b| b.is_ascii_lowercase())
            && (2..=3).contains(&region.len())
            && region.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    });
    if ok { Ok(()) } else { Err(ApiError::field(field, format!("{locale:?} is not a locale like en-US"))) }
}

/// Agent fields of the current SDKs that are not typed above: kept in `other`. Keys outside
/// this list are ignored, as the hosted API ignores them.
const STORED_AGENT_FIELDS: &[&str] = &[
    "allow_dtmf_interruption",
    "ambient_sound",
    "ambient_sound_volume",
    "backchannel_words",
    "boosted_keywords",
    "call_screening_option",
    "contact_memory_config",
    "custom_stt_config",
    "data_storage_retention_days",
    "denoising_enhancement_level",
    "denoising_mode",
    "enable_dnc_detection",
    "enable_dynamic_responsiveness",
    "enable_dynamic_voice_speed",
    "enable_expressive_mode",
    "expressive_emotion_tags",
    "expressive_mode_prompt",
    "guardrail_config",
    "handbook_config",
    "ivr_option",
    "pii_config",
    "post_session_tools",
    "pre_session_tools",
    "pronunciation_dictionary",
    "stt_mode",
    "user_dtmf_options",
    "vocab_specialization",
    "voice_emotion",
    "voicemail_detection_timeout_ms",
];

impl AgentFields {
    /// Drops keys that are not agent fields at all.
    pub fn without_unknown(mut self) -> Self {
        self.other.retain(|key, _| STORED_AGENT_FIELDS.contains(&key.as_str()));
        self
    }
}
