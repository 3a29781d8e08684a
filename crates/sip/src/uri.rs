//! SIP URIs (`sip:user@host:port;params`) and name-addrs (`"Name" <uri>;tag=x`).
//!
//! Both parsers take text straight from the wire: they never panic, slice only at ASCII
//! delimiters, and bound every number (a port is a `u16` written in digits only).

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
    /// Parses a `sip:` or `sips:` URI. URI headers (`?a=b`) are accepted and dropped: trunks
    /// do not use them.
    pub fn parse(raw: &str) -> Result<Self, UriError> {
        parse_with_headers(raw).map(|(uri, _)| uri)
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

/// A SIP URI and whether it carried `?headers` (which a Request-URI must not, RFC 3261
/// §19.1.1).
pub(crate) fn parse_with_headers(raw: &str) -> Result<(SipUri, bool), UriError> {
    let bad = || UriError(raw.to_owned());
    let raw_trim = raw.trim();
    let (secure, rest) = if let Some(rest) = strip_prefix_ci(raw_trim, "sips:") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ci(raw_trim, "sip:") {
        (false, rest)
    } else {
        return Err(bad());
    };
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"')) {
        return Err(bad());
    }
    // The user part may itself hold `;`, `?` and `/` (RFC 3261 `user-unreserved`), but no
    // parameter or header may hold an unescaped `@`: the last `@` ends the userinfo.
    let (user, after_user) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if user.is_some_and(str::is_empty) {
        return Err(bad());
    }
    let (before_headers, headers) = match after_user.split_once('?') {
        Some((before, headers)) => (before, Some(headers)),
        None => (after_user, None),
    };
    let mut parts = before_headers.split(';');
    let hostport = parts.next().unwrap_or_default();
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (p, None),
        };
        if k.is_empty() {
            return Err(bad());
        }
        params.push((k.to_owned(), v));
    }
    let (host, port) = parse_host_port(hostport).ok_or_else(bad)?;
    Ok((SipUri { secure, user: user.map(str::to_owned), host, port, params }, headers.is_some()))
}

/// `host[:port]` (RFC 3261 `hostport`): a hostname, IPv4 address or `[IPv6]`, and a port in
/// digits that fits a `u16`.
pub(crate) fn parse_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        let (v6, after) = stripped.split_once(']')?;
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':')?)?),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (hostport, None),
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return None;
        }
        (host.to_owned(), port)
    };
    Some((host, port))
}

/// A port in 1–5 ASCII digits that fits a `u16` (`str::parse` alone would take `+5060`).
pub(crate) fn parse_port(raw: &str) -> Option<u16> {
    (!raw.is_empty() && raw.len() <= 5 && raw.bytes().all(|b| b.is_ascii_digit())).then(|| raw.parse().ok()).flatten()
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

/// `s` without `prefix`, compared ASCII case-insensitively. Works on bytes, so a multibyte
/// character where the prefix would end is a mismatch, not a slice panic.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // `prefix` is ASCII, so a match ends on a char boundary and `get` succeeds.
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| s.get(prefix.len()..)).flatten()
}

/// A From/To/Contact value: a URI plus header parameters such as `tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: SipUri,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses `"Display" <sip:…>;params`, `Display <sip:…>` or `sip:…;params`.
    pub fn parse(raw: &str) -> Result<Self, UriError> {
        let bad = || UriError(raw.to_owned());
        let parts = split_name_addr(raw).ok_or_else(bad)?;
        let uri = SipUri::parse(parts.uri).map_err(|_| bad())?;
        Ok(Self { display: parts.display, uri, params: parts.params })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case("tag")).and_then(|(_, v)| v.as_deref())
    }
}

/// The syntactic pieces of a name-addr or addr-spec (RFC 3261 §25.1), whatever the URI
/// scheme: the message parser checks From/To/Contact with this before anyone reads them.
pub(crate) struct NameAddrParts<'a> {
    pub(crate) display: Option<String>,
    pub(crate) uri: &'a str,
    pub(crate) params: Vec<(String, Option<String>)>,
}

