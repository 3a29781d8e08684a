//! Retell LLM response engines: `/create-retell-llm` and friends.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Workspace};
use super::paging::{ListQuery, Paginated};
use super::validate::{from_document, merged, range_f64, range_i64, target_url, to_document, url};
use super::{ApiState, VersionQuery, nullable};
use crate::domain::LlmId;
use crate::egress::Egress;
use crate::store::{AGENTS, LLMS, VersionRow};

/// The configuration of a Retell LLM, as created and updated. Fields not listed here are
/// stored and returned as sent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LlmFields {
    /// General prompt appended to the system prompt in every state.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub general_prompt: Option<Option<String>>,
    /// First utterance of the agent; `""` waits for the user; unset lets the LLM open.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub begin_message: Option<Option<String>>,
    /// Tools the model may call, each `{type, name, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<Object>>, nullable)]
    pub general_tools: Option<Option<Vec<Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<LlmState>>, nullable)]
    pub states: Option<Option<Vec<LlmState>>>,
    /// Required when `states` is non-empty; names one of them.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub starting_state: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub model: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub s2s_model: Option<Option<String>>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_speaker: Option<StartSpeaker>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub begin_after_user_silence_ms: Option<Option<i64>>,
    /// Fallback values for `{{variables}}`; strings only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<BTreeMap<String, String>>, nullable)]
    pub default_dynamic_variables: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub knowledge_base_ids: Option<Option<Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<bool>, nullable)]
    pub tool_call_strict_mode: Option<Option<bool>>,
    /// Everything else the hosted API accepts: stored and returned, not acted on yet.
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartSpeaker {
    User,
    Agent,
}

/// One state of a multi-state LLM.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LlmState {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<StateEdge>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateEdge {
    pub destination_state_name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Map<String, Value>,
}

/// A Retell LLM version.
#[derive(Debug, Serialize, ToSchema)]
pub struct LlmResponse {
    pub llm_id: String,
    pub version: i64,
    pub is_published: bool,
    pub last_modification_timestamp: i64,
    #[serde(flatten)]
    pub fields: LlmFields,
}

const TOOL_TYPES: &[&str] = &[
    "end_call",
    "transfer_call",
    "agent_swap",
    "press_digit",
    "send_sms",
    "custom",
    "code",
    "extract_dynamic_variable",
    "bridge_transfer",
    "cancel_transfer",
    "mcp",
    "integration_app",
    "check_availability_cal",
    "book_appointment_cal",
];

/// LLM fields of the current SDKs that are not typed above: kept in `other`. Keys outside
/// this list are ignored, as the hosted API ignores them.
const STORED_LLM_FIELDS: &[&str] =
    &["backup_model", "is_transfer_llm", "kb_config", "mcps", "model_config", "model_high_priority", "model_ultrafast"];

impl LlmFields {
    /// Drops keys that are not LLM fields at all.
    pub fn without_unknown(mut self) -> Self {
        self.other.retain(|key, _| STORED_LLM_FIELDS.contains(&key.as_str()));
        self
    }

    /// Puts custom tools' URLs through the egress guard (names resolved).
    pub async fn check_targets(&self, egress: Egress, prefix: &str) -> Result<(), ApiError> {
        let states = self.states.clone().flatten().unwrap_or_default();
        let lists = std::iter::once(("general_tools".to_owned(), self.general_tools.clone().flatten()))
            .chain(states.into_iter().enumerate().map(|(i, state)| (format!("states[{i}].tools"), state.tools)));
        for (field, tools) in lists {
            for (i, tool) in tools.unwrap_or_default().iter().enumerate() {
                if tool.get("type").and_then(Value::as_str) == Some("custom")
                    && let Some(raw) = tool.get("url").and_then(Value::as_str)
                {
                    target_url(egress, &format!("{prefix}{field}[{i}].url"), raw, &["http", "https"]).await?;
                }
            }
        }
        Ok(())
    }

