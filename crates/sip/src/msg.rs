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
    // Compact forms are one letter (RFC 3261 §7.3.3); anything longer is its own name.
    let [letter] = name.as_bytes() else { return name };
    match letter.to_ascii_lowercase() {
        b'v' => "via",
        b'i' => "call-id",
        b'f' => "from",
        b't' => "to",
        b'm' => "contact",
        b'l' => "content-length",
        b'c' => "content-type",
        b'k' => "supported",
        b's' => "subject",
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

/// Largest Content-Length we believe: the whole message must fit [`MAX_MESSAGE_BYTES`].
const MAX_CONTENT_LENGTH: u64 = MAX_MESSAGE_BYTES as u64;

/// Parses one message from the front of `buf`, returning it and the bytes it used.
/// `stream` transports (TCP) require Content-Length; datagrams take the rest as the body.
///
/// Every number read from the wire is checked before it is used: Content-Length (digits,
/// at most [`MAX_MESSAGE_BYTES`], no longer than the datagram, the same in every copy), CSeq
/// (a `u32` whose method matches a request's), Max-Forwards (0–255), Expires (a `u32`), the
/// status code (three digits, 100–699) and every port (a `u16`). Via, From, To and Contact are
/// checked against the RFC 3261 grammar, so the rest of the stack can read them freely.
pub fn parse(buf: &[u8], stream: bool) -> Result<(Message, usize), ParseError> {
    // Leading CRLFs are keep-alives (RFC 5626) and are skipped.
    let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let buf = &buf[skip..];
    let Some((head_len, sep_len)) = find_head_end(buf) else {
        return if buf.len() > MAX_MESSAGE_BYTES {
            Err(ParseError::Invalid("headers too long"))
        } else if stream {
            Err(ParseError::Incomplete)
        } else {
            Err(ParseError::Invalid("no end of headers in the datagram"))
        };
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::Invalid("headers are not UTF-8"))?;
    let (start, headers) = split_head(head)?;
    // Both are at most MAX_MESSAGE_BYTES + 4 (see `find_head_end`), so this cannot overflow.
    let body_start = head_len + sep_len;
    let available = buf.len() - body_start;
    let body_len = match content_length(&headers)? {
        Some(length) => length,
        None if stream => return Err(ParseError::Invalid("Content-Length is required on stream transports")),
        None => available,
    };
    if body_len > MAX_MESSAGE_BYTES - body_start.min(MAX_MESSAGE_BYTES) {
        return Err(ParseError::Invalid("message too large"));
    }
    if body_len > available {
        return if stream { Err(ParseError::Incomplete) } else { Err(ParseError::Invalid("body shorter than Content-Length")) };
    }
    // Datagram bytes past Content-Length are noise and ignored (RFC 3261 §18.3).
    let body = buf[body_start..body_start + body_len].to_vec();
    let consumed = skip + body_start + body_len;
    let message = match parse_start_line(start)? {
        StartLine::Request { method, uri } => Message::Request(Request { method, uri, headers, body }),
        StartLine::Response { status, reason } => Message::Response(Response { status, reason, headers, body }),
    };
    check_headers(&message)?;
    Ok((message, consumed))
}

/// The response an endpoint should send for `bytes` that [`parse`] rejected as malformed: a
/// 400 Bad Request (505 Version Not Supported for a foreign SIP version), with Via, From, To,
/// Call-ID and CSeq copied from the request as RFC 3261 §8.2.6 asks, and a To tag added.
///
/// `None` when there is nothing to answer: the bytes parse, are only incomplete, are a
/// response (those are dropped, never answered), or lack one of those five headers (then the
/// sender could not match an answer anyway, so the request is dropped).
pub fn bad_request_response(bytes: &[u8]) -> Option<Response> {
    let why = match parse(bytes, false) {
        Err(ParseError::Invalid(why)) => why,
        Ok(_) | Err(ParseError::Incomplete) => return None,
    };
    let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let bytes = &bytes[skip..];
    let head_len = find_head_end(bytes).map_or(bytes.len().min(MAX_MESSAGE_BYTES), |(len, _)| len);
    let head = String::from_utf8_lossy(&bytes[..head_len]);
    let lines = unfold(&head);
    let mut lines = lines.iter();
    let start = lines.next()?;
    let mut words = start.split(' ');
    let method = words.next().filter(|m| !m.is_empty() && m.bytes().all(is_token_byte))?;
    if method.starts_with("SIP/") || method.eq_ignore_ascii_case("ACK") {
        // Responses are never answered, and neither is an ACK (RFC 3261 §17.2.1).
        return None;
    }
    let version = start.rsplit(' ').next().unwrap_or_default();
    let foreign_version = version.starts_with("SIP/") && version != "SIP/2.0";
    let mut headers = Headers::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if ["via", "from", "to", "call-id", "cseq"].iter().any(|wanted| same_name(name, wanted)) {
            headers.push(name, value.trim());
        }
    }
    let mut response = Response::to(&Request { method: Method::parse(method), uri: String::new(), headers, body: Vec::new() }, 400, "");
    for name in ["via", "from", "to", "call-id", "cseq"] {
        response.headers.get(name).filter(|v| !v.is_empty())?;
    }
    if foreign_version {
        response.status = 505;
        response.reason = "Version Not Supported".to_owned();
    } else {
        response.status = 400;
        response.reason = format!("Bad Request ({why})");
    }
    let to = response.headers.get("to").unwrap_or_default().to_owned();
    if param(&to, "tag").is_none() {
        response.headers.set("To", format!("{to};tag={:08x}", rand::random::<u32>()));
    }
    Some(response)
}

