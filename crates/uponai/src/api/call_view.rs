//! The request bodies that create and change calls (the call object itself is `view::CallResponse`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::agent_fields::AgentFields;
use super::error::{ApiError, ApiResult};
use super::llms::LlmFields;
use super::validate::to_document;
use crate::domain::AgentVersionRef;
use crate::store::Document;

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