    /// Checks a complete configuration (after an update is merged in).
    pub fn validate(&self) -> Result<(), ApiError> {
        range_f64("model_temperature", self.model_temperature, 0.0, 1.0)?;
        range_i64("begin_after_user_silence_ms", self.begin_after_user_silence_ms.flatten(), 0, 3_600_000)?;
        if let Some(Some(tools)) = &self.general_tools {
            validate_tools("general_tools", tools)?;
        }
        let states = self.states.clone().flatten().unwrap_or_default();
        let mut names = BTreeSet::new();
        for (i, state) in states.iter().enumerate() {
            if state.name.is_empty() {
                return Err(ApiError::field(format!("states[{i}].name"), "must not be empty"));
            }
            if !names.insert(state.name.as_str()) {
                return Err(ApiError::field(format!("states[{i}].name"), format!("{:?} is used twice", state.name)));
            }
            if let Some(tools) = &state.tools {
                validate_tools(&format!("states[{i}].tools"), tools)?;
            }
        }
        for (i, state) in states.iter().enumerate() {
            for (j, edge) in state.edges.iter().flatten().enumerate() {
                if !names.contains(edge.destination_state_name.as_str()) {
                    return Err(ApiError::field(
                        format!("states[{i}].edges[{j}].destination_state_name"),
                        format!("{:?} is not a state", edge.destination_state_name),
                    ));
                }
            }
        }
        match self.starting_state.clone().flatten() {
            Some(start) if !names.contains(start.as_str()) => {
                Err(ApiError::field("starting_state", format!("{start:?} is not one of the states")))
            }
            None if !states.is_empty() => Err(ApiError::field("starting_state", "is required when states are set")),
            _ => Ok(()),
        }
    }
}

fn validate_tools(field: &str, tools: &[Value]) -> Result<(), ApiError> {
    let mut names = BTreeSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = |key: &str| format!("{field}[{i}].{key}");
        let Some(tool) = tool.as_object() else {
            return Err(ApiError::field(format!("{field}[{i}]"), "must be an object"));
        };
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
        if !TOOL_TYPES.contains(&kind) {
            return Err(ApiError::field(at("type"), format!("must be one of {}", TOOL_TYPES.join(", "))));
        }
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        let name_ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(ApiError::field(at("name"), "must be 1-64 characters of a-z, A-Z, 0-9, _ and -"));
        }
        if !names.insert(name) {
            return Err(ApiError::field(at("name"), format!("{name:?} is used twice")));
        }
        if kind == "custom" {
            let raw = tool.get("url").and_then(Value::as_str).unwrap_or_default();
            url(&at("url"), raw, &["http", "https"])?;
            if let Some(method) = tool.get("method") {
                let ok = method.as_str().is_some_and(|m| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m));
                if !ok {
                    return Err(ApiError::field(at("method"), "must be one of GET, POST, PUT, PATCH, DELETE"));
                }
            }
        }
    }
    Ok(())
}

fn llm_response(row: VersionRow) -> ApiResult<LlmResponse> {
    Ok(LlmResponse {
        llm_id: row.id,
        version: row.version,
        is_published: row.is_published,
        last_modification_timestamp: row.last_modification_timestamp,
        fields: from_document(&row.document)?,
    })
}

fn parse_llm_id(raw: &str) -> ApiResult<LlmId> {
    LlmId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("retell llm {raw}")))
}