/// A syntactically valid request that this user agent still refuses, as the response to send:
/// a Request-URI that is neither `sip:`, `sips:` nor `tel:` gets 416 Unsupported URI Scheme
/// (RFC 3261 §8.2.2.1; RFC 4475 §3.3.2, §3.3.3). `None` when the request may go on.
pub fn check_request(request: &Request) -> Option<Response> {
    let scheme = request.uri.split_once(':').map_or("", |(scheme, _)| scheme);
    if ["sip", "sips", "tel"].iter().any(|known| scheme.eq_ignore_ascii_case(known)) {
        return None;
    }
    Some(Response::to(request, 416, "Unsupported URI Scheme"))
}

enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

/// `Method SP Request-URI SP SIP/2.0` or `SIP/2.0 SP 3DIGIT SP Reason-Phrase`, with exactly
/// one space between the parts (RFC 4475 §3.1.2.8–10 are rejected, not repaired).
fn parse_start_line(start: &str) -> Result<StartLine, ParseError> {
    if start.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::Invalid("control character in the start line"));
    }
    let mut parts = start.splitn(3, ' ');
    let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if let Some(version) = a.strip_prefix("SIP/") {
        if version != "2.0" {
            return Err(ParseError::Invalid("unsupported SIP version"));
        }
        // A bare `SIP/2.0 100` without the space before the (empty) reason is accepted.
        let status = (b.len() == 3 && b.bytes().all(|d| d.is_ascii_digit()))
            .then(|| b.parse::<u16>().ok())
            .flatten()
            .filter(|s| (100..700).contains(s))
            .ok_or(ParseError::Invalid("bad status code"))?;
        return Ok(StartLine::Response { status, reason: c.to_owned() });
    }
    if a.is_empty() || !a.bytes().all(is_token_byte) {
        return Err(ParseError::Invalid("bad request line"));
    }
    if c != "SIP/2.0" {
        return Err(if c.starts_with("SIP/") && !c.contains(' ') {
            ParseError::Invalid("unsupported SIP version")
        } else {
            ParseError::Invalid("bad request line")
        });
    }
    check_request_uri(b)?;
    Ok(StartLine::Request { method: Method::parse(a), uri: b.to_owned() })
}

