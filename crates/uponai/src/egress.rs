//! The egress guard: which addresses the platform connects to on a tenant's behalf.
//!
//! Every URL a tenant gives us to call (webhooks, custom tools, custom-LLM websockets) and
//! every SIP trunk we dial goes through one `Egress`. A URL is checked twice: when it is
//! saved (`check_url`, which resolves names) and when it is called (`http_client`'s resolver
//! drops refused addresses; `check_literal` covers IP-literal hosts, which never reach a
//! resolver), because DNS answers change and `{{variables}}` are filled at send time.
//!
//! HTTP targets may not be loopback, link-local (cloud metadata at 169.254.169.254),
//! private, shared (CGNAT), unspecified, multicast, broadcast or otherwise reserved, in any
//! spelling: the `url` crate normalises decimal, hex, octal and short IPv4 forms, and IPv6
//! addresses that embed an IPv4 one (mapped, compatible, NAT64, 6to4) are judged by it.
//! SIP trunks may be private or loopback (people run their own PBX) but not link-local.
//! `--allow-private-targets` turns the guard off, for installs whose receivers are local.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// How long a save-time or connect-time lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The guard, as configured for this install.
#[derive(Clone, Copy, Debug)]
pub struct Egress {
    allow_private: bool,
}

/// Why an address is not a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    Loopback,
    LinkLocal,
    Private,
    Shared,
    Unspecified,
    Multicast,
    Broadcast,
    Other,
}

impl Reserved {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address",
            Self::Private => "a private address",
            Self::Shared => "a shared (CGNAT) address",
            Self::Unspecified => "an unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Other => "a reserved address",
        }
    }
}

/// A target the guard refuses: the host as given and what it is (or resolves to).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused target: {host} is {}", reason.describe())]
pub struct Refused {
    pub host: String,
    pub reason: Reserved,
}

impl Egress {
    /// The guard on: what a multi-tenant install runs with.
    pub fn guarded() -> Self {
        Self { allow_private: false }
    }

    /// The guard off (`--allow-private-targets`): any address may be called.
    pub fn allow_private_targets() -> Self {
        Self { allow_private: true }
    }

    pub fn allows_private(self) -> bool {
        self.allow_private
    }

    /// Whether an HTTP(S)/WS(S) request may go to `ip`.
    pub fn check_http_ip(self, ip: IpAddr) -> Result<(), Reserved> {
        match reserved(ip) {
            Some(reason) if !self.allow_private => Err(reason),
            _ => Ok(()),
        }
    }

    /// Whether a SIP trunk may be at `ip`: only link-local is refused.
    pub fn check_sip_ip(self, ip: IpAddr) -> Result<(), Reserved> {
        match reserved(ip) {
            Some(Reserved::LinkLocal) if !self.allow_private => Err(Reserved::LinkLocal),
            _ => Ok(()),
        }
    }

    /// Save-time check of a URL: an IP-literal host is judged as is; a name is resolved and
    /// refused if any of its addresses is refused. A name that does not resolve now is
    /// accepted: it is checked again on every connection.
    pub async fn check_url(self, url: &Url) -> Result<(), Refused> {
        if self.allow_private {
            return Ok(());
        }
        self.check_literal(url)?;
        let Some(Host::Domain(name)) = url.host() else { return Ok(()) };
        let port = url.port_or_known_default().unwrap_or(0);
        self.check_name(name, port, Self::check_http_ip).await
    }

    /// Save-time check of a SIP trunk host (a name or an IP literal, brackets allowed).
    pub async fn check_sip_host(self, host: &str, port: u16) -> Result<(), Refused> {
        if self.allow_private {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_sip_ip(ip).map_err(|reason| Refused { host: host.to_owned(), reason });
        }
        self.check_name(bare, port, Self::check_sip_ip).await
    }

    /// Connect-time check of a URL whose host is an IP literal (a resolver never sees those).
    pub fn check_literal(self, url: &Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(name)) if is_localhost(name) && !self.allow_private => {
                return Err(Refused { host: name.to_owned(), reason: Reserved::Loopback });
            }
            _ => return Ok(()),
        };
        self.check_http_ip(ip).map_err(|reason| Refused { host: ip.to_string(), reason })
    }

    /// An HTTP client for tenant targets: no redirects followed (a redirect is shown in the
    /// delivery log as the answer), no proxy (the guard must see the real target), and with
    /// the guard on, a resolver that never hands out a refused address.
    pub fn http_client(self, user_agent: &str) -> reqwest::Result<reqwest::Client> {
        let builder = reqwest::Client::builder().user_agent(user_agent).redirect(reqwest::redirect::Policy::none()).no_proxy();
        let builder = if self.allow_private { builder } else { builder.dns_resolver(Arc::new(GuardedResolver { egress: self })) };
        builder.build()
    }

    async fn check_name(self, name: &str, port: u16, check: fn(Self, IpAddr) -> Result<(), Reserved>) -> Result<(), Refused> {
        if is_localhost(name) {
            let loopback = IpAddr::from(Ipv4Addr::LOCALHOST);
            return check(self, loopback).map_err(|reason| Refused { host: name.to_owned(), reason });
        }
        let Ok(Ok(addrs)) = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port))).await else {
            return Ok(());
        };
        for addr in addrs {
            check(self, addr.ip()).map_err(|reason| Refused { host: format!("{name} ({})", addr.ip()), reason })?;
        }
        Ok(())
    }
}

