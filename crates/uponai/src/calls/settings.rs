//! A call's settings, parsed once from its stored document when its task starts: the
//! effective agent and LLM configuration (the API validated both when they were written),
//! read into types so that the dialing and talking code never digs through JSON.

use std::time::Duration;

use agent::session::{VoicemailAction, VoicemailSettings};
use serde_json::Value;

use crate::store::{CallRow, Document};

/// How long an unanswered call rings before we cancel it (`ring_duration_ms`).
const DEFAULT_RING: Duration = Duration::from_secs(30);
/// The longest a call may last (`max_call_duration_ms`).
const DEFAULT_MAX_CALL: Duration = Duration::from_secs(3_600);

#[derive(Clone, Debug, PartialEq)]
pub struct CallSettings {
    /// What the agent says first; `None` when it waits for the other side.
    pub begin_message: Option<String>,
    pub ring_duration: Duration,
    pub max_call_duration: Duration,
    /// `custom_sip_headers`, name and value, for the INVITE.
    pub custom_sip_headers: Vec<(String, String)>,
    /// How the voice agent takes turns and speaks.
    pub agent: AgentFields,
    /// The conversation flow of an agent on `conversation-flow` (`effective_flow`).
    pub flow: Option<Document>,
    /// The Retell LLM of an agent on `retell-llm` (`effective_llm`).
    pub llm: Option<Document>,
    /// The `llm_websocket_url` of an agent on `custom-llm`.
    pub custom_llm_url: Option<String>,
    /// The LLM's `begin_after_user_silence_ms`, when the caller is to speak first.
    pub begin_after_user_silence: Option<Duration>,
    /// `retell_llm_dynamic_variables` of the call.
    pub dynamic_variables: Vec<(String, String)>,
}

/// The agent fields the voice agent acts on, with Retell's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentFields {
    pub responsiveness: f64,
    pub interruption_sensitivity: f64,
    pub reminder_trigger_ms: Option<u64>,
    pub reminder_max_count: u32,
    pub end_call_after_silence_ms: u64,
    pub voice_speed: f32,
    pub volume: f32,
    /// The LLM's `start_speaker` is `user`: the agent waits for the caller.
    pub user_speaks_first: bool,
    /// The agent's `voice_id` (the API checked it names a voice of this install).
    pub voice_id: Option<String>,
    /// Answering-machine detection: `voicemail_option` (with `voicemail_detection_timeout_ms`).
    /// Texts are as written (variables are filled when the call starts).
    pub voicemail: Option<VoicemailSettings>,
    /// `custom_stt_config.provider` (`deepgram` is served by a hosted adapter).
    pub stt_provider: Option<String>,
}

/// Retell's default `voicemail_detection_timeout_ms`, and its bounds.
const DEFAULT_VOICEMAIL_TIMEOUT_MS: u64 = 30_000;

fn voicemail(agent: &dyn Fn(&str) -> Option<Value>) -> Option<VoicemailSettings> {
    let timeout =
        agent("voicemail_detection_timeout_ms").and_then(|v| v.as_u64()).unwrap_or(DEFAULT_VOICEMAIL_TIMEOUT_MS).clamp(5_000, 180_000);
    let text = |value: &Value| value.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    let action = match agent("voicemail_option").filter(|v| !v.is_null()) {
        Some(option) => {
            let action = option.get("action")?;
            match action.get("type").and_then(Value::as_str)? {
                "hangup" => VoicemailAction::Hangup,
                "static_text" => VoicemailAction::Say(text(action)),
                "prompt" => VoicemailAction::Prompt(text(action)),
                // bridge_transfer and other actions are not carried out: detection stays off.
                _ => return None,
            }
        }
        None => return None,
    };
    Some(VoicemailSettings { timeout: Duration::from_millis(timeout), action })
}

impl CallSettings {
    pub fn of(call: &CallRow) -> Self {
        Self::from_document(&call.document)
    }