/// A Request-URI is `scheme ":" …` without whitespace or brackets; a SIP one must parse and
/// carry no `?headers` (RFC 3261 §19.1.1, RFC 4475 §3.1.2.11). Other schemes are left for
/// [`check_request`] to refuse.
fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    let bad = ParseError::Invalid("bad Request-URI");
    let Some((scheme, rest)) = uri.split_once(':') else { return Err(bad) };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() || uri.contains(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"')) {
        return Err(bad);
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        match crate::uri::parse_with_headers(uri) {
            Ok((_, false)) => {}
            Ok((_, true)) => return Err(ParseError::Invalid("headers in the Request-URI")),
            Err(_) => return Err(bad),
        }
    }
    Ok(())
}

/// The start line and the headers of a header block.
fn split_head(head: &str) -> Result<(&str, Headers), ParseError> {
    let first_end = head.find('\n').unwrap_or(head.len());
    let start = head[..first_end].strip_suffix('\r').unwrap_or(&head[..first_end]);
    let rest = head.get(first_end + 1..).unwrap_or_default();
    let mut headers = Headers::new();
    for line in unfold(rest) {
        if line.is_empty() {
            continue;
        }
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
    Ok((start, headers))
}

/// The one Content-Length of the message, checked to be digits and at most
/// [`MAX_CONTENT_LENGTH`] before it becomes a `usize`; copies that disagree are an error
/// (RFC 4475 §3.3.9).
fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut length = None;
    for raw in headers.0.iter().filter(|(n, _)| same_name(n, "content-length")).map(|(_, v)| v.trim()) {
        let value = parse_decimal(raw, MAX_CONTENT_LENGTH).ok_or(ParseError::Invalid("bad Content-Length"))?;
        if length.is_some_and(|seen| seen != value) {
            return Err(ParseError::Invalid("conflicting Content-Length headers"));
        }
        length = Some(value);
    }
    // The value is at most MAX_CONTENT_LENGTH, which is a usize.
    Ok(length.map(|l| usize::try_from(l).unwrap_or(MAX_MESSAGE_BYTES)))
}

/// ASCII digits (no sign, no spaces) whose value is at most `max`; leading zeros are fine
/// (RFC 4475 §3.1.1.1 has `Max-Forwards: 0068`).
fn parse_decimal(raw: &str, max: u64) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for digit in raw.bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

fn is_token_byte(b: u8) -> bool {
    crate::uri::is_token_byte(b)
}