/// `localhost` and its subdomains are loopback by definition (RFC 6761), whatever DNS says.
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Filters resolved addresses through the guard; with none left the connection fails with
/// `Refused` in its error chain.
struct GuardedResolver {
    egress: Egress,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost(&name) {
                return Err(Box::new(Refused { host: name, reason: Reserved::Loopback }) as _);
            }
            let addrs: Vec<SocketAddr> = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
                .await
                .map_err(|_| Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "dns lookup timed out")))??
                .collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| match egress.check_http_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(reason) => {
                        refusal = Some(reason);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(reason)) => Err(Box::new(Refused { host: name, reason }) as _),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// What reserved range `ip` is in, if any. IPv6 addresses that carry an IPv4 address
/// (mapped, compatible, IPv4-translated, NAT64 well-known prefix, 6to4) are judged by it.
pub fn reserved(ip: IpAddr) -> Option<Reserved> {
    match ip {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn reserved_v4(ip: Ipv4Addr) -> Option<Reserved> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Reserved::Unspecified,
        (127, _, _) => Reserved::Loopback,
        (169, 254, _) => Reserved::LinkLocal,
        (10, _, _) | (192, 168, _) => Reserved::Private,
        (172, b, _) if (16..32).contains(&b) => Reserved::Private,
        (100, b, _) if (64..128).contains(&b) => Reserved::Shared,
        _ if ip.is_broadcast() => Reserved::Broadcast,
        (224..=239, _, _) => Reserved::Multicast,
        // IETF protocol assignments, benchmarking, and the old class E.
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, _, _) => Reserved::Other,
        _ => return None,
    })
}

