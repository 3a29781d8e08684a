//! The RFC 4475 torture messages (`tests/torture/{valid,invalid}/NAME.sip`, written out by
//! hand from the RFC text) against `msg::parse`, `msg::bad_request_response` and
//! `msg::check_request`. Each file has one row below saying what this user agent does with it,
//! and why where the RFC leaves a choice.

use std::path::Path;

use sip::msg::{self, Message, Method, ParseError};

/// What happens to one torture message.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// `parse` accepts it and `check_request` lets it through.
    Parsed,
    /// `parse` accepts it (it is grammatical) but `check_request` answers with this status.
    Refused(u16),
    /// `parse` rejects it; `bad_request_response` answers with this status, or drops it.
    Invalid(Option<u16>),
}

/// RFC 4475 §3.1.1: every one of these is well formed and parses.
const VALID: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
];

/// RFC 4475 §3.1.2 (all of it) and the §3.2/§3.3 messages that probe the parser's limits.
const INVALID: &[(&str, Fate)] = &[
    // §3.1.2.1: empty Via and Contact parameters.
    ("badinv01", Fate::Invalid(Some(400))),
    // §3.1.2.2: Content-Length past the end of the datagram (on TCP it is `Incomplete`, below).
    ("clerr", Fate::Invalid(Some(400))),
    // §3.1.2.3: negative Content-Length.
    ("ncl", Fate::Invalid(Some(400))),
    // §3.1.2.4: CSeq > 2^32-1, Max-Forwards > 255, Expires > 2^32-1.
    ("scalar02", Fate::Invalid(Some(400))),
    // §3.1.2.5: a response with an overlarge CSeq is dropped, never answered.
    ("scalarlg", Fate::Invalid(None)),
    // §3.1.2.6: unterminated quoted display name in To.
    ("quotbal", Fate::Invalid(Some(400))),
    // §3.1.2.7: Request-URI in <>.
    ("ltgtruri", Fate::Invalid(Some(400))),
    // §3.1.2.8: whitespace inside the Request-URI.
    ("lwsruri", Fate::Invalid(Some(400))),
    // §3.1.2.9: two spaces between request-line elements (we are not liberal here).
    ("lwsstart", Fate::Invalid(Some(400))),
    // §3.1.2.10: spaces after SIP/2.0.
    ("trws", Fate::Invalid(Some(400))),
    // §3.1.2.11: escaped headers in the Request-URI.
    ("escruri", Fate::Invalid(Some(400))),
    // §3.1.2.12: a non-GMT Date. The RFC says not to reject it unless the Date matters; we
    // never read Date, so the request goes on.
    ("baddate", Fate::Parsed),
    // §3.1.2.13: addr-spec Contact with `?headers` and no <>.
    ("regbadct", Fate::Invalid(Some(400))),
    // §3.1.2.14: spaces inside <> in To.
    ("badaspec", Fate::Invalid(Some(400))),
    // §3.1.2.15: unquoted display names with commas.
    ("baddn", Fate::Invalid(Some(400))),
    // §3.1.2.16: SIP/7.0 gets 505.
    ("badvers", Fate::Invalid(Some(505))),
    // §3.1.2.17: CSeq method differs from the request method.
    ("mismatch01", Fate::Invalid(Some(400))),
    // §3.1.2.18: unknown method and CSeq mismatch; the RFC allows 400 as well as 501.
    ("mismatch02", Fate::Invalid(Some(400))),
    // §3.1.2.19: a status code of 4294967301 is dropped.
    ("bigcode", Fate::Invalid(None)),
    // §3.2.1: `branch=z9hG4bK` with no identifier is grammatical; the endpoint keys the
    // transaction on it as it is.
    ("badbranch", Fate::Parsed),
    // §3.3.1: no To, From or Call-ID: invalid, and there is nothing to build an answer from.
    ("insuf", Fate::Invalid(None)),
    // §3.3.2, §3.3.3: grammatical Request-URIs of schemes we do not serve: 416.
    ("unkscm", Fate::Refused(416)),
    ("novelsc", Fate::Refused(416)),
    // §3.3.4: foreign schemes in To/From/Contact are grammatical; the Request-URI is SIP.
    ("unksm2", Fate::Parsed),
    // §3.3.8: two To, From, Call-ID and CSeq each.
    ("multi01", Fate::Invalid(Some(400))),
    // §3.3.9: two different Content-Lengths: no way to frame the body.
    ("mcl01", Fate::Invalid(Some(400))),
    // §3.3.11: Max-Forwards 0 on an OPTIONS to us: a user agent answers it normally.
    ("zeromf", Fate::Parsed),
];

fn read(kind: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture").join(kind).join(format!("{name}.sip"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_torture_file_has_a_decision_and_every_decision_a_file() {
    for (kind, names) in [("valid", VALID.to_vec()), ("invalid", INVALID.iter().map(|(n, _)| *n).collect())] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture").join(kind);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".sip").to_owned())
            .filter(|n| !n.ends_with(".md"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "{kind}");
    }
}

