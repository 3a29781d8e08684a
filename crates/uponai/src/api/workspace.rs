//! Workspace-level settings (provider trunks) and key identity.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Workspace};
use super::validate::{from_document, to_document};
use super::{ApiState, nullable};
use crate::domain::limits::{CpsProvider, DEFAULT_CONCURRENCY, Limits, MAX_CONCURRENCY};
use crate::domain::{Transport, WorkspaceId, sip_header};

/// The providers whose numbers ride a workspace-wide trunk.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Twilio,
    Telnyx,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
        }
    }

    /// `phone_number_type` of numbers on this provider's trunk.
    pub fn number_type(self) -> &'static str {
        match self {
            Self::Twilio => "retell-twilio",
            Self::Telnyx => "retell-telnyx",
        }
    }
}

/// An elastic SIP trunk at a provider, shared by the workspace's numbers of that provider.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderTrunk {
    /// Twilio: `<name>.pstn.twilio.com`; Telnyx: the FQDN of your connection.
    pub termination_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// Write-only: never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<String>,
    /// `TLS`, `TCP` or `UDP`; the provider's preset when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Source IPs or CIDRs the provider sends inbound calls from; unset means the address
    /// of `termination_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_inbound_sources: Option<Vec<String>>,
}

/// Calls per second per provider; unset means the default of 1.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CpsConfig {
    /// 1 to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<u32>,
    /// 1 to 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx: Option<u32>,
    /// 1 to concurrency_limit ÷ 20 (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<u32>,
}

/// Settings stored per workspace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_trunk: Option<ProviderTrunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx_trunk: Option<ProviderTrunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cps_config: Option<CpsConfig>,
    /// Simultaneous calls, both directions (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
    /// Where the events of calls whose agent has no `webhook_url` go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Timeout of each delivery attempt to `webhook_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_timeout_ms: Option<i64>,
    /// The OpenAI-compatible model server of the workspace's `retell-llm` agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateWorkspaceSettings {
    /// `null` removes the trunk.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<ProviderTrunk>, nullable)]
    pub twilio_trunk: Option<Option<ProviderTrunk>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<ProviderTrunk>, nullable)]
    pub telnyx_trunk: Option<Option<ProviderTrunk>>,
    /// Providers left out keep their value.
    pub cps_config: Option<CpsConfig>,
    /// 1 to 10,000.
    pub concurrency_limit: Option<u32>,
    /// An http(s) URL for the workspace's webhook events; `null` removes it. An agent's own
    /// `webhook_url` replaces it for that agent's calls.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub webhook_url: Option<Option<String>>,
    /// 1,000 to 300,000 (default 10,000).
    pub webhook_timeout_ms: Option<i64>,
    /// An OpenAI-compatible API base (`https://api.openai.com/v1`) for the workspace's
    /// `retell-llm` agents, instead of the install's; `null` removes it.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub llm_base_url: Option<Option<String>>,
    /// Sent to that server as a bearer token; never shown again.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub llm_api_key: Option<Option<String>>,
    /// The model name sent, instead of each LLM's `model`.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub llm_model: Option<Option<String>>,
}

/// A provider trunk as shown: the password only as a flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderTrunkView {
    pub termination_uri: String,
    pub auth_username: Option<String>,
    pub has_auth_password: bool,
    pub transport: Option<String>,
    pub allowed_inbound_sources: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceSettingsResponse {
    pub workspace_id: String,
    pub twilio_trunk: Option<ProviderTrunkView>,
    pub telnyx_trunk: Option<ProviderTrunkView>,
    /// The limits in force (defaults filled in).
    pub cps_config: CpsLimits,
    pub concurrency_limit: u32,
    pub webhook_url: Option<String>,
    pub webhook_timeout_ms: i64,
    pub llm_base_url: Option<String>,
    pub has_llm_api_key: bool,
    pub llm_model: Option<String>,
}

/// CPS in force per provider and the most each may be set to now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CpsLimits {
    pub twilio: u32,
    pub telnyx: u32,
    pub custom: u32,
    pub twilio_max: u32,
    pub telnyx_max: u32,
    pub custom_max: u32,
}

/// `GET /get-concurrency`, as the hosted API shapes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConcurrencyResponse {
    /// Calls live now: dialing, ringing or talking, both directions.
    pub current_concurrency: u32,
    pub concurrency_limit: u32,
    pub base_concurrency: u32,
    pub purchased_concurrency: u32,
    pub concurrency_purchase_limit: u32,
    pub remaining_purchase_limit: u32,
    pub concurrency_burst_enabled: bool,
    pub concurrency_burst_limit: u32,
    pub reserved_inbound_concurrency: u32,
}

