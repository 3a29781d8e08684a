//! Agents and their versions: `/create-agent`, `/get-agent`, `/update-agent`,
//! `/v2/list-agents`, `/delete-agent`, `/publish-agent-version`, `/list-agent-versions`,
//! `/create-agent-version`, `/delete-agent-version`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::agent_fields::{AgentFields, ResponseEngine};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Workspace};
use super::paging::{ListQuery, Paginated};
use super::validate::{from_document, merged, to_document};
use super::{ApiState, VersionQuery, voices};
use crate::domain::{AgentId, AgentVersionRef, LlmId, WorkspaceId};
use crate::store::{AGENTS, Document, FLOWS, LLMS, PageRequest, VersionRow};

/// One version of an agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentResponse {
    pub agent_id: String,
    pub version: i64,
    pub is_published: bool,
    pub last_modification_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_version: Option<i64>,
    #[serde(flatten)]
    pub fields: AgentFields,
}

/// A summary line of `/v2/list-agents`: one per agent, not per version.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentListItem {
    pub agent_id: String,
    pub agent_name: String,
    /// Always `"voice"`: chat agents are not part of this install.
    pub channel: &'static str,
    pub user_modified_timestamp: i64,
    #[schema(value_type = Object)]
    pub tags: BTreeMap<String, Value>,
    pub is_suspended: bool,
    pub is_transfer_agent: bool,
}

/// A line of `/list-agent-versions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentVersionItem {
    pub version: i64,
    pub is_published: bool,
    pub last_modification_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ListAgentsBody {
    #[serde(default)]
    pub filter_criteria: Option<AgentFilter>,
}

/// All given conditions must hold.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AgentFilter {
    /// `{type:"string", op:"eq", value:"voice"|"chat"}`.
    #[schema(value_type = Option<Object>)]
    pub channel: Option<Value>,
    /// `{type:"boolean", op:"eq", value: bool}`.
    #[schema(value_type = Option<Object>)]
    pub is_transfer_agent: Option<Value>,
    /// Case-insensitive substring of the agent name or id.
    pub query: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishAgentBody {
    pub version: i64,
    pub version_title: Option<String>,
    pub version_description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAgentVersionBody {
    pub base_version: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequiredVersionQuery {
    pub version: i64,
}

pub(super) fn agent_response(row: VersionRow) -> ApiResult<AgentResponse> {
    Ok(AgentResponse {
        agent_id: row.id,
        version: row.version,
        is_published: row.is_published,
        last_modification_timestamp: row.last_modification_timestamp,
        base_version: row.base_version,
        fields: from_document(&row.document)?,
    })
}

pub(super) fn parse_agent_id(raw: &str) -> ApiResult<AgentId> {
    AgentId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("agent {raw}")))
}

/// Checks the fields that name other objects: the LLM (in this workspace), the voices, and
/// the URLs the platform will call (the egress guard).
pub(crate) async fn check_references(state: &ApiState, workspace_id: &WorkspaceId, fields: &AgentFields, prefix: &str) -> ApiResult<()> {
    fields.check_targets(state.calls.config.egress, prefix).await?;
    if let Some(ResponseEngine::RetellLlm { llm_id, version }) = &fields.response_engine {
        let field = format!("{prefix}response_engine.llm_id");
        let parsed =
            LlmId::parse(llm_id).ok_or_else(|| ApiError::field(&field, format!("{llm_id:?} is not a retell llm of this workspace")))?;
        let selector = version.flatten().map(AgentVersionRef::Number);
        state.store.get_versioned(LLMS, workspace_id, parsed.as_str(), selector).await.map_err(|err| {
            match ApiError::from_store(err, "") {
                ApiError::NotFound(_) => {
                    ApiError::field(&field, format!("{llm_id:?} (version {version:?}) is not a retell llm of this workspace"))
                }
                other => other,
            }
        })?;
    }
    if let Some(ResponseEngine::ConversationFlow { conversation_flow_id, version }) = &fields.response_engine {
        let field = format!("{prefix}response_engine.conversation_flow_id");
        let not_ours = || {
            ApiError::field(&field, format!("{conversation_flow_id:?} (version {version:?}) is not a conversation flow of this workspace"))
        };
        let parsed = crate::domain::FlowId::parse(conversation_flow_id).ok_or_else(not_ours)?;
        let selector = version.flatten().map(AgentVersionRef::Number);
        state.store.get_versioned(FLOWS, workspace_id, parsed.as_str(), selector).await.map_err(|err| {
            match ApiError::from_store(err, "") {
                ApiError::NotFound(_) => not_ours(),
                other => other,
            }
        })?;
    }
    if let Some(voice_id) = &fields.voice_id
        && voices::find(voice_id).is_none()
    {
        return Err(ApiError::field(format!("{prefix}voice_id"), format!("{voice_id:?} is not a voice of this install (see list-voices)")));
    }
    for (i, voice_id) in fields.fallback_voice_ids.clone().flatten().unwrap_or_default().iter().enumerate() {
        if voices::find(voice_id).is_none() {
            return Err(ApiError::field(
                format!("{prefix}fallback_voice_ids[{i}]"),
                format!("{voice_id:?} is not a voice of this install"),
            ));
        }
    }
    Ok(())
}

