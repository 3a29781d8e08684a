//! Any bytes as an SDP offer (negotiate and answer), as an RTP packet, and as RFC 4733
//! payloads into a DTMF receiver and a jitter buffer. A panic anywhere is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::dtmf::DtmfReceiver;
use media::jitter::JitterBuffer;
use media::rtp::Packet;
use media::sdp::{self, Codec};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(params) = sdp::negotiate(&text, &[Codec::Pcmu, Codec::Pcma]) {
        assert_ne!(params.remote.port(), 0);
    }
    let _ = sdp::answer(&text, "127.0.0.1:20000".parse().expect("a literal address"), 1);

    let mut receiver = DtmfReceiver::default();
    let mut jitter = JitterBuffer::new(2);
    // The input as one packet, then as a stream of packets each prefixed by a length byte.
    let mut rest = data;
    let mut first = true;
    while !rest.is_empty() {
        let packet_bytes = if first {
            first = false;
            data
        } else {
            let len = usize::from(rest[0]).min(rest.len() - 1);
            let (packet, after) = rest[1..].split_at(len);
            rest = after;
            packet
        };
        if let Ok(packet) = Packet::parse(packet_bytes) {
            assert!(packet.payload.len() + 12 <= packet_bytes.len());
            let _ = receiver.on_payload(packet.timestamp, packet.payload);
            let samples: Vec<i16> = packet.payload.iter().map(|b| Codec::Pcma.decode(*b)).collect();
            jitter.push(packet.timestamp, &samples);
            let _ = jitter.pop();
        }
        let _ = receiver.on_payload(0, packet_bytes);
    }
});
