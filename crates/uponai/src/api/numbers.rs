//! Phone numbers: `/import-phone-number` (a custom SIP trunk), `/create-phone-number` (a
//! number on the workspace's Twilio or Telnyx trunk), get, update, list, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Workspace};
use super::paging::{ListQuery, Paginated};
use super::validate::{from_document, target_url, to_document};
use super::workspace::{Provider, provider_trunk};
use super::{ApiState, nullable};
use crate::domain::{AgentVersionRef, AgentWeights, E164, TerminationUri, Transport, WorkspaceId, sip_header};
use crate::store::{AGENTS, NumberRow, PasswordChange};

/// The body of import, create and update. Which fields apply where is said on each; the
/// rest are ignored by that endpoint.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct PhoneNumberRequest {
    /// E.164. Required by import and create; in the path for update.
    pub phone_number: Option<String>,
    /// Import (required) and update: the SIP trunk outbound calls are sent to.
    pub termination_uri: Option<String>,
    /// Import: trunk digest credentials.
    pub sip_trunk_auth_username: Option<String>,
    /// Import: never returned.
    pub sip_trunk_auth_password: Option<String>,
    /// Update: trunk digest credentials.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub auth_username: Option<Option<String>>,
    /// Update: never returned.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub auth_password: Option<Option<String>>,
    /// `TLS`, `TCP` (default) or `UDP`.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub transport: Option<Option<String>>,
    pub codecs: Option<Vec<String>>,
    /// Import: skip E.164 validation of `phone_number` (default true for imports).
    pub ignore_e164_validation: Option<bool>,
    /// Create: `twilio` (default) or `telnyx`.
    pub number_provider: Option<Provider>,
    /// Create: must match the number when given.
    pub area_code: Option<i64>,
    /// Create: `US` or `CA`; must match the number when given.
    pub country_code: Option<String>,
    pub toll_free: Option<bool>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub nickname: Option<Option<String>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<AgentWeightWire>>, nullable)]
    pub inbound_agents: Option<Option<Vec<AgentWeightWire>>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<AgentWeightWire>>, nullable)]
    pub outbound_agents: Option<Option<Vec<AgentWeightWire>>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<AgentWeightWire>>, nullable)]
    pub inbound_sms_agents: Option<Option<Vec<AgentWeightWire>>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<AgentWeightWire>>, nullable)]
    pub outbound_sms_agents: Option<Option<Vec<AgentWeightWire>>>,
    /// Legacy: a one-entry `inbound_agents`.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub inbound_agent_id: Option<Option<String>>,
    /// Legacy: a one-entry `outbound_agents`.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub outbound_agent_id: Option<Option<String>>,
    pub inbound_agent_version: Option<i64>,
    pub outbound_agent_version: Option<i64>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub allowed_inbound_country_list: Option<Option<Vec<String>>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub allowed_outbound_country_list: Option<Option<Vec<String>>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub fallback_number: Option<Option<String>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub inbound_webhook_url: Option<Option<String>>,
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub inbound_sms_webhook_url: Option<Option<String>>,
    /// uponai: source IPs or CIDRs allowed to send this number's inbound calls; unset means
    /// the addresses of the number's trunk.
    #[serde(default, with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub allowed_inbound_sources: Option<Option<Vec<String>>>,
}

/// One agent of a weighted binding.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentWeightWire {
    pub agent_id: String,
    /// In (0, 1]; a list's weights sum to 1.
    pub weight: f64,
    /// A version number, `"latest"` or `"latest_published"`; unset means latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub agent_version: Option<Value>,
}

/// Where a custom number's outbound calls go.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SipOutboundTrunkConfig {
    pub termination_uri: Option<String>,
    pub auth_username: Option<String>,
    pub transport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
}