#[test]
fn every_valid_torture_message_parses_on_both_transports() {
    for name in VALID {
        let bytes = read("valid", name);
        for stream in [false, true] {
            let (message, used) = msg::parse(&bytes, stream).unwrap_or_else(|e| panic!("{name} (stream {stream}): {e}"));
            if let Message::Request(request) = &message {
                assert_eq!(msg::check_request(request), None, "{name}");
            }
            if *name != "dblreq" {
                assert_eq!(used, bytes.len(), "{name} (stream {stream})");
            }
        }
    }
}

#[test]
fn valid_torture_messages_read_back_their_tricky_fields() {
    let request = |name: &str| match msg::parse(&read("valid", name), false).unwrap().0 {
        Message::Request(request) => request,
        Message::Response(_) => panic!("{name} is a request"),
    };
    let wsinv = request("wsinv");
    assert_eq!(wsinv.cseq(), (9, Method::Invite));
    assert_eq!(wsinv.branch(), Some("390skdjuw"));
    assert_eq!(wsinv.headers.get_all("via").len(), 3);
    assert_eq!(wsinv.headers.get("subject"), Some(""));
    assert_eq!(wsinv.body.len(), 150);
    let from = sip::NameAddr::parse(wsinv.headers.get("from").unwrap()).unwrap();
    assert_eq!((from.display.as_deref(), from.tag()), (Some("J Rosenberg \\\""), Some("98asjd8")));

    let intmeth = request("intmeth");
    assert_eq!(intmeth.method, Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into()));
    assert_eq!(intmeth.cseq().0, 139_122_385);

    let esc02 = request("esc02");
    assert_eq!(esc02.method.as_str(), "RE%47IST%45R");
    assert_eq!(esc02.headers.get_all("contact").len(), 2, "C%6Fntact is another header");

    let dblreq = read("valid", "dblreq");
    let (Message::Request(register), used) = msg::parse(&dblreq, false).unwrap() else { panic!() };
    assert_eq!((register.method, register.body.len()), (Method::Register, 0));
    assert!(String::from_utf8_lossy(&dblreq[used..]).starts_with("INVITE sip:joe@example.com"), "the rest is ignored");

    let semiuri = request("semiuri");
    assert_eq!(sip::SipUri::parse(&semiuri.uri).unwrap().user.as_deref(), Some("user;par=u%40example.net"));

    let mpart = request("mpart01");
    assert_eq!(mpart.body.len(), 553);

    let Message::Response(noreason) = msg::parse(&read("valid", "noreason"), false).unwrap().0 else { panic!() };
    assert_eq!((noreason.status, noreason.reason.as_str()), (100, ""));
    let Message::Response(unreason) = msg::parse(&read("valid", "unreason"), false).unwrap().0 else { panic!() };
    assert!(unreason.reason.starts_with("= 2**3 * 5**2 но сто"), "{}", unreason.reason);
}

#[test]
fn every_invalid_torture_message_meets_its_decided_fate() {
    for (name, fate) in INVALID {
        let bytes = read("invalid", name);
        let parsed = msg::parse(&bytes, false);
        match fate {
            Fate::Parsed | Fate::Refused(_) => {
                let (message, _) = parsed.unwrap_or_else(|e| panic!("{name} should parse: {e}"));
                let refused = match &message {
                    Message::Request(request) => msg::check_request(request).map(|r| r.status),
                    Message::Response(_) => None,
                };
                let expected = match fate {
                    Fate::Refused(status) => Some(*status),
                    _ => None,
                };
                assert_eq!(refused, expected, "{name}");
                assert_eq!(msg::bad_request_response(&bytes), None, "{name}: nothing to reject");
            }
            Fate::Invalid(answer) => {
                assert!(matches!(parsed, Err(ParseError::Invalid(_))), "{name}: {parsed:?}");
                let response = msg::bad_request_response(&bytes);
                assert_eq!(response.as_ref().map(|r| r.status), *answer, "{name}: {response:?}");
                if let Some(response) = response {
                    let text = String::from_utf8_lossy(&bytes);
                    let call_id = text.lines().find_map(|l| l.strip_prefix("Call-ID: ")).unwrap().trim();
                    assert_eq!(response.call_id(), call_id, "{name}");
                    assert!(response.headers.get("via").is_some() && response.headers.get("cseq").is_some(), "{name}");
                    assert!(msg::param(response.headers.get("to").unwrap(), "tag").is_some(), "{name}: the answer tags To");
                }
            }
        }
    }
}

#[test]
fn a_content_length_past_the_end_waits_on_a_stream_and_is_invalid_in_a_datagram() {
    let clerr = read("invalid", "clerr");
    assert_eq!(msg::parse(&clerr, true), Err(ParseError::Incomplete));
    assert!(matches!(msg::parse(&clerr, false), Err(ParseError::Invalid(_))));
}
