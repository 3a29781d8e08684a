//! One code path from "please call" to a stored, registered call.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::domain::agent::{EngineRef, engine_ref};
use crate::domain::limits::{CpsProvider, TrunkRef};
use crate::domain::{AgentId, AgentVersionRef, AgentWeights, CallId, CallStatus, CallType, DialString, Direction, WorkspaceId};
use crate::store::{AGENTS, CallRow, Document, FLOWS, LLMS, Store, StoreError};

/// Which kind of leg the call is.
#[derive(Clone, Debug)]
pub enum CallLeg {
    /// We dial `to_number` from one of the workspace's numbers.
    Outbound {
        from_number: String,
        to_number: String,
        /// Honoured only for custom (imported) numbers.
        ignore_e164_validation: bool,
        /// Already checked: `X-` names, no line breaks.
        custom_sip_headers: BTreeMap<String, String>,
    },
    /// Custom telephony dials in to us (`register-phone-call`); numbers are for tracking.
    Registered { direction: Direction, from_number: String, to_number: String },
    /// A call arriving at `to_number`, one of the workspace's numbers: the agent is a
    /// weighted pick of its inbound agents.
    Inbound { from_number: String, to_number: String },
    /// The simulator's persona, answering on this host at `target` (`uponai simulate`): dialed
    /// like an outbound call (paced, counted against concurrency) but to that address only.
    Simulated { target: std::net::SocketAddr },
}

/// The numbers a simulated call shows: it leaves from no number and reaches no number.
pub const SIMULATOR_FROM: &str = "simulator";
pub const SIMULATOR_TO: &str = "persona";
/// The trunk simulated calls are paced on (the custom trunks' CPS).
pub const SIMULATOR_TRUNK: &str = "simulator";

