//! The agent side of a connected call: the `agent` crate's task wired to the call's media,
//! with the call's settings, and its conversation written into the call document at the end
//! (`transcript`, `transcript_object`, `latency`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent::flow::{Flow, FlowEngine};
use agent::provider::{BoxFuture, EngineInput, ProviderError, Reply, Request, ResponseEngine};
use agent::session::{AgentSettings, Deadlines, FRAME_SAMPLES, VoicemailAction, VoicemailSettings};
use agent::turn::{Speaker, TurnConfig};
use agent::{AgentEnd, Conversation, Entry, Heard, Mouth, ToolEvent};
use media::{AgentFrame, CallerFrame, Generation, PlayoutEvent, PlayoutGate};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::settings::CallSettings;
use super::voice::AgentSpeech;
use crate::domain::{Direction, DisconnectionReason};
use crate::egress::Egress;
use crate::hosted::HostedSpeech;
use crate::hosted::deepgram::DeepgramStt;
use crate::hosted::elevenlabs::ElevenLabsVoice;
use crate::llm::custom_llm::{CustomLlmEngine, RttLog};
use crate::llm::flow_model::ChatFlowModel;
use crate::llm::retell_llm::{LlmDefinition, RetellLlmEngine, UsageLog};
use crate::llm::tools::ToolRunner;
use crate::llm::{ChatTarget, Clients};
use crate::store::{CallRow, Document};

/// The agent's audio into the media session.
pub struct MediaMouth {
    pub frames: mpsc::Sender<AgentFrame>,
    pub gate: PlayoutGate,
    pub dtmf: mpsc::Sender<char>,
}

impl Mouth for MediaMouth {
    fn speak(&self, generation: Generation, samples: [i16; FRAME_SAMPLES], last: bool) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.frames.send(AgentFrame { generation, samples, last }).await.is_ok() })
    }

    fn cancel_through(&self, generation: Generation) {
        self.gate.cancel_through(generation);
    }

    fn send_dtmf(&self, digits: &str) {
        for digit in digits.chars().filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')) {
            if self.dtmf.try_send(digit).is_err() {
                tracing::warn!("agent.dtmf_dropped: the DTMF queue is full");
            }
        }
    }
}

/// A caller frame as the agent hears it.
pub fn heard(frame: CallerFrame) -> Heard {
    Heard::Audio { at: frame.at, samples: frame.samples, concealed: frame.concealed }
}

/// A playout report as the agent hears it.
pub fn heard_playout(event: PlayoutEvent) -> Heard {
    match event {
        PlayoutEvent::Started { generation, at } => Heard::PlayoutStarted { generation, at },
        PlayoutEvent::Ended(report) => Heard::PlayoutEnded {
            generation: report.generation,
            frames: report.frames,
            first_at: report.first_at,
            last_at: report.last_at,
            cancelled: report.cancelled,
        },
    }
}

/// The agent settings of a call.
pub fn agent_settings(settings: &CallSettings) -> AgentSettings {
    let agent = &settings.agent;
    AgentSettings {
        turn: TurnConfig::from_agent(
            agent.responsiveness,
            agent.interruption_sensitivity,
            agent.reminder_trigger_ms,
            agent.reminder_max_count,
            agent.end_call_after_silence_ms,
        ),
        start_speaker: if agent.user_speaks_first { Speaker::User } else { Speaker::Agent },
        voice_speed: agent.voice_speed,
        volume: agent.volume,
        deadlines: Deadlines::default(),
        voicemail: None,
        begin_after_user_silence: settings.begin_after_user_silence,
    }
}

/// What a call's network engines need from the install, and where they count.
pub struct EngineAccess {
    /// The model server of `retell-llm` agents, if one is configured.
    pub target: Option<ChatTarget>,
    pub clients: Clients,
    pub egress: Egress,
    pub usage: UsageLog,
    pub rtt: RttLog,
}

