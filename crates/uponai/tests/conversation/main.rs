#![allow(unreachable_pub)] // Helpers are `pub` for sibling test modules of this one binary.

//! Conversations with the voice agent on real calls: sipp plays the trunk and a persona's
//! voice; the offline engines (Silero, Whisper, Piper) do the rest. They measure what the
//! agent heard and how fast it answered, so they run in their own binary (cargo runs test
//! binaries one at a time) and one at a time (`serial`): the machine's two Whisper decoders
//! are then theirs, as they would be a real call's, not shared with every other test's calls.

mod calls;
mod custom_llm;
#[path = "../api/helpers.rs"]
mod helpers;
mod hosted;
mod llm;
#[allow(dead_code)] // Shared by the sip and conversation binaries; each uses part of it.
mod model_server;
mod personas;
#[path = "../webhooks/receiver.rs"]
#[allow(dead_code)] // The webhook tests' receiver; this binary uses part of it.
mod receiver;
#[path = "../sip/sipp.rs"]
mod sipp;
mod voicemail;

/// Held for the whole of each test, so conversations never overlap.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
