//! The simulator: a simulated callee (a persona) on a real SIP/RTP leg over loopback, with
//! its own voice (Piper) and ears (Whisper), so an agent can be tried before it goes live.
//!
//! A persona is data ([`Persona`]): lines to say and when (after the agent stops talking,
//! at a time from the answer, or over the agent to barge in), DTMF to press, and when to
//! hang up. The persona answers one INVITE on its own SIP endpoint, plays its lines into a
//! media session, and reports what it heard (each agent utterance, transcribed) and the
//! timings at its side of the wire ([`PersonaReport`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::offline::{OfflineSpeech, WhisperWorkers};
use agent::provider::{SpeechToText, TextToSpeech};
use media::session::{MediaChannels, SessionConfig};
use media::{AgentFrame, CallerFrame, MediaSession, PlayoutGate, RtpPorts, sdp};
use serde::{Deserialize, Serialize};
use sip::dialog::Dialog;
use sip::endpoint::{EndpointConfig, TcpLimits, TransportKind, new_token};
use sip::{Endpoint, Method, Response};
use tokio::sync::mpsc;

/// Agent audio louder than this (RMS of a 20 ms frame) is speech to the persona's ear.
const SPEECH_RMS: f64 = 300.0;
/// Silence that ends an agent utterance for the persona.
const UTTERANCE_GAP: Duration = Duration::from_millis(700);

/// What a simulated callee does.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    pub lines: Vec<Line>,
    /// Hang up this long after the last line if the agent has not (default 10 s).
    #[serde(default)]
    pub hang_up_after_ms: Option<u64>,
}

/// One thing the persona says (or presses), and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Words to say (spoken with the offline Piper voice).
    #[serde(default)]
    pub say: Option<String>,
    /// DTMF digits to press (RFC 4733).
    #[serde(default)]
    pub press: Option<String>,
    /// A beep of this many ms (1 kHz) after the words, as answering machines play.
    #[serde(default)]
    pub beep_ms: Option<u64>,
    #[serde(default)]
    pub when: When,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum When {
    /// Once the agent has spoken and then been quiet for `pause_ms` (default 600).
    #[default]
    AfterAgentStops,
    /// At this time from the answer.
    At { ms: u64 },
    /// This long after the agent starts its next utterance: over the agent, a barge-in.
    OverAgent { after_ms: u64 },
}

/// Bounds on a persona from the API: it is a tenant's data, run on this host.
const MAX_LINES: usize = 50;
const MAX_SAY_CHARS: usize = 500;
const MAX_PRESS_DIGITS: usize = 20;
const MAX_NAME_CHARS: usize = 100;
const MAX_BEEP_MS: u64 = 5_000;
/// The longest wait a persona may ask for (an hour).
const MAX_WAIT_MS: u64 = 3_600_000;

