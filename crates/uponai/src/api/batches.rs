//! Batch calls: `POST /create-batch-call`, and reading progress with
//! `GET /get-batch-call/{id}` and `GET /v2/list-batch-calls` (shapes of our own).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::ApiState;
use super::call_view::{AgentOverride, check_sip_headers, parse_version};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Workspace};
use super::paging::{ListQuery, Paginated};
use crate::calls::{CreateCallError, prepare_call};
use crate::dispatch::batch::{new_call_from_task, window_of};
use crate::domain::time_window::CallTimeWindow;
use crate::domain::{AgentId, now_ms};
use crate::store::{BatchRow, Document};

/// The most tasks one batch may hold.
const MAX_TASKS: usize = 10_000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateBatchCallRequest {
    /// A number of this workspace.
    pub from_number: String,
    /// One outbound call per task.
    pub tasks: Vec<BatchTask>,
    pub name: Option<String>,
    /// Epoch ms; unset means now.
    pub trigger_timestamp: Option<f64>,
    /// Concurrency kept free for other calls (inbound, API calls).
    pub reserved_concurrency: Option<i64>,
    pub call_time_window: Option<CallTimeWindowWire>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchTask {
    pub to_number: String,
    pub override_agent_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub override_agent_version: Option<Value>,
    pub agent_override: Option<AgentOverride>,
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, String>>,
    pub metadata: Option<Map<String, Value>>,
    pub custom_sip_headers: Option<BTreeMap<String, String>>,
    pub ignore_e164_validation: Option<bool>,
}

/// Allowed calling windows, in minutes since local midnight.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CallTimeWindowWire {
    pub windows: Vec<WindowWire>,
    /// Day names (`Monday` … `Sunday`); empty or unset means every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<Vec<String>>,
    /// IANA time zone (default America/Los_Angeles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WindowWire {
    pub start: f64,
    pub end: f64,
}

/// A batch as created (`BatchCallResponse`), with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCallResponse {
    pub batch_call_id: String,
    pub name: String,
    pub from_number: String,
    pub scheduled_timestamp: i64,
    pub total_task_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_time_window: Option<CallTimeWindowWire>,
    pub reserved_concurrency: i64,
    /// `scheduled`, `running`, `completed` or `cancelled`.
    pub status: String,
    pub progress: BatchProgressView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchProgressView {
    /// Tasks not dialed yet.
    pub pending: i64,
    /// Tasks whose call was created (find them with list-calls, filter batch_call_id).
    pub called: i64,
    /// Tasks that could not become calls, with why.
    pub failed: i64,
    /// The batch's calls by `call_status`.
    #[schema(value_type = Object)]
    pub calls: BTreeMap<String, i64>,
}

async fn view(state: &ApiState, batch: BatchRow) -> ApiResult<BatchCallResponse> {
    let progress =
        state.store.batch_progress(&batch.workspace_id, &batch.batch_call_id).await.map_err(|err| ApiError::from_store(err, "batch"))?;
    let window = window_of(&batch).map(|window| CallTimeWindowWire {
        windows: window.windows().iter().map(|(start, end)| WindowWire { start: f64::from(*start), end: f64::from(*end) }).collect(),
        day: Some(window.day_names().into_iter().map(str::to_owned).collect()),
        timezone: Some(window.timezone_name().to_owned()),
    });
    Ok(BatchCallResponse {
        batch_call_id: batch.batch_call_id,
        name: batch.name,
        from_number: batch.from_number,
        scheduled_timestamp: batch.scheduled_timestamp,
        total_task_count: batch.total_task_count,
        call_time_window: window,
        reserved_concurrency: batch.reserved_concurrency,
        status: batch.status,
        progress: BatchProgressView {
            pending: progress.pending,
            called: progress.called,
            failed: progress.failed,
            calls: progress.calls_by_status.into_iter().collect(),
        },
    })
}

/// A task in the canonical stored form the worker reads.
fn canonical_task(index: usize, task: BatchTask) -> ApiResult<Document> {
    let at = |err: ApiError| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(format!("tasks[{index}].{message}")),
        other => other,
    };
    let headers = task.custom_sip_headers.unwrap_or_default();
    check_sip_headers(&headers).map_err(at)?;
    let overrides = task.agent_override.unwrap_or_default().parse("agent_override.").map_err(at)?;
    if let Some(raw) = &task.override_agent_id {
        AgentId::parse(raw)
            .ok_or_else(|| at(ApiError::field("override_agent_id", format!("{raw:?} is not an agent of this workspace"))))?;
    }
    parse_version("override_agent_version", task.override_agent_version.as_ref()).map_err(at)?;
    let mut doc = Document::new();
    doc.insert("to_number".into(), json!(task.to_number));
    if let Some(id) = task.override_agent_id {
        doc.insert("override_agent_id".into(), json!(id));
    }
    if let Some(version) = task.override_agent_version.filter(|v| !v.is_null()) {
        doc.insert("override_agent_version".into(), version);
    }
    if !overrides.agent.is_empty() {
        doc.insert("agent_override".into(), Value::Object(overrides.agent));
    }
    if !overrides.retell_llm.is_empty() {
        doc.insert("retell_llm_override".into(), Value::Object(overrides.retell_llm));
    }
    if let Some(metadata) = task.metadata {
        doc.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(variables) = task.retell_llm_dynamic_variables {
        doc.insert("retell_llm_dynamic_variables".into(), json!(variables));
    }
    if !headers.is_empty() {
        doc.insert("custom_sip_headers".into(), json!(headers));
    }
    if let Some(ignore) = task.ignore_e164_validation {
        doc.insert("ignore_e164_validation".into(), json!(ignore));
    }
    Ok(doc)
}

