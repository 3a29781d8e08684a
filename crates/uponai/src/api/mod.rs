//! The control-plane HTTP API, wire-compatible with the Retell API.
//!
//! Layout: `error` (the one failure → HTTP mapping), `extract` (JSON, query and auth
//! extractors whose rejections name the field), `paging`; then one module per resource in
//! the order a user meets them: `llms`, `agents` (+ `agent_fields`), `voices`, `numbers`,
//! `workspace`, `calls` (+ `call_view`, `call_filter`), `uponai` (UponAI's own call route);
//! last `openapi`, generated from the handlers' annotations.
//!
//! API Boundary: every `serde` type of the control plane lives here. Handlers parse, call
//! `store` or `calls`, and convert rows back to wire types by hand.

// Wire types in these private modules are `pub` for the OpenAPI derive and for each other;
// the private modules bound their visibility.
#![allow(unreachable_pub)]

mod agent_fields;
mod agents;
mod batches;
mod call_filter;
mod call_view;
mod calls;
mod error;
mod extract;
mod flows;
mod llms;
mod nullable;
mod numbers;
mod openapi;
mod paging;
mod recordings;
mod simulations;
mod uponai;
mod validate;
mod voices;
mod webhooks;
mod workspace;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;
use utoipa::IntoParams;

pub use crate::view::CallResponse;
pub use crate::view::RecordingLinks;
pub use error::{ApiError, ErrorBody};
pub use voices::DEFAULT_VOICE_ID;

use crate::dispatch::Dispatcher;
use crate::domain::AgentVersionRef;
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// Where new outbound calls are handed to be dialed.
    pub dispatcher: Dispatcher,
    /// The call tasks, for hanging up on request.
    pub calls: Arc<crate::calls::CallRuntime>,
    pub recording_links: Arc<RecordingLinks>,
}

/// `?version=` on get/update of agents and LLMs: a number, `latest` or `latest_published`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    pub version: Option<String>,
}

impl VersionQuery {
    fn parse(&self) -> Result<Option<AgentVersionRef>, ApiError> {
        self.version
            .as_deref()
            .map(|raw| AgentVersionRef::parse_str(raw).map_err(|problem| ApiError::field("version", problem)))
            .transpose()
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/create-conversation-flow", post(flows::create_flow))
        .route("/get-conversation-flow/{conversation_flow_id}", get(flows::get_flow))
        .route("/update-conversation-flow/{conversation_flow_id}", patch(flows::update_flow))
        .route("/v2/list-conversation-flows", get(flows::list_flows))
        .route("/delete-conversation-flow/{conversation_flow_id}", delete(flows::delete_flow))
        .route("/create-retell-llm", post(llms::create_llm))
        .route("/get-retell-llm/{llm_id}", get(llms::get_llm))
        .route("/update-retell-llm/{llm_id}", patch(llms::update_llm))
        .route("/v2/list-retell-llms", get(llms::list_llms))
        .route("/delete-retell-llm/{llm_id}", delete(llms::delete_llm))
        .route("/create-agent", post(agents::create_agent))
        .route("/get-agent/{agent_id}", get(agents::get_agent))
        .route("/update-agent/{agent_id}", patch(agents::update_agent))
        .route("/v2/list-agents", post(agents::list_agents))
        .route("/delete-agent/{agent_id}", delete(agents::delete_agent))
        .route("/publish-agent-version/{agent_id}", post(agents::publish_agent_version))
        .route("/list-agent-versions/{agent_id}", get(agents::list_agent_versions))
        .route("/get-agent-versions/{agent_id}", get(agents::get_agent_versions))
        .route("/create-agent-version/{agent_id}", post(agents::create_agent_version))
        .route("/delete-agent-version/{agent_id}", delete(agents::delete_agent_version))
        .route("/list-voices", get(voices::list_voices))
        .route("/get-voice/{voice_id}", get(voices::get_voice))
        .route("/import-phone-number", post(numbers::import_number))
        .route("/create-phone-number", post(numbers::create_number))
        .route("/get-phone-number/{phone_number}", get(numbers::get_number))
        .route("/update-phone-number/{phone_number}", patch(numbers::update_number))
        .route("/v2/list-phone-numbers", get(numbers::list_numbers))
        .route("/delete-phone-number/{phone_number}", delete(numbers::delete_number))
        .route("/get-workspace-settings", get(workspace::get_settings))
        .route("/update-workspace-settings", patch(workspace::update_settings))
        .route("/get-api-key-info", get(workspace::api_key_info))
        .route("/get-concurrency", get(workspace::get_concurrency))
        .route("/v2/create-phone-call", post(calls::create_phone_call))
        .route("/v2/register-phone-call", post(calls::register_phone_call))
        .route("/v2/get-call/{call_id}", get(calls::get_call))
        .route("/v3/list-calls", post(calls::list_calls))
        .route("/v2/update-call/{call_id}", patch(calls::update_call))
        .route("/v2/delete-call/{call_id}", delete(calls::delete_call))
        .route("/v2/stop-call/{call_id}", post(calls::stop_call))
        .route("/api/v1/calls/initiate", post(uponai::initiate_call))
        .route("/uponai/create-simulation", post(simulations::create_simulation))
        .route("/uponai/get-simulation/{call_id}", get(simulations::get_simulation))
        .route("/create-batch-call", post(batches::create_batch_call))
        .route("/get-batch-call/{batch_call_id}", get(batches::get_batch_call))
        .route("/v2/list-batch-calls", get(batches::list_batch_calls))
        .route("/list-call-webhooks/{call_id}", get(webhooks::list_call_webhooks))
        .route("/redeliver-webhook/{event_id}", post(webhooks::redeliver_webhook))
        .route("/recordings/{file}", get(recordings::download))
        .route("/openapi.json", get(openapi::serve))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}