fn reserved_v6(ip: Ipv6Addr) -> Option<Reserved> {
    let segments = ip.segments();
    let bits = u128::from(ip);
    let embedded = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some(Reserved::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Reserved::Loopback);
    }
    // ::a.b.c.d (compatible), ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (translated),
    // 64:ff9b::a.b.c.d (NAT64): the IPv4 address decides.
    let prefix96 = bits >> 32;
    if prefix96 == 0 || prefix96 == 0xffff || prefix96 == 0xffff_0000 || prefix96 == 0x0064_ff9b_0000_0000_0000_0000 {
        return reserved_v4(embedded).or(if prefix96 == 0 { Some(Reserved::Other) } else { None });
    }
    if segments[0] == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        let v4 = Ipv4Addr::from(((u32::from(segments[1])) << 16) | u32::from(segments[2]));
        return reserved_v4(v4);
    }
    Some(match segments[0] {
        s if s & 0xffc0 == 0xfe80 => Reserved::LinkLocal,
        // fec0::/10 is the deprecated site-local range, private in practice.
        s if s & 0xffc0 == 0xfec0 || s & 0xfe00 == 0xfc00 => Reserved::Private,
        s if s & 0xff00 == 0xff00 => Reserved::Multicast,
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): it translates to private networks.
        0x0064 if segments[1] == 0xff9b && segments[2] == 0x0001 => Reserved::Private,
        // 100::/64, discard-only.
        0x0100 if segments[1..4] == [0, 0, 0] => Reserved::Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_reason(raw: &str) -> Option<Reserved> {
        let url = Url::parse(raw).unwrap();
        Egress::guarded().check_literal(&url).err().map(|refused| refused.reason)
    }

    #[test]
    fn every_spelling_of_a_reserved_ipv4_address_is_refused() {
        for (raw, reason) in [
            ("http://127.0.0.1/", Reserved::Loopback),
            ("http://127.1/", Reserved::Loopback),
            ("http://2130706433/", Reserved::Loopback),
            ("http://0x7f000001/", Reserved::Loopback),
            ("http://0177.0.0.1/", Reserved::Loopback),
            ("http://169.254.169.254/latest/meta-data/", Reserved::LinkLocal),
            ("http://2852039166/", Reserved::LinkLocal),
            ("http://0xA9FEA9FE/", Reserved::LinkLocal),
            ("http://0xa9.0xfe.0xa9.0xfe/", Reserved::LinkLocal),
            ("http://0251.0376.0251.0376/", Reserved::LinkLocal),
            ("http://169.16689662/", Reserved::LinkLocal),
            ("http://10.0.0.1/", Reserved::Private),
            ("http://10.1/", Reserved::Private),
            ("http://172.16.0.1/", Reserved::Private),
            ("http://172.31.255.255/", Reserved::Private),
            ("http://192.168.1.1/", Reserved::Private),
            ("http://100.64.0.1/", Reserved::Shared),
            ("http://0.0.0.0/", Reserved::Unspecified),
            ("http://0/", Reserved::Unspecified),
            ("http://224.0.0.1/", Reserved::Multicast),
            ("http://255.255.255.255/", Reserved::Broadcast),
            ("https://localhost:8443/x", Reserved::Loopback),
            ("http://LocalHost./x", Reserved::Loopback),
            ("http://api.localhost/x", Reserved::Loopback),
        ] {
            assert_eq!(url_reason(raw), Some(reason), "{raw}");
        }
    }

    #[test]
    fn every_ipv6_form_of_a_reserved_address_is_refused() {
        for (raw, reason) in [
            ("http://[::1]/", Reserved::Loopback),
            ("http://[::]/", Reserved::Unspecified),
            ("http://[fe80::1]/", Reserved::LinkLocal),
            ("http://[febf::1]/", Reserved::LinkLocal),
            ("http://[fc00::1]/", Reserved::Private),
            ("http://[fd12:3456::1]/", Reserved::Private),
            ("http://[ff02::1]/", Reserved::Multicast),
            ("http://[::ffff:169.254.169.254]/", Reserved::LinkLocal),
            ("http://[::ffff:a9fe:a9fe]/", Reserved::LinkLocal),
            ("http://[::ffff:127.0.0.1]/", Reserved::Loopback),
            ("http://[::ffff:0:10.0.0.1]/", Reserved::Private),
            ("http://[::169.254.169.254]/", Reserved::LinkLocal),
            ("http://[::7f00:1]/", Reserved::Loopback),
            ("http://[64:ff9b::169.254.169.254]/", Reserved::LinkLocal),
            ("http://[64:ff9b::a00:1]/", Reserved::Private),
            ("http://[64:ff9b:1::1]/", Reserved::Private),
            ("http://[2002:a9fe:a9fe::1]/", Reserved::LinkLocal),
            ("http://[2002:7f00:1::]/", Reserved::Loopback),
        ] {
            assert_eq!(url_reason(raw), Some(reason), "{raw}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_literal_check() {
        for raw in [
            "https://93.184.216.34/hook",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::8.8.8.8]/",
            "https://hooks.example.com/x",
        ] {
            assert_eq!(url_reason(raw), None, "{raw}");
        }
    }

    #[test]
    fn allowing_private_targets_turns_the_guard_off() {
        let open = Egress::allow_private_targets();
        assert!(open.check_literal(&Url::parse("http://169.254.169.254/").unwrap()).is_ok());
        assert!(open.check_http_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(open.check_sip_ip("169.254.1.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn sip_trunks_may_be_private_or_loopback_but_not_link_local() {
        let guard = Egress::guarded();
        for ok in ["127.0.0.1", "10.0.0.5", "192.168.1.10", "::1", "fd00::5", "8.8.8.8"] {
            assert!(guard.check_sip_ip(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in ["169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254"] {
            assert_eq!(guard.check_sip_ip(bad.parse().unwrap()), Err(Reserved::LinkLocal), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_at_save_time() {
        let guard = Egress::guarded();
        let refused = guard.check_url(&Url::parse("http://localhost:9/x").unwrap()).await.unwrap_err();
        assert_eq!(refused.reason, Reserved::Loopback);
        // A name that does not resolve now is accepted and checked at connect time.
        assert!(guard.check_url(&Url::parse("http://no-such-host.invalid/x").unwrap()).await.is_ok());
        assert!(guard.check_sip_host("localhost", 5060).await.is_ok(), "loopback trunks are allowed");
        assert!(guard.check_sip_host("[fe80::1]", 5060).await.is_err());
    }

    #[tokio::test]
    async fn the_guarded_client_refuses_a_name_at_connect_time() {
        let client = Egress::guarded().http_client("test").unwrap();
        let err = client.get("http://localhost:9/x").send().await.unwrap_err();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut found = false;
        while let Some(current) = cause {
            found |= current.downcast_ref::<Refused>().is_some();
            cause = current.source();
        }
        assert!(found, "Refused is in the chain of {err:?}");
    }
}
