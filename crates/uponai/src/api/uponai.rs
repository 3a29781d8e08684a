//! UponAI's own create-call route, `POST /api/v1/calls/initiate`: camelCase in and out,
//! mapped onto the same call creation as `/v2/create-phone-call`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::ApiState;
use super::call_view::{AgentOverride, check_idempotency_key, check_sip_headers, parse_version};
use super::calls::{check_override_references, create};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Workspace, parse_json};
use crate::calls::{CallLeg, NewCall};
use crate::domain::AgentId;
use crate::store::Document;
use crate::view::CallResponse;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiateCallRequest {
    pub agent_id: String,
    pub from_number: String,
    pub to_number: String,
    /// Name of the trunk to use; stored with the call.
    pub trunk_name: Option<String>,
    /// Becomes the `customer_name` dynamic variable unless that is set.
    pub customer_name: Option<String>,
    pub ignore_e164_validation: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub override_agent_version: Option<Value>,
    pub custom_sip_headers: Option<BTreeMap<String, String>>,
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    #[serde(rename = "uponai_dynamic_variables")]
    pub uponai_dynamic_variables: Option<BTreeMap<String, String>>,
    /// `{agent: {voiceId, maxCallDurationMs, …}, llm: {model, beginMessage, …}}`.
    #[schema(value_type = Option<Object>)]
    pub agent_override: Option<Map<String, Value>>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiatedCall {
    pub call_id: String,
    pub call_type: &'static str,
    pub status: &'static str,
    pub agent_id: String,
    pub agent_version: i64,
    /// A JSON object, stored and echoed.
    pub metadata: Option<Map<String, Value>>,
    pub opt_out_sensitive_data_storage: bool,
    pub access_token: Option<String>,
    pub expires_at: Option<i64>,
    pub web_call_url: Option<String>,
    #[serde(rename = "uponai_dynamic_variables")]
    pub uponai_dynamic_variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InitiatedCallEnvelope {
    pub success: bool,
    pub call: InitiatedCall,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InitiateCallResponse {
    pub success: bool,
    pub call_sid: String,
    pub call: InitiatedCallEnvelope,
}

/// `fooBar` → `foo_bar`.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites the camelCase override into the Retell shape (`llm` becomes `retell_llm`).
fn retell_override(camel: Map<String, Value>) -> ApiResult<AgentOverride> {
    let mut out = Map::new();
    for (section, value) in camel {
        let target = match section.as_str() {
            "agent" => "agent",
            "llm" | "retellLlm" => "retell_llm",
            other => return Err(ApiError::field(format!("agentOverride.{other}"), "must be agent or llm")),
        };
        let Value::Object(fields) = value else {
            return Err(ApiError::field(format!("agentOverride.{section}"), "must be an object"));
        };
        let fields: Map<String, Value> = fields.into_iter().map(|(k, v)| (snake_case(&k), v)).collect();
        out.insert(target.to_owned(), Value::Object(fields));
    }
    let bytes = serde_json::to_vec(&out).map_err(anyhow::Error::from)?;
    parse_json(&bytes).map_err(|err| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(format!("agentOverride.{message}")),
        other => other,
    })
}

/// Start an outbound call (UponAI API).
#[utoipa::path(post, path = "/api/v1/calls/initiate", tag = "UponAI",
    request_body = InitiateCallRequest,
    responses((status = 201, body = InitiateCallResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn initiate_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<InitiateCallRequest>,
) -> ApiResult<(StatusCode, Json<InitiateCallResponse>)> {
    let headers = request.custom_sip_headers.unwrap_or_default();
    check_sip_headers(&headers).map_err(|err| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(message.replacen("custom_sip_headers", "customSipHeaders", 1)),
        other => other,
    })?;
    if let Some(key) = &request.idempotency_key {
        check_idempotency_key(key)?;
    }
    let overrides = retell_override(request.agent_override.unwrap_or_default())?.parse("agentOverride.")?;
    check_override_references(&state, &key.workspace_id, &overrides.agent, "agentOverride.agent.").await?;
    let agent_id = AgentId::parse(&request.agent_id)
        .ok_or_else(|| ApiError::field("agentId", format!("{:?} is not an agent of this workspace", request.agent_id)))?;
    let mut variables = request.uponai_dynamic_variables;
    if let Some(name) = &request.customer_name {
        variables.get_or_insert_with(BTreeMap::new).entry("customer_name".into()).or_insert_with(|| name.clone());
    }
    let mut extra = Document::new();
    if let Some(trunk) = &request.trunk_name {
        extra.insert("trunk_name".into(), json!(trunk));
    }
    if let Some(name) = &request.customer_name {
        extra.insert("customer_name".into(), json!(name));
    }
    let new_call = NewCall {
        leg: CallLeg::Outbound {
            from_number: request.from_number,
            to_number: request.to_number,
            ignore_e164_validation: request.ignore_e164_validation.unwrap_or(false),
            custom_sip_headers: headers,
        },
        override_agent_id: Some(agent_id),
        override_agent_version: parse_version("overrideAgentVersion", request.override_agent_version.as_ref())?,
        agent_override: overrides.agent,
        retell_llm_override: overrides.retell_llm,
        metadata: request.metadata,
        dynamic_variables: variables,
        idempotency_key: request.idempotency_key,
        extra,
    };
    let call = create(&state, &key.workspace_id, new_call).await.map_err(|err| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(camel_field(&message)),
        other => other,
    })?;
    Ok((StatusCode::CREATED, Json(envelope(call))))
}

/// Renames the leading snake_case field of an error message to this route's camelCase.
fn camel_field(message: &str) -> String {
    let (field, rest) = message.split_once(':').unwrap_or((message, ""));
    let camel = match field {
        "from_number" => "fromNumber",
        "to_number" => "toNumber",
        "override_agent_id" => "agentId",
        "override_agent_version" => "overrideAgentVersion",
        "ignore_e164_validation" => "ignoreE164Validation",
        "agent_override" => "agentOverride",
        other => other,
    };
    format!("{camel}:{rest}")
}

fn envelope(call: CallResponse) -> InitiateCallResponse {
    let opt_out = call.data_storage_setting.as_deref().is_some_and(|s| s != "everything");
    InitiateCallResponse {
        success: true,
        call_sid: call.call_id.clone(),
        call: InitiatedCallEnvelope {
            success: true,
            call: InitiatedCall {
                call_id: call.call_id,
                call_type: call.call_type,
                status: call.call_status,
                agent_id: call.agent_id,
                agent_version: call.agent_version,
                metadata: call.metadata,
                opt_out_sensitive_data_storage: opt_out,
                access_token: None,
                expires_at: None,
                web_call_url: None,
                uponai_dynamic_variables: call.retell_llm_dynamic_variables,
            },
        },
    }
}