/// Create an agent (version 0, a draft).
#[utoipa::path(post, path = "/create-agent", tag = "Agent",
    request_body = AgentFields,
    responses((status = 201, body = AgentResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_agent(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(fields): ApiJson<AgentFields>,
) -> ApiResult<(StatusCode, Json<AgentResponse>)> {
    let fields = fields.without_unknown();
    if fields.response_engine.is_none() {
        return Err(ApiError::field("response_engine", "is required"));
    }
    if fields.voice_id.is_none() {
        return Err(ApiError::field("voice_id", "is required"));
    }
    fields.validate()?;
    check_references(&state, &key.workspace_id, &fields, "").await?;
    let agent_id = AgentId::generate();
    let row = state
        .store
        .create_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), &to_document(&fields)?)
        .await
        .map_err(|err| ApiError::from_store(err, "agent"))?;
    Ok((StatusCode::CREATED, Json(agent_response(row)?)))
}

/// Get an agent: `version` may be a number, `latest` (default) or `latest_published`.
#[utoipa::path(get, path = "/get-agent/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path), VersionQuery),
    responses((status = 200, body = AgentResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_agent(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> ApiResult<Json<AgentResponse>> {
    let agent_id = parse_agent_id(&agent_id)?;
    let row = state
        .store
        .get_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), query.parse()?)
        .await
        .map_err(|err| ApiError::from_store(err, format!("agent {agent_id}")))?;
    Ok(Json(agent_response(row)?))
}

/// Update an agent draft. Without `version`, the latest; if that is published, a new draft
/// is branched from it. A published version named explicitly cannot be changed.
#[utoipa::path(patch, path = "/update-agent/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path), VersionQuery),
    request_body = AgentFields,
    responses((status = 200, body = AgentResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_agent(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
    ApiJson(fields): ApiJson<AgentFields>,
) -> ApiResult<Json<AgentResponse>> {
    let agent_id = parse_agent_id(&agent_id)?;
    let not_found = |err| ApiError::from_store(err, format!("agent {agent_id}"));
    let mut fields = fields.without_unknown();
    fields.is_transfer_agent = None;
    fields.validate()?;
    check_references(&state, &key.workspace_id, &fields, "").await?;
    let selector = query.parse()?;
    let patch = to_document(&fields)?;
    let current = state.store.get_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), selector).await.map_err(not_found)?;
    from_document::<AgentFields>(&merged(&current.document, &patch))?.validate()?;
    let row = state.store.update_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), selector, &patch).await.map_err(not_found)?;
    Ok(Json(agent_response(row)?))
}