/// The end of the header block: `(index, separator length)`, looked for only in the first
/// [`MAX_MESSAGE_BYTES`] + 4 bytes.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let window = &buf[..buf.len().min(MAX_MESSAGE_BYTES + 4)];
    // A plain index loop: this runs on every byte of every message, also in debug builds.
    let mut i = 0;
    while i + 1 < window.len() {
        if window[i] == b'\n' {
            if window[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if i >= 1 && window[i - 1] == b'\r' && window[i + 1] == b'\r' && window.get(i + 2) == Some(&b'\n') {
                return Some((i - 1, 4));
            }
        }
        i += 1;
    }
    None
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

/// Headers that must appear exactly once (RFC 3261 §20; RFC 4475 §3.3.8).
const SINGLE_HEADERS: [&str; 6] = ["call-id", "cseq", "from", "to", "max-forwards", "content-length"];

/// The headers every transaction and dialog relies on (RFC 3261 §8.1.1), each checked
/// against its grammar so that later readers may trust them.
fn check_headers(message: &Message) -> Result<(), ParseError> {
    let (headers, request_method) = match message {
        Message::Request(r) => (&r.headers, Some(&r.method)),
        Message::Response(r) => (&r.headers, None),
    };
    for name in ["via", "call-id", "cseq", "from", "to"] {
        if headers.get(name).is_none() {
            return Err(ParseError::Invalid("missing a mandatory header"));
        }
    }
    for name in SINGLE_HEADERS {
        if headers.0.iter().filter(|(n, _)| same_name(n, name)).nth(1).is_some() {
            return Err(ParseError::Invalid("a single-valued header appears twice"));
        }
    }
    let call_id = headers.get("call-id").unwrap_or_default();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::Invalid("bad Call-ID"));
    }
    let (_, method) = parse_cseq(headers.get("cseq").unwrap_or_default()).ok_or(ParseError::Invalid("bad CSeq"))?;
    if request_method.is_some_and(|m| m.as_str() != method) {
        return Err(ParseError::Invalid("CSeq method does not match the request method"));
    }
    if let Some(raw) = headers.get("max-forwards")
        && parse_decimal(raw, 255).is_none()
    {
        return Err(ParseError::Invalid("bad Max-Forwards"));
    }
    for raw in headers.0.iter().filter(|(n, _)| same_name(n, "expires")).map(|(_, v)| v) {
        if parse_decimal(raw, u64::from(u32::MAX)).is_none() {
            return Err(ParseError::Invalid("bad Expires"));
        }
    }
    for raw in headers.0.iter().filter(|(n, _)| same_name(n, "via")).map(|(_, v)| v) {
        for via in crate::uri::split_outside_quotes(raw, ',') {
            check_via(via)?;
        }
    }
    for name in ["from", "to"] {
        check_name_addr(headers.get(name).unwrap_or_default()).ok_or(ParseError::Invalid("bad From or To"))?;
    }
    for raw in headers.0.iter().filter(|(n, _)| same_name(n, "contact")).map(|(_, v)| v) {
        if raw.trim() == "*" {
            continue;
        }
        for contact in split_contacts(raw) {
            check_name_addr(contact).ok_or(ParseError::Invalid("bad Contact"))?;
        }
    }
    Ok(())
}

/// `number method`, the number a `u32` in digits and the method a token.
fn parse_cseq(raw: &str) -> Option<(u32, &str)> {
    let mut parts = raw.split_whitespace();
    let number = parse_decimal(parts.next()?, u64::from(u32::MAX))?;
    let method = parts.next().filter(|m| m.bytes().all(is_token_byte))?;
    if parts.next().is_some() {
        return None;
    }
    Some((u32::try_from(number).ok()?, method))
}

/// One Via value: `SIP / 2.0 / transport sent-by *( ; param )`, whitespace allowed around
/// the separators, the port a `u16`, and no empty parameter (RFC 4475 §3.1.2.1).
fn check_via(via: &str) -> Result<(), ParseError> {
    let bad = ParseError::Invalid("bad Via");
    let mut parts = via.split(';');
    let sent = parts.next().unwrap_or_default();
    let mut protocol = sent.splitn(3, '/');
    let (name, version, rest) = (protocol.next().unwrap_or(""), protocol.next().unwrap_or(""), protocol.next().unwrap_or(""));
    if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
        return Err(bad);
    }
    let mut rest = rest.trim().splitn(2, char::is_whitespace);
    let transport = rest.next().unwrap_or("");
    let sent_by: String = rest.next().unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    if transport.is_empty() || !transport.bytes().all(is_token_byte) || crate::uri::parse_host_port(&sent_by).is_none() {
        return Err(bad);
    }
    for p in parts {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            return Err(bad);
        }
        if value.is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace)) {
            return Err(bad);
        }
    }
    Ok(())
}

/// A From/To/Contact value in name-addr or addr-spec form. A `sip:`/`sips:` URI must parse;
/// another scheme need only be `scheme:…` (RFC 4475 §3.3.4 is valid syntax).
fn check_name_addr(raw: &str) -> Option<()> {
    let parts = crate::uri::split_name_addr(raw)?;
    let (scheme, rest) = parts.uri.split_once(':')?;
    if scheme.is_empty() || rest.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return None;
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        crate::uri::parse_with_headers(parts.uri).ok()?;
    }
    Some(())
}

