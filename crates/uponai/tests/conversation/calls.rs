//! The voice agent on a real call: sipp plays the trunk and a persona whose voice (the
//! offline Piper voice, written into a pcap) says a known phrase; the agent greets, hears
//! it, and Get Call's transcript holds both. What the agent said is checked on the wire: the
//! recording's agent channel, transcribed with the same Whisper the agent uses.

use std::path::Path;
use std::time::Duration;

use agent::offline::{Assets, OfflineSpeech, WhisperWorkers};
use agent::provider::{SpeechToText, TextToSpeech};
use serde_json::json;

use crate::helpers::spawn_app;
use crate::sipp::{Sipp, Transport, agent_with, channel, download_recording, import_on_trunk, wait_for_end};

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";
const GREETING: &str = "Hello, this is Joe from the dental office.";
const PHRASE: &str = "I would like to reschedule my appointment to Tuesday afternoon.";

/// Writes `audio` (8 kHz) as a pcap of 20 ms PCMA RTP packets, as sipp's play_pcap_audio
/// reads it (Ethernet, IPv4, UDP, RTP; sipp uses the timestamps and the payload).
fn write_pcap(path: &Path, audio: &[i16]) {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for (i, frame) in audio.chunks(160).enumerate() {
        let mut payload: Vec<u8> = frame.iter().map(|s| media::g711::linear_to_alaw(*s)).collect();
        payload.resize(160, media::g711::linear_to_alaw(0));
        let mut rtp = vec![0x80, 8];
        rtp.extend((i as u16).to_be_bytes());
        rtp.extend((i as u32 * 160).to_be_bytes());
        rtp.extend(0x1234_5678u32.to_be_bytes());
        rtp.extend(&payload);
        let mut udp = Vec::new();
        udp.extend(6000u16.to_be_bytes());
        udp.extend(6002u16.to_be_bytes());
        udp.extend((8 + rtp.len() as u16).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(&rtp);
        let mut ip = vec![0x45, 0];
        ip.extend((20 + udp.len() as u16).to_be_bytes());
        ip.extend([0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        ip.extend(&udp);
        let mut ethernet = vec![0u8; 12];
        ethernet.extend([0x08, 0x00]);
        ethernet.extend(&ip);
        let micros = i as u64 * 20_000;
        out.extend(((micros / 1_000_000) as u32).to_le_bytes());
        out.extend(((micros % 1_000_000) as u32).to_le_bytes());
        out.extend((ethernet.len() as u32).to_le_bytes());
        out.extend((ethernet.len() as u32).to_le_bytes());
        out.extend(&ethernet);
    }
    std::fs::write(path, out).unwrap();
}

/// A persona's audio: each line spoken from its start time (seconds from the answer), then
/// `tail` seconds of silence.
async fn persona(speech: &OfflineSpeech, lines: &[(f64, &str)], tail: f64) -> Vec<i16> {
    let mut audio = Vec::new();
    for (at, line) in lines {
        audio.resize(((at * 8000.0) as usize).max(audio.len()), 0);
        audio.extend(speech.voice.synthesize((*line).into(), 1.0).await.unwrap());
    }
    let end = audio.len() + (tail * 8000.0) as usize;
    audio.resize(end, 0);
    audio
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The share of `reference`'s words found in `heard`, in order (a WER-like bound that
/// ignores extra words around).
pub(crate) fn recall(reference: &str, heard: &str) -> f64 {
    let (reference, heard) = (words(reference), words(heard));
    let mut at = 0;
    let mut found = 0;
    for word in &reference {
        if let Some(offset) = heard[at..].iter().position(|h| h == word) {
            at += offset + 1;
            found += 1;
        }
    }
    found as f64 / reference.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_greets_hears_the_persona_and_get_call_holds_both_sides() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let assets = Assets::locate(None);
    let speech = OfflineSpeech::load(&assets).await.unwrap_or_else(|e| panic!("{e}"));
    // The persona: quiet for 7 s while greeted (the greeting takes ~3 s; the rest is room
    // for a loaded machine), says its phrase, then quiet.
    let persona = persona(&speech, &[(7.0, PHRASE)], 3.0).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("persona.pcap");
    write_pcap(&pcap, &persona);
    let hangup_ms = (persona.len() / 8 + 1000).to_string();
    let sipp = Sipp::uas_from_template(
        "answer_persona_hangup.xml",
        Transport::Udp,
        &[("__PCAP__", pcap.to_str().unwrap()), ("__HANGUP_MS__", &hangup_ms)],
    );
    let agent_id = agent_with(&app, json!({"voice_id": agent::offline::PIPER_VOICE_ID})).await;
    let llm = app.get(&format!("/get-agent/{agent_id}")).await.body["response_engine"]["llm_id"].as_str().unwrap().to_owned();
    let reply = app.patch(&format!("/update-retell-llm/{llm}"), json!({"begin_message": GREETING})).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, &agent_id, json!({})).await;

    let reply = app.post("/v2/create-phone-call", json!({"from_number": FROM, "to_number": TO})).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    let call = wait_for_end(&app, &call_id, Duration::from_secs(60)).await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    // No model server on this install: the analysis has no summary, and says why.
    assert_eq!(call["call_analysis"]["call_summary"], serde_json::Value::Null);
    let why = call["call_analysis"]["analysis_error"].as_str().unwrap_or_default();
    assert!(why.contains("no model server is configured"), "{}", call["call_analysis"]);
    sipp.finish(Duration::from_secs(10)).await.unwrap();

    // Get Call: the agent's greeting, then what the persona said.
    let utterances = call["transcript_object"].as_array().unwrap_or_else(|| panic!("no transcript_object: {call}"));
    let roles: Vec<&str> = utterances.iter().map(|u| u["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["agent", "user"], "{} {}", call["transcript"], call["media_stats"]);
    assert_eq!(utterances[0]["content"], GREETING);
    let heard = utterances[1]["content"].as_str().unwrap();
    assert!(recall(PHRASE, heard) >= 0.9, "the agent heard {heard:?}");
    let transcript = call["transcript"].as_str().unwrap();
    assert!(transcript.starts_with(&format!("Agent: {GREETING}\nUser: ")), "{transcript}");
    // Word times are seconds from the answer: the persona spoke from 7 s on.
    let first_user_word = utterances[1]["words"][0]["start"].as_f64().unwrap();
    assert!((6.6..8.0).contains(&first_user_word), "the persona's first word at {first_user_word} s");
    let greeting_end = utterances[0]["words"].as_array().unwrap().last().unwrap()["end"].as_f64().unwrap();
    assert!(greeting_end > 1.0 && greeting_end < 7.0, "greeting ended at {greeting_end} s");

    // On the wire: the recording's agent channel says the greeting.
    let stereo = download_recording(call["recording_multi_channel_url"].as_str().unwrap()).await;
    let agent_side: Vec<i16> = channel(&stereo, 1).iter().map(|s| *s as i16).collect();
    let stt = WhisperWorkers::new(&assets, &agent::offline::whisper::worker_program(), 1);
    let said = stt.transcribe(agent_side[..(7 * 8000).min(agent_side.len())].to_vec()).await.unwrap();
    println!("transcript:\n{transcript}\nagent channel heard: {said:?}\nlatency: {}", call["latency"]);
    assert!(recall(GREETING, &said) >= 0.85, "the recording's agent channel says {said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The demo's flow (`uponai demo` runs the same): greet by `{{name}}`, ask yes or no, branch,
/// confirm, end.
async fn a_flow_agent_branches_on_the_persona_s_yes_and_hangs_up_from_its_end_node() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let assets = Assets::locate(None);
    let speech = OfflineSpeech::load(&assets).await.unwrap_or_else(|e| panic!("{e}"));
    let persona = persona(&speech, &[(9.0, "Yes, that works for me.")], 20.0).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("persona.pcap");
    write_pcap(&pcap, &persona);
    let sipp = Sipp::uas_from_template("answer_persona_wait_bye.xml", Transport::Udp, &[("__PCAP__", pcap.to_str().unwrap())]);

    let flow = app.post("/create-conversation-flow", uponai::demo::demo_flow()).await;
    assert_eq!(flow.status, reqwest::StatusCode::CREATED, "{}", flow.body);
    let flow_id = flow.body["conversation_flow_id"].as_str().unwrap();
    let engine = json!({"type": "conversation-flow", "conversation_flow_id": flow_id});
    let agent = app.post("/create-agent", json!({"voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": engine})).await;
    assert_eq!(agent.status, reqwest::StatusCode::CREATED, "{}", agent.body);
    let agent_id = agent.body["agent_id"].as_str().unwrap();
    import_on_trunk(&app, FROM, sipp.addr(), Transport::Udp, agent_id, json!({})).await;

    let body = json!({"from_number": FROM, "to_number": TO, "retell_llm_dynamic_variables": {"name": "Ada"}});
    let reply = app.post("/v2/create-phone-call", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    let call = wait_for_end(&app, &call_id, Duration::from_secs(60)).await;
    sipp.finish(Duration::from_secs(10)).await.unwrap();

    let transcript = call["transcript"].as_str().unwrap_or_default();
    println!("transcript:\n{transcript}\nlatency: {}", call["latency"]);
    assert_eq!(call["disconnection_reason"], "agent_hangup", "{transcript} {}", call["media_stats"]);
    assert_eq!(call["stuck_turns"], 0, "every turn was answered in time");
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(lines.len(), 3, "{transcript}");
    assert_eq!(lines[0], "Agent: Hi Ada, this is Joe from the dental office. Can you make your check-up on Tuesday at ten?");
    assert!(recall("Yes, that works for me.", lines[1].trim_start_matches("User: ")) >= 0.8, "{}", lines[1]);
    assert_eq!(lines[2], "Agent: Great, you are booked for Tuesday at ten. Thank you Ada, goodbye.");
    // One answered turn: e2e from the persona's last speech to the answer's first packet.
    let e2e = &call["latency"]["e2e"];
    assert_eq!(e2e["num"], 1, "{}", call["latency"]);
    let e2e_ms = e2e["p50"].as_f64().unwrap();
    let agent_answer_start = call["transcript_object"][2]["words"][0]["start"].as_f64().unwrap();
    let user_end = call["transcript_object"][1]["words"].as_array().unwrap().last().unwrap()["end"].as_f64().unwrap();
    let seen = (agent_answer_start - user_end) * 1000.0;
    assert!((seen - e2e_ms).abs() < 60.0, "latency {e2e_ms} ms agrees with the word times ({seen} ms)");
    assert!(e2e_ms > 400.0 && e2e_ms < 5000.0, "{e2e_ms}");
}