/// The agent settings and response engine of a call: its conversation flow, if the agent is on
/// `conversation-flow` (whose `start_speaker` then decides who speaks first); its Retell LLM
/// on the model server, if one is configured; else the begin message only.
pub fn engine(call: &CallRow, settings: &CallSettings, access: EngineAccess) -> (AgentSettings, Box<dyn ResponseEngine>) {
    let mut agent_settings = agent_settings(settings);
    // Machines answer outbound calls; inbound callers are people (or their own machines).
    if call.direction == Direction::Outbound
        && let Some(voicemail) = &settings.agent.voicemail
    {
        let vars = variables(call, settings);
        let action = match &voicemail.action {
            VoicemailAction::Say(text) => VoicemailAction::Say(agent::template::fill(text, &vars)),
            VoicemailAction::Prompt(text) => VoicemailAction::Prompt(agent::template::fill(text, &vars)),
            VoicemailAction::Hangup => VoicemailAction::Hangup,
        };
        agent_settings.voicemail = Some(VoicemailSettings { timeout: voicemail.timeout, action });
    }
    if let Some(document) = &settings.flow {
        match Flow::parse(document) {
            Ok(flow) => {
                agent_settings.start_speaker = flow.start_speaker;
                let mut engine = FlowEngine::new(flow, variables(call, settings), None);
                // The flow's model (`model_choice.model`) on the model server, if there is one.
                if let Some(target) = &access.target {
                    let model = document.get("model_choice").and_then(|c| c.get("model")).and_then(Value::as_str);
                    let http = if target.guarded { access.clients.tenant.clone() } else { access.clients.operator.clone() };
                    engine = engine.with_model(Arc::new(ChatFlowModel { http, endpoint: target.endpoint(model) }));
                }
                return (agent_settings, Box::new(engine));
            }
            // The API checked it when it was saved; a stored flow that no longer parses is a
            // defect, and the agent then says nothing rather than guessing.
            Err(error) => tracing::error!(call_id = %call.call_id, %error, "call.flow_unreadable"),
        }
    }
    if let Some(url) = &settings.custom_llm_url {
        let engine = CustomLlmEngine::start(url, &call.call_id.to_string(), tool_call_object(call), access.egress, access.rtt);
        return (agent_settings, Box::new(engine));
    }
    if let (Some(document), Some(target)) = (&settings.llm, &access.target) {
        let definition = LlmDefinition::parse(document);
        let endpoint = target.endpoint(definition.model.as_deref());
        let http = if target.guarded { access.clients.tenant.clone() } else { access.clients.operator.clone() };
        let tools = ToolRunner { http: access.clients.tenant.clone(), egress: access.egress, call: tool_call_object(call) };
        tracing::info!(call_id = %call.call_id, model = %endpoint.model, server = %endpoint.base_url, "call.llm");
        let engine = RetellLlmEngine::new(definition, http, endpoint, tools, variables(call, settings), access.usage);
        return (agent_settings, Box::new(engine));
    }
    let begin_message = settings.begin_message.as_deref().map(|text| agent::template::fill(text, &variables(call, settings)));
    (agent_settings, Box::new(BeginMessageOnly { begin_message }))
}

/// Retell's `call` in a custom tool's request body: who and what the call is.
fn tool_call_object(call: &CallRow) -> Value {
    let mut object = json!({
        "call_id": call.call_id.to_string(),
        "call_type": call.call_type.as_str(),
        "direction": call.direction.as_str(),
        "from_number": call.from_number,
        "to_number": call.to_number,
        "agent_id": call.agent_id.to_string(),
        "agent_version": call.agent_version,
    });
    for key in ["metadata", "retell_llm_dynamic_variables"] {
        if let Some(value) = call.document.get(key) {
            object[key] = value.clone();
        }
    }
    object
}

/// The call's dynamic variables and Retell's system variables.
fn variables(call: &CallRow, settings: &CallSettings) -> HashMap<String, String> {
    let (user, agent) = match call.direction {
        Direction::Inbound => (&call.from_number, &call.to_number),
        Direction::Outbound => (&call.to_number, &call.from_number),
    };
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    // `current_time_{{timezone}}` for every zone the agent's texts name.
    let mut texts = settings.begin_message.clone().unwrap_or_default();
    for document in [&settings.flow, &settings.llm].into_iter().flatten() {
        texts.push_str(&Value::Object(document.clone()).to_string());
    }
    let zoned = zoned_times(&texts, now.timestamp());
    let mut vars: HashMap<String, String> = HashMap::from([
        ("call_id".to_owned(), call.call_id.to_string()),
        ("call_type".to_owned(), call.call_type.as_str().to_owned()),
        ("direction".to_owned(), call.direction.as_str().to_owned()),
        ("user_number".to_owned(), user.clone()),
        ("agent_number".to_owned(), agent.clone()),
        ("session_type".to_owned(), "voice".to_owned()),
        ("current_time".to_owned(), now.strftime("%A, %B %-d, %Y at %-I:%M %p UTC").to_string()),
        ("current_hour".to_owned(), now.strftime("%-H").to_string()),
        ("current_calendar".to_owned(), now.strftime("%Y-%m-%d (%A)").to_string()),
    ]);
    vars.extend(zoned);
    vars.extend(settings.dynamic_variables.iter().cloned());
    vars
}

