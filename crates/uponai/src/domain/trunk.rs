//! Where a number's outbound calls go: the trunk's termination URI and transport.

/// SIP transport of a trunk, spelled as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Case-insensitive `UDP`, `TCP` or `TLS`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "UDP" => Some(Self::Udp),
            "TCP" => Some(Self::Tcp),
            "TLS" => Some(Self::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// A trunk's termination URI: a bare host, `host:port`, or a `sip:`/`sips:` URI, possibly
/// with a user part and `;transport=` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminationUri {
    host: String,
    port: Option<u16>,
    /// From `;transport=` or implied by `sips:`; the number's own `transport` applies when
    /// this is `None`.
    transport: Option<Transport>,
}

/// Longest termination URI accepted.
const MAX_LEN: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a termination URI (expected host, host:port or sip:host[:port][;transport=udp|tcp|tls])")]
pub struct TerminationUriError(String);

impl TerminationUri {
    pub fn parse(raw: &str) -> Result<Self, TerminationUriError> {
        let bad = || TerminationUriError(raw.to_owned());
        // Nothing that could close a header field or a name-addr, however it is printed.
        if raw.len() > MAX_LEN || raw.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"')) {
            return Err(bad());
        }
        let lower = raw.to_ascii_lowercase();
        let (secure, rest) = if let Some(rest) = lower.strip_prefix("sips:") {
            (true, rest)
        } else if let Some(rest) = lower.strip_prefix("sip:") {
            (false, rest)
        } else {
            (false, lower.as_str())
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        let mut transport = secure.then_some(Transport::Tls);
        for param in parts {
            match param.split_once('=') {
                Some(("transport", value)) => transport = Some(Transport::parse(value).ok_or_else(bad)?),
                Some((name, _)) if name_ok(name) => {}
                None if param.is_empty() || name_ok(param) => {}
                _ => return Err(bad()),
            }
        }
        let hostport = match hostport.rsplit_once('@') {
            Some((_user, hostport)) => hostport,
            None => hostport,
        };
        let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .split('.')
                    .all(|label| !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        };
        if !host_ok {
            return Err(bad());
        }
        Ok(Self { host: host.to_owned(), port, transport })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'".contains(&b))
}

fn split_host_port(hostport: &str) -> Option<(&str, Option<u16>)> {
    if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        let (host, rest) = hostport.split_at(close + 1);
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Some((host, None)),
            Some(port) => Some((host, Some(parse_port(port)?))),
            None => None,
        };
    }
    match hostport.split_once(':') {
        None => Some((hostport, None)),
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
    }
}

fn parse_port(raw: &str) -> Option<u16> {
    raw.parse::<u16>().ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_hosts_host_ports_and_sip_uris_parse() {
        let bare = TerminationUri::parse("example.pstn.twilio.com").unwrap();
        assert_eq!((bare.host(), bare.port(), bare.transport()), ("example.pstn.twilio.com", None, None));
        let with_port = TerminationUri::parse("127.0.0.1:5070").unwrap();
        assert_eq!((with_port.host(), with_port.port()), ("127.0.0.1", Some(5070)));
        let uri = TerminationUri::parse("sip:trunk.example.com:5080;transport=tcp").unwrap();
        assert_eq!((uri.host(), uri.port(), uri.transport()), ("trunk.example.com", Some(5080), Some(Transport::Tcp)));
        assert_eq!(TerminationUri::parse("sips:t.example.com").unwrap().transport(), Some(Transport::Tls));
        assert_eq!(TerminationUri::parse("sip:[::1]:5060").unwrap().host(), "[::1]");
    }

    #[test]
    fn junk_is_refused() {
        let long = format!("sip:{}.example.com", "a".repeat(520));
        for raw in [
            "",
            "sip:",
            "host:0",
            "host:99999",
            "ho st",
            "sip:a;transport=sctp",
            "http://x/y",
            "a..b",
            " t.example.com",
            "t.example.com\r\nVia: x",
            "sip:t.example.com;x=\"y\"",
            "sip:t.example.com;x=<y>",
            "sip:u\u{0}@t.example.com",
            "sip:t.example.com\t",
            &long,
        ] {
            assert!(TerminationUri::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }
}