    pub fn from_document(document: &Document) -> Self {
        let agent = |name: &str| document.get("effective_agent").and_then(|agent| agent.get(name));
        let millis = |value: Option<&Value>, default: Duration| value.and_then(Value::as_u64).map_or(default, Duration::from_millis);
        let begin_message =
            document.get("effective_llm").and_then(|llm| llm.get("begin_message")).and_then(Value::as_str).map(str::to_owned);
        let custom_sip_headers = document
            .get("custom_sip_headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
            .collect();
        let number = |value: Option<&Value>, default: f64| value.and_then(Value::as_f64).unwrap_or(default);
        let llm = |name: &str| document.get("effective_llm").and_then(|llm| llm.get(name));
        let fields = AgentFields {
            responsiveness: number(agent("responsiveness"), 1.0),
            interruption_sensitivity: number(agent("interruption_sensitivity"), 1.0),
            reminder_trigger_ms: Some(agent("reminder_trigger_ms").and_then(Value::as_u64).unwrap_or(10_000)),
            reminder_max_count: agent("reminder_max_count").and_then(Value::as_u64).map_or(1, |n| n.min(100) as u32),
            end_call_after_silence_ms: agent("end_call_after_silence_ms").and_then(Value::as_u64).unwrap_or(600_000),
            voice_speed: number(agent("voice_speed"), 1.0) as f32,
            volume: number(agent("volume"), 1.0) as f32,
            user_speaks_first: llm("start_speaker").and_then(Value::as_str) == Some("user"),
            voice_id: agent("voice_id").and_then(Value::as_str).map(str::to_owned),
            voicemail: voicemail(&|name| agent(name).cloned()),
            stt_provider: agent("custom_stt_config").and_then(|c| c.get("provider")).and_then(Value::as_str).map(str::to_owned),
        };
        let flow = document.get("effective_flow").and_then(Value::as_object).cloned();
        let dynamic_variables = document
            .get("retell_llm_dynamic_variables")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| (name.clone(), value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())))
            .collect();
        Self {
            flow,
            llm: document.get("effective_llm").and_then(Value::as_object).cloned(),
            begin_after_user_silence: llm("begin_after_user_silence_ms").and_then(Value::as_u64).map(Duration::from_millis),
            custom_llm_url: agent("response_engine")
                .filter(|engine| engine.get("type").and_then(Value::as_str) == Some("custom-llm"))
                .and_then(|engine| engine.get("llm_websocket_url"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            dynamic_variables,
            agent: fields,
            begin_message,
            ring_duration: millis(agent("ring_duration_ms"), DEFAULT_RING),
            max_call_duration: millis(agent("max_call_duration_ms"), DEFAULT_MAX_CALL),
            custom_sip_headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_come_from_the_effective_configuration_with_the_documented_defaults() {
        let empty = CallSettings::from_document(&Document::new());
        assert_eq!((empty.ring_duration, empty.max_call_duration, empty.begin_message), (DEFAULT_RING, DEFAULT_MAX_CALL, None));
        let document: Document = serde_json::from_value(json!({
            "effective_agent": {"ring_duration_ms": 5000, "max_call_duration_ms": 60000},
            "effective_llm": {"begin_message": "Hi!"},
            "custom_sip_headers": {"X-A": "1"},
        }))
        .unwrap();
        let set = CallSettings::from_document(&document);
        assert_eq!(set.ring_duration, Duration::from_secs(5));
        assert_eq!(set.max_call_duration, Duration::from_secs(60));
        assert_eq!(set.begin_message.as_deref(), Some("Hi!"));
        assert_eq!(set.custom_sip_headers, vec![("X-A".to_owned(), "1".to_owned())]);
        assert_eq!(
            (set.agent.responsiveness, set.agent.reminder_trigger_ms, set.agent.end_call_after_silence_ms),
            (1.0, Some(10_000), 600_000)
        );
        let document: Document = serde_json::from_value(json!({
            "effective_agent": {"interruption_sensitivity": 0.5, "end_call_after_silence_ms": 20000, "voice_speed": 1.5},
            "effective_llm": {"start_speaker": "user"},
        }))
        .unwrap();
        let set = CallSettings::from_document(&document).agent;
        assert_eq!(
            (set.interruption_sensitivity, set.end_call_after_silence_ms, set.voice_speed, set.user_speaks_first),
            (0.5, 20_000, 1.5, true)
        );
    }
}
