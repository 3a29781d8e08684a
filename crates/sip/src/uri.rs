//! SIP URIs (`sip:user@host:port;params`) and name-addrs (`"Name" <uri>;tag=x`).

/// A SIP or SIPS URI. Only what a trunk-facing user agent needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order.
    pub params: Vec<(String, Option<String>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a SIP URI: {0:?}")]
pub struct UriError(pub String);

impl SipUri {
    pub fn parse(raw: &str) -> Result<Self, UriError> {
        let bad = || UriError(raw.to_owned());
        let raw_trim = raw.trim();
        let (secure, rest) = if let Some(rest) = strip_prefix_ci(raw_trim, "sips:") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(raw_trim, "sip:") {
            (false, rest)
        } else {
            return Err(bad());
        };
        // Headers (`?a=b`) are not used by trunks; drop them.
        let rest = rest.split('?').next().unwrap_or_default();
        let mut parts = rest.split(';');
        let userhost = parts.next().unwrap_or_default();
        let params = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        let (user, hostport) = match userhost.rsplit_once('@') {
            Some((user, hostport)) => (Some(user.to_owned()), hostport),
            None => (None, userhost),
        };
        let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
            let (v6, after) = stripped.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (format!("[{v6}]"), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse().map_err(|_| bad())?)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self { secure, user, host, port, params })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// `host` or `host:port`.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host_port())?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

/// A From/To/Contact value: a URI plus header parameters such as `tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: SipUri,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(raw: &str) -> Result<Self, UriError> {
        let raw = raw.trim();
        if let Some(open) = raw.find('<') {
            let close = raw[open..].find('>').map(|c| open + c).ok_or_else(|| UriError(raw.to_owned()))?;
            let display = raw[..open].trim().trim_matches('"').to_owned();
            let uri = SipUri::parse(&raw[open + 1..close])?;
            Ok(Self { display: (!display.is_empty()).then_some(display), uri, params: header_params(&raw[close + 1..]) })
        } else {
            // Without brackets, parameters after the URI belong to the header.
            let (uri, params) = raw.split_once(';').unwrap_or((raw, ""));
            Ok(Self { display: None, uri: SipUri::parse(uri)?, params: header_params(&format!(";{params}")) })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case("tag")).and_then(|(_, v)| v.as_deref())
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(display) = &self.display {
            write!(f, "\"{display}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

fn header_params(raw: &str) -> Vec<(String, Option<String>)> {
    raw.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
            None => (p.to_owned(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_print() {
        let uri = SipUri::parse("sip:+12125550123@trunk.example.com:5080;transport=tcp").unwrap();
        assert_eq!(uri.user.as_deref(), Some("+12125550123"));
        assert_eq!(uri.host_port(), "trunk.example.com:5080");
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        assert_eq!(uri.to_string(), "sip:+12125550123@trunk.example.com:5080;transport=tcp");
        assert_eq!(SipUri::parse("sip:[::1]:5060").unwrap().host, "[::1]");
        assert!(SipUri::parse("http://x").is_err());
        assert!(SipUri::parse("sip:host:port").is_err());
    }

    #[test]
    fn name_addrs_keep_their_tag() {
        let from = NameAddr::parse("\"Alice\" <sip:alice@a.example;transport=udp>;tag=1928301774").unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice"));
        assert_eq!(from.tag(), Some("1928301774"));
        assert_eq!(from.uri.param("transport"), Some(Some("udp")));
        let bare = NameAddr::parse("sip:bob@b.example;tag=x").unwrap();
        assert_eq!(bare.tag(), Some("x"));
        assert_eq!(bare.uri.params, vec![]);
    }
}
