//! Which events a call's state change sends, to which target, with which body. The body is
//! the wire payload `{"event": …, "call": …}` with the call exactly as Get Call shows it.

use serde::Serialize;
use serde_json::Value;

use crate::store::{CallRow, Document, NewWebhook};
use crate::view::{CallResponse, RecordingLinks};

/// The timeout of a delivery attempt when neither the agent nor the workspace sets one.
pub const DEFAULT_TIMEOUT_MS: i64 = 10_000;

/// Event names, spelled as on the wire and in `webhook_events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventName {
    CallStarted,
    CallEnded,
    CallAnalyzed,
    /// The call never connected; sent before its `call_ended`.
    CallFailed,
    /// Opt-in: each utterance, and the final transcript at the end of a connected call.
    TranscriptUpdated,
    /// Opt-in: a cold transfer was asked of the trunk (REFER sent).
    TransferStarted,
    /// Opt-in: the trunk took the transfer; the caller is with the destination.
    TransferBridged,
    /// Opt-in: the trunk refused the transfer, or the destination failed; the call goes on.
    TransferCancelled,
}

/// Where a transfer stands, for its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferStage {
    Started,
    Bridged,
    Cancelled,
}

impl EventName {
    /// Sent when an agent does not choose its `webhook_events`.
    pub const DEFAULT_SET: [Self; 4] = [Self::CallStarted, Self::CallEnded, Self::CallAnalyzed, Self::CallFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call_started",
            Self::CallEnded => "call_ended",
            Self::CallAnalyzed => "call_analyzed",
            Self::CallFailed => "call_failed",
            Self::TranscriptUpdated => "transcript_updated",
            Self::TransferStarted => "transfer_started",
            Self::TransferBridged => "transfer_bridged",
            Self::TransferCancelled => "transfer_cancelled",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Self::CallStarted,
            Self::CallEnded,
            Self::CallAnalyzed,
            Self::CallFailed,
            Self::TranscriptUpdated,
            Self::TransferStarted,
            Self::TransferBridged,
            Self::TransferCancelled,
        ]
        .into_iter()
        .find(|name| name.as_str() == raw)
    }
}

/// The call-document key that marks an ended call whose analysis is still running.
pub const ANALYSIS_PENDING: &str = "analysis_pending";

/// The state changes that send events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The call was answered.
    Started,
    /// The call ended, connected or not.
    Ended,
    /// An utterance was added to an ongoing call's transcript.
    TranscriptUpdated,
    /// The post-call analysis of an ended call is done.
    Analyzed,
}

/// The events of a transition, in the order they are delivered.
pub(super) fn events_for(transition: Transition, connected: bool) -> &'static [EventName] {
    use EventName as E;
    match (transition, connected) {
        (Transition::Started, _) => &[E::CallStarted],
        (Transition::TranscriptUpdated, _) => &[E::TranscriptUpdated],
        (Transition::Analyzed, _) => &[E::CallAnalyzed],
        (Transition::Ended, true) => &[E::TranscriptUpdated, E::CallEnded, E::CallAnalyzed],
        (Transition::Ended, false) => &[E::CallFailed, E::CallEnded, E::CallAnalyzed],
    }
}

/// Where a call's events go, and which of them.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    pub url: String,
    pub timeout_ms: i64,
    pub events: Vec<EventName>,
}

/// The workspace-level webhook, from its settings.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceWebhook {
    pub url: Option<String>,
    pub timeout_ms: Option<i64>,
}

impl WorkspaceWebhook {
    pub fn from_settings(settings: &Document) -> Self {
        Self {
            url: settings.get("webhook_url").and_then(Value::as_str).filter(|url| !url.is_empty()).map(str::to_owned),
            timeout_ms: settings.get("webhook_timeout_ms").and_then(Value::as_i64),
        }
    }
}

/// The call's target: the agent's `webhook_url` if set (it replaces the workspace's for that
/// agent's calls), else the workspace's; `None` if neither is set.
pub(super) fn target(effective_agent: Option<&Value>, workspace: &WorkspaceWebhook, dynamic_variables: Option<&Value>) -> Option<Target> {
    let field = |name: &str| effective_agent.and_then(|agent| agent.get(name));
    let agent_url = field("webhook_url").and_then(Value::as_str).filter(|url| !url.is_empty());
    let agent_timeout = field("webhook_timeout_ms").and_then(Value::as_i64);
    let (url, timeout_ms) = match agent_url {
        Some(url) => (url.to_owned(), agent_timeout.unwrap_or(DEFAULT_TIMEOUT_MS)),
        None => (workspace.url.clone()?, workspace.timeout_ms.or(agent_timeout).unwrap_or(DEFAULT_TIMEOUT_MS)),
    };
    let events = match field("webhook_events").and_then(Value::as_array) {
        Some(names) => names.iter().filter_map(Value::as_str).filter_map(EventName::parse).collect(),
        None => EventName::DEFAULT_SET.to_vec(),
    };
    Some(Target { url: fill_variables(&url, dynamic_variables), timeout_ms, events })
}

/// Replaces `{{name}}` in a URL with the call's dynamic variable, percent-encoded.
fn fill_variables(url: &str, variables: Option<&Value>) -> String {
    let Some(variables) = variables.and_then(Value::as_object) else { return url.to_owned() };
    let mut filled = url.to_owned();
    for (name, value) in variables {
        let Some(value) = value.as_str() else { continue };
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        filled = filled.replace(&format!("{{{{{name}}}}}"), &encoded);
    }
    filled
}

#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    call: &'a CallResponse,
    /// Transfer events: `{number}` (a number or SIP URI, as the agent gave it).
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_destination: Option<Value>,
    /// Transfer events: `{type: "cold_transfer"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_option: Option<Value>,
}

