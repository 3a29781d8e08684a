//! The call object on the wire (`PhoneCallResponse`): what Get Call answers and what every
//! webhook carries, rendered in one place.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::recording_links::{DEFAULT_LINK_TTL_MS, RecordingLinks};
use crate::store::CallRow;

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
    /// Where the call was transferred (a number or `sip:` URI); only with `call_transfer`.
    pub transfer_destination: Option<String>,
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
    /// uponai: caller turns the agent left unanswered past its deadline (each was reprompted,
    /// or ended the call); the goal is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_turns: Option<u64>,
    /// uponai: what answering-machine detection decided, and when (`{result: "machine" |
    /// "human", decided_after_ms}`), on calls whose agent asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub machine_detection: Option<Value>,
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
            transfer_destination: text("transfer_destination"),
            transcript_object: doc.get("transcript_object").cloned(),
            transcript_with_tool_calls: doc.get("transcript_with_tool_calls").cloned(),
            latency: doc.get("latency").cloned(),
            llm_token_usage: doc.get("llm_token_usage").cloned(),
            collected_dynamic_variables: doc.get("collected_dynamic_variables").cloned(),
            call_cost: None,
            public_log_url: None,
            media_stats: doc.get("media_stats").cloned(),
            stuck_turns: doc.get("stuck_turns").and_then(Value::as_u64),
            machine_detection: doc.get("machine_detection").cloned(),
        }
    }
}
