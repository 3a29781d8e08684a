//! Hosted speech providers behind the `agent` crate's speech traits, each speaking its
//! vendor's real protocol: Deepgram's live-transcription websocket for speech to text
//! (`deepgram`) and ElevenLabs' streaming text-to-speech endpoint for voices (`elevenlabs`).
//! Configured by key for the install (operator configuration, not tenant input); chosen per
//! agent: `custom_stt_config.provider: "deepgram"`, and `voice_id` `11labs-<ElevenLabs voice
//! id>`. Without a key, or for other agents, the offline engines stay in use.

pub mod deepgram;
pub mod elevenlabs;

use url::Url;

/// The hosted providers an install has keys for.
#[derive(Clone, Debug, Default)]
pub struct HostedSpeech {
    pub deepgram: Option<Provider>,
    pub elevenlabs: Option<Provider>,
}

/// One provider: where its API is, and the key.
#[derive(Clone, Debug)]
pub struct Provider {
    pub base_url: Url,
    pub api_key: String,
}
