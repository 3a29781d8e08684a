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

use crate::conversation::{Conversation, Role, Utterance, millis};
use crate::provider::{BoxFuture, EngineInput, ProviderError, Reply, ResponseEngine, SpeechToText, TextToSpeech, Vad, with_deadline};
use crate::turn::{Decision, Generation, Input, Speaker, TurnConfig, Turns};
use reply::{Voice, played_text, speak, unplayed_text};

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
    /// Speech-to-text failed or missed its deadline: `error_asr`.
    SpeechToText(ProviderError),
    /// Text-to-speech failed: `error_retell`.
    TextToSpeech(ProviderError),
    /// The response engine failed, or twice left a turn unanswered: `error_retell` (the LLM
    /// websocket reasons once such engines exist).
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
    /// The reply's text (an engine's answer arrived; empty: nothing to say).
    Reply {
        generation: Generation,
        reply: Reply,
        engine_ms: u32,
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
    let Providers { mut vad, stt, tts, engine } = providers;
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
    };
    let (speech_tx, mut speech) = mpsc::channel::<Speech>(64);
    let (transcripts_tx, mut transcripts) = mpsc::channel::<(u64, Result<String, ProviderError>, u32)>(16);
    let ctx = Context { stt, tts, engine, mouth, speech: speech_tx, transcripts: transcripts_tx, events: events.clone() };

    if agent.settings.start_speaker == Speaker::Agent {
        agent.start_response(&ctx, Cause::Begin, EngineInput::Begin, Duration::ZERO);
    }
    while !agent.ended {
        let decisions = tokio::select! {
            () = cancel.cancelled() => break,
            input = heard.recv() => match input {
                None => break,
                Some(input) => agent.on_heard(input, vad.as_mut(), &ctx).await,
            },
            Some(progress) = speech.recv() => agent.on_speech(progress, &ctx).await,
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
        for decision in decisions {
            agent.decide(decision, &ctx).await;
        }
    }
    for response in &agent.responses {
        response.cancel.cancel();
    }
    agent.conversation
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
                    out.extend(self.turns.handle(Input::Vad { from, at: chunk_end, probability }));
                }
                out.extend(self.turns.handle(Input::Tick { now: end }));
                out
            }
            Heard::Dtmf { at, digit } => self.turns.handle(Input::Dtmf { at, digit }),
            Heard::PlayoutStarted { generation, at } => {
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
            self.conversation.utterances.push(Utterance::spread(Role::Agent, &text, first_at, end));
            let _ = ctx.events.try_send(AgentEvent::TranscriptUpdated(Box::new(self.conversation.clone())));
        }
        if cancelled || !self.responses[index].done {
            // Cut by a barge-in: kept for a possible resume until the caller's turn ends.
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
        if reply.end_call {
            self.end(ctx, AgentEnd::Hangup).await;
        }
    }

    async fn on_speech(&mut self, progress: Speech, ctx: &Context) -> Vec<Decision> {
        match progress {
            Speech::Reply { generation, reply, engine_ms } => {
                let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) else { return Vec::new() };
                self.conversation.latency.llm.push(engine_ms);
                let silent = reply.text.trim().is_empty();
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
                if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
                    response.done = true;
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
            Decision::UserTurnStarted { turn, at } => tracing::debug!(turn, ?at, "agent.user_turn_started"),
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
                self.conversation.utterances.push(Utterance::spread(Role::User, &text, first_speech, last_speech));
                let _ = ctx.events.try_send(AgentEvent::TranscriptUpdated(Box::new(self.conversation.clone())));
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

    fn forget_interrupted(&mut self) {
        self.responses.retain(|r| !r.cancel.is_cancelled());
    }

    fn new_generation(&mut self, cause: Cause, now: Duration) -> (Generation, CancellationToken) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let cancel = CancellationToken::new();
        self.responses.push(Response { generation, cause, cancel: cancel.clone(), reply: None, sentences: Vec::new(), done: false });
        self.turns.handle(Input::Responding { generation, at: now });
        (generation, cancel)
    }

    /// Asks the engine, then speaks its reply, in a task of its own.
    fn start_response(&mut self, ctx: &Context, cause: Cause, input: EngineInput, now: Duration) {
        let (generation, cancel) = self.new_generation(cause, now);
        let engine = ctx.engine.clone();
        let speech = ctx.speech.clone();
        let tts = ctx.tts.clone();
        let mouth = ctx.mouth.clone();
        let deadlines = self.settings.deadlines;
        let (speed, volume) = (self.settings.voice_speed, self.settings.volume);
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = tokio::select! {
                () = cancel.cancelled() => return,
                reply = async {
                    let mut engine = engine.lock().await;
                    let name = engine.name().to_owned();
                    with_deadline(&name, deadlines.engine, engine.respond(input)).await
                } => reply,
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    let _ = speech.send(Speech::Failed { generation, error: AgentEnd::Engine(error) }).await;
                    return;
                }
            };
            let text = reply.text.clone();
            let _ = speech.send(Speech::Reply { generation, reply, engine_ms: millis(started.elapsed()) }).await;
            if !text.trim().is_empty() {
                speak(generation, &text, Voice { tts, speed, volume, deadline: deadlines.tts }, mouth, speech, cancel).await;
            }
        });
    }

    /// Speaks `reply` without asking the engine (resume, reprompt).
    fn speak_text(&mut self, ctx: &Context, cause: Cause, reply: Reply, now: Duration) {
        let (generation, cancel) = self.new_generation(cause, now);
        if let Some(response) = self.responses.iter_mut().find(|r| r.generation == generation) {
            response.reply = Some(reply.clone());
        }
        let voice = Voice {
            tts: ctx.tts.clone(),
            speed: self.settings.voice_speed,
            volume: self.settings.volume,
            deadline: self.settings.deadlines.tts,
        };
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