/// `GET /get-api-key-info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub org_id: String,
    pub org_name: String,
    pub api_key_name: Option<String>,
}

/// The workspace's trunk for `provider`, if configured.
pub async fn provider_trunk(state: &ApiState, workspace_id: &WorkspaceId, provider: Provider) -> ApiResult<Option<ProviderTrunk>> {
    let settings = load(state, workspace_id).await?;
    Ok(match provider {
        Provider::Twilio => settings.twilio_trunk,
        Provider::Telnyx => settings.telnyx_trunk,
    })
}

async fn load(state: &ApiState, workspace_id: &WorkspaceId) -> ApiResult<WorkspaceSettings> {
    let document = state.store.workspace_settings(workspace_id).await.map_err(|err| ApiError::from_store(err, "workspace"))?;
    from_document(&document)
}

async fn check_trunk(state: &ApiState, field: &str, trunk: &ProviderTrunk) -> ApiResult<ProviderTrunk> {
    super::numbers::check_termination_uri(state, &format!("{field}.termination_uri"), &trunk.termination_uri).await?;
    let credential = super::numbers::check_credential;
    credential(&format!("{field}.auth_username"), trunk.auth_username.as_deref(), sip_header::check_username)?;
    credential(&format!("{field}.auth_password"), trunk.auth_password.as_deref(), sip_header::check_password)?;
    let transport = match &trunk.transport {
        None => None,
        Some(raw) => Some(
            Transport::parse(raw)
                .ok_or_else(|| ApiError::field(format!("{field}.transport"), "must be TLS, TCP or UDP"))?
                .as_str()
                .to_owned(),
        ),
    };
    for (i, raw) in trunk.allowed_inbound_sources.iter().flatten().enumerate() {
        if crate::calls::trunk::IpNet::parse(raw).is_none() {
            return Err(ApiError::field(format!("{field}.allowed_inbound_sources[{i}]"), format!("{raw:?} is not an IP address or CIDR")));
        }
    }
    Ok(ProviderTrunk { transport, ..trunk.clone() })
}

fn view(trunk: Option<ProviderTrunk>) -> Option<ProviderTrunkView> {
    trunk.map(|trunk| ProviderTrunkView {
        termination_uri: trunk.termination_uri,
        auth_username: trunk.auth_username,
        has_auth_password: trunk.auth_password.is_some(),
        transport: trunk.transport,
        allowed_inbound_sources: trunk.allowed_inbound_sources,
    })
}

fn response(workspace_id: &WorkspaceId, settings: WorkspaceSettings) -> ApiResult<WorkspaceSettingsResponse> {
    let limits = Limits::from_settings(&to_document(&settings)?);
    Ok(WorkspaceSettingsResponse {
        workspace_id: workspace_id.to_string(),
        twilio_trunk: view(settings.twilio_trunk),
        telnyx_trunk: view(settings.telnyx_trunk),
        cps_config: CpsLimits {
            twilio: limits.twilio_cps,
            telnyx: limits.telnyx_cps,
            custom: limits.custom_cps,
            twilio_max: CpsProvider::Twilio.max_cps(limits.concurrency),
            telnyx_max: CpsProvider::Telnyx.max_cps(limits.concurrency),
            custom_max: CpsProvider::Custom.max_cps(limits.concurrency),
        },
        concurrency_limit: limits.concurrency,
        webhook_timeout_ms: settings.webhook_timeout_ms.unwrap_or(crate::webhooks::DEFAULT_TIMEOUT_MS),
        webhook_url: settings.webhook_url,
        has_llm_api_key: settings.llm_api_key.is_some(),
        llm_base_url: settings.llm_base_url,
        llm_model: settings.llm_model,
    })
}

/// Checks the limits of a settings document against the spec's bounds.
fn check_limits(settings: &WorkspaceSettings) -> ApiResult<()> {
    let concurrency = settings.concurrency_limit.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ApiError::field("concurrency_limit", format!("must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")));
    }
    let cps = settings.cps_config.unwrap_or_default();
    for (provider, value) in [(CpsProvider::Twilio, cps.twilio), (CpsProvider::Telnyx, cps.telnyx), (CpsProvider::Custom, cps.custom)] {
        let Some(value) = value else { continue };
        let max = provider.max_cps(concurrency);
        if !(1..=max).contains(&value) {
            let why = if provider == CpsProvider::Custom { format!(" (concurrency_limit {concurrency} ÷ 20)") } else { String::new() };
            return Err(ApiError::field(
                format!("cps_config.{}", provider.key()),
                format!("must be between 1 and {max}{why}, got {value}"),
            ));
        }
    }
    Ok(())
}

/// The workspace's settings.
#[utoipa::path(get, path = "/get-workspace-settings", tag = "Workspace",
    responses((status = 200, body = WorkspaceSettingsResponse), (status = 401, body = ErrorBody)))]
