//! Strict RTP: during a real call, RTP from anywhere but the trunk's media address is dropped,
//! counted, and never answered.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;
use crate::sipp::{Sipp, Transport, agent_with, best_correlation, channel, download_recording, import_on_trunk, pcap_audio, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";
/// Injected tone packets, and RFC 4733 digits among them (one per ten tone packets).
const N_TONE: usize = 100;
const N_DTMF: usize = 10;

/// The share (0–1) of a frame's energy at 1 kHz (Goertzel; 1 kHz is bin 20 of 160 samples).
fn tone_share(frame: &[f64]) -> f64 {
    let n = frame.len() as f64;
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * 1000.0 / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in frame {
        let s0 = x + coefficient * s1 - s2;
        (s2, s1) = (s1, s0);
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    let energy: f64 = frame.iter().map(|x| x * x).sum();
    if energy == 0.0 { 0.0 } else { 2.0 * power / (n * energy) }
}

/// The loudest share of 1 kHz among the 20 ms frames of `samples` that are not near-silent.
fn max_tone_share(samples: &[f64]) -> f64 {
    samples.chunks_exact(160).filter(|f| crate::sipp::rms(f) > 300.0).map(tone_share).fold(0.0, f64::max)
}

/// A loud 1 kHz tone, A-law, 20 ms from sample `start`.
fn tone_payload(start: usize) -> Vec<u8> {
    (start..start + 160)
        .map(|n| media::g711::linear_to_alaw((16_000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0).sin()) as i16))
        .collect()
}

fn rtp(payload_type: u8, sequence: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    media::rtp::Packet { marker: false, payload_type, sequence, timestamp, ssrc: 0x5EC0_DE00, payload }.write(&mut out);
    out
}

/// The RTP timestamp of the first packet in sipp's g711a.pcap (sipp replays the headers as
/// they are), so the tone can be timed into the same stretch of the jitter buffer.
fn pcap_first_timestamp() -> u32 {
    let bytes = std::fs::read("/usr/share/sip-tester/g711a.pcap").expect("sipp's g711a.pcap");
    let packet = &bytes[24 + 16..];
    let ihl = usize::from(packet[14] & 0x0F) * 4;
    let rtp = &packet[14 + ihl + 8..];
    u32::from_be_bytes(rtp[4..8].try_into().unwrap())
}

async fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} did not appear in {timeout:?}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_tone_injected_from_another_port_is_dropped_counted_and_never_answered() {
    let decoded_tone: Vec<f64> = tone_payload(0).iter().map(|c| f64::from(media::g711::alaw_to_linear(*c))).collect();
    assert!(tone_share(&decoded_tone) > 0.95, "the detector sees the tone: {}", tone_share(&decoded_tone));
    let speech = pcap_audio();
    assert!(max_tone_share(&speech) < 0.3, "and not in the pcap's speech: {}", max_tone_share(&speech));

    let app = spawn_app().await;
    let sipp = Sipp::uas("answer_tell_rtp_play_hangup.xml", Transport::Udp, &[]);
    let agent_id = agent_with(&app, json!({})).await;
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;
    let reply = app.post("/v2/create-phone-call", json!({"from_number": FROM, "to_number": TO})).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();

    // Our RTP address, from the SDP sipp received.
    let told = wait_for_file(&sipp.file("rtp.txt"), Duration::from_secs(20)).await;
    let (ip, port) = told.trim().split_once(' ').expect("ip port");
    let ours = SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
    // sipp's stream begins a moment after this file. The attack starts once the session's
    // NAT latch window (3 s from the answer, which came before this file) has surely closed:
    // then no ordering of sipp's first packet and ours can make the injector the latched
    // source, and the test judges only the filter (latching has its own unit tests).
    wait_for_file(&sipp.file("playing"), Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(3200)).await;

    // Timed to land amid sipp's packets (half a frame off theirs, about where sipp's 7.8 s
    // stream is now), so that without strict RTP the tone would be played and recorded.
    let first = pcap_first_timestamp().wrapping_add(160 * 160 + 80);
    let injector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for i in 0..N_TONE {
        ticker.tick().await;
        let timestamp = first.wrapping_add(160 * i as u32);
        injector.send_to(&rtp(8, i as u16, timestamp, &tone_payload(160 * i)), ours).await.unwrap();
        if i % (N_TONE / N_DTMF) == 0 {
            injector.send_to(&rtp(101, 1000 + i as u16, timestamp, &[5, 0x8A, 0, 160]), ours).await.unwrap();
        }
    }

    let call = wait_for_end(&app, &call_id, Duration::from_secs(30)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();
    assert_eq!((call["call_status"].as_str(), call["disconnection_reason"].as_str()), (Some("ended"), Some("user_hangup")), "{call}");
    let media = &call["media_stats"];
    assert_eq!(media["packets_rejected_source"], json!(N_TONE + N_DTMF), "{media}");
    assert_eq!(media["packets_rejected_ssrc"], 0, "{media}");
    assert!(media["latched_to"].is_null(), "sipp sends from its SDP address: {media}");
    assert!(media["packets_received"].as_u64().unwrap() > 200, "sipp's audio was taken: {media}");
    let mut buf = [0u8; 2048];
    assert!(injector.try_recv_from(&mut buf).is_err(), "our audio was never sent to the injector");

    let stereo = download_recording(call["recording_multi_channel_url"].as_str().unwrap()).await;
    let caller = channel(&stereo, 0);
    let share = max_tone_share(&caller);
    assert!(share < 0.3, "no tone on the caller channel: 1 kHz share up to {share}");
    let correlation = best_correlation(&caller, &speech[16_000..32_000], 8_000 * 4);
    assert!(correlation > 0.95, "the caller channel holds sipp's audio: {correlation}");
}