/// A number's settings as stored (everything the response shows but its identity).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct NumberSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_pretty: Option<String>,
    #[serde(default)]
    pub inbound_agents: Option<Vec<AgentWeightWire>>,
    #[serde(default)]
    pub outbound_agents: Option<Vec<AgentWeightWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_sms_agents: Option<Vec<AgentWeightWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_sms_agents: Option<Vec<AgentWeightWire>>,
    #[serde(default)]
    pub allowed_inbound_country_list: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_outbound_country_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<i64>,
    #[serde(default)]
    pub fallback_number: Option<String>,
    #[serde(default)]
    pub inbound_webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_sms_webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toll_free: Option<bool>,
    /// Present for custom (imported) numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_outbound_trunk_config: Option<SipOutboundTrunkConfig>,
    /// uponai: who may send inbound calls for this number (IPs or CIDRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_inbound_sources: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberResponse {
    pub phone_number: String,
    /// `custom`, `retell-twilio` or `retell-telnyx`.
    pub phone_number_type: String,
    pub last_modification_timestamp: i64,
    #[serde(flatten)]
    pub settings: NumberSettings,
    /// Legacy echo of a one-entry `inbound_agents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_agent_id: Option<String>,
    /// Legacy echo of a one-entry `outbound_agents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_agent_id: Option<String>,
}

pub const TYPE_CUSTOM: &str = "custom";

fn number_response(row: NumberRow) -> ApiResult<PhoneNumberResponse> {
    let settings: NumberSettings = from_document(&row.document)?;
    let single = |list: &Option<Vec<AgentWeightWire>>| match list.as_deref() {
        Some([only]) => Some(only.agent_id.clone()),
        _ => None,
    };
    Ok(PhoneNumberResponse {
        inbound_agent_id: single(&settings.inbound_agents),
        outbound_agent_id: single(&settings.outbound_agents),
        phone_number: row.phone_number,
        phone_number_type: row.phone_number_type,
        last_modification_timestamp: row.last_modification_timestamp,
        settings,
    })
}

/// Validates a weighted binding: shape, weights, and that each agent (and pinned version)
/// exists in the workspace. `None` and `[]` both mean "no agent".
async fn check_binding(
    state: &ApiState,
    workspace_id: &WorkspaceId,
    field: &str,
    list: &[AgentWeightWire],
) -> ApiResult<Option<Vec<AgentWeightWire>>> {
    let mut entries = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let version = match &entry.agent_version {
            None | Some(Value::Null) => None,
            Some(raw) => {
                Some(AgentVersionRef::parse(raw).map_err(|problem| ApiError::field(format!("{field}[{i}].agent_version"), problem))?)
            }
        };
        entries.push((entry.agent_id.clone(), entry.weight, version));
    }
    let weights = AgentWeights::parse(entries.clone()).map_err(|err| ApiError::field(field, err))?;
    let Some(weights) = weights else { return Ok(None) };
    for (i, entry) in weights.entries().iter().enumerate() {
        state.store.get_versioned(AGENTS, workspace_id, entry.agent_id.as_str(), entry.agent_version).await.map_err(|err| {
            match ApiError::from_store(err, "") {
                ApiError::NotFound(_) => ApiError::field(
                    format!("{field}[{i}].agent_id"),
                    format!("{} (version {:?}) is not an agent of this workspace", entry.agent_id, entry.agent_version),
                ),
                other => other,
            }
        })?;
    }
    Ok(Some(list.to_vec()))
}

fn check_countries(field: &str, list: &[String]) -> ApiResult<()> {
    for (i, code) in list.iter().enumerate() {
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::field(format!("{field}[{i}]"), format!("{code:?} is not an ISO 3166-1 alpha-2 code such as US")));
        }
    }
    Ok(())
}

fn check_transport(raw: &str) -> ApiResult<String> {
    Transport::parse(raw)
        .map(|t| t.as_str().to_owned())
        .ok_or_else(|| ApiError::field("transport", format!("{raw:?} must be TLS, TCP or UDP")))
}

/// A trunk's termination URI: its syntax, and its host through the egress guard (a SIP
/// trunk may be private or loopback, not link-local).
pub(super) async fn check_termination_uri(state: &ApiState, field: &str, raw: &str) -> ApiResult<TerminationUri> {
    let uri = TerminationUri::parse(raw).map_err(|err| ApiError::field(field, err))?;
    state
        .calls
        .config
        .egress
        .check_sip_host(uri.host(), uri.port().unwrap_or(5060))
        .await
        .map_err(|refused| ApiError::field(field, refused))?;
    Ok(uri)
}

/// A trunk username or password, when given.
pub(super) fn check_credential(field: &str, value: Option<&str>, check: fn(&str) -> Result<(), &'static str>) -> ApiResult<()> {
    match value {
        Some(raw) => check(raw).map_err(|problem| ApiError::field(field, problem)),
        None => Ok(()),
    }
}