/// List agents (one summary per agent).
#[utoipa::path(post, path = "/v2/list-agents", tag = "Agent",
    params(ListQuery),
    request_body = ListAgentsBody,
    responses((status = 200, body = Paginated<AgentListItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_agents(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiQuery(query): ApiQuery<ListQuery>,
    ApiJson(body): ApiJson<ListAgentsBody>,
) -> ApiResult<Json<Paginated<AgentListItem>>> {
    let request = query.page_request()?;
    let filter = body.filter_criteria.unwrap_or_default();
    let wants_chat = filter.channel.as_ref().and_then(|c| c.get("value")).and_then(Value::as_str) == Some("chat");
    let wants_transfer = filter.is_transfer_agent.as_ref().and_then(|c| c.get("value")).and_then(Value::as_bool);
    let needle = filter.query.as_deref().map(str::to_lowercase);
    let mut items = Vec::new();
    let mut cursor = request.after.clone();
    let has_more = loop {
        let chunk = state
            .store
            .list_versioned(AGENTS, &key.workspace_id, &PageRequest { after: cursor.clone(), ..request.clone() })
            .await
            .map_err(|err| ApiError::from_store(err, "agent"))?;
        cursor = chunk.items.last().map(|row| row.id.clone());
        for row in chunk.items {
            let fields: AgentFields = from_document(&row.document)?;
            let name = fields.agent_name.clone().flatten().unwrap_or_default();
            let is_transfer_agent = fields.is_transfer_agent.unwrap_or(false);
            let matches = !wants_chat
                && wants_transfer.is_none_or(|wanted| wanted == is_transfer_agent)
                && needle.as_ref().is_none_or(|needle| name.to_lowercase().contains(needle) || row.id.to_lowercase().contains(needle));
            if matches {
                items.push(AgentListItem {
                    agent_id: row.id,
                    agent_name: name,
                    channel: "voice",
                    user_modified_timestamp: row.last_modification_timestamp,
                    tags: BTreeMap::new(),
                    is_suspended: false,
                    is_transfer_agent,
                });
            }
        }
        if items.len() >= request.limit {
            break items.len() > request.limit || chunk.has_more;
        }
        if !chunk.has_more {
            break false;
        }
    };
    items.truncate(request.limit);
    Ok(Json(Paginated::new(items, has_more, |item| item.agent_id.clone())))
}

/// Delete an agent and all its versions. Refused while a phone number binds it.
#[utoipa::path(delete, path = "/delete-agent/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_agent(State(state): State<ApiState>, Workspace(key): Workspace, Path(agent_id): Path<String>) -> ApiResult<StatusCode> {
    let agent_id = parse_agent_id(&agent_id)?;
    let not_found = |err| ApiError::from_store(err, format!("agent {agent_id}"));
    state.store.get_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), None).await.map_err(not_found)?;
    let numbers = state.store.numbers_mentioning(&key.workspace_id, agent_id.as_str()).await.map_err(not_found)?;
    if !numbers.is_empty() {
        return Err(ApiError::field("agent_id", format!("is bound to phone number(s) {}; unbind it first", numbers.join(", "))));
    }
    state.store.delete_versioned(AGENTS, &key.workspace_id, agent_id.as_str()).await.map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a version in place. Its Retell LLM version is pinned and published with it, so a
/// published agent version never changes behaviour.
#[utoipa::path(post, path = "/publish-agent-version/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path)),
    request_body = PublishAgentBody,
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn publish_agent_version(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiJson(body): ApiJson<PublishAgentBody>,
) -> ApiResult<StatusCode> {
    let agent_id = parse_agent_id(&agent_id)?;
    let workspace_id = &key.workspace_id;
    let not_found = |err| ApiError::from_store(err, format!("agent {agent_id} version {}", body.version));
    let row = state
        .store
        .get_versioned(AGENTS, workspace_id, agent_id.as_str(), Some(AgentVersionRef::Number(body.version)))
        .await
        .map_err(not_found)?;
    let fields: AgentFields = from_document(&row.document)?;
    let mut patch = Document::new();
    if let Some(title) = body.version_title {
        patch.insert("version_title".into(), json!(title));
    }
    if let Some(description) = body.version_description {
        patch.insert("version_description".into(), json!(description));
    }
    if let Some(ResponseEngine::RetellLlm { llm_id, version }) = fields.response_engine {
        let selector = version.flatten().map(AgentVersionRef::Number);
        let llm = state
            .store
            .get_versioned(LLMS, workspace_id, &llm_id, selector)
            .await
            .map_err(|err| ApiError::from_store(err, format!("retell llm {llm_id}")))?;
        state
            .store
            .publish_versioned(LLMS, workspace_id, &llm_id, llm.version, &Document::new())
            .await
            .map_err(|err| ApiError::from_store(err, format!("retell llm {llm_id}")))?;
        let pinned = ResponseEngine::RetellLlm { llm_id, version: Some(Some(llm.version)) };
        patch.insert("response_engine".into(), serde_json::to_value(pinned).map_err(anyhow::Error::from)?);
    } else if let Some(ResponseEngine::ConversationFlow { conversation_flow_id, version }) = fields.response_engine {
        let not_found = |err| ApiError::from_store(err, format!("conversation flow {conversation_flow_id}"));
        let selector = version.flatten().map(AgentVersionRef::Number);
        let flow = state.store.get_versioned(FLOWS, workspace_id, &conversation_flow_id, selector).await.map_err(not_found)?;
        state
            .store
            .publish_versioned(FLOWS, workspace_id, &conversation_flow_id, flow.version, &Document::new())
            .await
            .map_err(not_found)?;
        let pinned = ResponseEngine::ConversationFlow { conversation_flow_id, version: Some(Some(flow.version)) };
        patch.insert("response_engine".into(), serde_json::to_value(pinned).map_err(anyhow::Error::from)?);
    }
    state.store.publish_versioned(AGENTS, workspace_id, agent_id.as_str(), body.version, &patch).await.map_err(not_found)?;
    Ok(StatusCode::OK)
}

