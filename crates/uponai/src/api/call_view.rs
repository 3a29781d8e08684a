//! The call object on the wire, and the request bodies that create calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::agent_fields::AgentFields;
use super::error::{ApiError, ApiResult};
use super::llms::LlmFields;
use super::recordings::{DEFAULT_LINK_TTL_MS, RecordingLinks};
use super::validate::to_document;
use crate::domain::AgentVersionRef;
use crate::store::{CallRow, Document};

/// The call object (`PhoneCallResponse`), as Get Call and webhooks show it. Keys the SDK
/// types know are always present (null until known), but `metadata` and dynamic variables,
/// which are left out when the call was not given any, as the hosted API does.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallResponse {
    pub call_id: String,
    /// `phone_call`.
    pub call_type: &'static str,
    pub agent_id: String,
    pub agent_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// `registered`, `not_connected`, `ongoing`, `ended` or `error`.
    pub call_status: &'static str,
    pub from_number: String,
    pub to_number: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, String>>,
    pub custom_sip_headers: Option<BTreeMap<String, String>>,
    pub start_timestamp: Option<i64>,
    pub end_timestamp: Option<i64>,
    pub duration_ms: Option<i64>,
    pub disconnection_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_storage_setting: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_in_signed_url: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub custom_attributes: Option<Value>,
    /// Mono mix (16-bit PCM WAV) at an expiring signed URL.
    pub recording_url: Option<String>,
    /// Stereo: left the other party, right the agent.
    pub recording_multi_channel_url: Option<String>,
    /// The SIP Call-ID of the call's leg.
    #[schema(value_type = Option<Object>)]
    pub telephony_identifier: Option<Value>,
    /// Post-call analysis, once the call has ended (custom analysis data comes with the
    /// voice agent).
    #[schema(value_type = Option<Object>)]
    pub call_analysis: Option<Value>,
    pub transcript: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub transcript_object: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub transcript_with_tool_calls: Option<Value>,
    /// Latency percentiles (e2e, asr, llm, tts) once the call has ended.
    #[schema(value_type = Option<Object>)]
    pub latency: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub llm_token_usage: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub collected_dynamic_variables: Option<Value>,
    /// Not metered by this install: always null.
    #[schema(value_type = Option<Object>)]
    pub call_cost: Option<Value>,
    pub public_log_url: Option<String>,
    /// uponai: RTP counters and send-timing jitter of the call's media, once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub media_stats: Option<Value>,
}

impl CallResponse {
    pub fn from_row(row: CallRow, links: &RecordingLinks) -> Self {
        let doc = row.document;
        let ttl = doc
            .get("effective_agent")
            .and_then(|agent| agent.get("signed_url_expiration_ms"))
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_LINK_TTL_MS);
        let link = |key: &str| doc.get(key).and_then(Value::as_str).map(|file| links.url(file, ttl));
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
        let strings = |key: &str| doc.get(key).and_then(|v| serde_json::from_value(v.clone()).ok());
        Self {
            call_id: row.call_id.to_string(),
            call_type: row.call_type.as_str(),
            agent_id: row.agent_id.to_string(),
            agent_version: row.agent_version,
            agent_name: text("agent_name"),
            call_status: row.call_status.as_str(),
            from_number: row.from_number,
            to_number: row.to_number,
            direction: row.direction.as_str(),
            metadata: doc.get("metadata").and_then(Value::as_object).cloned(),
            retell_llm_dynamic_variables: strings("retell_llm_dynamic_variables"),
            custom_sip_headers: strings("custom_sip_headers"),
            start_timestamp: row.start_timestamp,
            end_timestamp: row.end_timestamp,
            duration_ms: row.duration_ms,
            disconnection_reason: row.disconnection_reason.map(|r| r.as_str()),
            data_storage_setting: text("data_storage_setting"),
            opt_in_signed_url: doc.get("opt_in_signed_url").and_then(Value::as_bool),
            batch_call_id: row.batch_call_id,
            custom_attributes: doc.get("custom_attributes").cloned(),
            recording_url: link("recording_file"),
            recording_multi_channel_url: link("recording_multi_channel_file"),
            telephony_identifier: doc.get("telephony_identifier").cloned(),
            call_analysis: doc.get("call_analysis").cloned(),
            transcript: text("transcript"),
            transcript_object: doc.get("transcript_object").cloned(),
            transcript_with_tool_calls: doc.get("transcript_with_tool_calls").cloned(),
            latency: doc.get("latency").cloned(),
            llm_token_usage: doc.get("llm_token_usage").cloned(),
            collected_dynamic_variables: doc.get("collected_dynamic_variables").cloned(),
            call_cost: None,
            public_log_url: None,
            media_stats: doc.get("media_stats").cloned(),
        }
    }
}

