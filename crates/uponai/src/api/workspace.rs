//! Workspace-level settings (provider trunks) and key identity.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Workspace};
use super::validate::{from_document, to_document};
use super::{nullable, ApiState};
use crate::domain::{TerminationUri, Transport, WorkspaceId};

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

/// Settings stored per workspace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_trunk: Option<ProviderTrunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telnyx_trunk: Option<ProviderTrunk>,
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
}

/// `GET /get-api-key-info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub org_id: String,
    pub org_name: String,
    pub api_key_name: Option<String>,
}

/// The workspace's trunk for `provider`, if configured.
pub async fn provider_trunk(
    state: &ApiState,
    workspace_id: &WorkspaceId,
    provider: Provider,
) -> ApiResult<Option<ProviderTrunk>> {
    let settings = load(state, workspace_id).await?;
    Ok(match provider {
        Provider::Twilio => settings.twilio_trunk,
        Provider::Telnyx => settings.telnyx_trunk,
    })
}

async fn load(state: &ApiState, workspace_id: &WorkspaceId) -> ApiResult<WorkspaceSettings> {
    let document = state
        .store
        .workspace_settings(workspace_id)
        .await
        .map_err(|err| ApiError::from_store(err, "workspace"))?;
    from_document(&document)
}

fn check_trunk(field: &str, trunk: &ProviderTrunk) -> ApiResult<ProviderTrunk> {
    TerminationUri::parse(&trunk.termination_uri)
        .map_err(|err| ApiError::field(format!("{field}.termination_uri"), err))?;
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

fn response(workspace_id: &WorkspaceId, settings: WorkspaceSettings) -> WorkspaceSettingsResponse {
    WorkspaceSettingsResponse {
        workspace_id: workspace_id.to_string(),
        twilio_trunk: view(settings.twilio_trunk),
        telnyx_trunk: view(settings.telnyx_trunk),
    }
}

/// The workspace's settings.
#[utoipa::path(get, path = "/get-workspace-settings", tag = "Workspace",
    responses((status = 200, body = WorkspaceSettingsResponse), (status = 401, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
) -> ApiResult<Json<WorkspaceSettingsResponse>> {
    let settings = load(&state, &key.workspace_id).await?;
    Ok(Json(response(&key.workspace_id, settings)))
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
        settings.twilio_trunk = trunk.map(|t| check_trunk("twilio_trunk", &t)).transpose()?;
    }
    if let Some(trunk) = update.telnyx_trunk {
        settings.telnyx_trunk = trunk.map(|t| check_trunk("telnyx_trunk", &t)).transpose()?;
    }
    state
        .store
        .put_workspace_settings(&key.workspace_id, &to_document(&settings)?)
        .await
        .map_err(|err| ApiError::from_store(err, "workspace"))?;
    Ok(Json(response(&key.workspace_id, settings)))
}

/// Who the presented key is.
#[utoipa::path(get, path = "/get-api-key-info", tag = "Workspace",
    responses((status = 200, body = ApiKeyInfo), (status = 401, body = ErrorBody)))]
pub async fn api_key_info(Workspace(key): Workspace) -> Json<ApiKeyInfo> {
    Json(ApiKeyInfo {
        org_id: key.workspace_id.to_string(),
        org_name: key.workspace_name,
        api_key_name: Some(key.key_name),
    })
}
