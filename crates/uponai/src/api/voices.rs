//! Voices this install can speak: the offline Piper voice (neural, the default) and the
//! espeak-ng voices (robotic, model-free). Hosted providers' voice ids (`11labs-…`,
//! `openai-…`, `cartesia-…`, `deepgram-…`, `play-…`, `azure-…`) are accepted and spoken by the
//! Piper voice until hosted TTS exists (M7), so agents written for Retell keep working; any
//! other unknown id is refused.

use axum::Json;
use axum::extract::Path;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Workspace;

/// A voice an agent's `voice_id` may name.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VoiceResponse {
    pub voice_id: &'static str,
    pub voice_name: &'static str,
    /// `"platform"`: synthesised on this machine, no provider involved.
    pub provider: &'static str,
    pub gender: &'static str,
    pub accent: &'static str,
    pub age: &'static str,
}

/// The voice new agents get in examples and the demo, and the one that speaks hosted voices.
pub const DEFAULT_VOICE_ID: &str = agent::offline::PIPER_VOICE_ID;

/// Voice-id prefixes of hosted TTS providers.
const HOSTED_PREFIXES: &[&str] = &["11labs-", "elevenlabs-", "openai-", "cartesia-", "deepgram-", "play-", "playht-", "azure-", "minimax-"];

const VOICES: &[VoiceResponse] = &[
    VoiceResponse {
        voice_id: DEFAULT_VOICE_ID,
        voice_name: "Joe (offline neural voice, US English)",
        provider: "platform",
        gender: "male",
        accent: "American",
        age: "Middle Aged",
    },
    VoiceResponse {
        voice_id: "espeak-en-us-male",
        voice_name: "Offline US English (male)",
        provider: "platform",
        gender: "male",
        accent: "American",
        age: "Middle Aged",
    },
    VoiceResponse {
        voice_id: "espeak-en-us-female",
        voice_name: "Offline US English (female)",
        provider: "platform",
        gender: "female",
        accent: "American",
        age: "Young",
    },
    VoiceResponse {
        voice_id: "espeak-en-gb-male",
        voice_name: "Offline British English (male)",
        provider: "platform",
        gender: "male",
        accent: "British",
        age: "Middle Aged",
    },
];

/// The voice that speaks `voice_id`: its own, or for a hosted provider's id, the Piper voice.
pub fn find(voice_id: &str) -> Option<&'static VoiceResponse> {
    VOICES
        .iter()
        .find(|voice| voice.voice_id == voice_id)
        .or_else(|| HOSTED_PREFIXES.iter().any(|prefix| voice_id.starts_with(prefix)).then(|| &VOICES[0]))
}

/// List the voices agents can use.
#[utoipa::path(get, path = "/list-voices", tag = "Voice",
    responses((status = 200, body = Vec<VoiceResponse>), (status = 401, body = ErrorBody)))]
pub async fn list_voices(_: Workspace) -> Json<Vec<VoiceResponse>> {
    Json(VOICES.to_vec())
}

/// Get one voice.
#[utoipa::path(get, path = "/get-voice/{voice_id}", tag = "Voice",
    params(("voice_id" = String, Path)),
    responses((status = 200, body = VoiceResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_voice(_: Workspace, Path(voice_id): Path<String>) -> ApiResult<Json<VoiceResponse>> {
    find(&voice_id).cloned().map(Json).ok_or_else(|| ApiError::NotFound(format!("voice {voice_id}")))
}