/// Applies the fields shared by every endpoint to `settings`.
async fn apply_common(
    state: &ApiState,
    workspace_id: &WorkspaceId,
    phone_number: &str,
    request: &PhoneNumberRequest,
    settings: &mut NumberSettings,
) -> ApiResult<()> {
    if let Some(nickname) = &request.nickname {
        settings.nickname = nickname.clone();
    }
    for (list, legacy_id, legacy_version, field, target) in [
        (&request.inbound_agents, &request.inbound_agent_id, request.inbound_agent_version, "inbound_agents", &mut settings.inbound_agents),
        (
            &request.outbound_agents,
            &request.outbound_agent_id,
            request.outbound_agent_version,
            "outbound_agents",
            &mut settings.outbound_agents,
        ),
    ] {
        let legacy = legacy_id.as_ref().map(|id| {
            id.as_ref().map(|agent_id| {
                vec![AgentWeightWire { agent_id: agent_id.clone(), weight: 1.0, agent_version: legacy_version.map(Value::from) }]
            })
        });
        let wanted = match (list, legacy) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(field, format!("give either {field} or its legacy single-agent field, not both")));
            }
            (Some(list), None) => list.clone(),
            (None, Some(legacy)) => legacy,
            (None, None) => continue,
        };
        *target = match wanted {
            None => None,
            Some(list) => check_binding(state, workspace_id, field, &list).await?,
        };
    }
    for (list, field, target) in [
        (&request.inbound_sms_agents, "inbound_sms_agents", &mut settings.inbound_sms_agents),
        (&request.outbound_sms_agents, "outbound_sms_agents", &mut settings.outbound_sms_agents),
    ] {
        if let Some(list) = list {
            *target = match list {
                None => None,
                Some(list) => check_binding(state, workspace_id, field, list).await?,
            };
        }
    }
    for (list, field, target) in [
        (&request.allowed_inbound_country_list, "allowed_inbound_country_list", &mut settings.allowed_inbound_country_list),
        (&request.allowed_outbound_country_list, "allowed_outbound_country_list", &mut settings.allowed_outbound_country_list),
    ] {
        if let Some(list) = list {
            check_countries(field, list.as_deref().unwrap_or_default())?;
            *target = list.clone();
        }
    }
    if let Some(fallback) = &request.fallback_number {
        if let Some(raw) = fallback {
            let parsed = E164::parse(raw).map_err(|err| ApiError::field("fallback_number", err))?;
            if parsed.as_str() == phone_number {
                return Err(ApiError::field("fallback_number", "cannot be the number itself"));
            }
        }
        settings.fallback_number = fallback.clone();
    }
    for (value, field, target) in [
        (&request.inbound_webhook_url, "inbound_webhook_url", &mut settings.inbound_webhook_url),
        (&request.inbound_sms_webhook_url, "inbound_sms_webhook_url", &mut settings.inbound_sms_webhook_url),
    ] {
        if let Some(value) = value {
            if let Some(raw) = value {
                target_url(state.calls.config.egress, field, raw, &["http", "https"]).await?;
            }
            *target = value.clone();
        }
    }
    if let Some(toll_free) = request.toll_free {
        settings.toll_free = Some(toll_free);
    }
    if let Some(sources) = &request.allowed_inbound_sources {
        for (i, raw) in sources.iter().flatten().enumerate() {
            if crate::calls::trunk::IpNet::parse(raw).is_none() {
                return Err(ApiError::field(format!("allowed_inbound_sources[{i}]"), format!("{raw:?} is not an IP address or CIDR")));
            }
        }
        settings.allowed_inbound_sources = sources.clone();
    }
    Ok(())
}

fn number_not_found(phone_number: &str) -> impl Fn(crate::store::StoreError) -> ApiError + '_ {
    move |err| ApiError::from_store(err, format!("phone number {phone_number}"))
}

/// Adding a number that a workspace already holds, this one or another, is refused with the
/// same words either way: a workspace cannot learn that another one holds a number.
fn number_not_added(err: crate::store::StoreError) -> ApiError {
    match err {
        crate::store::StoreError::Conflict(_) => ApiError::field("phone_number", "is not available to this workspace"),
        other => ApiError::from_store(other, "phone number"),
    }
}

