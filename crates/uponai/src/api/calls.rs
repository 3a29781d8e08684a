//! Calls: `/v2/create-phone-call`, `/v2/register-phone-call`, `/v2/get-call`,
//! `/v3/list-calls`, `/v2/update-call`, `/v2/delete-call`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::ApiState;
use super::agents::check_references;
use super::call_filter::CallFilter;
use super::call_view::{
    CreatePhoneCallRequest, RegisterPhoneCallRequest, UpdateCallRequest, check_idempotency_key, check_sip_headers, parse_version,
};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Workspace};
use super::paging::{SortOrder, page_request};
use super::validate::from_document;
use crate::admission::Refusal;
use crate::calls::{CallLeg, CreateCallError, NewCall, prepare_call};
use crate::dispatch::PlaceError;
use crate::domain::limits::TrunkRef;
use crate::domain::{AgentId, CallId, Direction, WorkspaceId};
use crate::store::{Document, StoreError};
use crate::view::CallResponse;

/// Runs call creation: validate, then let the dispatcher decide (admit or refuse, store, dial).
pub(super) async fn create(state: &ApiState, workspace_id: &WorkspaceId, request: NewCall) -> ApiResult<CallResponse> {
    let prepared = prepare_call(&state.store, workspace_id, request, rand::random::<f64>()).await.map_err(|err| match err {
        CreateCallError::Invalid { field, problem } => ApiError::field(field, problem),
        CreateCallError::Store(err) => ApiError::from_store(err, "call"),
    })?;
    let row = state.dispatcher.place_now(workspace_id, prepared).await.map_err(|err| match err {
        PlaceError::Refused { refusal, trunk } => rate_limited(&refusal, &trunk),
        PlaceError::Store(err) => ApiError::from_store(err, "call"),
    })?;
    Ok(CallResponse::from_row(row, &state.recording_links))
}

pub(super) fn rate_limited(refusal: &Refusal, trunk: &TrunkRef) -> ApiError {
    match refusal {
        Refusal::Cps { limit, retry_after } => ApiError::RateLimited {
            message: format!(
                "rate_limited: the {} trunk's limit of {limit} calls per second is reached; retry after {} ms",
                trunk.provider.key(),
                retry_after.as_millis()
            ),
            retry_after: *retry_after,
        },
        Refusal::Concurrency { limit, retry_after } => ApiError::RateLimited {
            message: format!("rate_limited: the workspace's concurrency limit of {limit} calls is reached; retry when a call ends"),
            retry_after: *retry_after,
        },
    }
}

/// Checks the agent-override references (LLM, voices) against the workspace.
pub(super) async fn check_override_references(
    state: &ApiState,
    workspace_id: &WorkspaceId,
    agent_override: &Document,
    prefix: &str,
) -> ApiResult<()> {
    if agent_override.is_empty() {
        return Ok(());
    }
    let fields = from_document(agent_override)?;
    check_references(state, workspace_id, &fields, prefix).await
}

/// Puts the override LLM's tool URLs through the egress guard.
pub(super) async fn check_override_llm(state: &ApiState, retell_llm: &Document, prefix: &str) -> ApiResult<()> {
    if retell_llm.is_empty() {
        return Ok(());
    }
    from_document::<super::llms::LlmFields>(retell_llm)?.check_targets(state.calls.config.egress, prefix).await
}

pub(super) fn parse_override_agent(raw: Option<&str>, field: &str) -> ApiResult<Option<AgentId>> {
    raw.map(|raw| AgentId::parse(raw).ok_or_else(|| ApiError::field(field, format!("{raw:?} is not an agent of this workspace"))))
        .transpose()
}

/// Place an outbound call. It is recorded `registered`; the dialer takes it from there.
#[utoipa::path(post, path = "/v2/create-phone-call", tag = "Call",
    request_body = CreatePhoneCallRequest,
    responses((status = 201, body = CallResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "a CPS or concurrency limit; see Retry-After / retry-after-ms")))]
pub async fn create_phone_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<CreatePhoneCallRequest>,
) -> ApiResult<(StatusCode, Json<CallResponse>)> {
    let headers = request.custom_sip_headers.unwrap_or_default();
    check_sip_headers(&headers)?;
    if let Some(key) = &request.idempotency_key {
        check_idempotency_key(key)?;
    }
    let overrides = request.agent_override.unwrap_or_default().parse("agent_override.")?;
    check_override_references(&state, &key.workspace_id, &overrides.agent, "agent_override.agent.").await?;
    check_override_llm(&state, &overrides.retell_llm, "agent_override.retell_llm.").await?;
    let new_call = NewCall {
        leg: CallLeg::Outbound {
            from_number: request.from_number,
            to_number: request.to_number,
            ignore_e164_validation: request.ignore_e164_validation.unwrap_or(false),
            custom_sip_headers: headers,
        },
        override_agent_id: parse_override_agent(request.override_agent_id.as_deref(), "override_agent_id")?,
        override_agent_version: parse_version("override_agent_version", request.override_agent_version.as_ref())?,
        agent_override: overrides.agent,
        retell_llm_override: overrides.retell_llm,
        metadata: request.metadata,
        dynamic_variables: request.retell_llm_dynamic_variables,
        idempotency_key: request.idempotency_key,
        extra: Document::new(),
    };
    let call = create(&state, &key.workspace_id, new_call).await?;
    Ok((StatusCode::CREATED, Json(call)))
}