/// A call request, parsed at the edge.
#[derive(Clone, Debug)]
pub struct NewCall {
    pub leg: CallLeg,
    pub override_agent_id: Option<AgentId>,
    pub override_agent_version: Option<AgentVersionRef>,
    /// `agent_override.agent`, validated: merged over the agent version's configuration.
    pub agent_override: Document,
    /// `agent_override.retell_llm`, validated: merged over the LLM version's configuration.
    pub retell_llm_override: Document,
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub dynamic_variables: Option<BTreeMap<String, String>>,
    pub idempotency_key: Option<String>,
    /// Extra per-call data kept in the call's document (e.g. UponAI's `trunkName`).
    pub extra: Document,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateCallError {
    /// The request cannot become a call; `field` is the wire field at fault.
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> CreateCallError {
    CreateCallError::Invalid { field, problem: problem.into() }
}

/// Where Retell-type (Twilio and Telnyx) numbers may call: the hosted service's 15 countries.
pub const PROVIDER_COUNTRIES: [&str; 15] = ["US", "CA", "GB", "AU", "DE", "ES", "FR", "IT", "MX", "JP", "IN", "ID", "PH", "MY", "TH"];

/// A call ready to be stored: validated, its agent picked, and (outbound) its trunk known.
#[derive(Debug)]
pub struct PreparedCall {
    pub row: CallRow,
    /// The trunk an outbound call leaves through; `None` for calls we do not dial.
    pub trunk: Option<TrunkRef>,
}

/// Stores the call (or, for a repeated idempotency key, finds the first one). Returns the
/// call and whether it is new. `roll` (uniform in [0, 1)) makes the A/B pick. For calls that
/// are not paced (inbound, dial-in registrations).
pub async fn create_call(
    store: &Store,
    workspace_id: &WorkspaceId,
    request: NewCall,
    roll: f64,
) -> Result<(CallRow, bool), CreateCallError> {
    let prepared = prepare_call(store, workspace_id, request, roll).await?;
    Ok(store.insert_call(workspace_id, &prepared.row).await?)
}

/// Everything of call creation but storing it.
pub async fn prepare_call(store: &Store, workspace_id: &WorkspaceId, request: NewCall, roll: f64) -> Result<PreparedCall, CreateCallError> {
    let mut document = Document::new();
    let mut trunk = None;
    let (direction, from_number, to_number, bound_agents) = match &request.leg {
        CallLeg::Outbound { from_number, to_number, ignore_e164_validation, custom_sip_headers } => {
            let number = find_number(store, workspace_id, from_number, *ignore_e164_validation).await?;
            let is_custom = number.phone_number_type == "custom";
            if *ignore_e164_validation && !is_custom {
                return Err(invalid(
                    "ignore_e164_validation",
                    format!("is honoured only for custom (imported) numbers; {} is {}", number.phone_number, number.phone_number_type),
                ));
            }
            let to = DialString::parse(to_number, *ignore_e164_validation).map_err(|err| invalid("to_number", err.to_string()))?;
            check_destination_country(&number, &to)?;
            trunk = Some(trunk_of(&number));
            if !custom_sip_headers.is_empty() {
                document.insert("custom_sip_headers".into(), json!(custom_sip_headers));
            }
            let bound = bound_agents(&number.document, "outbound_agents")?;
            (Direction::Outbound, number.phone_number, to.as_str().to_owned(), bound)
        }
        CallLeg::Registered { direction, from_number, to_number } => {
            document.insert("dial_in".into(), json!(true));
            (*direction, from_number.clone(), to_number.clone(), None)
        }
        CallLeg::Inbound { from_number, to_number } => {
            let number = match store.get_number(workspace_id, to_number).await {
                Ok(number) => number,
                Err(StoreError::NotFound) => return Err(invalid("to_number", format!("{to_number} is not a number of this workspace"))),
                Err(other) => return Err(other.into()),
            };
            let bound = bound_agents(&number.document, "inbound_agents")?;
            if bound.is_none() && request.override_agent_id.is_none() {
                return Err(invalid("to_number", format!("no inbound agent bound to {to_number}")));
            }
            (Direction::Inbound, from_number.clone(), number.phone_number, bound)
        }
        CallLeg::Simulated { target } => {
            if request.override_agent_id.is_none() {
                return Err(invalid("agent_id", "is required"));
            }
            document.insert(super::simulation::TARGET_KEY.into(), json!(target.to_string()));
            trunk = Some(TrunkRef { provider: CpsProvider::Custom, key: SIMULATOR_TRUNK.to_owned() });
            (Direction::Outbound, SIMULATOR_FROM.to_owned(), SIMULATOR_TO.to_owned(), None)
        }
    };

    let (agent_id, version_ref, agent_field) = match (&request.override_agent_id, bound_agents) {
        (Some(agent_id), _) => (agent_id.clone(), request.override_agent_version, "override_agent_id"),
        (None, _) if request.override_agent_version.is_some() => {
            return Err(invalid("override_agent_version", "is only meaningful with override_agent_id"));
        }
        (None, Some(weights)) => {
            let picked = weights.pick(roll);
            (picked.agent_id.clone(), picked.agent_version, "from_number")
        }
        (None, None) => {
            return Err(invalid(
                "from_number",
                format!("no outbound agent bound to {from_number}; bind outbound_agents to the number or pass override_agent_id"),
            ));
        }
    };
    let version_ref = version_ref.unwrap_or(AgentVersionRef::Latest);
    let agent = store.get_versioned(AGENTS, workspace_id, agent_id.as_str(), Some(version_ref)).await.map_err(|err| match err {
        StoreError::NotFound => invalid(
            if request.override_agent_version.is_some() { "override_agent_version" } else { agent_field },
            format!("agent {agent_id} has no version {version_ref:?} in this workspace"),
        ),
        other => other.into(),
    })?;

    let mut effective_agent = agent.document.clone();
    effective_agent.extend(request.agent_override.clone());
    match engine_ref(&effective_agent) {
        Some(EngineRef::RetellLlm { llm_id, version }) => {
            let llm =
                store.get_versioned(LLMS, workspace_id, llm_id.as_str(), version.map(AgentVersionRef::Number)).await.map_err(|err| {
                    match err {
                        StoreError::NotFound => {
                            invalid("agent_override", format!("the agent's retell llm {llm_id} (version {version:?}) no longer exists"))
                        }
                        other => other.into(),
                    }
                })?;
            let mut effective_llm = llm.document;
            effective_llm.extend(request.retell_llm_override.clone());
            document.insert("effective_llm".into(), Value::Object(effective_llm));
            document.insert("llm_version".into(), json!(llm.version));
        }
        Some(EngineRef::ConversationFlow { flow_id, version }) if request.retell_llm_override.is_empty() => {
            let flow =
                store.get_versioned(FLOWS, workspace_id, flow_id.as_str(), version.map(AgentVersionRef::Number)).await.map_err(|err| {
                    match err {
                        StoreError::NotFound => invalid(
                            "agent_override",
                            format!("the agent's conversation flow {flow_id} (version {version:?}) no longer exists"),
                        ),
                        other => other.into(),
                    }
                })?;
            document.insert("effective_flow".into(), Value::Object(flow.document));
            document.insert("conversation_flow_version".into(), json!(flow.version));
        }
        _ if !request.retell_llm_override.is_empty() => {
            return Err(invalid("agent_override", "retell_llm overrides need an agent with a retell-llm response engine"));
        }
        _ => {}
    }
    if let Some(name) = effective_agent.get("agent_name").filter(|name| name.is_string()) {
        document.insert("agent_name".into(), name.clone());
    }
    if let Some(setting) = effective_agent.get("data_storage_setting") {
        document.insert("data_storage_setting".into(), setting.clone());
    }
    if let Some(signed) = effective_agent.get("opt_in_signed_url") {
        document.insert("opt_in_signed_url".into(), signed.clone());
    }
    if !request.agent_override.is_empty() || !request.retell_llm_override.is_empty() {
        let mut applied = Document::new();
        if !request.agent_override.is_empty() {
            applied.insert("agent".into(), Value::Object(request.agent_override.clone()));
        }
        if !request.retell_llm_override.is_empty() {
            applied.insert("retell_llm".into(), Value::Object(request.retell_llm_override.clone()));
        }
        document.insert("agent_override".into(), Value::Object(applied));
    }
    document.insert("effective_agent".into(), Value::Object(effective_agent));
    if let Some(metadata) = request.metadata {
        document.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(variables) = request.dynamic_variables {
        document.insert("retell_llm_dynamic_variables".into(), json!(variables));
    }
    document.extend(request.extra);

    let call = CallRow {
        call_id: CallId::generate(),
        call_type: CallType::PhoneCall,
        direction,
        call_status: CallStatus::Registered,
        agent_id,
        agent_version: agent.version,
        from_number,
        to_number,
        created_at: 0,
        start_timestamp: None,
        end_timestamp: None,
        duration_ms: None,
        disconnection_reason: None,
        batch_call_id: None,
        idempotency_key: request.idempotency_key,
        document,
    };
    Ok(PreparedCall { row: call, trunk })
}

/// The trunk a number's calls leave through, for pacing.
pub fn trunk_of(number: &crate::store::NumberRow) -> TrunkRef {
    let provider = CpsProvider::of_number_type(&number.phone_number_type);
    let key = match provider {
        CpsProvider::Custom => number
            .document
            .get("sip_outbound_trunk_config")
            .and_then(|config| config.get("termination_uri"))
            .and_then(Value::as_str)
            .unwrap_or(&number.phone_number)
            .to_owned(),
        other => other.key().to_owned(),
    };
    TrunkRef { provider, key }
}

/// Twilio and Telnyx numbers reach the 15 countries the hosted service calls; any number may
/// narrow its destinations with `allowed_outbound_country_list`.
fn check_destination_country(number: &crate::store::NumberRow, to: &DialString) -> Result<(), CreateCallError> {
    let provider_number = CpsProvider::of_number_type(&number.phone_number_type) != CpsProvider::Custom;
    let narrowed: Option<Vec<&str>> = number
        .document
        .get("allowed_outbound_country_list")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .filter(|list: &Vec<&str>| !list.is_empty());
    if !provider_number && narrowed.is_none() {
        return Ok(());
    }
    let Some(country) = to.region() else {
        return Err(invalid(
            "to_number",
            format!("cannot tell which country {} is in, and {} may only call some countries", to.as_str(), number.phone_number),
        ));
    };
    if provider_number && !PROVIDER_COUNTRIES.contains(&country) {
        return Err(invalid(
            "to_number",
            format!(
                "{country} is not a country {} numbers can call (allowed: {})",
                number.phone_number_type,
                PROVIDER_COUNTRIES.join(", ")
            ),
        ));
    }
    if let Some(allowed) = narrowed
        && !allowed.contains(&country)
    {
        return Err(invalid(
            "to_number",
            format!("{country} is not in allowed_outbound_country_list of {} ({})", number.phone_number, allowed.join(", ")),
        ));
    }
    Ok(())
}

/// The workspace's number `raw`: matched as written, else by its canonical E.164 form.
async fn find_number(
    store: &Store,
    workspace_id: &WorkspaceId,
    raw: &str,
    allow_raw: bool,
) -> Result<crate::store::NumberRow, CreateCallError> {
    let parsed = DialString::parse(raw, allow_raw).map_err(|err| invalid("from_number", err.to_string()))?;
    match store.get_number(workspace_id, parsed.as_str()).await {
        Ok(number) => Ok(number),
        Err(StoreError::NotFound) => {
            Err(invalid("from_number", format!("{raw} is not a number of this workspace; import or create it first")))
        }
        Err(other) => Err(other.into()),
    }
}

/// A binding of the number (`inbound_agents`, `outbound_agents`), re-parsed (it was
/// validated when stored).
fn bound_agents(document: &Document, key: &str) -> Result<Option<AgentWeights>, CreateCallError> {
    let Some(list) = document.get(key).and_then(Value::as_array) else {
        return Ok(None);
    };
    let entries = list.iter().map(|entry| {
        let agent_id = entry.get("agent_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let weight = entry.get("weight").and_then(Value::as_f64).unwrap_or_default();
        let version = entry.get("agent_version").filter(|v| !v.is_null()).and_then(|v| AgentVersionRef::parse(v).ok());
        (agent_id, weight, version)
    });
    AgentWeights::parse(entries.collect::<Vec<_>>()).map_err(|err| CreateCallError::Store(StoreError::Corrupt(format!("{key}: {err}"))))
}
