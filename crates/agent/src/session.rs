//! The agent task of one call: the Tokio adapter around [`Turns`]. It owns the call's
//! providers, feeds the state machine the caller's audio (through the VAD), transcripts and
//! playout reports, and carries out its decisions: transcribe, respond, cancel on barge-in,
//! resume, remind, recover, end.
//!
//! The media clock is the caller audio itself: every 20 ms frame carries its time, and
//! each frame ticks the state machine, so the agent task never reads a wall clock for
//! turn-taking. Provider work runs in tasks of their own with deadlines; their results
//! come back on channels the loop selects on, so the loop never waits on a provider.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::conversation::{Conversation, MachineDetection, Role, ToolEvent, Utterance, millis};
use crate::provider::{
    BoxFuture, EngineEvent, EngineInput, ProviderError, Reply, Request, ResponseEngine, SpeechToText, TextToSpeech, Vad, with_deadline,
};
use crate::turn::{Decision, Generation, Input, Speaker, TurnConfig, Turns};
use crate::voicemail::{MachineDetector, Verdict};
use reply::{Voice, played_text, speak, speak_stream, unplayed_text};

/// 8 kHz, 20 ms.
pub const FRAME_SAMPLES: usize = 160;
const SAMPLE_RATE: u64 = 8_000;
/// Caller audio kept for transcription.
const KEPT_AUDIO: Duration = Duration::from_secs(60);
/// Speech-to-text deadlines missed in a row that end the call (`error_asr`); fewer only cost
/// their turns.
const MAX_ASR_TIMEOUTS: u32 = 3;
/// What the agent says when a turn got no answer in time (once; the next time it ends).
const REPROMPT: &str = "Sorry, I missed that. Could you say it again?";
/// The longest one response may take in all, tool calls included.
const MAX_RESPONSE: Duration = Duration::from_secs(300);

/// The settings of one call's agent.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub turn: TurnConfig,
    pub start_speaker: Speaker,
    /// Retell's `voice_speed` (0.5–2).
    pub voice_speed: f32,
    /// Retell's `volume` (0–2, 1 unchanged).
    pub volume: f32,
    pub deadlines: Deadlines,
    /// Answering-machine detection, if the agent asks for it (outbound calls).
    pub voicemail: Option<VoicemailSettings>,
    /// When the caller is to speak first: the agent begins anyway after this much silence
    /// from the answer (Retell's `begin_after_user_silence_ms`).
    pub begin_after_user_silence: Option<Duration>,
}

/// What to do on reaching a machine.
#[derive(Clone, Debug, PartialEq)]
pub struct VoicemailSettings {
    /// Undecided this long after the answer: a person.
    pub timeout: Duration,
    pub action: VoicemailAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VoicemailAction {
    /// Hang up at once.
    Hangup,
    /// Say this (variables filled) after the beep, then hang up.
    Say(String),
    /// Ask the engine for a message with this instruction, say it after the beep, hang up.
    Prompt(String),
}

/// Where answering-machine detection stands.
enum MachinePhase {
    Off,
    Detecting(MachineDetector),
    /// A machine: waiting for its greeting to end.
    Waiting(MachineDetector),
    /// The message is being spoken; the call ends after it.
    Leaving,
}

/// How long each provider may take for one piece of work.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub stt: Duration,
    pub tts: Duration,
    pub engine: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        // Speech-to-text includes the wait for a free decoder (two per machine of this class).
        Self { stt: Duration::from_secs(20), tts: Duration::from_secs(10), engine: Duration::from_secs(10) }
    }
}

/// The providers of one call, chosen at run time.
pub struct Providers {
    pub vad: Box<dyn Vad>,
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    pub engine: Box<dyn ResponseEngine>,
}

