//! Turn-taking: who holds the floor, when the caller's turn ends, when the agent is
//! interrupted, and when silence means a reminder or the end of the call.
//!
//! A sans-I/O state machine: [`Turns::handle`] takes one [`Input`] stamped with the media
//! clock (time since the call was answered) and returns the [`Decision`]s it implies. It
//! never reads a clock, sleeps or spawns; the call's agent task feeds it VAD probabilities,
//! transcripts and playout reports, and ticks it every 20 ms. Tests drive it with virtual
//! time.
//!
//! Conventions the tests pin:
//! - A caller's turn ends after `end_of_turn_silence` without speech; its e2e latency starts
//!   at the last chunk classified as speech, not at that decision.
//! - While the agent's audio is going out, caller speech lasting `barge_in_after` interrupts
//!   it (200 ms at `interruption_sensitivity` 1, longer as sensitivity falls, never at 0).
//! - A barge-in whose turn carries no words is a false interruption: the agent resumes.
//! - The inactivity clock counts from the end of the last speech by either side.
//! - Every caller turn with words is answered (playout starts) within `response_deadline`,
//!   else [`Decision::Stuck`] tells the task to recover: a turn never stays unanswered.

use std::time::Duration;

/// Probability at or above which a VAD chunk is speech (onset).
const SPEECH_ON: f32 = 0.5;
/// Below this a chunk in the middle of speech is silence (hysteresis: 0.35..0.5 keeps the
/// current state, so breathing in a word does not split it).
const SPEECH_OFF: f32 = 0.35;
/// Speech before a turn counts as a turn: shorter blips (a click, a cough's edge) do not.
const MIN_TURN_SPEECH: Duration = Duration::from_millis(90);
/// Silence after which the caller's audio so far is transcribed speculatively, so the text
/// is ready when the end of the turn is confirmed (Whisper does not stream).
const SPECULATE_AFTER: Duration = Duration::from_millis(150);
/// Audio kept before the first speech chunk and after the last one when transcribing.
pub const PRE_ROLL: Duration = Duration::from_millis(250);
pub const POST_ROLL: Duration = Duration::from_millis(200);

/// Who speaks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    Agent,
    User,
}

/// The timing settings of one call, from the agent's fields.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// Silence that ends the caller's turn.
    pub end_of_turn_silence: Duration,
    /// Caller speech over the agent that interrupts it; `None`: the agent is never interrupted.
    pub barge_in_after: Option<Duration>,
    /// Silence after which the agent reminds the caller; `None`: never.
    pub reminder_after: Option<Duration>,
    pub reminder_max_count: u32,
    /// Silence after which the call ends with `inactivity`.
    pub end_call_after_silence: Duration,
    /// How long an answered turn may wait for the agent's first audio.
    pub response_deadline: Duration,
}

impl TurnConfig {
    /// From Retell's agent fields: `responsiveness` and `interruption_sensitivity` in 0..=1
    /// (clamped; 1 is the default for both), `reminder_trigger_ms`, `reminder_max_count`,
    /// `end_call_after_silence_ms`.
    pub fn from_agent(
        responsiveness: f64,
        interruption_sensitivity: f64,
        reminder_trigger_ms: Option<u64>,
        reminder_max_count: u32,
        end_call_after_silence_ms: u64,
    ) -> Self {
        let responsiveness = clamp_unit(responsiveness);
        let sensitivity = clamp_unit(interruption_sensitivity);
        // 450 ms at full responsiveness (Silero's own hangover makes it ~500 ms in all),
        // up to 1.5 s at 0.
        let end_of_turn_ms = 450.0 + (1.0 - responsiveness) * 1050.0;
        // 200 ms at 1, 400 ms at 0.5, 2 s at 0.1; never at 0.
        let barge_in_after = (sensitivity > 0.0).then(|| Duration::from_millis((200.0 / sensitivity).min(2000.0) as u64));
        Self {
            end_of_turn_silence: Duration::from_millis(end_of_turn_ms as u64),
            barge_in_after,
            reminder_after: reminder_trigger_ms.filter(|ms| *ms > 0).map(Duration::from_millis),
            reminder_max_count,
            end_call_after_silence: Duration::from_millis(end_call_after_silence_ms.max(1)),
            response_deadline: Duration::from_secs(8),
        }
    }
}

/// Retell's `update_agent` from a custom LLM: the turn-taking fields it may change mid-call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TurnUpdate {
    pub responsiveness: Option<f64>,
    pub interruption_sensitivity: Option<f64>,
    pub reminder_trigger_ms: Option<u64>,
    pub reminder_max_count: Option<u32>,
}

