//! Any bytes through `msg::parse` on both transports, the 400 builder, and the URI, name-addr
//! and digest parsers on every header value, parsed or raw. A panic anywhere is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::msg::{self, Message};
use sip::{NameAddr, SipUri};

fuzz_target!(|data: &[u8]| {
    for stream in [false, true] {
        if let Ok((message, used)) = msg::parse(data, stream) {
            assert!(used <= data.len());
            let headers = match &message {
                Message::Request(request) => {
                    let _ = (request.cseq(), request.branch(), msg::check_request(request), SipUri::parse(&request.uri));
                    &request.headers
                }
                Message::Response(response) => {
                    let _ = (response.cseq(), response.branch());
                    &response.headers
                }
            };
            for (name, value) in headers.iter() {
                let _ = (SipUri::parse(value), NameAddr::parse(value), sip::auth::Challenge::parse(value), msg::param(value, name));
            }
            // Printing what parsed, and reading that back, must not panic either.
            let bytes = match &message {
                Message::Request(request) => request.to_bytes(),
                Message::Response(response) => response.to_bytes(),
            };
            let _ = msg::parse(&bytes, stream);
        }
    }
    let _ = msg::bad_request_response(data);
    for line in String::from_utf8_lossy(data).lines() {
        let value = line.split_once(':').map_or(line, |(_, value)| value);
        let _ = (SipUri::parse(value), NameAddr::parse(value));
    }
});
