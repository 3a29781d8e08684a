//! `GET /openapi.json`: generated from the handlers' own annotations and wire types, so it
//! cannot drift from what the server accepts and returns.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{agents, batches, calls, flows, llms, numbers, recordings, simulations, uponai, voices, webhooks, workspace};

#[derive(OpenApi)]
#[openapi(
    info(title = "uponai", description = "Self-hosted voice-AI calling; wire-compatible with the Retell API."),
    paths(
        llms::create_llm, llms::get_llm, llms::update_llm, llms::list_llms, llms::delete_llm,
        flows::create_flow, flows::get_flow, flows::update_flow, flows::list_flows, flows::delete_flow,
        agents::create_agent, agents::get_agent, agents::update_agent, agents::list_agents,
        agents::delete_agent, agents::publish_agent_version, agents::list_agent_versions,
        agents::get_agent_versions, agents::create_agent_version, agents::delete_agent_version,
        voices::list_voices, voices::get_voice,
        numbers::import_number, numbers::create_number, numbers::get_number, numbers::update_number,
        numbers::list_numbers, numbers::delete_number,
        workspace::get_settings, workspace::update_settings, workspace::api_key_info, workspace::get_concurrency,
        calls::create_phone_call, calls::register_phone_call, calls::get_call, calls::list_calls,
        calls::update_call, calls::delete_call, calls::stop_call,
        uponai::initiate_call, simulations::create_simulation, simulations::get_simulation, recordings::download,
        batches::create_batch_call, batches::get_batch_call, batches::list_batch_calls,
        webhooks::list_call_webhooks, webhooks::redeliver_webhook,
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