/// Register a call that your own telephony will dial in to (`sip:{call_id}@<this host>`).
#[utoipa::path(post, path = "/v2/register-phone-call", tag = "Call",
    request_body = RegisterPhoneCallRequest,
    responses((status = 201, body = CallResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register_phone_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<RegisterPhoneCallRequest>,
) -> ApiResult<(StatusCode, Json<CallResponse>)> {
    let direction = match request.direction.as_deref() {
        None => Direction::Inbound,
        Some(raw) => Direction::parse(raw).ok_or_else(|| ApiError::field("direction", "must be inbound or outbound"))?,
    };
    let overrides = request.agent_override.unwrap_or_default().parse("agent_override.")?;
    check_override_references(&state, &key.workspace_id, &overrides.agent, "agent_override.agent.").await?;
    check_override_llm(&state, &overrides.retell_llm, "agent_override.retell_llm.").await?;
    let new_call = NewCall {
        leg: CallLeg::Registered {
            direction,
            from_number: request.from_number.unwrap_or_default(),
            to_number: request.to_number.unwrap_or_default(),
        },
        override_agent_id: parse_override_agent(Some(&request.agent_id), "agent_id")?,
        override_agent_version: parse_version("agent_version", request.agent_version.as_ref())?,
        agent_override: overrides.agent,
        retell_llm_override: overrides.retell_llm,
        metadata: request.metadata,
        dynamic_variables: request.retell_llm_dynamic_variables,
        idempotency_key: None,
        extra: Document::new(),
    };
    let call = create(&state, &key.workspace_id, new_call).await.map_err(|err| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(message.replacen("override_agent_id", "agent_id", 1)),
        other => other,
    })?;
    Ok((StatusCode::CREATED, Json(call)))
}

pub(super) fn parse_call_id(raw: &str) -> ApiResult<CallId> {
    CallId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("call {raw}")))
}

