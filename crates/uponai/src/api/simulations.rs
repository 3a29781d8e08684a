//! The simulator over the API: `POST /uponai/create-simulation` has one of the workspace's
//! agents call a persona (`sim`), a simulated callee this server runs on loopback with its own
//! voice and ears; `GET /uponai/get-simulation/{call_id}` reads what the persona heard and
//! when. The call itself is a real one (real SIP and RTP, paced, counted against the
//! workspace's concurrency): Get Call shows its transcript, latency and recording.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::ApiState;
use super::call_view::parse_version;
use super::calls::{create, parse_call_id, parse_override_agent};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Workspace};
use crate::calls::simulation::SimulationRecord;
use crate::calls::{CallLeg, NewCall};
use crate::domain::{CallId, WorkspaceId};
use crate::sim::{Callee, Persona};
use crate::store::{Document, Store};

/// `POST /uponai/create-simulation`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSimulationRequest {
    /// The agent that calls the persona.
    pub agent_id: String,
    /// A version number, `latest` or `latest_published` [default: latest].
    #[schema(value_type = Option<Object>)]
    pub agent_version: Option<Value>,
    /// The simulated callee: `{name, lines: [{say?, press?, when?}], hang_up_after_ms?}`;
    /// `when` is `{type: "after_agent_stops"}` (the default), `{type: "at", ms}` (from the
    /// answer) or `{type: "over_agent", after_ms}` (a barge-in, this long into the agent's
    /// next utterance).
    #[schema(value_type = Object)]
    pub persona: Value,
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, String>>,
    /// A JSON object, stored with the call and echoed.
    pub metadata: Option<Map<String, Value>>,
}

/// A simulation: the call's id, and once the persona has hung up or been hung up on, its
/// report (what it heard, transcribed by its own Whisper, and its timings).
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulationResponse {
    pub call_id: String,
    /// `running`, `ended` (the report is there) or `failed` (`error` says why).
    pub status: &'static str,
    #[schema(value_type = Object)]
    pub persona: Value,
    /// `{heard: [{start, end, text}], said: [{start, end, text, agent_answered_after_ms}],
    /// ended_by}`; times in seconds from the answer.
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
    pub error: Option<String>,
}

impl SimulationResponse {
    fn of(call_id: &CallId, record: SimulationRecord) -> Self {
        let status = record.status();
        let SimulationRecord { persona, report, error } = record;
        Self { call_id: call_id.to_string(), status, persona, report, error }
    }
}

/// Have an agent call a simulated callee on this server.
#[utoipa::path(post, path = "/uponai/create-simulation", tag = "UponAI",
    request_body = CreateSimulationRequest,
    responses((status = 201, body = SimulationResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_simulation(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<CreateSimulationRequest>,
) -> ApiResult<(StatusCode, Json<SimulationResponse>)> {
    let persona: Persona = serde_json::from_value(request.persona.clone()).map_err(|err| ApiError::field("persona", err))?;
    persona.check().map_err(|(field, problem)| ApiError::field(field, problem))?;
    let agent_id = parse_override_agent(Some(&request.agent_id), "agent_id")?;
    let version = parse_version("agent_version", request.agent_version.as_ref())?;
    let speech = state.calls.config.speech.clone();
    let callee = Callee::bind().await.map_err(ApiError::Internal)?;
    let persona_json = serde_json::to_value(&persona).map_err(anyhow::Error::from)?;
    let extra = SimulationRecord::running(persona_json.clone()).patch();
    let new_call = NewCall {
        leg: CallLeg::Simulated { target: callee.addr() },
        override_agent_id: agent_id,
        override_agent_version: version,
        agent_override: Document::new(),
        retell_llm_override: Document::new(),
        metadata: request.metadata,
        dynamic_variables: request.retell_llm_dynamic_variables,
        idempotency_key: None,
        extra,
    };
    let call = create(&state, &key.workspace_id, new_call).await.map_err(|err| match err {
        ApiError::BadRequest(message) => ApiError::BadRequest(message.replacen("override_agent_version", "agent_version", 1).replacen(
            "override_agent_id",
            "agent_id",
            1,
        )),
        other => other,
    })?;
    let call_id = parse_call_id(&call.call_id)?;
    let store = state.store.clone();
    let workspace_id = key.workspace_id.clone();
    let (id, persona_for_task) = (call_id.clone(), persona_json.clone());
    tokio::spawn(async move {
        let outcome = match speech.engines().await {
            Ok(engines) => callee.run(&persona, &engines.offline, engines.stt.clone()).await,
            Err(err) => Err(anyhow::Error::new(err).context("load the offline speech engines")),
        };
        record(&store, &workspace_id, &id, persona_for_task, outcome).await;
    });
    Ok((StatusCode::CREATED, Json(SimulationResponse::of(&call_id, SimulationRecord::running(persona_json)))))
}

/// Keeps the persona's report (or why it has none) with the call.
async fn record(
    store: &Arc<Store>,
    workspace_id: &WorkspaceId,
    call_id: &CallId,
    persona: Value,
    outcome: anyhow::Result<crate::sim::PersonaReport>,
) {
    let running = SimulationRecord::running(persona);
    let record = match outcome.and_then(|report| Ok(serde_json::to_value(report)?)) {
        Ok(report) => running.ended(report),
        Err(err) => {
            tracing::warn!(%call_id, error = %format!("{err:#}"), "simulation.failed");
            running.failed(format!("{err:#}"))
        }
    };
    if let Err(err) = store.patch_call_document(workspace_id, call_id, &record.patch()).await {
        tracing::warn!(%call_id, error = %err, "simulation.report_lost");
    }
}

/// Read a simulation: the persona's report once it is done.
#[utoipa::path(get, path = "/uponai/get-simulation/{call_id}", tag = "UponAI",
    params(("call_id" = String, Path)),
    responses((status = 200, body = SimulationResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_simulation(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(call_id): Path<String>,
) -> ApiResult<Json<SimulationResponse>> {
    let call_id = parse_call_id(&call_id)?;
    let row = state
        .store
        .get_call(&key.workspace_id, &call_id)
        .await
        .map_err(|err| ApiError::from_store(err, format!("simulation {call_id}")))?;
    let record = SimulationRecord::of(&row.document).ok_or_else(|| ApiError::NotFound(format!("simulation {call_id}")))?;
    Ok(Json(SimulationResponse::of(&call_id, record)))
}