/// Create a batch campaign: its tasks are queued and dialed at the trunk's CPS, within the
/// concurrency left after `reserved_concurrency`, only inside `call_time_window`.
#[utoipa::path(post, path = "/create-batch-call", tag = "Batch Call",
    request_body = CreateBatchCallRequest,
    responses((status = 201, body = BatchCallResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_batch_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<CreateBatchCallRequest>,
) -> ApiResult<(StatusCode, Json<BatchCallResponse>)> {
    let workspace_id = key.workspace_id;
    if request.tasks.is_empty() || request.tasks.len() > MAX_TASKS {
        return Err(ApiError::field("tasks", format!("must hold 1 to {MAX_TASKS} tasks, got {}", request.tasks.len())));
    }
    let limits = state.calls.limits(&workspace_id).await;
    let reserved = request.reserved_concurrency.unwrap_or(0);
    if reserved < 0 || reserved >= i64::from(limits.concurrency) {
        return Err(ApiError::field(
            "reserved_concurrency",
            format!("must be between 0 and {} (below the concurrency limit of {})", limits.concurrency - 1, limits.concurrency),
        ));
    }
    let scheduled = match request.trigger_timestamp {
        None => now_ms(),
        Some(ms) if ms.is_finite() && (0.0..1e15).contains(&ms) => ms as i64,
        Some(ms) => return Err(ApiError::field("trigger_timestamp", format!("{ms} is not an epoch time in milliseconds"))),
    };
    let window = match &request.call_time_window {
        None => None,
        Some(wire) => {
            let windows: Vec<(f64, f64)> = wire.windows.iter().map(|w| (w.start, w.end)).collect();
            let parsed = CallTimeWindow::parse(&windows, wire.day.as_deref().unwrap_or_default(), wire.timezone.as_deref())
                .map_err(|(field, problem)| ApiError::field(format!("call_time_window.{field}"), problem))?;
            let mut doc = Document::new();
            doc.insert("windows".into(), json!(parsed.windows().iter().map(|(s, e)| json!({"start": s, "end": e})).collect::<Vec<_>>()));
            doc.insert("day".into(), json!(parsed.day_names()));
            doc.insert("timezone".into(), json!(parsed.timezone_name()));
            Some(doc)
        }
    };
    let mut tasks = Vec::with_capacity(request.tasks.len());
    for (index, task) in request.tasks.into_iter().enumerate() {
        let doc = canonical_task(index, task)?;
        // The same checks the worker will make (number, agent, E.164, country rules), now.
        prepare_call(&state.store, &workspace_id, new_call_from_task(&request.from_number, &doc), 0.0).await.map_err(|err| match err {
            CreateCallError::Invalid { field: "from_number", problem } => ApiError::field("from_number", problem),
            CreateCallError::Invalid { field, problem } => ApiError::field(format!("tasks[{index}].{field}"), problem),
            CreateCallError::Store(err) => ApiError::from_store(err, "batch"),
        })?;
        tasks.push(doc);
    }
    let mut id = [0u8; 12];
    rand::rng().fill_bytes(&mut id);
    let batch = BatchRow {
        batch_call_id: format!("batch_call_{}", hex::encode(id)),
        workspace_id: workspace_id.clone(),
        name: request.name.unwrap_or_else(|| "batch".to_owned()),
        from_number: request.from_number,
        created_at: 0,
        scheduled_timestamp: scheduled,
        reserved_concurrency: reserved,
        call_time_window: window,
        total_task_count: i64::try_from(tasks.len()).unwrap_or(i64::MAX),
        status: "scheduled".to_owned(),
    };
    let batch = state.store.insert_batch(&batch, &tasks).await.map_err(|err| ApiError::from_store(err, "batch"))?;
    crate::dispatch::batch::spawn(state.calls.clone(), state.dispatcher.clone(), batch.clone());
    tracing::info!(%workspace_id, batch_call_id = %batch.batch_call_id, n_tasks = batch.total_task_count, "batch.created");
    Ok((StatusCode::CREATED, Json(view(&state, batch).await?)))
}

/// A batch and its progress.
#[utoipa::path(get, path = "/get-batch-call/{batch_call_id}", tag = "Batch Call",
    params(("batch_call_id" = String, Path)),
    responses((status = 200, body = BatchCallResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_batch_call(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(batch_call_id): Path<String>,
) -> ApiResult<Json<BatchCallResponse>> {
    let batch = state
        .store
        .get_batch(&key.workspace_id, &batch_call_id)
        .await
        .map_err(|err| ApiError::from_store(err, format!("batch {batch_call_id}")))?;
    Ok(Json(view(&state, batch).await?))
}

/// The workspace's batches, newest first by default.
#[utoipa::path(get, path = "/v2/list-batch-calls", tag = "Batch Call",
    params(ListQuery),
    responses((status = 200, body = Paginated<BatchCallResponse>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_batch_calls(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<BatchCallResponse>>> {
    let page =
        state.store.list_batches(&key.workspace_id, &query.page_request()?).await.map_err(|err| ApiError::from_store(err, "batch"))?;
    let mut items = Vec::with_capacity(page.items.len());
    for batch in page.items {
        items.push(view(&state, batch).await?);
    }
    Ok(Json(Paginated::new(items, page.has_more, |b| b.batch_call_id.clone())))
}
