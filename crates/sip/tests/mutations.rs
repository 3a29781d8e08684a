//! Property test: no mutation of a real message panics the parsers, and what they accept
//! stays bounded. 100,000+ seeded mutations of the RFC 4475 torture corpus and a trunk
//! INVITE go through `msg::parse` (stream and datagram), `msg::bad_request_response`,
//! `SipUri::parse`, `NameAddr::parse` and `auth::Challenge::parse`. Same seed, same inputs: a failure reproduces.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sip::msg::{self, MAX_MESSAGE_BYTES, Message};
use sip::{NameAddr, SipUri};

const N_INPUTS: usize = 100_000;

const INVITE: &str = "INVITE sip:+12125550123@trunk.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+12125550123@trunk.example.com>\r\n\
From: \"Alice\" <sip:+14155550100@10.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@10.0.0.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:uponai@10.0.0.1:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// Bytes that mean something to a SIP parser, and some that should never appear.
const SIGNIFICANT: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";",
    b"<",
    b">",
    b"\"",
    b",",
    b" ",
    b"\t",
    b"0",
    b"9",
    b"=",
    b"@",
    b"[",
    b"]",
    b"?",
    b"\\",
    b"\xff",
    b"\x00",
    "é".as_bytes(),
    "𝄞".as_bytes(),
    b"\xe2\x82",
    b"99999999999999999999",
    b"18446744073709551615",
    b"-1",
    b"65536",
    b"4294967296",
    b"sip:",
    b"SIP/2.0",
    b"\r\n ",
    b"Content-Length: ",
];

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![INVITE.as_bytes().to_vec()];
    for kind in ["valid", "invalid"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture").join(kind);
        let mut paths: Vec<_> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sip")).collect();
        paths.sort();
        seeds.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    seeds
}

/// One to eight random edits of `input`.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..8) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if at < bytes.len() => bytes[at] = rng.random(),
            2 => {
                let insert = SIGNIFICANT[rng.random_range(0..SIGNIFICANT.len())];
                bytes.splice(at..at, insert.iter().copied());
            }
            3 => {
                // Replace a run of digits (if one starts here) with a huge or negative number.
                let end = bytes[at..].iter().position(|b| !b.is_ascii_digit()).map_or(bytes.len(), |n| at + n);
                let huge: &[u8] =
                    [b"99999999999999999999".as_slice(), b"18446744073709551615", b"-1", b"4294967296"][rng.random_range(0..4)];
                bytes.splice(at..end, huge.iter().copied());
            }
            4 => bytes.truncate(at),
            5 => {
                // Duplicate the line around `at` (a header appearing twice).
                let start = bytes[..at].iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1);
                let end = bytes[at..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |n| at + n + 1);
                let line = bytes[start..end].to_vec();
                bytes.splice(start..start, line);
            }
            6 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {
                let len = rng.random_range(0..16).min(bytes.len() - at);
                bytes.drain(at..at + len);
            }
        }
    }
    bytes
}

#[test]
fn a_hundred_thousand_mutated_messages_never_panic_and_stay_bounded() {
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(4475);
    let (mut n_parsed, mut n_answered) = (0usize, 0usize);
    for i in 0..N_INPUTS {
        let bytes = mutate(&mut rng, &seeds[i % seeds.len()]);
        for stream in [false, true] {
            if let Ok((message, used)) = msg::parse(&bytes, stream) {
                n_parsed += 1;
                assert!(used <= bytes.len() && used <= MAX_MESSAGE_BYTES + bytes.len().saturating_sub(MAX_MESSAGE_BYTES));
                let (headers, body) = match &message {
                    Message::Request(r) => (&r.headers, &r.body),
                    Message::Response(r) => (&r.headers, &r.body),
                };
                assert!(body.len() <= MAX_MESSAGE_BYTES);
                for name in ["from", "to", "contact", "route", "record-route"] {
                    for value in headers.get_all(name) {
                        let _ = NameAddr::parse(value);
                    }
                }
                // Readers downstream may trust what parse accepted.
                if let Message::Request(request) = &message {
                    let _ = (request.cseq(), request.branch(), msg::check_request(request));
                    let _ = SipUri::parse(&request.uri);
                }
            }
        }
        if i % 8 == 0 {
            if let Some(response) = msg::bad_request_response(&bytes) {
                n_answered += 1;
                assert!(matches!(response.status, 400 | 505));
            }
            // Raw header values straight into the URI parsers, parsed or not.
            for line in String::from_utf8_lossy(&bytes).lines().take(12) {
                if let Some((_, value)) = line.split_once(':') {
                    let _ = (SipUri::parse(value), NameAddr::parse(value), sip::auth::Challenge::parse(value));
                }
            }
        }
    }
    // The mutations are mostly small, so a good share of inputs still parse: the test reaches
    // past the first line of the parser.
    assert!(n_parsed > N_INPUTS / 20, "only {n_parsed} parsed");
    assert!(n_answered > 50, "only {n_answered} answered");
}

#[test]
fn every_prefix_of_every_seed_parses_or_errs_cleanly() {
    for seed in seeds() {
        for end in 0..=seed.len() {
            let _ = msg::parse(&seed[..end], true);
            let _ = msg::parse(&seed[..end], false);
        }
    }
}
