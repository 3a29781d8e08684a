//! ElevenLabs text to speech: `POST {base}/v1/text-to-speech/{voice_id}/stream` with the
//! `xi-api-key` header and `output_format=ulaw_8000`, so the audio arrives as the telephone
//! line's own G.711 μ-law at 8 kHz (no resampling), streamed; one request per sentence.

use agent::provider::{BoxFuture, ProviderError, TextToSpeech};
use serde_json::json;

use super::Provider;

const NAME: &str = "elevenlabs";
/// ElevenLabs' low-latency model.
const MODEL: &str = "eleven_flash_v2_5";
/// The most audio one sentence may bring (a minute of 8 kHz μ-law).
const MAX_AUDIO_BYTES: usize = 8_000 * 60;

pub struct ElevenLabsVoice {
    pub http: reqwest::Client,
    pub provider: Provider,
    pub voice_id: String,
}

impl ElevenLabsVoice {
    async fn speak(&self, text: String, speed: f32) -> Result<Vec<i16>, ProviderError> {
        let fail = |message: String| ProviderError::failed(NAME, message);
        let mut url = self.provider.base_url.clone();
        url.path_segments_mut().map_err(|()| fail("the base URL cannot take a path".into()))?.pop_if_empty().extend([
            "v1",
            "text-to-speech",
            &self.voice_id,
            "stream",
        ]);
        url.query_pairs_mut().append_pair("output_format", "ulaw_8000");
        let body = json!({"text": text, "model_id": MODEL, "voice_settings": {"speed": speed.clamp(0.7, 1.2)}});
        let mut response = self
            .http
            .post(url)
            .header("xi-api-key", &self.provider.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|err| fail(crate::llm::openai::error_chain(&err)))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(fail(format!("answered {status}: {}", text.chars().take(300).collect::<String>())));
        }
        let mut audio = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| fail(crate::llm::openai::error_chain(&err)))? {
            if audio.len() + chunk.len() > MAX_AUDIO_BYTES {
                return Err(fail("sent more than a minute of audio for one sentence".into()));
            }
            audio.extend(chunk.iter().map(|&code| media::g711::ulaw_to_linear(code)));
        }
        Ok(audio)
    }
}

impl TextToSpeech for ElevenLabsVoice {
    fn name(&self) -> &str {
        NAME
    }

    fn synthesize(&self, text: String, speed: f32) -> BoxFuture<'_, Result<Vec<i16>, ProviderError>> {
        Box::pin(self.speak(text, speed))
    }
}
