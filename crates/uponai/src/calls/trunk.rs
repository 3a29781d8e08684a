//! Where a number's calls go and come from: the number's own trunk (custom numbers) or the
//! workspace's provider trunk (Twilio, Telnyx), with the provider presets.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use sip::endpoint::{Target, TransportKind};

use crate::domain::{TerminationUri, Transport, WorkspaceId};
use crate::egress::Egress;
use crate::store::{Document, NumberRow, Store};

/// Everything needed to send an INVITE for one number.
#[derive(Clone, Debug)]
pub struct DialPlan {
    pub target: Target,
    /// Host (and port) written in Request-URI and To.
    pub uri_host: String,
    pub transport: Transport,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Headers the provider requires on every INVITE.
    pub provider_headers: Vec<(String, String)>,
    /// Source addresses allowed to send this number's inbound calls.
    pub allowed_sources: Vec<IpNet>,
}

/// Why a dial plan could not be made; every variant ends the call before dialing.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("number has no trunk configured: {0}")]
    NoTrunk(String),
    #[error("cannot resolve trunk host {0}")]
    Unresolvable(String),
    #[error("TLS transport is not supported yet")]
    TlsUnsupported,
    #[error("{0}")]
    Refused(crate::egress::Refused),
}

/// An IP network (a single address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let addr = raw.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn text<'a>(doc: &'a Document, key: &str) -> Option<&'a str> {
    doc.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The trunk settings of a number: `(termination_uri, username, password, transport, preset
/// headers, allow-list, provider default transport)`.
struct TrunkSettings {
    termination_uri: String,
    username: Option<String>,
    password: Option<String>,
    transport: Option<String>,
    default_transport: Transport,
    telnyx: bool,
    allowed_sources: Option<Vec<String>>,
}

async fn trunk_settings(store: &Store, workspace_id: &WorkspaceId, number: &NumberRow) -> Result<TrunkSettings, PlanError> {
    let strings = |value: Option<&Value>| -> Option<Vec<String>> {
        value.and_then(Value::as_array).map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
    };
    let allowed_on_number = strings(number.document.get("allowed_inbound_sources"));
    match number.phone_number_type.as_str() {
        "custom" => {
            let config = number
                .document
                .get("sip_outbound_trunk_config")
                .and_then(Value::as_object)
                .ok_or_else(|| PlanError::NoTrunk(number.phone_number.clone()))?;
            Ok(TrunkSettings {
                termination_uri: text(config, "termination_uri").ok_or_else(|| PlanError::NoTrunk(number.phone_number.clone()))?.to_owned(),
                username: text(config, "auth_username").map(str::to_owned),
                password: number.auth_password.clone(),
                transport: text(config, "transport").map(str::to_owned),
                default_transport: Transport::Tcp,
                telnyx: false,
                allowed_sources: allowed_on_number,
            })
        }
        kind => {
            let (key, default_transport, telnyx) = match kind {
                "retell-telnyx" => ("telnyx_trunk", Transport::Tcp, true),
                _ => ("twilio_trunk", Transport::Udp, false),
            };
            let settings = store.workspace_settings(workspace_id).await.map_err(|err| PlanError::NoTrunk(err.to_string()))?;
            let trunk =
                settings.get(key).and_then(Value::as_object).ok_or_else(|| PlanError::NoTrunk(format!("workspace has no {key}")))?;
            Ok(TrunkSettings {
                termination_uri: text(trunk, "termination_uri").ok_or_else(|| PlanError::NoTrunk(key.to_owned()))?.to_owned(),
                username: text(trunk, "auth_username").map(str::to_owned),
                password: text(trunk, "auth_password").map(str::to_owned),
                transport: text(trunk, "transport").map(str::to_owned),
                default_transport,
                telnyx,
                allowed_sources: allowed_on_number.or_else(|| strings(trunk.get("allowed_inbound_sources"))),
            })
        }
    }
}

/// Resolves the dial plan of `number` (DNS included).
/// The trunk's address passes the egress guard (checked again here: DNS may have changed
/// since the URI was saved).
pub async fn plan(store: &Store, egress: Egress, workspace_id: &WorkspaceId, number: &NumberRow) -> Result<DialPlan, PlanError> {
    let settings = trunk_settings(store, workspace_id, number).await?;
    let uri = TerminationUri::parse(&settings.termination_uri).map_err(|err| PlanError::NoTrunk(err.to_string()))?;
    let transport =
        uri.transport().or_else(|| settings.transport.as_deref().and_then(Transport::parse)).unwrap_or(settings.default_transport);
    let kind = match transport {
        Transport::Udp => TransportKind::Udp,
        Transport::Tcp => TransportKind::Tcp,
        Transport::Tls => return Err(PlanError::TlsUnsupported),
    };
    let port = uri.port().unwrap_or(5060);
    let host = uri.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let addr = resolve(&host, port).await.ok_or_else(|| PlanError::Unresolvable(host.clone()))?;
    egress.check_sip_ip(addr.ip()).map_err(|reason| PlanError::Refused(crate::egress::Refused { host: host.clone(), reason }))?;
    let uri_host = match uri.port() {
        Some(port) => format!("{}:{port}", uri.host()),
        None => uri.host().to_owned(),
    };
    let mut provider_headers = Vec::new();
    if settings.telnyx
        && let Some(username) = &settings.username
    {
        // Telnyx requires this on calls authenticated by credentials.
        provider_headers.push(("X-Telnyx-Username".to_owned(), username.clone()));
    }
    let allowed_sources = match settings.allowed_sources {
        Some(list) => list.iter().filter_map(|raw| IpNet::parse(raw)).collect(),
        None => vec![IpNet { addr: addr.ip(), prefix: if addr.is_ipv4() { 32 } else { 128 } }],
    };
    Ok(DialPlan {
        target: Target { addr, transport: kind },
        uri_host,
        transport,
        username: settings.username,
        password: settings.password,
        provider_headers,
        allowed_sources,
    })
}

/// The dial plan of a simulated call (`CallLeg::Simulated`): straight to the persona's
/// endpoint, which the server itself bound on loopback, so the egress guard does not apply;
/// anything but a loopback address in that field is refused (it is never a tenant's).
pub fn simulation_plan(call: &crate::store::CallRow) -> Option<DialPlan> {
    let raw = call.document.get(super::simulation::TARGET_KEY)?.as_str()?;
    let addr: SocketAddr = raw.parse().ok().filter(|addr: &SocketAddr| addr.ip().is_loopback())?;
    Some(DialPlan {
        target: Target { addr, transport: TransportKind::Udp },
        uri_host: addr.to_string(),
        transport: Transport::Udp,
        username: None,
        password: None,
        provider_headers: Vec::new(),
        allowed_sources: vec![IpNet { addr: addr.ip(), prefix: if addr.is_ipv4() { 32 } else { 128 } }],
    })
}

async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let lookup = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((host, port)));
    lookup.await.ok()?.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(IpNet::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("nonsense").is_none());
    }
}