impl TurnConfig {
    /// This configuration with `update`'s fields applied, by the rules of [`Self::from_agent`].
    pub fn updated(&self, update: TurnUpdate) -> Self {
        let mut base = Self::from_agent(
            update.responsiveness.unwrap_or(1.0),
            update.interruption_sensitivity.unwrap_or(1.0),
            update.reminder_trigger_ms,
            update.reminder_max_count.unwrap_or(self.reminder_max_count),
            self.end_call_after_silence.as_millis() as u64,
        );
        if update.responsiveness.is_none() {
            base.end_of_turn_silence = self.end_of_turn_silence;
        }
        if update.interruption_sensitivity.is_none() {
            base.barge_in_after = self.barge_in_after;
        }
        if update.reminder_trigger_ms.is_none() {
            base.reminder_after = self.reminder_after;
        }
        base.response_deadline = self.response_deadline;
        base
    }
}

fn clamp_unit(value: f64) -> f64 {
    if value.is_nan() { 1.0 } else { value.clamp(0.0, 1.0) }
}

/// Identifies one caller turn.
pub type TurnId = u64;

/// Identifies one agent response; its audio carries the number, and a barge-in cancels it.
pub type Generation = u64;

/// What the agent task tells the state machine. Every time is media-clock time since answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The VAD's speech probability for the chunk that began at `from` and ended at `at`.
    Vad { from: Duration, at: Duration, probability: f32 },
    /// The text of a [`Decision::Transcribe`] request (empty: no words).
    Transcript { request: u64, text: String },
    /// A speculative request was not run (no decoder free): the turn's text will be asked
    /// for when the turn ends, not before.
    TranscribeSkipped { request: u64 },
    /// The agent began a response (before any audio): the floor is the agent's.
    Responding { generation: Generation, at: Duration },
    /// The first frame of `generation` was sent.
    PlayoutStarted { generation: Generation, at: Duration },
    /// `generation` has no more audio: all sent (or dropped) by `at`.
    PlayoutEnded { generation: Generation, at: Duration },
    /// The response ended without audio (the engine had nothing to say).
    Silent { generation: Generation, at: Duration },
    /// A DTMF digit from the caller.
    Dtmf { at: Duration, digit: char },
    /// Time passed.
    Tick { now: Duration },
}

/// What the agent task should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The caller started a turn.
    UserTurnStarted { turn: TurnId, at: Duration },
    /// Transcribe the caller's audio from `from` to `to`; answer with [`Input::Transcript`].
    Transcribe { request: u64, from: Duration, to: Duration, speculative: bool },
    /// The caller's turn ended with these words: respond. `last_speech` is the end of the
    /// caller's last speech chunk, where e2e latency starts.
    Respond { turn: TurnId, text: String, first_speech: Duration, last_speech: Duration },
    /// Stop `generation` now: its unsent audio is dropped, engine and TTS cancelled.
    BargeIn { generation: Generation, at: Duration },
    /// The interruption of `generation` carried no words: speak the rest of it.
    Resume { generation: Generation },
    /// A caller turn carried no words and interrupted nothing: nothing to answer.
    NoWords { turn: TurnId },
    /// A DTMF digit for the response engine.
    Dtmf { digit: char, at: Duration },
    /// Nobody spoke for `reminder_after`: prompt the caller (reminder `count`, from 1).
    Reminder { count: u32 },
    /// Turn `turn` was not answered in time: recover (reprompt, or end the call).
    Stuck { turn: TurnId },
    /// Nobody spoke for `end_call_after_silence`.
    EndForInactivity,
}

/// The turn-taking state of one call.
#[derive(Debug)]
pub struct Turns {
    config: TurnConfig,
    // (set_config below changes it mid-call.)
    /// Hysteresis state of the VAD.
    in_speech: bool,
    /// Start of the current run of speech chunks, if in speech.
    speech_run_start: Option<Duration>,
    /// The caller's turn being spoken, if any.
    user: Option<UserTurn>,
    /// The agent's current response, if any.
    agent: Option<AgentResponse>,
    /// A generation cut by a barge-in whose turn has not yet shown words.
    interrupted: Option<Generation>,
    /// A caller turn waiting for the agent's first audio (stuck-turn guard): turn and since.
    awaiting_response: Option<(TurnId, Duration)>,
    /// End of the last speech by either side (the inactivity clock).
    last_activity: Duration,
    /// Reminders since the caller last spoke.
    reminders_sent: u32,
    next_turn: TurnId,
    next_request: u64,
    ended: bool,
}