/// Get a call.
#[utoipa::path(get, path = "/v2/get-call/{call_id}", tag = "Call",
    params(("call_id" = String, Path)),
    responses((status = 200, body = CallResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallResponse>> {
    let call_id = parse_call_id(&call_id)?;
    let row =
        state.store.get_call(&key.workspace_id, &call_id).await.map_err(|err| ApiError::from_store(err, format!("call {call_id}")))?;
    Ok(Json(CallResponse::from_row(row, &state.recording_links)))
}

/// `POST /v3/list-calls`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ListCallsRequest {
    /// Conditions on the call object, AND-ed: `{call_status: {type:"enum", op:"in", value:[…]}, …}`.
    #[schema(value_type = Option<Object>)]
    pub filter_criteria: Option<Map<String, Value>>,
    /// By creation time; default descending.
    pub sort_order: Option<SortOrder>,
    /// 1–1000, default 50.
    pub limit: Option<i64>,
    pub pagination_key: Option<String>,
    /// Matches to skip before the page starts (not with `pagination_key`).
    pub skip: Option<i64>,
    /// Also count every match.
    pub include_total: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallListResponse {
    pub items: Vec<CallResponse>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// Rows read from the store per scan step.
const SCAN_CHUNK: i64 = 500;

/// List calls, newest first by default, filtered.
#[utoipa::path(post, path = "/v3/list-calls", tag = "Call",
    request_body = ListCallsRequest,
    responses((status = 200, body = CallListResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_calls(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<ListCallsRequest>,
) -> ApiResult<Json<CallListResponse>> {
    let page = page_request(request.limit, request.pagination_key.clone(), request.sort_order)?;
    let skip = request.skip.unwrap_or(0);
    if skip < 0 {
        return Err(ApiError::field("skip", "must not be negative"));
    }
    if skip > 0 && page.after.is_some() {
        return Err(ApiError::field("skip", "cannot be combined with pagination_key"));
    }
    let filter = CallFilter::compile(&request.filter_criteria.unwrap_or_default())?;
    let include_total = request.include_total.unwrap_or(false);
    let mut cursor = match &page.after {
        None => None,
        Some(raw) => Some(CallId::parse(raw).ok_or_else(|| ApiError::field("pagination_key", "does not name a call of this list"))?),
    };
    let mut items = Vec::new();
    let (mut n_matched, mut has_more) = (0i64, false);
    loop {
        let chunk = state
            .store
            .scan_calls(&key.workspace_id, cursor.as_ref(), page.descending, SCAN_CHUNK)
            .await
            .map_err(|err| ApiError::from_store(err, "call"))?;
        let exhausted = chunk.len() < SCAN_CHUNK as usize;
        cursor = chunk.last().map(|row| row.call_id.clone());
        for row in chunk {
            let view = CallResponse::from_row(row, &state.recording_links);
            let as_json = serde_json::to_value(&view).map_err(anyhow::Error::from)?;
            if !filter.matches(&as_json) {
                continue;
            }
            n_matched += 1;
            if n_matched <= skip {
                continue;
            }
            if items.len() < page.limit {
                items.push(view);
            } else {
                has_more = true;
                if !include_total {
                    break;
                }
            }
        }
        if exhausted || (has_more && !include_total) {
            break;
        }
    }
    let pagination_key = if has_more { items.last().map(|call| call.call_id.clone()) } else { None };
    Ok(Json(CallListResponse { items, has_more, pagination_key, total: include_total.then_some(n_matched) }))
}

const STORAGE_ORDER: &[&str] = &["everything", "everything_except_pii", "basic_attributes_only"];

/// Update a call's metadata, storage setting or custom attributes.
#[utoipa::path(patch, path = "/v2/update-call/{call_id}", tag = "Call",
    params(("call_id" = String, Path)),
    request_body = UpdateCallRequest,
    responses((status = 200, body = CallResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(call_id): Path<String>,
    ApiJson(request): ApiJson<UpdateCallRequest>,
) -> ApiResult<Json<CallResponse>> {
    let call_id = parse_call_id(&call_id)?;
    let not_found = |err: StoreError| ApiError::from_store(err, format!("call {call_id}"));
    let current = state.store.get_call(&key.workspace_id, &call_id).await.map_err(not_found)?;
    let mut patch = Document::new();
    if let Some(metadata) = request.metadata {
        patch.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(setting) = request.data_storage_setting {
        let rank = |s: &str| STORAGE_ORDER.iter().position(|known| *known == s);
        let wanted = rank(&setting)
            .ok_or_else(|| ApiError::field("data_storage_setting", format!("must be one of {}", STORAGE_ORDER.join(", "))))?;
        let now = current.document.get("data_storage_setting").and_then(Value::as_str).and_then(rank).unwrap_or(0);
        if wanted < now {
            return Err(ApiError::field("data_storage_setting", "can only become more restrictive"));
        }
        patch.insert("data_storage_setting".into(), json!(setting));
    }
    if let Some(attributes) = request.custom_attributes {
        let mut merged: BTreeMap<String, Value> =
            current.document.get("custom_attributes").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
        for (name, value) in attributes {
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                return Err(ApiError::field(format!("custom_attributes.{name}"), "must be a string, number or boolean"));
            }
            merged.insert(name, value);
        }
        patch.insert("custom_attributes".into(), json!(merged));
    }
    let row = state.store.patch_call_document(&key.workspace_id, &call_id, &patch).await.map_err(not_found)?;
    Ok(Json(CallResponse::from_row(row, &state.recording_links)))
}

/// Delete a call and what it kept: its recordings (links to them then answer 404) and its
/// webhook events. An ongoing call is refused; stop it first.
#[utoipa::path(delete, path = "/v2/delete-call/{call_id}", tag = "Call",
    params(("call_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_call(State(state): State<ApiState>, Workspace(key): Workspace, Path(call_id): Path<String>) -> ApiResult<StatusCode> {
    let call_id = parse_call_id(&call_id)?;
    let failed = |err: StoreError| ApiError::from_store(err, format!("call {call_id}"));
    let call = state.store.get_call(&key.workspace_id, &call_id).await.map_err(failed)?;
    if call.call_status == crate::domain::CallStatus::Ongoing {
        return Err(ApiError::BadRequest(format!("call {call_id} is ongoing; end it with stop-call first")));
    }
    // A call still being dialed is hung up, so that it never gets to record.
    state.calls.hang_up(&call_id);
    // Files before the row: a failure leaves the call listed, never a recording unlisted.
    state
        .recording_links
        .remove_files_of(&call)
        .await
        .map_err(|err| ApiError::Internal(anyhow::Error::new(err).context("remove recordings")))?;
    state.store.delete_call(&key.workspace_id, &call_id).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hang up a call now (`manual_stopped`): a ringing call is cancelled, a connected one gets
/// BYE, a registered one that no task owns yet is ended. Stopping an ended call is a no-op.
#[utoipa::path(post, path = "/v2/stop-call/{call_id}", tag = "Call",
    params(("call_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stop_call(State(state): State<ApiState>, Workspace(key): Workspace, Path(call_id): Path<String>) -> ApiResult<StatusCode> {
    let call_id = parse_call_id(&call_id)?;
    let call =
        state.store.get_call(&key.workspace_id, &call_id).await.map_err(|err| ApiError::from_store(err, format!("call {call_id}")))?;
    if !state.calls.hang_up(&call_id) && call.call_status == crate::domain::CallStatus::Registered {
        // No task owns it (a dial-in still waiting, or not yet picked up): end it here; the
        // dispatcher will not dial an ended call.
        let termination = crate::domain::Termination::not_connected(crate::domain::DisconnectionReason::ManualStopped);
        state.calls.end(&key.workspace_id, &call_id, termination, Document::new()).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
