//! Deepgram speech to text over its live-transcription websocket:
//! `wss://{host}/v1/listen?encoding=linear16&sample_rate=8000&channels=1&model=…` with
//! `Authorization: Token <key>`. Each caller turn is one session: its audio is sent as binary
//! frames of 16-bit PCM, then `{"type": "CloseStream"}`; the `Results` messages with
//! `is_final` are joined into the turn's transcript, until Deepgram closes the socket.

use std::time::Duration;

use agent::provider::{BoxFuture, ProviderError, SpeechToText};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::Provider;

const NAME: &str = "deepgram";
const MODEL: &str = "nova-3";
/// 100 ms of audio per frame, as Deepgram suggests.
const FRAME_SAMPLES: usize = 800;
/// How long Deepgram may take to finish after the audio ends.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest transcript taken for one turn.
const MAX_TRANSCRIPT_CHARS: usize = 10_000;

pub struct DeepgramStt {
    pub provider: Provider,
}

impl DeepgramStt {
    async fn transcribe_turn(&self, audio: Vec<i16>) -> Result<String, ProviderError> {
        let fail = |message: String| ProviderError::failed(NAME, message);
        let mut url = self.provider.base_url.clone();
        url.path_segments_mut().map_err(|()| fail("the base URL cannot take a path".into()))?.pop_if_empty().extend(["v1", "listen"]);
        url.query_pairs_mut()
            .append_pair("encoding", "linear16")
            .append_pair("sample_rate", "8000")
            .append_pair("channels", "1")
            .append_pair("model", MODEL)
            .append_pair("punctuate", "true")
            .append_pair("smart_format", "true");
        let mut request = url.as_str().into_client_request().map_err(|err| fail(err.to_string()))?;
        let token =
            format!("Token {}", self.provider.api_key).parse().map_err(|_| fail("the API key cannot be sent in a header".into()))?;
        request.headers_mut().insert("authorization", token);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.map_err(|err| fail(crate::llm::openai::error_chain(&err)))?;
        for frame in audio.chunks(FRAME_SAMPLES) {
            let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
            socket.send(Message::binary(bytes)).await.map_err(|err| fail(err.to_string()))?;
        }
        socket.send(Message::text(r#"{"type": "CloseStream"}"#)).await.map_err(|err| fail(err.to_string()))?;
        let mut transcript = String::new();
        let collect = async {
            while let Some(message) = socket.next().await {
                let text = match message {
                    Ok(Message::Text(text)) => text,
                    Ok(Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(err) => return Err(fail(err.to_string())),
                };
                let Ok(result) = serde_json::from_str::<Value>(&text) else { continue };
                if result.get("type").and_then(Value::as_str) != Some("Results") || result.get("is_final") != Some(&Value::Bool(true)) {
                    continue;
                }
                let words = result.pointer("/channel/alternatives/0/transcript").and_then(Value::as_str).unwrap_or_default().trim();
                if !words.is_empty() && transcript.len() + words.len() < MAX_TRANSCRIPT_CHARS {
                    if !transcript.is_empty() {
                        transcript.push(' ');
                    }
                    transcript.push_str(words);
                }
            }
            Ok(())
        };
        match tokio::time::timeout(FINISH_TIMEOUT, collect).await {
            Ok(result) => result?,
            Err(_) => return Err(fail(format!("no end of results within {FINISH_TIMEOUT:?}"))),
        }
        Ok(transcript)
    }
}

impl SpeechToText for DeepgramStt {
    fn name(&self) -> &str {
        NAME
    }

    fn transcribe(&self, audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(self.transcribe_turn(audio))
    }
}