/// Import a number that lives on your own SIP trunk (custom telephony).
#[utoipa::path(post, path = "/import-phone-number", tag = "Phone Number",
    request_body = PhoneNumberRequest,
    responses((status = 201, body = PhoneNumberResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn import_number(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<PhoneNumberRequest>,
) -> ApiResult<(StatusCode, Json<PhoneNumberResponse>)> {
    let raw_number = request.phone_number.as_deref().ok_or_else(|| ApiError::field("phone_number", "is required"))?;
    let phone_number = if request.ignore_e164_validation.unwrap_or(true) {
        match E164::parse(raw_number) {
            Ok(number) => number.as_str().to_owned(),
            Err(_) => {
                crate::domain::DialString::parse(raw_number, true).map_err(|err| ApiError::field("phone_number", err))?.as_str().to_owned()
            }
        }
    } else {
        E164::parse(raw_number).map_err(|err| ApiError::field("phone_number", err))?.as_str().to_owned()
    };
    let termination_uri = request.termination_uri.as_deref().ok_or_else(|| ApiError::field("termination_uri", "is required"))?;
    check_termination_uri(&state, "termination_uri", termination_uri).await?;
    check_credential("sip_trunk_auth_username", request.sip_trunk_auth_username.as_deref(), sip_header::check_username)?;
    check_credential("sip_trunk_auth_password", request.sip_trunk_auth_password.as_deref(), sip_header::check_password)?;
    let transport = match request.transport.clone().flatten() {
        Some(raw) => check_transport(&raw)?,
        None => Transport::Tcp.as_str().to_owned(),
    };
    let mut settings = NumberSettings {
        phone_number_pretty: E164::parse(&phone_number).ok().map(|n| n.pretty()),
        sip_outbound_trunk_config: Some(SipOutboundTrunkConfig {
            termination_uri: Some(termination_uri.to_owned()),
            auth_username: request.sip_trunk_auth_username.clone(),
            transport: Some(transport),
            codecs: request.codecs.clone(),
        }),
        ..NumberSettings::default()
    };
    apply_common(&state, &key.workspace_id, &phone_number, &request, &mut settings).await?;
    let row = state
        .store
        .insert_number(&key.workspace_id, &phone_number, TYPE_CUSTOM, request.sip_trunk_auth_password.as_deref(), &to_document(&settings)?)
        .await
        .map_err(number_not_added)?;
    Ok((StatusCode::CREATED, Json(number_response(row)?)))
}

/// Add a number that is on the workspace's Twilio or Telnyx trunk (configured with
/// `update-workspace-settings`). This install does not buy numbers: `phone_number` is
/// required.
#[utoipa::path(post, path = "/create-phone-number", tag = "Phone Number",
    request_body = PhoneNumberRequest,
    responses((status = 201, body = PhoneNumberResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_number(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiJson(request): ApiJson<PhoneNumberRequest>,
) -> ApiResult<(StatusCode, Json<PhoneNumberResponse>)> {
    let provider = request.number_provider.unwrap_or(Provider::Twilio);
    if provider_trunk(&state, &key.workspace_id, provider).await?.is_none() {
        return Err(ApiError::field(
            "number_provider",
            format!("no {0} trunk is configured for this workspace; set {0}_trunk with update-workspace-settings", provider.as_str()),
        ));
    }
    let raw_number = request.phone_number.as_deref().ok_or_else(|| {
        ApiError::field("phone_number", "is required: this install does not buy numbers; name a number already on your provider trunk")
    })?;
    let number = E164::parse(raw_number).map_err(|err| ApiError::field("phone_number", err))?;
    if let Some(country) = &request.country_code {
        if !["US", "CA"].contains(&country.as_str()) {
            return Err(ApiError::field("country_code", "must be US or CA"));
        }
        if number.region() != Some(country.as_str()) {
            return Err(ApiError::field("country_code", format!("{number} is not a {country} number")));
        }
    }
    let national_area_code = number.as_str().strip_prefix("+1").and_then(|rest| rest.get(..3)?.parse::<i64>().ok());
    if let Some(area_code) = request.area_code
        && national_area_code != Some(area_code)
    {
        return Err(ApiError::field("area_code", format!("{number} is not in area code {area_code}")));
    }
    let mut settings =
        NumberSettings { phone_number_pretty: Some(number.pretty()), area_code: national_area_code, ..NumberSettings::default() };
    apply_common(&state, &key.workspace_id, number.as_str(), &request, &mut settings).await?;
    let row = state
        .store
        .insert_number(&key.workspace_id, number.as_str(), provider.number_type(), None, &to_document(&settings)?)
        .await
        .map_err(number_not_added)?;
    Ok((StatusCode::CREATED, Json(number_response(row)?)))
}

/// Get a number.
#[utoipa::path(get, path = "/get-phone-number/{phone_number}", tag = "Phone Number",
    params(("phone_number" = String, Path)),
    responses((status = 200, body = PhoneNumberResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_number(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(phone_number): Path<String>,
) -> ApiResult<Json<PhoneNumberResponse>> {
    let row = state.store.get_number(&key.workspace_id, &phone_number).await.map_err(number_not_found(&phone_number))?;
    Ok(Json(number_response(row)?))
}

/// Update a number's bindings and trunk settings.
#[utoipa::path(patch, path = "/update-phone-number/{phone_number}", tag = "Phone Number",
    params(("phone_number" = String, Path)),
    request_body = PhoneNumberRequest,
    responses((status = 200, body = PhoneNumberResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_number(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(phone_number): Path<String>,
    ApiJson(request): ApiJson<PhoneNumberRequest>,
) -> ApiResult<Json<PhoneNumberResponse>> {
    let row = state.store.get_number(&key.workspace_id, &phone_number).await.map_err(number_not_found(&phone_number))?;
    let mut settings: NumberSettings = from_document(&row.document)?;
    let is_custom = row.phone_number_type == TYPE_CUSTOM;
    let trunk_fields_given = request.termination_uri.is_some()
        || request.auth_username.is_some()
        || request.auth_password.is_some()
        || request.transport.is_some()
        || request.codecs.is_some();
    if trunk_fields_given && !is_custom {
        return Err(ApiError::BadRequest(format!(
            "termination_uri, auth_username, auth_password, transport and codecs apply to custom numbers only; \
             {phone_number} is a {} number whose trunk is set in workspace settings",
            row.phone_number_type
        )));
    }
    if let Some(trunk) = settings.sip_outbound_trunk_config.as_mut() {
        if let Some(uri) = &request.termination_uri {
            check_termination_uri(&state, "termination_uri", uri).await?;
            trunk.termination_uri = Some(uri.clone());
        }
        check_credential("auth_username", request.auth_username.clone().flatten().as_deref(), sip_header::check_username)?;
        check_credential("auth_password", request.auth_password.clone().flatten().as_deref(), sip_header::check_password)?;
        if let Some(username) = &request.auth_username {
            trunk.auth_username = username.clone();
        }
        if let Some(transport) = &request.transport {
            trunk.transport = Some(match transport {
                Some(raw) => check_transport(raw)?,
                None => Transport::Tcp.as_str().to_owned(),
            });
        }
        if let Some(codecs) = &request.codecs {
            trunk.codecs = Some(codecs.clone());
        }
    }
    apply_common(&state, &key.workspace_id, &phone_number, &request, &mut settings).await?;
    let password = match &request.auth_password {
        None => PasswordChange::Keep,
        Some(value) => PasswordChange::Set(value.clone()),
    };
    let document = to_document(&settings)?;
    let row =
        state.store.update_number(&key.workspace_id, &phone_number, &document, password).await.map_err(number_not_found(&phone_number))?;
    Ok(Json(number_response(row)?))
}

/// List the workspace's numbers.
#[utoipa::path(get, path = "/v2/list-phone-numbers", tag = "Phone Number",
    params(ListQuery),
    responses((status = 200, body = Paginated<PhoneNumberResponse>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_numbers(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<PhoneNumberResponse>>> {
    let page = state
        .store
        .list_numbers(&key.workspace_id, &query.page_request()?)
        .await
        .map_err(|err| ApiError::from_store(err, "phone number"))?;
    let items = page.items.into_iter().map(number_response).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Paginated::new(items, page.has_more, |n| n.phone_number.clone())))
}

/// Delete a number.
#[utoipa::path(delete, path = "/delete-phone-number/{phone_number}", tag = "Phone Number",
    params(("phone_number" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_number(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(phone_number): Path<String>,
) -> ApiResult<StatusCode> {
    state.store.delete_number(&key.workspace_id, &phone_number).await.map_err(number_not_found(&phone_number))?;
    Ok(StatusCode::NO_CONTENT)
}