/// List the versions of an agent.
#[utoipa::path(get, path = "/list-agent-versions/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path), ListQuery),
    responses((status = 200, body = Paginated<AgentVersionItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_agent_versions(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<AgentVersionItem>>> {
    let agent_id = parse_agent_id(&agent_id)?;
    let page = state
        .store
        .list_versions(AGENTS, &key.workspace_id, agent_id.as_str(), &query.page_request()?)
        .await
        .map_err(|err| ApiError::from_store(err, format!("agent {agent_id}")))?;
    let items = page
        .items
        .into_iter()
        .map(|row| {
            let text = |key: &str| row.document.get(key).and_then(Value::as_str).map(str::to_owned);
            AgentVersionItem {
                version: row.version,
                is_published: row.is_published,
                last_modification_timestamp: row.last_modification_timestamp,
                base_version: row.base_version,
                version_title: text("version_title"),
                version_description: text("version_description"),
            }
        })
        .collect();
    Ok(Json(Paginated::new(items, page.has_more, |item| item.version.to_string())))
}

/// Every version of an agent as full objects (the older `getVersions` call).
#[utoipa::path(get, path = "/get-agent-versions/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path)),
    responses((status = 200, body = Vec<AgentResponse>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_agent_versions(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Vec<AgentResponse>>> {
    let agent_id = parse_agent_id(&agent_id)?;
    let request = PageRequest { limit: 10_000, after: None, descending: false };
    let page = state
        .store
        .list_versions(AGENTS, &key.workspace_id, agent_id.as_str(), &request)
        .await
        .map_err(|err| ApiError::from_store(err, format!("agent {agent_id}")))?;
    Ok(Json(page.items.into_iter().map(agent_response).collect::<ApiResult<_>>()?))
}

/// Create a new draft version copied from `base_version`.
#[utoipa::path(post, path = "/create-agent-version/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path)),
    request_body = CreateAgentVersionBody,
    responses((status = 201, body = AgentResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_agent_version(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiJson(body): ApiJson<CreateAgentVersionBody>,
) -> ApiResult<(StatusCode, Json<AgentResponse>)> {
    let agent_id = parse_agent_id(&agent_id)?;
    let row = state
        .store
        .branch_versioned(AGENTS, &key.workspace_id, agent_id.as_str(), body.base_version)
        .await
        .map_err(|err| ApiError::from_store(err, format!("agent {agent_id} version {}", body.base_version)))?;
    Ok((StatusCode::CREATED, Json(agent_response(row)?)))
}

/// Delete one version of an agent (not its only one).
#[utoipa::path(delete, path = "/delete-agent-version/{agent_id}", tag = "Agent",
    params(("agent_id" = String, Path), RequiredVersionQuery),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_agent_version(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(agent_id): Path<String>,
    ApiQuery(query): ApiQuery<RequiredVersionQuery>,
) -> ApiResult<StatusCode> {
    let agent_id = parse_agent_id(&agent_id)?;
    state
        .store
        .delete_version(AGENTS, &key.workspace_id, agent_id.as_str(), query.version)
        .await
        .map_err(|err| ApiError::from_store(err, format!("agent {agent_id} version {}", query.version)))?;
    Ok(StatusCode::NO_CONTENT)
}