/// Contact values split on commas outside quotes and angle brackets.
fn split_contacts(raw: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut bracketed, mut start) = (false, false, false, 0);
    for (i, c) in raw.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => bracketed = true,
            '>' if !quoted => bracketed = false,
            ',' if !quoted && !bracketed => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&raw[start..]);
    parts
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

    const OPTIONS_HEAD: &str = "OPTIONS sip:uponai@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: <sip:probe@10.0.0.1>;tag=a\r\nTo: <sip:uponai@10.0.0.2>\r\nCall-ID: options-1\r\nCSeq: 1 OPTIONS\r\n";

    #[test]
    fn a_content_length_of_u64_max_is_a_bad_request_not_an_overflow() {
        let raw = format!("{OPTIONS_HEAD}Content-Length: 18446744073709551615\r\n\r\n");
        for stream in [false, true] {
            assert_eq!(parse(raw.as_bytes(), stream), Err(ParseError::Invalid("bad Content-Length")));
        }
        let too_big = format!("{OPTIONS_HEAD}Content-Length: {}\r\n\r\n", MAX_MESSAGE_BYTES);
        assert_eq!(parse(too_big.as_bytes(), true), Err(ParseError::Invalid("message too large")));
        let response = bad_request_response(raw.as_bytes()).unwrap();
        assert_eq!((response.status, response.reason.as_str()), (400, "Bad Request (bad Content-Length)"));
        assert_eq!((response.call_id(), response.cseq()), ("options-1", (1, Method::Options)));
        assert_eq!(response.branch(), Some("z9hG4bK1"));
        assert!(param(response.headers.get("to").unwrap(), "tag").is_some());
        let (Message::Response(reparsed), _) = parse(&response.to_bytes(), false).unwrap() else { panic!() };
        assert_eq!(reparsed.status, 400);
    }

    #[test]
    fn wire_numbers_out_of_range_are_invalid() {
        for (header, why) in [
            ("CSeq: 4294967296 OPTIONS", "bad CSeq"),
            ("CSeq: +1 OPTIONS", "bad CSeq"),
            ("CSeq: 2 INVITE", "CSeq method does not match the request method"),
            ("Max-Forwards: 256", "bad Max-Forwards"),
            ("Max-Forwards: -1", "bad Max-Forwards"),
            ("Expires: 4294967296", "bad Expires"),
            ("Via: SIP/2.0/UDP h:65536;branch=z9hG4bK2", "bad Via"),
            ("Contact: <sip:x@h:99999>", "bad Contact"),
            ("Content-Length: 1e3", "bad Content-Length"),
        ] {
            let head = if header.starts_with("CSeq") { OPTIONS_HEAD.replace("CSeq: 1 OPTIONS\r\n", "") } else { OPTIONS_HEAD.to_owned() };
            let raw = format!("{head}{header}\r\nContent-Length: 0\r\n\r\n")
                .replace("Content-Length: 1e3\r\nContent-Length: 0", "Content-Length: 1e3");
            assert_eq!(parse(raw.as_bytes(), false).map(|_| ()), Err(ParseError::Invalid(why)), "{header}");
        }
        let fine = format!("{OPTIONS_HEAD}Max-Forwards: 0255\r\nExpires: 4294967295\r\nContent-Length: 0\r\n\r\n");
        assert!(parse(fine.as_bytes(), false).is_ok());
    }

    #[test]
    fn responses_and_requests_without_a_call_id_get_no_bad_request() {
        assert_eq!(bad_request_response(b"SIP/2.0 200 OK\r\nCSeq: x\r\n\r\n"), None);
        assert_eq!(bad_request_response(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 BYE\r\n\r\n"), None);
        assert_eq!(bad_request_response(INVITE.as_bytes()), None, "valid requests are not rejected");
        let unknown = Request { method: Method::Options, uri: "urn:x".into(), headers: Headers::new(), body: Vec::new() };
        assert_eq!(check_request(&unknown).map(|r| r.status), Some(416));
    }
}
