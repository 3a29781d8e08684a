//! SIP messages: parse from bytes, print to bytes.

use std::fmt::Write as _;

/// Largest message accepted; anything bigger is an attack or a mistake.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Other(String),
}

impl Method {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "INFO" => Self::Info,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Info => "INFO",
            Self::Other(other) => other,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in order, names as received. Lookups are case-insensitive and understand
/// the compact forms (`v` for Via, `i` for Call-ID, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

fn canonical(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via",
        "i" => "call-id",
        "f" => "from",
        "t" => "to",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        _ => name,
    }
}

fn same_name(a: &str, b: &str) -> bool {
    canonical(a).eq_ignore_ascii_case(canonical(b))
}

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| same_name(n, name)).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, comma-separated lists split (Via, Record-Route, …).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| same_name(n, name)).flat_map(|(_, v)| split_list(v)).collect()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every `name` with one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.0.push((name.to_owned(), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !same_name(n, name));
    }

    /// Puts `value` first among the `name` headers (a new top Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let at = self.0.iter().position(|(n, _)| same_name(n, name)).unwrap_or(0);
        self.0.insert(at, (name.to_owned(), value.into()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Splits a header value on commas that are not inside quotes or angle brackets.
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// A stream transport has not delivered the whole message yet.
    #[error("incomplete message")]
    Incomplete,
    #[error("malformed message: {0}")]
    Invalid(&'static str),
}

/// Parses one message from the front of `buf`, returning it and the bytes it used.
/// `stream` transports (TCP) require Content-Length; datagrams take the rest as the body.
pub fn parse(buf: &[u8], stream: bool) -> Result<(Message, usize), ParseError> {
    // Leading CRLFs are keep-alives (RFC 5626) and are skipped.
    let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let buf = &buf[skip..];
    let head_end = find_head_end(buf);
    let Some((head_len, sep_len)) = head_end else {
        return if buf.len() > MAX_MESSAGE_BYTES { Err(ParseError::Invalid("headers too long")) } else { Err(ParseError::Incomplete) };
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::Invalid("headers are not UTF-8"))?;
    let mut lines = unfold(head).into_iter();
    let start = lines.next().ok_or(ParseError::Invalid("empty message"))?;
    let mut headers = Headers::new();
    for line in lines {
        if headers.0.len() >= MAX_HEADERS {
            return Err(ParseError::Invalid("too many headers"));
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::Invalid("header without colon"))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::Invalid("bad header name"));
        }
        headers.push(name, value.trim());
    }
    let body_start = head_len + sep_len;
    let content_length = match headers.get("content-length") {
        Some(raw) => Some(raw.trim().parse::<usize>().map_err(|_| ParseError::Invalid("bad Content-Length"))?),
        None if stream => return Err(ParseError::Invalid("Content-Length is required on stream transports")),
        None => None,
    };
    let body_len = content_length.unwrap_or(buf.len() - body_start);
    if body_start + body_len > MAX_MESSAGE_BYTES {
        return Err(ParseError::Invalid("message too large"));
    }
    if buf.len() < body_start + body_len {
        return if stream { Err(ParseError::Incomplete) } else { Err(ParseError::Invalid("body shorter than Content-Length")) };
    }
    let body = buf[body_start..body_start + body_len].to_vec();
    let consumed = skip + body_start + body_len;

    let mut parts = start.splitn(3, ' ');
    let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let message = if a.starts_with("SIP/") {
        if a != "SIP/2.0" {
            return Err(ParseError::Invalid("unsupported SIP version"));
        }
        let status = b.parse::<u16>().ok().filter(|s| (100..700).contains(s)).ok_or(ParseError::Invalid("bad status code"))?;
        Message::Response(Response { status, reason: c.to_owned(), headers, body })
    } else {
        if c != "SIP/2.0" {
            return Err(ParseError::Invalid("bad request line"));
        }
        if a.is_empty() || !a.bytes().all(is_token_byte) || b.is_empty() {
            return Err(ParseError::Invalid("bad request line"));
        }
        Message::Request(Request { method: Method::parse(a), uri: b.to_owned(), headers, body })
    };
    check_mandatory(&message)?;
    Ok((message, consumed))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The end of the header block: `(index, separator length)`.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let limit = buf.len().min(MAX_MESSAGE_BYTES + 4);
    (0..limit).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}

/// Splits the header block into logical lines, joining folded continuation lines.
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.starts_with([' ', '\t'])
            && let Some(last) = lines.last_mut()
        {
            last.push(' ');
            last.push_str(raw.trim());
            continue;
        }
        lines.push(raw.to_owned());
    }
    lines
}

/// The headers every transaction and dialog relies on (RFC 3261 §8.1.1).
fn check_mandatory(message: &Message) -> Result<(), ParseError> {
    let headers = match message {
        Message::Request(r) => &r.headers,
        Message::Response(r) => &r.headers,
    };
    for name in ["via", "call-id", "cseq", "from", "to"] {
        if headers.get(name).is_none() {
            return Err(ParseError::Invalid("missing a mandatory header"));
        }
    }
    let cseq = headers.get("cseq").unwrap_or_default();
    let mut parts = cseq.split_whitespace();
    let ok = parts.next().is_some_and(|n| n.parse::<u32>().is_ok()) && parts.next().is_some();
    if !ok {
        return Err(ParseError::Invalid("bad CSeq"));
    }
    Ok(())
}