pub(crate) fn split_name_addr(raw: &str) -> Option<NameAddrParts<'_>> {
    let raw = raw.trim();
    let (display, rest) = if let Some(quoted) = raw.strip_prefix('"') {
        let (display, after) = unquote(quoted)?;
        let after = after.trim_start();
        if !after.starts_with('<') {
            return None;
        }
        (Some(display), after)
    } else if let Some(open) = raw.find('<') {
        // An unquoted display name is tokens separated by whitespace (and, RFC 4475 §3.1.1.6
        // says to accept, nothing before the `<`).
        let display = raw[..open].trim();
        if !display.split_whitespace().all(|word| word.bytes().all(is_token_byte)) {
            return None;
        }
        ((!display.is_empty()).then(|| display.split_whitespace().collect::<Vec<_>>().join(" ")), &raw[open..])
    } else {
        (None, raw)
    };
    if let Some(inner) = rest.strip_prefix('<') {
        let close = inner.find('>')?;
        let uri = &inner[..close];
        if uri.is_empty() || uri.trim() != uri {
            return None;
        }
        let params = header_params(&inner[close + 1..])?;
        let display = display.filter(|d| !d.is_empty());
        Some(NameAddrParts { display, uri, params })
    } else {
        // Without brackets, parameters after the URI belong to the header, and the URI may not
        // hold `?`, `,` or `;` of its own (RFC 3261 §20.10).
        let (uri, params) = match rest.find(';') {
            Some(semi) => (&rest[..semi], &rest[semi..]),
            None => (rest, ""),
        };
        let uri = uri.trim();
        if uri.is_empty() || uri.contains(['?', ',', '<', '>', '"']) || uri.contains(char::is_whitespace) {
            return None;
        }
        Some(NameAddrParts { display: None, uri, params: header_params(params)? })
    }
}

/// The contents of a quoted string (after its opening quote) with quoted-pairs resolved, and
/// the text after the closing quote. `None` if the quote never closes.
pub(crate) fn unquote(after_open: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = after_open.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &after_open[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(display) = &self.display {
            f.write_str("\"")?;
            for c in display.chars() {
                if matches!(c, '"' | '\\') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
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

/// `;name[=value]` header parameters; whitespace around `;` and `=` is allowed, an empty
/// parameter (`;;`) or a parameter whose name is not a token is not.
fn header_params(raw: &str) -> Option<Vec<(String, Option<String>)>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let rest = raw.strip_prefix(';')?;
    let mut params = Vec::new();
    for p in split_outside_quotes(rest, ';') {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if k.is_empty() || !k.bytes().all(is_token_byte) || v.is_some_and(str::is_empty) {
            return None;
        }
        let v = match v {
            Some(quoted) if quoted.starts_with('"') => {
                let (inner, after) = unquote(&quoted[1..])?;
                if !after.trim().is_empty() {
                    return None;
                }
                Some(inner)
            }
            Some(v) if v.contains(char::is_whitespace) => return None,
            Some(v) => Some(v.to_owned()),
            None => None,
        };
        params.push((k.to_owned(), v));
    }
    Some(params)
}

/// Splits on `sep` outside double quotes (a backslash escapes the next character inside them).
pub(crate) fn split_outside_quotes(raw: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in raw.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&raw[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&raw[start..]);
    parts
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

    #[test]
    fn non_ascii_where_the_scheme_would_end_is_an_error_not_a_panic() {
        for raw in ["sié:x", "si𝄞", "é", "sips𝄞x", "<é>", "\"é\" <sip:é@h>", "sip:h:é", "sip:[é]", "sip:h;é=é"] {
            let _ = SipUri::parse(raw);
            let _ = NameAddr::parse(raw);
        }
        assert!(SipUri::parse("sié:x@h").is_err());
        assert_eq!(SipUri::parse("sip:é@h").unwrap().user.as_deref(), Some("é"));
    }

    #[test]
    fn ports_are_digits_that_fit_sixteen_bits() {
        assert_eq!(SipUri::parse("sip:h:65535").unwrap().port, Some(65_535));
        for raw in ["sip:h:65536", "sip:h:+5060", "sip:h:-1", "sip:h:", "sip:h:18446744073709551615", "sip:[::1]:99999"] {
            assert!(SipUri::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn the_user_part_may_hold_semicolons_and_question_marks() {
        let uri = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!((uri.user.as_deref(), uri.host.as_str()), (Some("user;par=u%40example.net"), "example.com"));
        let (uri, headers) = parse_with_headers("sip:a?b;c@example.com;lr?Route=%3Csip:x%3E").unwrap();
        assert_eq!((uri.host.as_str(), uri.param("lr"), headers), ("example.com", Some(None), true));
    }

    #[test]
    fn malformed_name_addrs_are_errors() {
        for raw in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Watson, Thomas <sip:t.watson@example.org>",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b",
            "sip:a@b;tag=",
        ] {
            assert!(NameAddr::parse(raw).is_err(), "{raw}");
        }
        let quoted = NameAddr::parse(r#""J Rosenberg \\\"" <sip:jdrosen@example.com> ; tag = 98asjd8"#).unwrap();
        assert_eq!((quoted.display.as_deref(), quoted.tag()), (Some(r#"J Rosenberg \""#), Some("98asjd8")));
        assert_eq!(NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap().display.as_deref(), Some("caller"));
    }
}
