//! What the call path needs to know of an agent configuration document. The document is
//! opaque JSON validated at the API edge; this reads the few settings the runtime acts on.

use serde_json::Value;

use super::{FlowId, LlmId};

/// The response engine of an effective agent configuration, as far as the call path cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineRef {
    /// A Retell LLM of the workspace; `None` version means its latest.
    RetellLlm {
        llm_id: LlmId,
        version: Option<i64>,
    },
    CustomLlm {
        websocket_url: String,
    },
    /// A conversation flow of the workspace; `None` version means its latest.
    ConversationFlow {
        flow_id: FlowId,
        version: Option<i64>,
    },
}

pub fn engine_ref(document: &serde_json::Map<String, Value>) -> Option<EngineRef> {
    let engine = document.get("response_engine")?.as_object()?;
    match engine.get("type")?.as_str()? {
        "retell-llm" => Some(EngineRef::RetellLlm {
            llm_id: LlmId::parse(engine.get("llm_id")?.as_str()?)?,
            version: engine.get("version").and_then(Value::as_i64),
        }),
        "custom-llm" => Some(EngineRef::CustomLlm { websocket_url: engine.get("llm_websocket_url")?.as_str()?.to_owned() }),
        "conversation-flow" => Some(EngineRef::ConversationFlow {
            flow_id: FlowId::parse(engine.get("conversation_flow_id")?.as_str()?)?,
            version: engine.get("version").and_then(Value::as_i64),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retell_llm_engines_are_read_with_their_pinned_version() {
        let doc = json!({"response_engine": {"type": "retell-llm", "llm_id": "llm_00ff", "version": 3}});
        assert_eq!(
            engine_ref(doc.as_object().unwrap()),
            Some(EngineRef::RetellLlm { llm_id: LlmId::parse("llm_00ff").unwrap(), version: Some(3) })
        );
        let unpinned = json!({"response_engine": {"type": "retell-llm", "llm_id": "llm_00ff"}});
        assert!(matches!(engine_ref(unpinned.as_object().unwrap()), Some(EngineRef::RetellLlm { version: None, .. })));
        assert_eq!(engine_ref(json!({}).as_object().unwrap()), None);
    }
}