/// What the call task hands the agent.
// Audio is nearly every message; boxing it would allocate 50 times a second per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Heard {
    /// A 20 ms caller frame, stamped with the media clock (time since answer).
    Audio {
        at: Duration,
        samples: [i16; FRAME_SAMPLES],
        concealed: bool,
    },
    Dtmf {
        at: Duration,
        digit: char,
    },
    PlayoutStarted {
        generation: Generation,
        at: Duration,
    },
    PlayoutEnded {
        generation: Generation,
        frames: u32,
        first_at: Duration,
        last_at: Duration,
        cancelled: bool,
    },
    /// An action the agent asked for (a transfer) failed; the call goes on, and the engine
    /// is told.
    ActionFailed {
        action: String,
        reason: String,
    },
}

/// Where the agent's audio goes: the media session, through the call task's adapter.
pub trait Mouth: Send + Sync {
    /// Queues one frame; waits while the queue is full. `false`: the call's media is gone.
    fn speak(&self, generation: Generation, samples: [i16; FRAME_SAMPLES], last: bool) -> BoxFuture<'_, bool>;
    /// Drops `generation` and older at the next 20 ms tick, queued or still to come.
    fn cancel_through(&self, generation: Generation);
    /// Sends DTMF digits (RFC 4733).
    fn send_dtmf(&self, digits: &str);
}

/// Why the agent ended the call; the service maps it to a `disconnection_reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEnd {
    /// The engine ended the call (a flow's end node): `agent_hangup`.
    Hangup,
    /// Nobody spoke for `end_call_after_silence_ms`: `inactivity`.
    Inactivity,
    /// A machine answered (and the message, if any, was left): `voicemail_reached`.
    Voicemail,
    /// Speech-to-text failed or missed its deadline: `error_asr`.
    SpeechToText(ProviderError),
    /// Text-to-speech failed: `error_retell`.
    TextToSpeech(ProviderError),
    /// The response engine failed, or twice left a turn unanswered: `error_retell`, or the
    /// engine's own reason (`error_llm_websocket_*`).
    Engine(ProviderError),
}

/// What the agent tells the call task while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// End the call (the agent task then stops by itself).
    End(AgentEnd),
    /// Transfer the call to a number or SIP URI.
    Transfer { to: String },
    /// An utterance was added to the transcript: the conversation as it now stands.
    TranscriptUpdated(Box<Conversation>),
}

/// Progress of a reply being spoken, from its speaking task.
enum Speech {
    /// The engine's first text (or its reply, if it streamed none): the engine's latency.
    FirstText {
        generation: Generation,
        engine_ms: u32,
    },
    /// A tool call of the engine, or its result.
    Tool {
        generation: Generation,
        event: ToolEvent,
    },
    /// The engine is done: what to do once the reply is spoken. `silent`: it said nothing.
    Reply {
        generation: Generation,
        reply: Reply,
        silent: bool,
    },
    /// A sentence was synthesised and queued: its text and frame count.
    Sentence {
        generation: Generation,
        text: String,
        frames: u32,
        tts_ms: u32,
        first: bool,
    },
    /// All of the reply's audio is queued.
    Done {
        generation: Generation,
    },
    Failed {
        generation: Generation,
        error: AgentEnd,
    },
}

/// Why a generation speaks.
#[derive(Clone, Debug)]
enum Cause {
    Begin,
    UserTurn { last_speech: Duration, asr_ms: u32 },
    Other,
    Reprompt,
}

struct Response {
    generation: Generation,
    cause: Cause,
    cancel: CancellationToken,
    reply: Option<Reply>,
    /// Sentences queued so far, with their frame counts.
    sentences: Vec<(String, u32)>,
    /// All audio queued.
    done: bool,
    /// Its playout ended, not cut (the end may be reported before `done` arrives).
    played_out: bool,
    /// Its first frame went out.
    started: bool,
    /// Tool events of this response: their index in the conversation's `tool_events` and
    /// the number of the response's words synthesised before them, so that the transcript
    /// shows them between the words they came between.
    tool_marks: Vec<(usize, usize)>,
}

