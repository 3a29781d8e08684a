//! Property test: seeded mutations of real SDP offers, RTP packets and RFC 4733 payloads
//! never panic `sdp::negotiate`/`sdp::answer`, `rtp::Packet::parse`, the DTMF receiver or the
//! jitter buffer, and what `Packet::parse` returns always lies inside the packet.

use std::path::Path;

use media::dtmf::DtmfReceiver;
use media::jitter::JitterBuffer;
use media::rtp::Packet;
use media::sdp::{self, Codec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N_INPUTS: usize = 100_000;

const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

const SIGNIFICANT: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"=",
    b" ",
    b"/",
    b":",
    b"m=audio ",
    b"c=IN IP4 ",
    b"c=IN IP6 ::1",
    b"a=rtpmap:",
    b"0",
    b"\xff",
    b"\x00",
    "é".as_bytes(),
    "𝄞".as_bytes(),
    b"99999999999999999999",
    b"18446744073709551615",
    b"-1",
    b"65536",
    b"256",
];

/// SDP seeds: our own offer, a sipp offer and the SDP bodies of the SIP torture corpus.
fn sdp_seeds() -> Vec<Vec<u8>> {
    let mut seeds =
        vec![SIPP_OFFER.as_bytes().to_vec(), sdp::offer("10.0.0.5:30000".parse().unwrap(), 7, &[Codec::Pcmu, Codec::Pcma]).into_bytes()];
    let torture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sip/tests/torture/valid");
    let mut paths: Vec<_> = std::fs::read_dir(torture).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(path).unwrap();
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n")
            && bytes[at + 4..].starts_with(b"v=0")
        {
            seeds.push(bytes[at + 4..].to_vec());
        }
    }
    seeds
}

fn rtp_seeds() -> Vec<Vec<u8>> {
    let mut plain = Vec::new();
    Packet { marker: true, payload_type: 0, sequence: 1, timestamp: 160, ssrc: 7, payload: &[0xff; 160] }.write(&mut plain);
    let mut dtmf = Vec::new();
    Packet { marker: false, payload_type: 101, sequence: 2, timestamp: 320, ssrc: 7, payload: &media::dtmf::payloads('5', 800)[0] }
        .write(&mut dtmf);
    let mut extended = vec![0xB1, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 7, 7, 7, 7];
    extended.extend_from_slice(&[42, 43, 0, 2]);
    vec![plain, dtmf, extended]
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.random_range(1..=6) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if at < bytes.len() => bytes[at] = rng.random(),
            2 => {
                let insert = SIGNIFICANT[rng.random_range(0..SIGNIFICANT.len())];
                bytes.splice(at..at, insert.iter().copied());
            }
            3 => bytes.truncate(at),
            4 => {
                let start = bytes[..at].iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1);
                let end = bytes[at..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |n| at + n + 1);
                let line = bytes[start..end].to_vec();
                bytes.splice(start..start, line);
            }
            _ => {
                let len = rng.random_range(0..8).min(bytes.len() - at);
                bytes.drain(at..at + len);
            }
        }
    }
    bytes
}

#[test]
fn a_hundred_thousand_mutated_sdp_rtp_and_dtmf_inputs_never_panic() {
    let (sdps, rtps) = (sdp_seeds(), rtp_seeds());
    assert!(sdps.len() > 5, "the torture corpus bodies were found");
    let mut rng = StdRng::seed_from_u64(4733);
    let local = "127.0.0.1:20000".parse().unwrap();
    let mut receiver = DtmfReceiver::default();
    let mut jitter = JitterBuffer::new(2);
    let (mut n_negotiated, mut n_packets) = (0usize, 0usize);
    for i in 0..N_INPUTS {
        if i % 2 == 0 {
            let bytes = mutate(&mut rng, &sdps[i / 2 % sdps.len()]);
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(params) = sdp::negotiate(&text, &[Codec::Pcmu, Codec::Pcma]) {
                n_negotiated += 1;
                assert_ne!(params.remote.port(), 0, "a disabled stream is never chosen");
            }
            let _ = sdp::answer(&text, local, 1);
        } else {
            let bytes = mutate(&mut rng, &rtps[i / 2 % rtps.len()]);
            if let Ok(packet) = Packet::parse(&bytes) {
                n_packets += 1;
                assert!(packet.payload.len() + 12 <= bytes.len());
                let _ = receiver.on_payload(packet.timestamp, packet.payload);
                let samples: Vec<i16> = packet.payload.iter().map(|b| Codec::Pcmu.decode(*b)).collect();
                jitter.push(packet.timestamp, &samples);
                let _ = jitter.pop();
            }
        }
    }
    assert!(n_negotiated > N_INPUTS / 20 && n_packets > N_INPUTS / 20, "{n_negotiated} offers, {n_packets} packets");
}
