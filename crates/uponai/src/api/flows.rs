//! Conversation-flow response engines: `/create-conversation-flow` and friends. A flow is a
//! versioned document like a Retell LLM; what makes it runnable (`nodes`, `start_node_id`,
//! edges, equations) is checked by the agent crate's parser, whose error names the field.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Workspace};
use super::paging::{ListQuery, Paginated};
use super::validate::{from_document, merged, to_document};
use super::{ApiState, VersionQuery, nullable};
use crate::domain::FlowId;
use crate::store::{AGENTS, FLOWS, VersionRow};

/// The fields of a conversation flow. Those the offline engine runs are typed; the rest
/// (models, tools, knowledge bases, canvas positions) are stored for M7 and the dashboard.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct FlowFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub nodes: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub start_node_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_speaker: Option<super::llms::StartSpeaker>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<BTreeMap<String, String>>, nullable)]
    pub default_dynamic_variables: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub global_prompt: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Object>, nullable)]
    pub model_choice: Option<Option<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub model_temperature: Option<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<Object>>, nullable)]
    pub tools: Option<Option<Vec<Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<Object>>, nullable)]
    pub components: Option<Option<Vec<Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub knowledge_base_ids: Option<Option<Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Object>, nullable)]
    pub begin_tag_display_position: Option<Option<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schema(value_type = Option<Vec<Object>>, nullable)]
    pub notes: Option<Option<Vec<Value>>>,
}

impl FlowFields {
    /// A complete flow runs: its nodes parse, edges reach nodes, the start node exists.
    fn validate_complete(&self) -> ApiResult<()> {
        let document = to_document(self)?;
        agent::flow::Flow::parse(&document).map(|_| ()).map_err(|e| ApiError::field(e.field, e.problem))
    }
}

/// A conversation flow as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowResponse {
    pub conversation_flow_id: String,
    pub version: i64,
    pub is_published: bool,
    pub last_modification_timestamp: i64,
    #[serde(flatten)]
    pub fields: FlowFields,
}

fn flow_response(row: VersionRow) -> ApiResult<FlowResponse> {
    Ok(FlowResponse {
        conversation_flow_id: row.id,
        version: row.version,
        is_published: row.is_published,
        last_modification_timestamp: row.last_modification_timestamp,
        fields: from_document(&row.document)?,
    })
}

fn parse_flow_id(raw: &str) -> ApiResult<FlowId> {
    FlowId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("conversation flow {raw}")))
}

/// Create a conversation flow (version 0, a draft).
#[utoipa::path(post, path = "/create-conversation-flow", tag = "Conversation Flow",
    request_body = FlowFields,
    responses((status = 201, body = FlowResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_flow(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(fields): ApiJson<FlowFields>,
) -> ApiResult<(StatusCode, Json<FlowResponse>)> {
    fields.validate_complete()?;
    let flow_id = FlowId::generate();
    let row = state
        .store
        .create_versioned(FLOWS, &key.workspace_id, flow_id.as_str(), &to_document(&fields)?)
        .await
        .map_err(|err| ApiError::from_store(err, "conversation flow"))?;
    Ok((StatusCode::CREATED, Json(flow_response(row)?)))
}

/// Get a conversation flow, by default its latest version.
#[utoipa::path(get, path = "/get-conversation-flow/{conversation_flow_id}", tag = "Conversation Flow",
    params(("conversation_flow_id" = String, Path), VersionQuery),
    responses((status = 200, body = FlowResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_flow(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(flow_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> ApiResult<Json<FlowResponse>> {
    let flow_id = parse_flow_id(&flow_id)?;
    let row = state
        .store
        .get_versioned(FLOWS, &key.workspace_id, flow_id.as_str(), query.parse()?)
        .await
        .map_err(|err| ApiError::from_store(err, format!("conversation flow {flow_id}")))?;
    Ok(Json(flow_response(row)?))
}

/// Update a conversation flow draft (the latest by default; a published latest branches a
/// new draft). The result must still be a runnable flow.
#[utoipa::path(patch, path = "/update-conversation-flow/{conversation_flow_id}", tag = "Conversation Flow",
    params(("conversation_flow_id" = String, Path), VersionQuery),
    request_body = FlowFields,
    responses((status = 200, body = FlowResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_flow(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(flow_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
    ApiJson(fields): ApiJson<FlowFields>,
) -> ApiResult<Json<FlowResponse>> {
    let flow_id = parse_flow_id(&flow_id)?;
    let not_found = |err| ApiError::from_store(err, format!("conversation flow {flow_id}"));
    let selector = query.parse()?;
    let patch = to_document(&fields)?;
    let current = state.store.get_versioned(FLOWS, &key.workspace_id, flow_id.as_str(), selector).await.map_err(not_found)?;
    from_document::<FlowFields>(&merged(&current.document, &patch))
        .map_err(|_| ApiError::BadRequest("the update does not combine into a valid configuration".into()))?
        .validate_complete()?;
    let row = state.store.update_versioned(FLOWS, &key.workspace_id, flow_id.as_str(), selector, &patch).await.map_err(not_found)?;
    Ok(Json(flow_response(row)?))
}

/// List conversation flows (latest version of each).
#[utoipa::path(get, path = "/v2/list-conversation-flows", tag = "Conversation Flow",
    params(ListQuery),
    responses((status = 200, body = Paginated<FlowResponse>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_flows(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<FlowResponse>>> {
    let page = state
        .store
        .list_versioned(FLOWS, &key.workspace_id, &query.page_request()?)
        .await
        .map_err(|err| ApiError::from_store(err, "conversation flow"))?;
    let items = page.items.into_iter().map(flow_response).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Paginated::new(items, page.has_more, |flow| flow.conversation_flow_id.clone())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteFlowQuery {
    /// Delete even if agents still use this flow.
    pub force_delete: Option<bool>,
}

/// Delete a conversation flow and all its versions. Refused while an agent uses it, unless forced.
#[utoipa::path(delete, path = "/delete-conversation-flow/{conversation_flow_id}", tag = "Conversation Flow",
    params(("conversation_flow_id" = String, Path), DeleteFlowQuery),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_flow(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(flow_id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteFlowQuery>,
) -> ApiResult<StatusCode> {
    let flow_id = parse_flow_id(&flow_id)?;
    let not_found = |err| ApiError::from_store(err, format!("conversation flow {flow_id}"));
    state.store.get_versioned(FLOWS, &key.workspace_id, flow_id.as_str(), None).await.map_err(not_found)?;
    if !query.force_delete.unwrap_or(false) {
        let users = state.store.versioned_mentioning(AGENTS, &key.workspace_id, flow_id.as_str()).await.map_err(not_found)?;
        if !users.is_empty() {
            return Err(ApiError::field(
                "conversation_flow_id",
                format!("is used by agent(s) {}; delete them first or pass force_delete=true", users.join(", ")),
            ));
        }
    }
    state.store.delete_versioned(FLOWS, &key.workspace_id, flow_id.as_str()).await.map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}