/// Runs the agent until `cancel` or until it ends the call; returns the conversation.
pub async fn run(
    settings: AgentSettings,
    providers: Providers,
    mut heard: mpsc::Receiver<Heard>,
    mouth: Arc<dyn Mouth>,
    events: mpsc::Sender<AgentEvent>,
    cancel: CancellationToken,
) -> Conversation {
    let Providers { mut vad, stt, tts, mut engine } = providers;
    let (mut engine_events, transcript_feed) = match engine.link() {
        Some(link) => (Some(link.events), Some(link.transcript)),
        None => (None, None),
    };
    let engine = Arc::new(Mutex::new(engine));
    let mut agent = Agent {
        turns: Turns::new(settings.turn.clone()),
        settings,
        conversation: Conversation::default(),
        audio: CallerAudio::default(),
        vad_chunk: Vec::new(),
        next_generation: 1,
        responses: Vec::new(),
        asr_ms: std::collections::HashMap::new(),
        stuck_in_a_row: 0,
        asr_timeouts_in_a_row: 0,
        ended: false,
        machine: MachinePhase::Off,
        begin_after: None,
    };
    if let Some(voicemail) = &agent.settings.voicemail {
        agent.machine = MachinePhase::Detecting(MachineDetector::new(voicemail.timeout));
    }
    let (speech_tx, mut speech) = mpsc::channel::<Speech>(64);
    let (transcripts_tx, mut transcripts) = mpsc::channel::<(u64, Result<String, ProviderError>, u32)>(16);
    let ctx = Context { stt, tts, engine, mouth, speech: speech_tx, transcripts: transcripts_tx, events: events.clone(), transcript_feed };

    if agent.settings.start_speaker == Speaker::Agent {
        agent.start_response(&ctx, Cause::Begin, EngineInput::Begin, Duration::ZERO);
    } else {
        agent.begin_after = agent.settings.begin_after_user_silence;
    }
    while !agent.ended {
        let decisions = tokio::select! {
            () = cancel.cancelled() => break,
            input = heard.recv() => match input {
                None => break,
                Some(input) => agent.on_heard(input, vad.as_mut(), &ctx).await,
            },
            Some(progress) = speech.recv() => agent.on_speech(progress, &ctx).await,
            Some(event) = next_engine_event(&mut engine_events) => {
                agent.on_engine_event(event, &ctx).await;
                Vec::new()
            }
            Some((request, result, ms)) = transcripts.recv() => match result {
                Ok(text) => {
                    agent.asr_timeouts_in_a_row = 0;
                    agent.asr_ms.insert(request, ms);
                    agent.turns.handle(Input::Transcript { request, text })
                }
                // An overloaded machine: this turn is heard as no words (the caller is asked
                // nothing it did not say); only a decoder that keeps missing ends the call.
                Err(error @ ProviderError::Timeout { .. }) if agent.asr_timeouts_in_a_row + 1 < MAX_ASR_TIMEOUTS => {
                    agent.asr_timeouts_in_a_row += 1;
                    tracing::warn!(%error, request, "agent.asr_timeout: the turn counts as no words");
                    agent.turns.handle(Input::Transcript { request, text: String::new() })
                }
                Err(error) => {
                    agent.end(&ctx, AgentEnd::SpeechToText(error)).await;
                    Vec::new()
                }
            },
        };
        if !matches!(agent.machine, MachinePhase::Off | MachinePhase::Detecting(_)) {
            // Talking to a machine: no turn-taking, only the message.
            continue;
        }
        for decision in decisions {
            agent.decide(decision, &ctx).await;
        }
    }
    for response in &agent.responses {
        response.cancel.cancel();
    }
    agent.conversation
}

/// The engine's next event; pending forever for engines without a link (or once it closed).
async fn next_engine_event(events: &mut Option<mpsc::Receiver<EngineEvent>>) -> Option<EngineEvent> {
    let Some(receiver) = events else { return std::future::pending().await };
    match receiver.recv().await {
        Some(event) => Some(event),
        None => {
            *events = None;
            std::future::pending().await
        }
    }
}

/// What every spawned piece of work needs.
struct Context {
    stt: Arc<dyn SpeechToText>,
    tts: Arc<dyn TextToSpeech>,
    engine: Arc<Mutex<Box<dyn ResponseEngine>>>,
    mouth: Arc<dyn Mouth>,
    speech: mpsc::Sender<Speech>,
    transcripts: mpsc::Sender<(u64, Result<String, ProviderError>, u32)>,
    events: mpsc::Sender<AgentEvent>,
    /// The engine's transcript feed, if it has a link.
    transcript_feed: Option<tokio::sync::watch::Sender<Conversation>>,
}