/// Create a Retell LLM (version 0, a draft).
#[utoipa::path(post, path = "/create-retell-llm", tag = "Retell LLM",
    request_body = LlmFields,
    responses((status = 201, body = LlmResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_llm(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(fields): ApiJson<LlmFields>,
) -> ApiResult<(StatusCode, Json<LlmResponse>)> {
    let fields = fields.without_unknown();
    fields.validate()?;
    fields.check_targets(state.calls.config.egress, "").await?;
    let llm_id = LlmId::generate();
    let row = state
        .store
        .create_versioned(LLMS, &key.workspace_id, llm_id.as_str(), &to_document(&fields)?)
        .await
        .map_err(|err| ApiError::from_store(err, "retell llm"))?;
    Ok((StatusCode::CREATED, Json(llm_response(row)?)))
}

/// Get a Retell LLM, by default its latest version.
#[utoipa::path(get, path = "/get-retell-llm/{llm_id}", tag = "Retell LLM",
    params(("llm_id" = String, Path), VersionQuery),
    responses((status = 200, body = LlmResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_llm(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(llm_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> ApiResult<Json<LlmResponse>> {
    let llm_id = parse_llm_id(&llm_id)?;
    let row = state
        .store
        .get_versioned(LLMS, &key.workspace_id, llm_id.as_str(), query.parse()?)
        .await
        .map_err(|err| ApiError::from_store(err, format!("retell llm {llm_id}")))?;
    Ok(Json(llm_response(row)?))
}

/// Update a Retell LLM draft (the latest by default; a published latest branches a new draft).
#[utoipa::path(patch, path = "/update-retell-llm/{llm_id}", tag = "Retell LLM",
    params(("llm_id" = String, Path), VersionQuery),
    request_body = LlmFields,
    responses((status = 200, body = LlmResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_llm(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(llm_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
    ApiJson(fields): ApiJson<LlmFields>,
) -> ApiResult<Json<LlmResponse>> {
    let llm_id = parse_llm_id(&llm_id)?;
    let not_found = |err| ApiError::from_store(err, format!("retell llm {llm_id}"));
    let selector = query.parse()?;
    let fields = fields.without_unknown();
    fields.check_targets(state.calls.config.egress, "").await?;
    let patch = to_document(&fields)?;
    let current = state.store.get_versioned(LLMS, &key.workspace_id, llm_id.as_str(), selector).await.map_err(not_found)?;
    from_document::<LlmFields>(&merged(&current.document, &patch))
        .map_err(|_| ApiError::BadRequest("the update does not combine into a valid configuration".into()))?
        .validate()?;
    let row = state.store.update_versioned(LLMS, &key.workspace_id, llm_id.as_str(), selector, &patch).await.map_err(not_found)?;
    Ok(Json(llm_response(row)?))
}

/// List Retell LLMs (latest version of each).
#[utoipa::path(get, path = "/v2/list-retell-llms", tag = "Retell LLM",
    params(ListQuery),
    responses((status = 200, body = Paginated<LlmResponse>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_llms(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<LlmResponse>>> {
    let page = state
        .store
        .list_versioned(LLMS, &key.workspace_id, &query.page_request()?)
        .await
        .map_err(|err| ApiError::from_store(err, "retell llm"))?;
    let items = page.items.into_iter().map(llm_response).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Paginated::new(items, page.has_more, |llm| llm.llm_id.clone())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteLlmQuery {
    /// Delete even if agents still use this LLM.
    pub force_delete: Option<bool>,
}

/// Delete a Retell LLM and all its versions. Refused while an agent uses it, unless forced.
#[utoipa::path(delete, path = "/delete-retell-llm/{llm_id}", tag = "Retell LLM",
    params(("llm_id" = String, Path), DeleteLlmQuery),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_llm(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(llm_id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteLlmQuery>,
) -> ApiResult<StatusCode> {
    let llm_id = parse_llm_id(&llm_id)?;
    let not_found = |err| ApiError::from_store(err, format!("retell llm {llm_id}"));
    // Make sure it exists first, so an unknown id is a 422 whatever the agents say.
    state.store.get_versioned(LLMS, &key.workspace_id, llm_id.as_str(), None).await.map_err(not_found)?;
    if !query.force_delete.unwrap_or(false) {
        let users = state.store.versioned_mentioning(AGENTS, &key.workspace_id, llm_id.as_str()).await.map_err(not_found)?;
        if !users.is_empty() {
            return Err(ApiError::field(
                "llm_id",
                format!("is used by agent(s) {}; delete them first or pass force_delete=true", users.join(", ")),
            ));
        }
    }
    state.store.delete_versioned(LLMS, &key.workspace_id, llm_id.as_str()).await.map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}