/// `current_time_<zone>` (Retell's `{{current_time_America/New_York}}`) for each IANA zone
/// named so in `text`; a name that is not a known zone is left alone (and stays as written).
fn zoned_times(text: &str, now: jiff::Timestamp) -> Vec<(String, String)> {
    const PREFIX: &str = "{{current_time_";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let Some(end) = rest.find("}}") else { break };
        let zone = rest[..end].trim();
        // Zone names are short ASCII (`America/Argentina/Buenos_Aires`); anything else is not one.
        if zone.len() <= 64
            && zone.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
            && let Ok(tz) = jiff::tz::TimeZone::get(zone)
        {
            let time = now.to_zoned(tz).strftime("%A, %B %-d, %Y at %-I:%M %p %Z").to_string();
            out.push((format!("current_time_{zone}"), time));
        }
        rest = &rest[end..];
    }
    out
}

/// The `disconnection_reason` of an end the agent chose.
pub fn reason(end: &AgentEnd) -> DisconnectionReason {
    match end {
        AgentEnd::Hangup => DisconnectionReason::AgentHangup,
        AgentEnd::Inactivity => DisconnectionReason::Inactivity,
        AgentEnd::Voicemail => DisconnectionReason::VoicemailReached,
        AgentEnd::SpeechToText(_) => DisconnectionReason::ErrorAsr,
        AgentEnd::Engine(ProviderError::Ended { reason, .. }) => {
            DisconnectionReason::parse(reason).unwrap_or(DisconnectionReason::ErrorRetell)
        }
        AgentEnd::TextToSpeech(_) | AgentEnd::Engine(_) => DisconnectionReason::ErrorRetell,
    }
}

/// The engine of an agent on `retell-llm` when no model server is configured: it speaks the
/// begin message and answers nothing, so a call ends by the caller, by
/// `end_call_after_silence_ms` (`inactivity`) or by `max_call_duration_ms`.
pub struct BeginMessageOnly {
    pub begin_message: Option<String>,
}

impl ResponseEngine for BeginMessageOnly {
    fn name(&self) -> &str {
        "retell-llm (no LLM configured)"
    }

    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
        let text = match request.input {
            EngineInput::Begin => self.begin_message.clone().unwrap_or_default(),
            _ => String::new(),
        };
        Box::pin(async move { Ok(Reply { text, ..Reply::default() }) })
    }
}

/// The conversation's fields of the call document.
pub fn document_fields(conversation: &Conversation) -> Document {
    let mut patch = Document::new();
    let seconds = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    let utterances: Vec<Value> = conversation
        .utterances
        .iter()
        .filter(|u| !u.content.is_empty())
        .map(|u| {
            let words: Vec<Value> =
                u.words.iter().map(|w| json!({"word": w.word, "start": seconds(w.start), "end": seconds(w.end)})).collect();
            json!({"role": u.role.as_str(), "content": u.content, "words": words})
        })
        .collect();
    patch.insert("transcript".into(), json!(conversation.transcript()));
    patch.insert("transcript_with_tool_calls".into(), Value::Array(with_tool_calls(conversation, &seconds)));
    patch.insert("stuck_turns".into(), json!(conversation.n_stuck_turns));
    if let Some(detection) = conversation.machine_detection {
        patch.insert(
            "machine_detection".into(),
            json!({"result": if detection.machine { "machine" } else { "human" }, "decided_after_ms": millis_u64(detection.decided_at)}),
        );
    }
    patch.insert("transcript_object".into(), Value::Array(utterances));
    let latency = &conversation.latency;
    let mut table = serde_json::Map::new();
    for (name, values) in [("e2e", &latency.e2e), ("asr", &latency.asr), ("llm", &latency.llm), ("tts", &latency.tts)] {
        if !values.is_empty() {
            table.insert(name.into(), percentiles(values));
        }
    }
    patch.insert("latency".into(), Value::Object(table));
    patch
}