#[derive(Debug)]
struct UserTurn {
    id: TurnId,
    first_speech: Duration,
    last_speech: Duration,
    /// Whether the turn has reached `MIN_TURN_SPEECH` (before that it may be a blip).
    started: bool,
    /// The latest transcription asked for: request id and the `last_speech` it covers.
    requested: Option<(u64, Duration)>,
    /// A transcript received for `last_speech` as it then was.
    transcript: Option<(Duration, String)>,
    /// The end of the turn was decided; waiting for the final transcript.
    closing: bool,
    /// A speculative decode was skipped: ask only once the turn has ended.
    no_speculation: bool,
}

#[derive(Debug)]
struct AgentResponse {
    generation: Generation,
    /// Audio is going out (between PlayoutStarted and PlayoutEnded).
    playing: bool,
}

impl Turns {
    /// Replaces the timing settings mid-call (a custom LLM's `update_agent`).
    pub fn set_config(&mut self, config: TurnConfig) {
        self.config = config;
    }

    pub fn new(config: TurnConfig) -> Self {
        Self {
            config,
            in_speech: false,
            speech_run_start: None,
            user: None,
            agent: None,
            interrupted: None,
            awaiting_response: None,
            last_activity: Duration::ZERO,
            reminders_sent: 0,
            next_turn: 1,
            next_request: 1,
            ended: false,
        }
    }

    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    pub fn handle(&mut self, input: Input) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match input {
            Input::Vad { from, at, probability } => self.on_vad(from, at, probability, &mut out),
            Input::Transcript { request, text } => self.on_transcript(request, text, &mut out),
            Input::TranscribeSkipped { request } => {
                if let Some(turn) = self.user.as_mut()
                    && turn.requested.is_some_and(|(asked, _)| asked == request)
                {
                    turn.requested = None;
                    turn.no_speculation = true;
                }
            }
            Input::Responding { generation, at: _ } => {
                self.agent = Some(AgentResponse { generation, playing: false });
            }
            Input::PlayoutStarted { generation, at } => {
                if let Some(agent) = self.agent.as_mut().filter(|a| a.generation == generation) {
                    agent.playing = true;
                    self.awaiting_response = None;
                    self.last_activity = self.last_activity.max(at);
                }
            }
            Input::PlayoutEnded { generation, at } => {
                if self.agent.as_ref().is_some_and(|a| a.generation == generation) {
                    self.agent = None;
                    self.awaiting_response = None;
                    self.last_activity = self.last_activity.max(at);
                }
            }
            // No audio went out: the floor is free, and no speech moved the inactivity clock.
            Input::Silent { generation, at: _ } => {
                if self.agent.as_ref().is_some_and(|a| a.generation == generation) {
                    self.agent = None;
                    self.awaiting_response = None;
                }
            }
            Input::Dtmf { at, digit } => {
                self.last_activity = self.last_activity.max(at);
                self.reminders_sent = 0;
                out.push(Decision::Dtmf { digit, at });
            }
            Input::Tick { now } => self.on_tick(now, &mut out),
        }
        out
    }

    fn on_vad(&mut self, from: Duration, at: Duration, probability: f32, out: &mut Vec<Decision>) {
        let speech = if self.in_speech { probability >= SPEECH_OFF } else { probability >= SPEECH_ON };
        self.in_speech = speech;
        if !speech {
            self.speech_run_start = None;
            self.on_tick(at, out);
            return;
        }
        // A chunk of speech: the run of speech began when its first chunk began, so a run
        // has lasted `barge_in_after` when that much speech has been heard.
        let run_start = *self.speech_run_start.get_or_insert(from.min(at));
        if self.user.is_none() {
            let id = self.next_turn;
            self.next_turn += 1;
            self.user = Some(UserTurn {
                id,
                first_speech: run_start,
                last_speech: at,
                started: false,
                requested: None,
                transcript: None,
                closing: false,
                no_speculation: false,
            });
        }
        let Some(turn) = self.user.as_mut() else { return };
        turn.last_speech = at;
        turn.closing = false;
        let run = at.saturating_sub(run_start);
        if !turn.started && run >= MIN_TURN_SPEECH {
            turn.started = true;
            out.push(Decision::UserTurnStarted { turn: turn.id, at: turn.first_speech });
        }
        if turn.started {
            self.last_activity = self.last_activity.max(at);
            self.reminders_sent = 0;
        }
        // Over the agent: interrupt once the speech has lasted long enough.
        if let Some(agent) = &self.agent {
            let cuts = match self.config.barge_in_after {
                Some(after) => run >= after && (agent.playing || turn.started),
                None => false,
            };
            if cuts {
                let generation = agent.generation;
                self.agent = None;
                self.awaiting_response = None;
                self.interrupted = Some(generation);
                out.push(Decision::BargeIn { generation, at });
            }
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<Decision>) {
        self.check_turn_end(now, out);
        if let Some((turn, since)) = self.awaiting_response
            && now.saturating_sub(since) >= self.config.response_deadline
        {
            self.awaiting_response = None;
            // Whatever the engine was doing, it has the floor no more.
            self.agent = None;
            out.push(Decision::Stuck { turn });
            // The recovery is agent speech; silence counts from here.
            self.last_activity = self.last_activity.max(now);
        }
        let quiet = self.user.is_none() && self.agent.is_none() && self.awaiting_response.is_none();
        if !quiet {
            return;
        }
        let silence = now.saturating_sub(self.last_activity);
        if silence >= self.config.end_call_after_silence {
            self.ended = true;
            out.push(Decision::EndForInactivity);
            return;
        }
        if let Some(after) = self.config.reminder_after
            && self.reminders_sent < self.config.reminder_max_count
            && silence >= after
        {
            self.reminders_sent += 1;
            // The reminder is agent speech: the next one counts from here even before its
            // audio is reported.
            self.last_activity = now;
            out.push(Decision::Reminder { count: self.reminders_sent });
        }
    }

    /// Speculative transcription after a short pause, and the end of the turn after the
    /// full silence.
    fn check_turn_end(&mut self, now: Duration, out: &mut Vec<Decision>) {
        if self.in_speech {
            return;
        }
        let Some(turn) = self.user.as_mut() else { return };
        let silence = now.saturating_sub(turn.last_speech);
        if !turn.started {
            // A blip that never became a turn.
            if silence >= SPECULATE_AFTER {
                self.user = None;
            }
            return;
        }
        let covered = turn.requested.is_some_and(|(_, upto)| upto == turn.last_speech);
        let wait = if turn.no_speculation { self.config.end_of_turn_silence } else { SPECULATE_AFTER };
        if silence >= wait && !covered {
            let request = self.next_request;
            self.next_request += 1;
            turn.requested = Some((request, turn.last_speech));
            out.push(Decision::Transcribe {
                request,
                from: turn.first_speech.saturating_sub(PRE_ROLL),
                to: turn.last_speech + POST_ROLL,
                speculative: silence < self.config.end_of_turn_silence,
            });
        }
        if silence >= self.config.end_of_turn_silence && !turn.closing {
            turn.closing = true;
            self.try_close_turn(out);
        }
    }

    fn on_transcript(&mut self, request: u64, text: String, out: &mut Vec<Decision>) {
        let Some(turn) = self.user.as_mut() else { return };
        match turn.requested {
            Some((asked, upto)) if asked == request => turn.transcript = Some((upto, text)),
            // An older request: the turn has grown since; its text is stale.
            _ => return,
        }
        if turn.closing {
            self.try_close_turn(out);
        }
    }

    /// Ends the closing turn if its transcript covers all of its speech.
    fn try_close_turn(&mut self, out: &mut Vec<Decision>) {
        let Some(turn) = self.user.as_ref() else { return };
        let ready = turn.transcript.as_ref().is_some_and(|(upto, _)| *upto == turn.last_speech);
        if !ready {
            return;
        }
        let turn = self.user.take().expect("checked above");
        let text = turn.transcript.map(|(_, text)| text).unwrap_or_default();
        let interrupted = self.interrupted.take();
        if !has_words(&text) {
            match interrupted {
                Some(generation) => out.push(Decision::Resume { generation }),
                None => out.push(Decision::NoWords { turn: turn.id }),
            }
            return;
        }
        self.awaiting_response = Some((turn.id, turn.last_speech));
        out.push(Decision::Respond { turn: turn.id, text, first_speech: turn.first_speech, last_speech: turn.last_speech });
    }
}

/// Whether a transcript holds a word (Whisper writes "." or "[BLANK_AUDIO]" for noise).
pub fn has_words(text: &str) -> bool {
    let text = text.trim();
    if text.starts_with('[') && text.ends_with(']') || text.starts_with('(') && text.ends_with(')') {
        return false;
    }
    text.chars().any(char::is_alphanumeric)
}

#[cfg(test)]
mod tests;