impl Context {
    /// The conversation changed: the call task and the engine hear of it (neither waits).
    fn transcript_changed(&self, conversation: &Conversation) {
        let _ = self.events.try_send(AgentEvent::TranscriptUpdated(Box::new(conversation.clone())));
        if let Some(feed) = &self.transcript_feed {
            feed.send_replace(conversation.clone());
        }
    }
}

struct Agent {
    settings: AgentSettings,
    turns: Turns,
    conversation: Conversation,
    audio: CallerAudio,
    vad_chunk: Vec<i16>,
    next_generation: Generation,
    /// Responses not yet fully played (at most a couple).
    responses: Vec<Response>,
    /// Decode time of each transcription request.
    asr_ms: std::collections::HashMap<u64, u32>,
    stuck_in_a_row: u32,
    /// Speech-to-text deadlines missed in a row.
    asr_timeouts_in_a_row: u32,
    ended: bool,
    machine: MachinePhase,
    /// The caller speaks first; if still silent at this time, the agent begins.
    begin_after: Option<Duration>,
}

impl Agent {
    async fn on_heard(&mut self, input: Heard, vad: &mut dyn Vad, ctx: &Context) -> Vec<Decision> {
        match input {
            Heard::Audio { at, samples, concealed: _ } => {
                self.audio.push(at, &samples);
                let end = at + Duration::from_millis(20);
                let mut out = Vec::new();
                self.vad_chunk.extend_from_slice(&samples);
                let n = vad.chunk_samples().max(1);
                while self.vad_chunk.len() >= n {
                    // The chunk ends with this frame, or earlier if more chunks are waiting.
                    let left = (self.vad_chunk.len() - n) as u64;
                    let chunk_end = end.saturating_sub(Duration::from_millis(left * 1000 / SAMPLE_RATE));
                    let from = chunk_end.saturating_sub(Duration::from_millis(n as u64 * 1000 / SAMPLE_RATE));
                    let chunk: Vec<i16> = self.vad_chunk.drain(..n).collect();
                    let probability = vad.probability(&chunk).unwrap_or_else(|error| {
                        tracing::warn!(%error, "agent.vad_failed");
                        0.0
                    });
                    if let MachinePhase::Detecting(detector) | MachinePhase::Waiting(detector) = &mut self.machine {
                        detector.vad(from, chunk_end, probability);
                    }
                    out.extend(self.turns.handle(Input::Vad { from, at: chunk_end, probability }));
                }
                out.extend(self.turns.handle(Input::Tick { now: end }));
                if let MachinePhase::Detecting(detector) | MachinePhase::Waiting(detector) = &mut self.machine {
                    detector.frame(at, &samples);
                }
                self.on_machine_detection(ctx).await;
                if self.begin_after.is_some_and(|after| end >= after) {
                    self.begin_after = None;
                    tracing::info!("agent.begin_after_user_silence");
                    self.start_response(ctx, Cause::Begin, EngineInput::Begin, end);
                }
                out
            }
            Heard::Dtmf { at, digit } => self.turns.handle(Input::Dtmf { at, digit }),
            Heard::PlayoutStarted { generation, at } => {
                if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
                    response.started = true;
                }
                if let Some(response) = self.responses.iter().find(|r| r.generation == generation)
                    && let Cause::UserTurn { last_speech, asr_ms } = response.cause
                {
                    self.conversation.latency.e2e.push(millis(at.saturating_sub(last_speech)));
                    self.conversation.latency.asr.push(asr_ms);
                    // A turn was answered: the engine works again.
                    self.stuck_in_a_row = 0;
                }
                self.turns.handle(Input::PlayoutStarted { generation, at })
            }
            Heard::PlayoutEnded { generation, frames, first_at, last_at, cancelled } => {
                let out = self.turns.handle(Input::PlayoutEnded { generation, at: last_at });
                self.on_played(ctx, generation, frames, first_at, last_at, cancelled).await;
                out
            }
            Heard::ActionFailed { action, reason } => {
                tracing::warn!(%action, %reason, "agent.action_failed");
                let now = self.audio.now();
                self.start_response(ctx, Cause::Other, EngineInput::ActionFailed { action, reason }, now);
                Vec::new()
            }
        }
    }

    /// A generation's audio stopped going out: keep in the transcript what was played, and
    /// do what the reply asked for after it.
    async fn on_played(
        &mut self,
        ctx: &Context,
        generation: Generation,
        frames: u32,
        first_at: Duration,
        last_at: Duration,
        cancelled: bool,
    ) {
        let Some(index) = self.responses.iter().position(|r| r.generation == generation) else { return };
        let text = played_text(&self.responses[index].sentences, frames);
        if !text.is_empty() {
            let end = last_at + Duration::from_millis(20);
            let utterance = Utterance::spread(Role::Agent, &text, first_at, end);
            // Split where the response's tool calls happened; each call goes after the
            // words spoken before it.
            let marks = std::mem::take(&mut self.responses[index].tool_marks);
            let n_words = utterance.words.len();
            let mut cuts: Vec<usize> = marks.iter().map(|(_, words)| *words).filter(|w| (1..n_words).contains(w)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let pieces = utterance.split_at_words(&cuts);
            let (n_pieces, mut spoken) = (pieces.len(), 0);
            for (k, piece) in pieces.into_iter().enumerate() {
                let before = spoken;
                spoken += piece.words.len();
                self.conversation.utterances.push(piece);
                let after = self.conversation.utterances.len();
                // Events after the piece's words; the last piece also takes those after
                // words that were never played.
                for (event, words) in &marks {
                    if *words > before
                        && (*words <= spoken || k + 1 == n_pieces)
                        && let Some(slot) = self.conversation.tool_events.get_mut(*event)
                    {
                        slot.0 = after;
                    }
                }
            }
            ctx.transcript_changed(&self.conversation);
        }
        if cancelled {
            // Cut by a barge-in: kept for a possible resume until the caller's turn ends.
            return;
        }
        if !self.responses[index].done {
            // The last frame went out before its speaking task said it was done.
            self.responses[index].played_out = true;
            return;
        }
        let response = self.responses.remove(index);
        self.after_reply(ctx, response.reply.unwrap_or_default()).await;
    }

    async fn after_reply(&mut self, ctx: &Context, reply: Reply) {
        if let Some(digits) = reply.send_dtmf.as_deref().filter(|d| !d.is_empty()) {
            ctx.mouth.send_dtmf(digits);
        }
        if let Some(to) = reply.transfer_to {
            let _ = ctx.events.send(AgentEvent::Transfer { to }).await;
        }
        if matches!(self.machine, MachinePhase::Leaving) {
            self.end(ctx, AgentEnd::Voicemail).await;
        } else if reply.end_call {
            self.end(ctx, AgentEnd::Hangup).await;
        }
    }

    /// Acts on the machine detector: a person ends detection; a machine cuts the agent
    /// short, then hangs up or leaves the message once its greeting is over.
    async fn on_machine_detection(&mut self, ctx: &Context) {
        let now = self.audio.now();
        match std::mem::replace(&mut self.machine, MachinePhase::Off) {
            MachinePhase::Detecting(detector) => match detector.verdict() {
                None => self.machine = MachinePhase::Detecting(detector),
                Some(verdict) => {
                    let machine = matches!(verdict, Verdict::Machine { .. });
                    let decided_at = detector.decided_at().unwrap_or(now);
                    tracing::info!(machine, ?decided_at, "agent.machine_detection");
                    self.conversation.machine_detection = Some(MachineDetection { machine, decided_at });
                    if !machine {
                        return;
                    }
                    for response in &self.responses {
                        response.cancel.cancel();
                    }
                    if let Some(newest) = self.responses.iter().map(|r| r.generation).max() {
                        ctx.mouth.cancel_through(newest);
                    }
                    self.responses.clear();
                    match self.settings.voicemail.as_ref().map(|v| &v.action) {
                        Some(VoicemailAction::Hangup) | None => self.end(ctx, AgentEnd::Voicemail).await,
                        Some(_) => self.machine = MachinePhase::Waiting(detector),
                    }
                }
            },
            MachinePhase::Waiting(detector) if detector.ready_for_message() => {
                self.machine = MachinePhase::Leaving;
                match self.settings.voicemail.as_ref().map(|v| v.action.clone()) {
                    Some(VoicemailAction::Say(text)) => {
                        self.speak_text(ctx, Cause::Other, Reply { text, end_call: true, ..Reply::default() }, now);
                    }
                    Some(VoicemailAction::Prompt(instruction)) => {
                        self.start_response(ctx, Cause::Other, EngineInput::Voicemail { instruction }, now);
                    }
                    _ => self.end(ctx, AgentEnd::Voicemail).await,
                }
            }
            other => self.machine = other,
        }
    }

    async fn on_speech(&mut self, progress: Speech, ctx: &Context) -> Vec<Decision> {
        match progress {
            Speech::FirstText { generation, engine_ms } => {
                if self.responses.iter().any(|r| r.generation == generation) {
                    self.conversation.latency.llm.push(engine_ms);
                }
                Vec::new()
            }
            Speech::Tool { generation, event } => {
                // Kept even if the response was cut: the tool ran.
                tracing::info!(generation, ?event, "agent.tool_event");
                if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
                    let words = response.sentences.iter().map(|(text, _)| text.split_whitespace().count()).sum();
                    response.tool_marks.push((self.conversation.tool_events.len(), words));
                }
                self.conversation.push_tool_event(event);
                ctx.transcript_changed(&self.conversation);
                Vec::new()
            }
            Speech::Reply { generation, reply, silent } => {
                let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) else { return Vec::new() };
                response.reply = Some(reply.clone());
                if silent {
                    response.done = true;
                    self.responses.retain(|r| r.generation != generation);
                    let out = self.turns.handle(Input::Silent { generation, at: self.audio.now() });
                    self.after_reply(ctx, reply).await;
                    return out;
                }
                Vec::new()
            }
            Speech::Sentence { generation, text, frames, tts_ms, first } => {
                if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
                    response.sentences.push((text, frames));
                    if first {
                        self.conversation.latency.tts.push(tts_ms);
                    }
                }
                Vec::new()
            }
            Speech::Done { generation } => {
                let Some(index) = self.responses.iter().position(|r| r.generation == generation) else { return Vec::new() };
                self.responses[index].done = true;
                if self.responses[index].played_out {
                    let response = self.responses.remove(index);
                    self.after_reply(ctx, response.reply.unwrap_or_default()).await;
                }
                Vec::new()
            }
            Speech::Failed { generation, error } => {
                if self.responses.iter().any(|r| r.generation == generation) {
                    self.end(ctx, error).await;
                }
                Vec::new()
            }
        }
    }

    async fn decide(&mut self, decision: Decision, ctx: &Context) {
        if self.ended {
            return;
        }
        let now = self.audio.now();
        match decision {
            Decision::UserTurnStarted { turn, at } => {
                // The caller spoke first after all: no begin on silence.
                self.begin_after = None;
                tracing::debug!(turn, ?at, "agent.user_turn_started");
            }
            Decision::Transcribe { request, from, to, speculative } => {
                if speculative && ctx.stt.is_busy() {
                    // No decoder is free: the turn asks again once it has ended.
                    tracing::debug!(request, "agent.speculative_decode_skipped");
                    let more = self.turns.handle(Input::TranscribeSkipped { request });
                    debug_assert!(more.is_empty(), "a skip decides nothing by itself");
                    return;
                }
                let audio = self.audio.span(from, to);
                let stt = ctx.stt.clone();
                let results = ctx.transcripts.clone();
                let deadline = self.settings.deadlines.stt;
                tracing::debug!(request, speculative, seconds = audio.len() as f64 / 8000.0, "agent.transcribe");
                tokio::spawn(async move {
                    let started = Instant::now();
                    let name = stt.name().to_owned();
                    let result = with_deadline(&name, deadline, stt.transcribe(audio)).await;
                    let _ = results.send((request, result, millis(started.elapsed()))).await;
                });
            }
            Decision::Respond { turn: _, text, first_speech, last_speech } => {
                self.forget_interrupted();
                // A reply still being thought of answers a conversation that has moved on.
                if let Some(newest) = self.responses.iter().filter(|r| !r.started).map(|r| r.generation).max() {
                    tracing::info!(generation = newest, "agent.response_superseded");
                    ctx.mouth.cancel_through(newest);
                    for response in self.responses.iter().filter(|r| !r.started) {
                        response.cancel.cancel();
                    }
                    self.responses.retain(|r| r.started);
                }
                self.conversation.utterances.push(Utterance::spread(Role::User, &text, first_speech, last_speech));
                ctx.transcript_changed(&self.conversation);
                let asr_ms = self.asr_ms.values().copied().max().unwrap_or(0);
                self.asr_ms.clear();
                self.start_response(ctx, Cause::UserTurn { last_speech, asr_ms }, EngineInput::UserTurn { text }, now);
            }
            Decision::BargeIn { generation, at } => {
                tracing::info!(generation, ?at, "agent.barge_in");
                ctx.mouth.cancel_through(generation);
                for response in self.responses.iter().filter(|r| r.generation <= generation) {
                    response.cancel.cancel();
                }
                if let Ok(mut engine) = ctx.engine.try_lock() {
                    engine.cancelled();
                }
            }
            Decision::Resume { generation } => {
                let rest = self.responses.iter().find(|r| r.generation == generation).map(unplayed_text);
                self.forget_interrupted();
                if let Some(rest) = rest.filter(|text| !text.is_empty()) {
                    tracing::info!(generation, "agent.resume_after_false_interruption");
                    self.speak_text(ctx, Cause::Other, Reply { text: rest, ..Reply::default() }, now);
                }
            }
            Decision::NoWords { turn } => tracing::info!(turn, "agent.turn_without_words"),
            Decision::Dtmf { digit, at: _ } => self.start_response(ctx, Cause::Other, EngineInput::Dtmf { digit }, now),
            Decision::Reminder { count } => self.start_response(ctx, Cause::Other, EngineInput::Reminder { count }, now),
            Decision::Stuck { turn } => {
                self.conversation.n_stuck_turns += 1;
                self.stuck_in_a_row += 1;
                for response in &self.responses {
                    response.cancel.cancel();
                    ctx.mouth.cancel_through(response.generation);
                }
                self.responses.clear();
                if self.stuck_in_a_row > 1 {
                    tracing::error!(turn, "agent.stuck_turn: second in a row, ending the call");
                    let error = ProviderError::failed("agent", "no answer to two turns in a row");
                    self.end(ctx, AgentEnd::Engine(error)).await;
                } else {
                    tracing::warn!(turn, "agent.stuck_turn: reprompting");
                    self.speak_text(ctx, Cause::Reprompt, Reply { text: REPROMPT.into(), ..Reply::default() }, now);
                }
            }
            Decision::EndForInactivity => self.end(ctx, AgentEnd::Inactivity).await,
        }
    }

    async fn on_engine_event(&mut self, event: EngineEvent, ctx: &Context) {
        match event {
            EngineEvent::Interrupt => {
                tracing::info!("agent.engine_interrupt");
                if let Some(newest) = self.responses.iter().map(|r| r.generation).max() {
                    ctx.mouth.cancel_through(newest);
                }
                for response in &self.responses {
                    response.cancel.cancel();
                }
                self.responses.clear();
                let now = self.audio.now();
                self.start_response(ctx, Cause::Other, EngineInput::Interrupt, now);
            }
            EngineEvent::UpdateTurns(update) => {
                tracing::info!(?update, "agent.turns_updated");
                self.settings.turn = self.settings.turn.updated(update);
                self.turns.set_config(self.settings.turn.clone());
            }
            EngineEvent::End(None) => self.end(ctx, AgentEnd::Hangup).await,
            EngineEvent::End(Some(error)) => self.end(ctx, AgentEnd::Engine(error)).await,
        }
    }

    fn forget_interrupted(&mut self) {
        self.responses.retain(|r| !r.cancel.is_cancelled());
    }

    fn new_generation(&mut self, cause: Cause, now: Duration) -> (Generation, CancellationToken) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let cancel = CancellationToken::new();
        self.responses.push(Response {
            generation,
            cause,
            cancel: cancel.clone(),
            reply: None,
            sentences: Vec::new(),
            done: false,
            played_out: false,
            started: false,
            tool_marks: Vec::new(),
        });
        self.turns.handle(Input::Responding { generation, at: now });
        (generation, cancel)
    }

    /// Asks the engine in a task of its own, and speaks its reply as it comes in another.
    fn start_response(&mut self, ctx: &Context, cause: Cause, input: EngineInput, now: Duration) {
        let (generation, cancel) = self.new_generation(cause, now);
        let (parts, parts_rx) = mpsc::unbounded_channel();
        let request = Request { input, history: self.conversation.clone(), parts };
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let engine = ctx.engine.clone();
        // The engine stops with the reply: on a barge-in, or when its speaker gives up.
        let stop = cancel.child_token();
        let guard = stop.clone().drop_guard();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                result = async {
                    let mut engine = engine.lock().await;
                    let name = engine.name().to_owned();
                    with_deadline(&name, MAX_RESPONSE, engine.respond(request)).await
                } => {
                    let _ = done.send(result);
                }
            }
        });
        let voice = self.voice(ctx);
        let (mouth, speech, first_deadline) = (ctx.mouth.clone(), ctx.speech.clone(), self.settings.deadlines.engine);
        tokio::spawn(async move {
            let _guard = guard;
            speak_stream(generation, parts_rx, done_rx, first_deadline, Instant::now(), voice, mouth, speech, cancel).await;
        });
    }

    fn voice(&self, ctx: &Context) -> Voice {
        Voice {
            tts: ctx.tts.clone(),
            speed: self.settings.voice_speed,
            volume: self.settings.volume,
            deadline: self.settings.deadlines.tts,
        }
    }

    /// Speaks `reply` without asking the engine (resume, reprompt).
    fn speak_text(&mut self, ctx: &Context, cause: Cause, reply: Reply, now: Duration) {
        let (generation, cancel) = self.new_generation(cause, now);
        if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
            response.reply = Some(reply.clone());
        }
        let voice = self.voice(ctx);
        tokio::spawn(speak(generation, &reply.text.clone(), voice, ctx.mouth.clone(), ctx.speech.clone(), cancel));
    }

    async fn end(&mut self, ctx: &Context, end: AgentEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        tracing::info!(?end, "agent.end");
        let _ = ctx.events.send(AgentEvent::End(end)).await;
    }
}