/// Retell's `transcript_with_tool_calls`: utterances and, where they happened, the tool
/// calls (`tool_call_invocation` with the arguments as JSON text, `tool_call_result`).
fn with_tool_calls(conversation: &Conversation, seconds: &dyn Fn(Duration) -> f64) -> Vec<Value> {
    conversation
        .entries()
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Utterance(u) if u.content.is_empty() => None,
            Entry::Utterance(u) => {
                let words: Vec<Value> =
                    u.words.iter().map(|w| json!({"word": w.word, "start": seconds(w.start), "end": seconds(w.end)})).collect();
                Some(json!({"role": u.role.as_str(), "content": u.content, "words": words}))
            }
            Entry::Tool(ToolEvent::Invocation { id, name, arguments }) => {
                Some(json!({"role": "tool_call_invocation", "tool_call_id": id, "name": name, "arguments": arguments}))
            }
            Entry::Tool(ToolEvent::Result { id, content }) => {
                Some(json!({"role": "tool_call_result", "tool_call_id": id, "content": content}))
            }
        })
        .collect()
}

fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Retell's `llm_token_usage`: total tokens per model request, their average and count.
pub fn token_usage(usage: &UsageLog) -> Option<Value> {
    let log = usage.lock().ok()?;
    if log.is_empty() {
        return None;
    }
    let values: Vec<u64> = log.iter().map(|u| u.prompt_tokens + u.completion_tokens).collect();
    let average = values.iter().sum::<u64>() as f64 / values.len() as f64;
    Some(json!({"values": values, "average": average, "num_requests": values.len()}))
}

/// `latency.llm_websocket_network_rtt`, from a custom LLM's `ping_pong` round trips.
pub fn add_network_rtt(patch: &mut Document, rtt: &RttLog) {
    let Ok(values) = rtt.lock().map(|log| log.clone()) else { return };
    if values.is_empty() {
        return;
    }
    if let Some(Value::Object(latency)) = patch.get_mut("latency") {
        latency.insert("llm_websocket_network_rtt".into(), percentiles(&values));
    }
}

/// Retell's latency object: `{p50, p90, p95, p99, min, max, num, values}` in ms.
fn percentiles(values: &[u32]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| {
        // Nearest rank.
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    };
    json!({
        "p50": at(0.50), "p90": at(0.90), "p95": at(0.95), "p99": at(0.99),
        "min": sorted[0], "max": sorted[sorted.len() - 1], "num": sorted.len(), "values": values,
    })
}

/// The voice and ears of a call's agent: hosted providers where the agent and the install
/// have them, else the offline engines (an espeak voice if `voice_id` names one, else Piper).
pub struct CallVoices {
    pub voice_id: Option<String>,
    pub hosted_tts: Option<Arc<dyn agent::provider::TextToSpeech>>,
    pub hosted_stt: Option<Arc<dyn agent::provider::SpeechToText>>,
}

impl CallVoices {
    /// ElevenLabs for `11labs-<voice id>` voices and Deepgram for
    /// `custom_stt_config.provider: "deepgram"`, when the install has their keys.
    pub fn choose(settings: &CallSettings, hosted: &HostedSpeech, http: &reqwest::Client) -> Self {
        let voice_id = settings.agent.voice_id.clone();
        let hosted_tts = match (voice_id.as_deref().and_then(|id| id.strip_prefix("11labs-")), &hosted.elevenlabs) {
            (Some(eleven), Some(provider)) if !eleven.is_empty() => {
                Some(Arc::new(ElevenLabsVoice { http: http.clone(), provider: provider.clone(), voice_id: eleven.to_owned() })
                    as Arc<dyn agent::provider::TextToSpeech>)
            }
            _ => None,
        };
        let hosted_stt = match (settings.agent.stt_provider.as_deref(), &hosted.deepgram) {
            (Some("deepgram"), Some(provider)) => {
                Some(Arc::new(DeepgramStt { provider: provider.clone() }) as Arc<dyn agent::provider::SpeechToText>)
            }
            _ => None,
        };
        Self { voice_id, hosted_tts, hosted_stt }
    }
}