fn print(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(512 + body.len());
    out.push_str(start);
    out.push_str("\r\n");
    for (name, value) in headers.iter() {
        if same_name(name, "content-length") {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl Request {
    pub fn to_bytes(&self) -> Vec<u8> {
        print(&format!("{} {} SIP/2.0", self.method, self.uri), &self.headers, &self.body)
    }

    /// `(number, method)` of the CSeq header (validated at parse).
    pub fn cseq(&self) -> (u32, Method) {
        cseq_of(&self.headers)
    }

    pub fn call_id(&self) -> &str {
        self.headers.get("call-id").unwrap_or_default()
    }

    /// The branch parameter of the top Via.
    pub fn branch(&self) -> Option<&str> {
        top_via_param(&self.headers, "branch")
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        print(&format!("SIP/2.0 {} {}", self.status, self.reason), &self.headers, &self.body)
    }

    pub fn cseq(&self) -> (u32, Method) {
        cseq_of(&self.headers)
    }

    pub fn call_id(&self) -> &str {
        self.headers.get("call-id").unwrap_or_default()
    }

    pub fn branch(&self) -> Option<&str> {
        top_via_param(&self.headers, "branch")
    }

    /// A response to `request` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied.
    pub fn to(request: &Request, status: u16, reason: &str) -> Self {
        let mut headers = Headers::new();
        for name in ["via", "from", "to", "call-id", "cseq"] {
            for value in request.headers.0.iter().filter(|(n, _)| same_name(n, name)).map(|(_, v)| v) {
                headers.push(canonical_display(name), value.clone());
            }
        }
        Self { status, reason: reason.to_owned(), headers, body: Vec::new() }
    }
}

fn canonical_display(name: &str) -> &'static str {
    match name {
        "via" => "Via",
        "from" => "From",
        "to" => "To",
        "call-id" => "Call-ID",
        _ => "CSeq",
    }
}

fn cseq_of(headers: &Headers) -> (u32, Method) {
    let raw = headers.get("cseq").unwrap_or_default();
    let mut parts = raw.split_whitespace();
    let number = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let method = Method::parse(parts.next().unwrap_or(""));
    (number, method)
}

/// A parameter of the first Via value.
fn top_via_param<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    let via = *headers.get_all("via").first()?;
    param(via, name)
}

/// The value of `;name=value` in a header value (outside any `<…>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match value.rfind('>') {
        Some(close) => &value[close + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (key, val) = p.split_once('=').unwrap_or((p, ""));
        key.trim().eq_ignore_ascii_case(name).then(|| val.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+12125550123@trunk.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+12125550123@trunk.example.com>\r\n\
From: \"Alice\" <sip:+14155550100@10.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@10.0.0.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:uponai@10.0.0.1:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn a_request_parses_and_prints_back() {
        let (message, used) = parse(INVITE.as_bytes(), true).unwrap();
        assert_eq!(used, INVITE.len());
        let Message::Request(request) = message else { panic!("not a request") };
        assert_eq!(request.method, Method::Invite);
        assert_eq!(request.cseq(), (314159, Method::Invite));
        assert_eq!(request.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(request.body, b"v=0\n");
        let (again, _) = parse(&request.to_bytes(), true).unwrap();
        assert_eq!(again, Message::Request(request));
    }

    #[test]
    fn compact_forms_folding_and_lists_are_understood() {
        let raw = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
i: x@y\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\n ;tag=2\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        let (Message::Response(response), _) = parse(raw.as_bytes(), true).unwrap() else { panic!() };
        assert_eq!(response.call_id(), "x@y");
        assert_eq!(response.headers.get_all("Via").len(), 2);
        assert_eq!(response.branch(), Some("z9hG4bK1"));
        assert_eq!(param(response.headers.get("to").unwrap(), "tag"), Some("2"));
    }

    #[test]
    fn stream_transports_wait_for_the_whole_message() {
        let bytes = INVITE.as_bytes();
        assert_eq!(parse(&bytes[..40], true), Err(ParseError::Incomplete));
        assert_eq!(parse(&bytes[..bytes.len() - 1], true), Err(ParseError::Incomplete));
        let mut two = bytes.to_vec();
        two.extend_from_slice(bytes);
        let (_, used) = parse(&two, true).unwrap();
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn corrupted_and_truncated_messages_never_panic_the_parser() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_124);
        let original = INVITE.as_bytes();
        for _ in 0..10_000 {
            let mut bytes = original.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, *b"\r\n: ;<>\"0".get(rng.random_range(0..9)).unwrap()),
                }
            }
            for stream in [false, true] {
                let _ = parse(&bytes, stream);
            }
        }
        for end in 0..original.len() {
            let _ = parse(&original[..end], true);
            let _ = parse(&original[..end], false);
        }
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"\xff\xfe\r\n\r\n",
            b"INVITE sip:x SIP/3.0\r\n\r\n",
            b"SIP/2.0 99999 OK\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nVia x\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: a\r\nCall-ID: b\r\nFrom: c\r\nTo: d\r\nCSeq: x INVITE\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: a\r\nCall-ID: b\r\nFrom: c\r\nTo: d\r\nCSeq: 1 INVITE\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ];
        for case in cases {
            assert!(matches!(parse(case, false), Err(ParseError::Invalid(_))), "{:?}", String::from_utf8_lossy(case));
        }
    }
}