impl Persona {
    /// Checks a persona before it runs: `Err((field, problem))` names the field (under
    /// `persona.`) at fault.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |field: String, problem: &str| Err((format!("persona.{field}"), problem.to_owned()));
        if self.name.chars().count() > MAX_NAME_CHARS {
            return fail("name".into(), "must be at most 100 characters");
        }
        if self.lines.len() > MAX_LINES {
            return fail("lines".into(), "must hold at most 50 lines");
        }
        if self.hang_up_after_ms.is_some_and(|ms| ms > MAX_WAIT_MS) {
            return fail("hang_up_after_ms".into(), "must be at most 3600000");
        }
        for (i, line) in self.lines.iter().enumerate() {
            let say = line.say.as_deref().map(str::trim).filter(|s| !s.is_empty());
            let press = line.press.as_deref().filter(|s| !s.is_empty());
            if say.is_none() && press.is_none() && line.beep_ms.is_none() {
                return fail(format!("lines[{i}]"), "must say words, press digits or beep");
            }
            if line.beep_ms.is_some_and(|ms| !(1..=MAX_BEEP_MS).contains(&ms)) {
                return fail(format!("lines[{i}].beep_ms"), "must be between 1 and 5000");
            }
            if say.is_some_and(|s| s.chars().count() > MAX_SAY_CHARS) {
                return fail(format!("lines[{i}].say"), "must be at most 500 characters");
            }
            if let Some(press) = press
                && (press.len() > MAX_PRESS_DIGITS || !press.chars().all(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')))
            {
                return fail(format!("lines[{i}].press"), "must be at most 20 DTMF digits (0-9, *, #, A-D)");
            }
            let wait = match line.when {
                When::AfterAgentStops => 0,
                When::At { ms } => ms,
                When::OverAgent { after_ms } => after_ms,
            };
            if wait > MAX_WAIT_MS {
                return fail(format!("lines[{i}].when"), "must wait at most 3600000 ms");
            }
        }
        Ok(())
    }
}

/// What the persona measured at its side of the wire.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PersonaReport {
    /// Agent utterances as the persona heard them: start and end (s from answer) and text.
    pub heard: Vec<Heard>,
    /// The persona's lines: when their voice started and ended (s from answer: its first and
    /// last loud frame sent, the synthesiser's silence around them left out).
    pub said: Vec<Said>,
    /// Who hung up: "agent" or "persona".
    pub ended_by: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heard {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// The audio, until it is transcribed.
    #[serde(skip, default)]
    audio_for_ears: Vec<i16>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Said {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// From the persona's last voice packet to the agent's first voice packet after it.
    pub agent_answered_after_ms: Option<u64>,
}

/// A persona waiting for its call.
pub struct Callee {
    endpoint: Endpoint,
    incoming: mpsc::Receiver<sip::Incoming>,
}

impl Callee {
    /// Binds the persona's SIP endpoint on a free loopback port.
    pub async fn bind() -> anyhow::Result<Self> {
        let config = EndpointConfig { bind: "127.0.0.1:0".parse()?, tcp: TcpLimits::recommended() };
        let (endpoint, incoming) = Endpoint::bind(config).await?;
        Ok(Self { endpoint, incoming })
    }

    /// Where the agent's trunk should point.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// Answers the next INVITE and plays `persona`; returns what it heard and when.
    pub async fn run(mut self, persona: &Persona, speech: &OfflineSpeech, ears: Arc<WhisperWorkers>) -> anyhow::Result<PersonaReport> {
        // The voice first, so that timing is the persona's, not the synthesiser's.
        let mut voices = Vec::new();
        for line in &persona.lines {
            let mut voice = match &line.say {
                Some(text) => speech.voice.synthesize(text.clone(), 1.0).await?,
                None => Vec::new(),
            };
            if let Some(ms) = line.beep_ms {
                let start = voice.len();
                voice.extend((0..ms as usize * 8).map(|i| {
                    let t = (start + i) as f64 / 8_000.0;
                    (8_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin()) as i16
                }));
            }
            voices.push(voice);
        }
        let invite = loop {
            let incoming = tokio::time::timeout(Duration::from_secs(60), self.incoming.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no call reached the persona in 60 s"))?
                .ok_or_else(|| anyhow::anyhow!("the persona's endpoint closed"))?;
            if incoming.request.method == Method::Invite {
                break incoming;
            }
        };
        let tx = invite.tx.clone().ok_or_else(|| anyhow::anyhow!("INVITE without a transaction"))?;
        let request = invite.request;
        let socket = RtpPorts::new(40_000..=40_999).bind("127.0.0.1".parse()?).await?;
        let local_media = socket.local_addr()?;
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        let (answer, params) = sdp::answer(&offer, local_media, rand::random::<u32>().into())?;
        let dialog = Dialog::from_uas(&request, &new_token()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut ok = Response::to(&request, 200, "OK");
        ok.headers.set("To", dialog.local.clone());
        ok.headers.push("Contact", format!("<sip:persona@{}>", self.endpoint.local_addr()));
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = answer.into_bytes();
        tx.respond(ok).await;
        let answered = Instant::now();

        let (ear_tx, mut ear) = mpsc::channel::<CallerFrame>(500);
        // Room for the longest line: a line is queued whole when it is due (`try_send`, the
        // loop never waits on the media task), and one that did not fit would be cut short;
        // 50 frames more for the end of the line before, if the media task is behind.
        let longest_line = voices.iter().map(|voice| voice.len().div_ceil(160)).max().unwrap_or(0);
        let (mouth, mouth_rx) = mpsc::channel::<AgentFrame>(longest_line + 50);
        let (dtmf, dtmf_rx) = mpsc::channel(32);
        let (events_tx, mut events) = mpsc::channel(64);
        let channels =
            MediaChannels { to_agent: ear_tx, from_agent: mouth_rx, gate: PlayoutGate::new(), dtmf_out: dtmf_rx, events: events_tx };
        let config = SessionConfig { no_audio_timeout: Duration::from_secs(60), jitter_depth: 1, recording: None };
        let session = MediaSession::start(socket, params, config, channels)?;
        let target = invite.source;

        let mut state = Listening::default();
        let mut report = PersonaReport::default();
        let mut line_index = 0;
        // Until when the line goes out, which of `said` it is, and when its voice ends.
        let mut speaking_until: Option<(Instant, usize, Instant)> = None;
        let mut last_line_end: Option<Instant> = None;
        let hang_up_after = Duration::from_millis(persona.hang_up_after_ms.unwrap_or(10_000));
        let ended_by = loop {
            let now = Instant::now();
            // Finished speaking a line?
            if let Some((until, index, voice_end)) = speaking_until
                && now >= until
            {
                speaking_until = None;
                last_line_end = Some(until);
                report.said[index].end = voice_end.duration_since(answered).as_secs_f64();
            }
            if speaking_until.is_none() && line_index < persona.lines.len() {
                let line = &persona.lines[line_index];
                let due = match &line.when {
                    When::AfterAgentStops => state.agent_spoke_since(last_line_end) && state.quiet_for(now) >= Duration::from_millis(600),
                    When::At { ms } => now.duration_since(answered) >= Duration::from_millis(*ms),
                    When::OverAgent { after_ms } => state.speaking_since().is_some_and(|since| {
                        since > last_line_end.unwrap_or(answered) && now.duration_since(since) >= Duration::from_millis(*after_ms)
                    }),
                };
                if due {
                    let voice = &voices[line_index];
                    for (i, chunk) in voice.chunks(160).enumerate() {
                        let mut samples = [0i16; 160];
                        samples[..chunk.len()].copy_from_slice(chunk);
                        let last = (i + 1) * 160 >= voice.len();
                        let _ = mouth.try_send(AgentFrame { generation: line_index as u64 + 1, samples, last });
                    }
                    for digit in line.press.iter().flat_map(|d| d.chars()) {
                        let _ = dtmf.try_send(digit);
                    }
                    let length = Duration::from_millis((voice.len() / 8) as u64 + 400 * line.press.as_ref().map_or(0, |d| d.len()) as u64);
                    let text = line.say.clone().or_else(|| line.press.as_ref().map(|d| format!("(pressed {d})"))).unwrap_or_default();
                    let (voice_start, voice_end) = match voiced_frames(voice) {
                        Some((first, last)) => (now + FRAME * first as u32, now + FRAME * (last as u32 + 1)),
                        None => (now, now + length),
                    };
                    let start = voice_start.duration_since(answered).as_secs_f64();
                    report.said.push(Said { start, end: start, text, agent_answered_after_ms: None });
                    speaking_until = Some((now + length, report.said.len() - 1, voice_end));
                    line_index += 1;
                }
            }
            if line_index >= persona.lines.len()
                && speaking_until.is_none()
                && last_line_end.is_some_and(|end| now.duration_since(end) >= hang_up_after)
            {
                send_bye(&self.endpoint, dialog.clone(), target).await;
                break "persona";
            }
            tokio::select! {
                frame = ear.recv() => {
                    let Some(frame) = frame else { break "persona" };
                    let at = answered + frame.at;
                    if let Some(utterance) = state.hear(at, &frame.samples) {
                        report.heard.push(utterance.into_heard(answered));
                    }
                }
                incoming = self.incoming.recv() => {
                    let Some(incoming) = incoming else { break "persona" };
                    if incoming.request.method == Method::Bye {
                        if let Some(tx) = incoming.tx {
                            tx.respond(Response::to(&incoming.request, 200, "OK")).await;
                        }
                        break "agent";
                    }
                    if let Some(tx) = incoming.tx {
                        tx.respond(Response::to(&incoming.request, 200, "OK")).await;
                    }
                }
                _ = events.recv() => {}
            }
        };
        session.stop().await;
        if let Some(utterance) = state.flush() {
            report.heard.push(utterance.into_heard(answered));
        }
        // Transcribe what was heard, and time the agent's answers.
        for heard in &mut report.heard {
            heard.text = ears.transcribe(std::mem::take(&mut heard.audio_for_ears)).await.unwrap_or_default();
        }
        for said in &mut report.said {
            if let Some(next) = report.heard.iter().find(|h| h.start >= said.end) {
                said.agent_answered_after_ms = Some(((next.start - said.end) * 1000.0).round() as u64);
            }
        }
        report.ended_by = ended_by.to_owned();
        Ok(report)
    }
}

async fn send_bye(endpoint: &Endpoint, mut dialog: Dialog, target: sip::endpoint::Target) {
    let bye = dialog.request(Method::Bye, endpoint.via(TransportKind::Udp));
    let mut events = endpoint.send_request(bye, target).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
}

/// Audio kept from before an utterance's first loud frame (a word's soft onset; Whisper
/// also drops words that start at the very first sample).
const LEAD_IN_FRAMES: usize = 15;

const FRAME: Duration = Duration::from_millis(20);

fn is_loud(samples: &[i16]) -> bool {
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    rms > SPEECH_RMS
}

/// The first and last loud 20 ms frames of a line's audio, if any is.
fn voiced_frames(audio: &[i16]) -> Option<(usize, usize)> {
    let first = audio.chunks(160).position(is_loud)?;
    let last = audio.chunks(160).rposition(is_loud)?;
    Some((first, last))
}

/// The persona's ear: splits agent audio into utterances by loudness.
#[derive(Default)]
struct Listening {
    current: Option<Utterance>,
    last_loud: Option<Instant>,
    /// The last frames heard, for an utterance's lead-in.
    recent: std::collections::VecDeque<[i16; 160]>,
}

struct Utterance {
    start: Instant,
    end: Instant,
    audio: Vec<i16>,
}

impl Utterance {
    fn into_heard(self, answered: Instant) -> Heard {
        Heard {
            start: self.start.duration_since(answered).as_secs_f64(),
            end: self.end.duration_since(answered).as_secs_f64(),
            text: String::new(),
            audio_for_ears: self.audio,
        }
    }
}

impl Listening {
    fn hear(&mut self, at: Instant, samples: &[i16; 160]) -> Option<Utterance> {
        let loud = is_loud(samples);
        if loud {
            self.last_loud = Some(at);
            let recent = &self.recent;
            let utterance =
                self.current.get_or_insert_with(|| Utterance { start: at, end: at, audio: recent.iter().flatten().copied().collect() });
            utterance.end = at + Duration::from_millis(20);
        }
        self.recent.push_back(*samples);
        if self.recent.len() > LEAD_IN_FRAMES {
            self.recent.pop_front();
        }
        if let Some(utterance) = self.current.as_mut() {
            utterance.audio.extend_from_slice(samples);
            if !loud && at.duration_since(utterance.end) >= UTTERANCE_GAP {
                let mut done = self.current.take()?;
                let keep = done.audio.len().saturating_sub((UTTERANCE_GAP.as_millis() as usize) * 8);
                done.audio.truncate(keep);
                return Some(done);
            }
        }
        None
    }

    fn flush(&mut self) -> Option<Utterance> {
        self.current.take()
    }

    fn agent_spoke_since(&self, since: Option<Instant>) -> bool {
        self.last_loud.is_some_and(|loud| since.is_none_or(|since| loud > since))
    }

    fn quiet_for(&self, now: Instant) -> Duration {
        self.last_loud.map_or(Duration::ZERO, |loud| now.duration_since(loud))
    }

    fn speaking_since(&self) -> Option<Instant> {
        self.current.as_ref().map(|u| u.start)
    }
}