/// Per-call configuration overrides.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct AgentOverride {
    pub agent: Option<AgentFields>,
    pub retell_llm: Option<LlmFields>,
    /// Conversation flows are not supported by this install; must be absent or null.
    #[schema(value_type = Option<Object>)]
    pub conversation_flow: Option<Value>,
}

/// The override, validated and split into the two documents call creation merges.
pub struct ParsedOverride {
    pub agent: Document,
    pub retell_llm: Document,
}

impl AgentOverride {
    /// Validates the parts that can be validated alone; `prefix` is where it sits in the body.
    pub fn parse(self, prefix: &str) -> ApiResult<ParsedOverride> {
        let with_prefix = |err: ApiError| match err {
            ApiError::BadRequest(message) => ApiError::BadRequest(format!("{prefix}{message}")),
            other => other,
        };
        if self.conversation_flow.as_ref().is_some_and(|flow| !flow.is_null()) {
            return Err(ApiError::field(format!("{prefix}conversation_flow"), "conversation flows are not supported by this install"));
        }
        let agent = match self.agent {
            None => Document::new(),
            Some(fields) => {
                let mut fields = fields.without_unknown();
                fields.is_transfer_agent = None;
                fields.validate().map_err(|err| with_prefix(prefix_field(err, "agent.")))?;
                to_document(&fields)?
            }
        };
        let retell_llm = match self.retell_llm {
            None => Document::new(),
            Some(fields) => {
                let fields = fields.without_unknown();
                range_only(&fields).map_err(|err| with_prefix(prefix_field(err, "retell_llm.")))?;
                to_document(&fields)?
            }
        };
        Ok(ParsedOverride { agent, retell_llm })
    }
}

/// Field checks of an LLM override that do not need the whole configuration.
fn range_only(fields: &LlmFields) -> ApiResult<()> {
    let partial = LlmFields { states: None, starting_state: None, ..fields.clone() };
    partial.validate()
}

fn prefix_field(err: ApiError, prefix: &str) -> ApiError {
    match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(format!("{prefix}{message}")),
        other => other,
    }
}

/// `POST /v2/create-phone-call`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePhoneCallRequest {
    /// E.164; a number of this workspace.
    pub from_number: String,
    /// E.164 (any dialable string for custom numbers with `ignore_e164_validation`).
    pub to_number: String,
    pub override_agent_id: Option<String>,
    /// A version number, `"latest"` or `"latest_published"`.
    #[schema(value_type = Option<Object>)]
    pub override_agent_version: Option<Value>,
    pub agent_override: Option<AgentOverride>,
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    /// String values only.
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, String>>,
    /// Names must start with `X-`.
    pub custom_sip_headers: Option<BTreeMap<String, String>>,
    pub ignore_e164_validation: Option<bool>,
    /// 5–255 characters of A–Z a–z 0–9 _ -; a repeat within an hour returns the first call.
    pub idempotency_key: Option<String>,
}

/// `POST /v2/register-phone-call`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterPhoneCallRequest {
    pub agent_id: String,
    #[schema(value_type = Option<Object>)]
    pub agent_version: Option<Value>,
    pub agent_override: Option<AgentOverride>,
    /// `inbound` (default) or `outbound`; stored for tracking.
    pub direction: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, String>>,
}

/// `PATCH /v2/update-call/{call_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCallRequest {
    /// Replaces the call's metadata.
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    /// May only become more restrictive.
    pub data_storage_setting: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub custom_attributes: Option<BTreeMap<String, Value>>,
}

pub fn parse_version(field: &str, raw: Option<&Value>) -> ApiResult<Option<AgentVersionRef>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(raw) => AgentVersionRef::parse(raw).map(Some).map_err(|problem| ApiError::field(field, problem)),
    }
}

/// Custom SIP headers go on the INVITE verbatim, so each is checked here: an `X-` token
/// name and a value without line breaks (no header injection).
pub fn check_sip_headers(headers: &BTreeMap<String, String>) -> ApiResult<()> {
    use crate::domain::sip_header::{check_header_name, check_header_value};
    for (name, value) in headers {
        // A name with control characters is quoted, so the message cannot carry a line break.
        let field =
            if name.chars().any(char::is_control) { format!("custom_sip_headers.{name:?}") } else { format!("custom_sip_headers.{name}") };
        check_header_name(name).map_err(|problem| ApiError::field(&field, problem))?;
        check_header_value(value).map_err(|problem| ApiError::field(&field, problem))?;
    }
    Ok(())
}

pub fn check_idempotency_key(key: &str) -> ApiResult<()> {
    let ok = (5..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(ApiError::field("idempotency_key", "must be 5-255 characters of A-Z a-z 0-9 _ -")) }
}