/// Builds a workspace's events for its calls' state changes (one per state change, so the
/// workspace settings are read once, outside the store's transaction).
pub struct Planner {
    pub workspace: WorkspaceWebhook,
    pub links: std::sync::Arc<RecordingLinks>,
}

impl Planner {
    /// The outbox rows of a transfer's `stage` to `destination` for an ongoing `call`.
    pub fn plan_transfer(&self, stage: TransferStage, destination: &str, call: &CallRow) -> Vec<NewWebhook> {
        let doc = &call.document;
        let Some(target) = target(doc.get("effective_agent"), &self.workspace, doc.get("retell_llm_dynamic_variables")) else {
            return Vec::new();
        };
        let name = match stage {
            TransferStage::Started => EventName::TransferStarted,
            TransferStage::Bridged => EventName::TransferBridged,
            TransferStage::Cancelled => EventName::TransferCancelled,
        };
        if !target.events.contains(&name) {
            return Vec::new();
        }
        let view = CallResponse { call_analysis: None, ..CallResponse::from_row(call.clone(), &self.links) };
        let payload = Payload {
            event: name.as_str(),
            call: &view,
            transfer_destination: Some(serde_json::json!({"number": destination})),
            transfer_option: Some(serde_json::json!({"type": "cold_transfer"})),
        };
        // A struct of strings, numbers and JSON values always serialises.
        let body = serde_json::to_string(&payload).expect("payload serialises");
        vec![NewWebhook { event: name.as_str(), url: target.url.clone(), timeout_ms: target.timeout_ms, body }]
    }

    /// The outbox rows of `transition` for `call` (the call as it is after the change).
    pub fn plan(&self, transition: Transition, call: &CallRow) -> Vec<NewWebhook> {
        let doc = &call.document;
        let Some(target) = target(doc.get("effective_agent"), &self.workspace, doc.get("retell_llm_dynamic_variables")) else {
            return Vec::new();
        };
        let connected = call.start_timestamp.is_some();
        // An analysis still running sends `call_analyzed` when it is done.
        let analysis_pending = doc.get(ANALYSIS_PENDING).and_then(serde_json::Value::as_bool) == Some(true);
        let view = CallResponse::from_row(call.clone(), &self.links);
        events_for(transition, connected)
            .iter()
            .filter(|name| target.events.contains(name))
            .filter(|name| !(transition == Transition::Ended && analysis_pending && **name == EventName::CallAnalyzed))
            .map(|&name| {
                let body = match name {
                    // Everything but the analysis, which `call_analyzed` brings. (Transfer
                    // events come from `plan_transfer`, never from a transition.)
                    EventName::CallEnded
                    | EventName::CallFailed
                    | EventName::TranscriptUpdated
                    | EventName::TransferStarted
                    | EventName::TransferBridged
                    | EventName::TransferCancelled => {
                        let without = CallResponse { call_analysis: None, ..view.clone() };
                        render(name, &without)
                    }
                    EventName::CallStarted | EventName::CallAnalyzed => render(name, &view),
                };
                NewWebhook { event: name.as_str(), url: target.url.clone(), timeout_ms: target.timeout_ms, body }
            })
            .collect()
    }
}

fn render(name: EventName, call: &CallResponse) -> String {
    // A struct of strings, numbers and JSON values always serialises.
    let payload = Payload { event: name.as_str(), call, transfer_destination: None, transfer_option: None };
    serde_json::to_string(&payload).expect("payload serialises")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn workspace(url: Option<&str>) -> WorkspaceWebhook {
        WorkspaceWebhook { url: url.map(str::to_owned), timeout_ms: None }
    }

    #[test]
    fn a_call_that_never_connected_gets_call_failed_and_no_call_started() {
        let names: Vec<_> = events_for(Transition::Ended, false).iter().map(|e| e.as_str()).collect();
        assert_eq!(names, ["call_failed", "call_ended", "call_analyzed"]);
        assert_eq!(events_for(Transition::Started, true), [EventName::CallStarted]);
    }

    #[test]
    fn the_agents_url_replaces_the_workspaces_with_its_own_timeout() {
        let agent = json!({"webhook_url": "https://agent.example/hook", "webhook_timeout_ms": 3000});
        let target = target(Some(&agent), &workspace(Some("https://ws.example/hook")), None).unwrap();
        assert_eq!(target.url, "https://agent.example/hook");
        assert_eq!(target.timeout_ms, 3000);
        assert_eq!(target.events, EventName::DEFAULT_SET);
    }

    #[test]
    fn without_an_agent_url_the_workspace_url_is_used_and_without_either_nothing_is_sent() {
        let agent = json!({"webhook_url": null, "webhook_events": ["call_ended", "transcript_updated"]});
        let target = target(Some(&agent), &workspace(Some("https://ws.example/hook")), None).unwrap();
        assert_eq!((target.url.as_str(), target.timeout_ms), ("https://ws.example/hook", DEFAULT_TIMEOUT_MS));
        assert_eq!(target.events, [EventName::CallEnded, EventName::TranscriptUpdated]);
        assert_eq!(super::target(Some(&agent), &workspace(None), None), None);
    }

    #[test]
    fn dynamic_variables_fill_the_url_percent_encoded() {
        let agent = json!({"webhook_url": "https://h.example/x?customer={{name}}&keep={{missing}}"});
        let variables = json!({"name": "Ana María&co"});
        let target = target(Some(&agent), &workspace(None), Some(&variables)).unwrap();
        assert_eq!(target.url, "https://h.example/x?customer=Ana+Mar%C3%ADa%26co&keep={{missing}}");
    }
}