pub async fn get_settings(State(state): State<ApiState>, Workspace(key): Workspace) -> ApiResult<Json<WorkspaceSettingsResponse>> {
    let settings = load(&state, &key.workspace_id).await?;
    Ok(Json(response(&key.workspace_id, settings)?))
}

/// Change the workspace's settings; fields left out keep their value.
#[utoipa::path(patch, path = "/update-workspace-settings", tag = "Workspace",
    request_body = UpdateWorkspaceSettings,
    responses((status = 200, body = WorkspaceSettingsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(update): ApiJson<UpdateWorkspaceSettings>,
) -> ApiResult<Json<WorkspaceSettingsResponse>> {
    let mut settings = load(&state, &key.workspace_id).await?;
    if let Some(trunk) = update.twilio_trunk {
        settings.twilio_trunk = match trunk {
            Some(trunk) => Some(check_trunk(&state, "twilio_trunk", &trunk).await?),
            None => None,
        };
    }
    if let Some(trunk) = update.telnyx_trunk {
        settings.telnyx_trunk = match trunk {
            Some(trunk) => Some(check_trunk(&state, "telnyx_trunk", &trunk).await?),
            None => None,
        };
    }
    if let Some(cps) = update.cps_config {
        let current = settings.cps_config.unwrap_or_default();
        settings.cps_config = Some(CpsConfig {
            twilio: cps.twilio.or(current.twilio),
            telnyx: cps.telnyx.or(current.telnyx),
            custom: cps.custom.or(current.custom),
        });
    }
    if let Some(limit) = update.concurrency_limit {
        settings.concurrency_limit = Some(limit);
    }
    if let Some(webhook_url) = update.webhook_url {
        if let Some(raw) = &webhook_url {
            super::validate::target_url(state.calls.config.egress, "webhook_url", raw, &["http", "https"]).await?;
        }
        settings.webhook_url = webhook_url;
    }
    if let Some(timeout) = update.webhook_timeout_ms {
        super::validate::range_i64("webhook_timeout_ms", Some(timeout), 1_000, 300_000)?;
        settings.webhook_timeout_ms = Some(timeout);
    }
    if let Some(base_url) = update.llm_base_url {
        if let Some(raw) = &base_url {
            super::validate::target_url(state.calls.config.egress, "llm_base_url", raw, &["http", "https"]).await?;
        }
        settings.llm_base_url = base_url;
    }
    if let Some(key) = update.llm_api_key {
        if let Some(raw) = &key
            && (raw.is_empty() || raw.len() > 1_000 || raw.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(ApiError::field("llm_api_key", "must be 1-1000 visible characters without spaces"));
        }
        settings.llm_api_key = key;
    }
    if let Some(model) = update.llm_model {
        if let Some(raw) = &model
            && (raw.is_empty() || raw.len() > 200 || raw.chars().any(char::is_control))
        {
            return Err(ApiError::field("llm_model", "must be 1-200 characters"));
        }
        settings.llm_model = model;
    }
    check_limits(&settings)?;
    state
        .store
        .put_workspace_settings(&key.workspace_id, &to_document(&settings)?)
        .await
        .map_err(|err| ApiError::from_store(err, "workspace"))?;
    Ok(Json(response(&key.workspace_id, settings)?))
}

/// Live calls against the workspace's limit.
#[utoipa::path(get, path = "/get-concurrency", tag = "Concurrency",
    responses((status = 200, body = ConcurrencyResponse), (status = 401, body = ErrorBody)))]
pub async fn get_concurrency(State(state): State<ApiState>, Workspace(key): Workspace) -> ApiResult<Json<ConcurrencyResponse>> {
    let limits = state.calls.limits(&key.workspace_id).await;
    Ok(Json(ConcurrencyResponse {
        current_concurrency: state.calls.admissions.live(&key.workspace_id),
        concurrency_limit: limits.concurrency,
        base_concurrency: limits.concurrency,
        purchased_concurrency: 0,
        concurrency_purchase_limit: 0,
        remaining_purchase_limit: 0,
        concurrency_burst_enabled: false,
        concurrency_burst_limit: 0,
        reserved_inbound_concurrency: 0,
    }))
}

/// Who the presented key is.
#[utoipa::path(get, path = "/get-api-key-info", tag = "Workspace",
    responses((status = 200, body = ApiKeyInfo), (status = 401, body = ErrorBody)))]
pub async fn api_key_info(Workspace(key): Workspace) -> Json<ApiKeyInfo> {
    Json(ApiKeyInfo { org_id: key.workspace_id.to_string(), org_name: key.workspace_name, api_key_name: Some(key.key_name) })
}
