//! Hosted speech on a real call: the agent's voice through an ElevenLabs-protocol server
//! (streaming `text-to-speech/{voice}/stream`, μ-law 8 kHz) and its ears through a
//! Deepgram-protocol live websocket (binary PCM in, `Results` JSON out, `CloseStream`). The
//! vendors are played by local servers that speak their protocols and do the real work with
//! the offline engines: Piper speaks what ElevenLabs is asked to, Whisper hears what Deepgram
//! is sent.

use std::sync::{Arc, Mutex};

use agent::offline::{Assets, OfflineSpeech, WhisperWorkers};
use agent::provider::{SpeechToText, TextToSpeech};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uponai::sim::{Line, Persona, When};

use crate::helpers::spawn_app_with;
use crate::personas::agent_calls_persona;

const GREETING: &str = "Hello, this is the hosted voice of the dental office.";
const LINE: &str = "I would like to book a cleaning for next week.";

#[derive(Clone)]
struct Voice {
    speech: OfflineSpeech,
    log: Arc<Mutex<Vec<Asked>>>,
}

/// (voice id, API key, output format, text) of one request.
type Asked = (String, String, String, String);

async fn eleven_labs(
    State(voice): State<Voice>,
    Path(voice_id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = request["text"].as_str().unwrap_or_default().to_owned();
    let key = headers.get("xi-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    voice.log.lock().unwrap().push((voice_id, key, query.get("output_format").cloned().unwrap_or_default(), text.clone()));
    let audio = voice.speech.voice.synthesize(text, 1.0).await.unwrap();
    audio.iter().map(|&s| media::g711::linear_to_ulaw(s)).collect()
}

/// (path and query, authorization, transcript) of each Deepgram session.
type Sessions = Arc<Mutex<Vec<(String, String, String)>>>;

async fn deepgram(listener: tokio::net::TcpListener, ears: Arc<WhisperWorkers>, sessions: Sessions) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (ears, sessions) = (ears.clone(), sessions.clone());
        tokio::spawn(async move {
            let seen = Arc::new(Mutex::new((String::new(), String::new())));
            let record = seen.clone();
            #[allow(clippy::result_large_err)] // tungstenite's callback signature
            let callback = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
                let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                *record.lock().unwrap() = (request.uri().to_string(), auth);
                Ok(response)
            };
            let mut socket = tokio_tungstenite::accept_hdr_async(stream, callback).await.unwrap();
            let mut audio: Vec<i16> = Vec::new();
            while let Some(Ok(message)) = socket.next().await {
                match message {
                    Message::Binary(bytes) => audio.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]))),
                    Message::Text(text) if text.contains("CloseStream") => break,
                    _ => {}
                }
            }
            let transcript = ears.transcribe(audio).await.unwrap_or_default();
            let (uri, auth) = seen.lock().unwrap().clone();
            sessions.lock().unwrap().push((uri, auth, transcript.clone()));
            let result = json!({"type": "Results", "is_final": true, "speech_final": true,
                "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.9}]}});
            let _ = socket.send(Message::text(result.to_string())).await;
            let _ = socket.send(Message::text(json!({"type": "Metadata", "request_id": "r1"}).to_string())).await;
            let _ = socket.close(None).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_speaks_through_elevenlabs_and_hears_through_deepgram() {
    let _serial = crate::serial().await;
    let assets = Assets::locate(None);
    let speech = OfflineSpeech::load(&assets).await.unwrap_or_else(|e| panic!("{e}"));
    let voice = Voice { speech, log: Arc::default() };
    let app = axum::Router::new().route("/v1/text-to-speech/{voice_id}/stream", axum::routing::post(eleven_labs)).with_state(voice.clone());
    let tts_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tts_url = format!("http://{}", tts_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(tts_listener, app).await.unwrap() });
    let ears = WhisperWorkers::new(&assets, &agent::offline::whisper::worker_program(), 1);
    let sessions = Sessions::default();
    let stt_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stt_url = format!("ws://{}", stt_listener.local_addr().unwrap());
    tokio::spawn(deepgram(stt_listener, ears, sessions.clone()));

    let app = spawn_app_with(tempfile::tempdir().unwrap(), |settings| {
        settings.elevenlabs_api_key = Some("xi-test".into());
        settings.elevenlabs_url = Some(url::Url::parse(&tts_url).unwrap());
        settings.deepgram_api_key = Some("dg-test".into());
        settings.deepgram_url = Some(url::Url::parse(&stt_url).unwrap());
    })
    .await;
    let llm = app.create_llm(json!({"begin_message": GREETING})).await;
    let agent = json!({"voice_id": "11labs-EXAVITQu4vr4xnSDxMaL", "response_engine": {"type": "retell-llm", "llm_id": llm},
        "custom_stt_config": {"provider": "deepgram", "endpointing_ms": 300}});
    let persona = Persona {
        name: "caller".into(),
        lines: vec![Line { say: Some(LINE.into()), press: None, beep_ms: None, when: When::AfterAgentStops }],
        hang_up_after_ms: Some(3_000),
    };
    let (call, report) = agent_calls_persona(&app, agent, persona, json!({})).await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");

    // The voice: asked in ElevenLabs' terms, and heard by the persona.
    let asked = voice.log.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|(id, key, format, _)| id == "EXAVITQu4vr4xnSDxMaL" && key == "xi-test" && format == "ulaw_8000"),
        "{asked:?}"
    );
    assert_eq!(asked.iter().map(|(_, _, _, text)| text.as_str()).collect::<Vec<_>>().join(" "), GREETING);
    let heard = report.heard.first().map(|h| h.text.clone()).unwrap_or_default();
    assert!(crate::calls::recall(GREETING, &heard) >= 0.8, "the persona heard {heard:?}");
    // The ears: Deepgram sessions with PCM at 8 kHz and the key, and the transcript in Get Call.
    let sessions = sessions.lock().unwrap().clone();
    assert!(!sessions.is_empty());
    assert!(
        sessions.iter().all(|(uri, auth, _)| uri.starts_with("/v1/listen?encoding=linear16&sample_rate=8000") && auth == "Token dg-test"),
        "{sessions:?}"
    );
    let user = call["transcript_object"].as_array().unwrap().iter().find(|u| u["role"] == "user").cloned().unwrap_or_default();
    assert!(crate::calls::recall(LINE, user["content"].as_str().unwrap_or_default()) >= 0.8, "{}", call["transcript"]);
}
