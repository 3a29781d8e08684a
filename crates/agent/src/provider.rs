//! The narrow, object-safe traits every speech provider and response engine implements
//! (**API Boundary**: hosted providers, custom LLMs and tools plug in here in M7).
//!
//! Each method is one bounded piece of work; the caller wraps it in a deadline
//! ([`with_deadline`]), so a provider that hangs ends its call with a documented reason
//! instead of leaving the caller in silence.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::conversation::{Conversation, ToolEvent};

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a provider could not do its work.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProviderError {
    #[error("{provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    #[error("{provider} failed: {message}")]
    Failed { provider: String, message: String },
    /// The engine's peer ended its part in the call; `reason` is the call's
    /// `disconnection_reason` (Retell's `error_llm_websocket_*`).
    #[error("{provider} ended: {message}")]
    Ended { provider: String, reason: String, message: String },
}

impl ProviderError {
    pub fn failed(provider: &str, message: impl std::fmt::Display) -> Self {
        Self::Failed { provider: provider.to_owned(), message: message.to_string() }
    }
}

/// Voice activity detection over 8 kHz audio, chunk by chunk. Cheap and synchronous: it
/// runs on the agent task for every chunk.
pub trait Vad: Send {
    /// Samples per chunk the model takes.
    fn chunk_samples(&self) -> usize;
    /// The speech probability of the next chunk (`chunk_samples()` samples).
    fn probability(&mut self, chunk: &[i16]) -> Result<f32, ProviderError>;
}

/// Speech to text for one caller utterance of 8 kHz audio.
pub trait SpeechToText: Send + Sync {
    fn name(&self) -> &str;
    fn transcribe(&self, audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>>;
    /// Whether a request now would wait for others: speculative decodes are then skipped,
    /// so that an overloaded machine spends its time on the transcripts that end turns.
    fn is_busy(&self) -> bool {
        false
    }
}

/// Text to speech: one sentence to 8 kHz audio.
pub trait TextToSpeech: Send + Sync {
    fn name(&self) -> &str;
    /// `speed` is Retell's `voice_speed` (0.5–2, 1 normal).
    fn synthesize(&self, text: String, speed: f32) -> BoxFuture<'_, Result<Vec<i16>, ProviderError>>;
}

/// What the response engine is asked to answer.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineInput {
    /// An action of the last reply (a transfer) could not be carried out; the call goes on.
    ActionFailed { action: String, reason: String },
    /// The call was answered and the agent speaks first.
    Begin,
    /// The caller's turn, as transcribed.
    UserTurn { text: String },
    /// A DTMF digit from the caller.
    Dtmf { digit: char },
    /// Nobody spoke for the reminder time.
    Reminder { count: u32 },
    /// The engine asked to speak now ([`EngineEvent::Interrupt`]).
    Interrupt,
    /// A machine answered: the message to leave after its beep, following `instruction`.
    Voicemail { instruction: String },
}

/// The engine's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// What to say (may be empty).
    pub text: String,
    /// Hang up once `text` has been spoken.
    pub end_call: bool,
    /// Transfer the call (a number or SIP URI) once `text` has been spoken.
    pub transfer_to: Option<String>,
    /// DTMF digits to send once `text` has been spoken.
    pub send_dtmf: Option<String>,
}

/// A piece of a reply, sent by a streaming engine while it works.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyPart {
    /// Text to speak, following the text sent before it (a token, a phrase, a sentence).
    Text(String),
    /// Speak the text so far even if its sentence looks unfinished (the engine is about to
    /// wait on something, a tool).
    Flush,
    /// A tool the engine called, or its result: kept in the transcript, in order.
    Tool(ToolEvent),
}

/// One request to the engine.
pub struct Request {
    pub input: EngineInput,
    /// The conversation as it was heard so far (agent words whose audio went out, the
    /// caller's transcribed turns, tool calls), for engines that read the whole of it.
    pub history: Conversation,
    /// Where a streaming engine sends its reply as it is made. Text sent here is spoken as
    /// soon as a sentence is complete, and before the `text` of the final [`Reply`].
    /// Unbounded, so that an engine never waits on the speaker: engines bound what they send
    /// (a completion's size, a number of tool rounds).
    pub parts: mpsc::UnboundedSender<ReplyPart>,
}

impl Request {
    /// A request whose parts nobody reads (tests, engines that never stream).
    pub fn new(input: EngineInput) -> Self {
        Self { input, history: Conversation::default(), parts: mpsc::unbounded_channel().0 }
    }
}

/// What an engine raises by itself, between requests (a custom LLM's server does).
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// Speak now, over whatever is being said: the agent cuts its speech and asks the
    /// engine with [`EngineInput::Interrupt`].
    Interrupt,
    /// End the call: a hang-up (`None`), or a failure.
    End(Option<ProviderError>),
    /// Change turn-taking settings from now on (Retell's `update_agent`).
    UpdateTurns(crate::turn::TurnUpdate),
}

/// An engine's line to the agent task outside requests.
pub struct EngineLink {
    pub events: mpsc::Receiver<EngineEvent>,
    /// The agent keeps the latest conversation here for engines that tell a peer of every
    /// change (Retell's `update_only`).
    pub transcript: tokio::sync::watch::Sender<Conversation>,
}

/// Produces the agent's replies. One per call, owned by the call's agent task.
pub trait ResponseEngine: Send {
    fn name(&self) -> &str;
    /// Answers `request`: text streamed on `request.parts` and/or in the reply's `text`,
    /// then what to do once it is spoken. The deadline runs to the first part (or the
    /// reply); after that the engine bounds its own steps (each tool has its timeout).
    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>>;
    /// A reply for the last input was cancelled before it was played (barge-in); an engine
    /// that moved state on it may move back. The flow engine keeps its move: Retell's
    /// flows do too.
    fn cancelled(&mut self) {}
    /// The engine's events and transcript feed, taken once when the call starts; `None`:
    /// the engine only answers requests.
    fn link(&mut self) -> Option<EngineLink> {
        None
    }
}

/// Runs `work` with a deadline, naming `provider` if it is missed.
pub async fn with_deadline<T>(
    provider: &str,
    after: Duration,
    work: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(after, work).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Timeout { provider: provider.to_owned(), after }),
    }
}