/// The agent's task, spawned: its channels and the join handle.
pub struct RunningAgent {
    pub heard: mpsc::Sender<Heard>,
    pub events: mpsc::Receiver<agent::AgentEvent>,
    pub cancel: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Conversation>,
}

/// Starts the agent of a call. The media runs meanwhile: if the engines are still loading
/// (the first call after start), the agent begins once they are, and caller audio that did
/// not fit in its queue until then is dropped and counted by the media task. Engines that
/// fail to load end the call (`error_retell`).
pub fn start(
    speech: AgentSpeech,
    settings: AgentSettings,
    voices: CallVoices,
    engine: Box<dyn ResponseEngine>,
    mouth: Arc<dyn Mouth>,
) -> RunningAgent {
    let CallVoices { voice_id, hosted_tts, hosted_stt } = voices;
    let (heard_tx, heard_rx) = mpsc::channel(64);
    let (events_tx, events_rx) = mpsc::channel(16);
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let speech = match speech {
            AgentSpeech::Offline(speech) => speech,
            AgentSpeech::Instant => {
                use agent::instant::{CountingStt, LoudnessVad, ToneTts};
                let providers = agent::Providers { vad: Box::new(LoudnessVad), stt: Arc::new(CountingStt), tts: Arc::new(ToneTts), engine };
                return agent::session::run(settings, providers, heard_rx, mouth, events_tx, stop).await;
            }
        };
        let engines = tokio::select! {
            () = stop.cancelled() => return Conversation::default(),
            engines = speech.engines() => engines,
        };
        let engines = match engines {
            Ok(engines) => engines,
            Err(error) => {
                tracing::error!(%error, "call.agent_unavailable");
                let _ = events_tx.send(agent::AgentEvent::End(AgentEnd::Engine(error))).await;
                return Conversation::default();
            }
        };
        // An espeak voice if the agent asked for one, else the Piper voice (which also speaks
        // hosted providers' voices until they exist).
        let tts: Arc<dyn agent::provider::TextToSpeech> =
            match (hosted_tts, voice_id.as_deref().and_then(agent::offline::espeak::EspeakVoice::for_id)) {
                (Some(hosted), _) => hosted,
                (None, Some(espeak)) => Arc::new(espeak),
                (None, None) => Arc::new(engines.offline.voice.clone()),
            };
        let stt: Arc<dyn agent::provider::SpeechToText> = match hosted_stt {
            Some(hosted) => hosted,
            None => engines.stt.clone(),
        };
        let providers = agent::Providers { vad: Box::new(engines.offline.vad.detector()), stt, tts, engine };
        agent::session::run(settings, providers, heard_rx, mouth, events_tx, stop).await
    });
    RunningAgent { heard: heard_tx, events: events_rx, cancel, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_time_in_a_named_zone_is_filled_and_an_unknown_zone_left_alone() {
        let now: jiff::Timestamp = "2026-07-04T16:30:00Z".parse().unwrap();
        let text = "It is {{current_time_America/New_York}} here, {{current_time_Asia/Tokyo}} there, {{current_time_Mars/Olympus}} nowhere, {{current_time_";
        let vars: HashMap<String, String> = zoned_times(text, now).into_iter().collect();
        assert_eq!(vars.get("current_time_America/New_York").map(String::as_str), Some("Saturday, July 4, 2026 at 12:30 PM EDT"));
        assert_eq!(vars.get("current_time_Asia/Tokyo").map(String::as_str), Some("Sunday, July 5, 2026 at 1:30 AM JST"));
        assert_eq!(vars.len(), 2, "{vars:?}");
        let filled = agent::template::fill(text, &vars);
        assert!(filled.starts_with("It is Saturday, July 4, 2026 at 12:30 PM EDT here, Sunday"), "{filled}");
        assert!(filled.contains("{{current_time_Mars/Olympus}} nowhere"), "{filled}");
    }

    #[test]
    fn latency_has_retells_percentile_shape() {
        let value = percentiles(&[300, 100, 200, 400]);
        assert_eq!(
            value,
            json!({"p50": 200, "p90": 400, "p95": 400, "p99": 400, "min": 100, "max": 400, "num": 4, "values": [300, 100, 200, 400]})
        );
    }
}