/// The caller's recent audio, addressable by media-clock time.
#[derive(Default)]
struct CallerAudio {
    samples: VecDeque<i16>,
    /// Media-clock time of `samples[0]`.
    start: Duration,
    /// End of the last frame.
    end: Duration,
}

impl CallerAudio {
    fn push(&mut self, at: Duration, frame: &[i16]) {
        if self.samples.is_empty() {
            self.start = at;
        }
        self.samples.extend(frame);
        self.end = at + Duration::from_millis(20);
        let keep = (KEPT_AUDIO.as_millis() as usize) * 8;
        while self.samples.len() > keep {
            let drop = self.samples.len() - keep;
            self.samples.drain(..drop);
            self.start += Duration::from_micros(drop as u64 * 1_000_000 / SAMPLE_RATE);
        }
    }

    fn now(&self) -> Duration {
        self.end
    }

    fn span(&self, from: Duration, to: Duration) -> Vec<i16> {
        let index = |t: Duration| (t.saturating_sub(self.start).as_micros() as u64 * SAMPLE_RATE / 1_000_000) as usize;
        let (a, b) = (index(from).min(self.samples.len()), index(to).min(self.samples.len()));
        self.samples.range(a..b.max(a)).copied().collect()
    }
}

mod reply;
#[cfg(test)]
mod tests;
