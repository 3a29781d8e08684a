//! Response engines over the network, behind `agent::provider::ResponseEngine`: the
//! `retell-llm` engine on an OpenAI-compatible chat server (`openai`, `retell_llm`), the
//! tools it calls (`tools`), and `custom-llm`, Retell's LLM websocket (`custom_llm`). The `agent` crate knows none of this: it sees an engine that
//! streams text and tool events.
//!
//! Which model server a call uses: the workspace's `llm_base_url` (tenant input, through
//! the egress guard, checked when saved and on every connection), else the install's
//! `--llm-base-url` (operator configuration, not guarded). The model name is the
//! workspace's `llm_model`, else the install's, else the LLM's own `model`.

pub mod analysis;
pub mod custom_llm;
pub mod flow_model;
pub mod openai;
pub mod retell_llm;
pub mod tools;

use serde_json::Value;
use url::Url;

use crate::egress::Egress;
use crate::store::Document;
use openai::ChatEndpoint;

/// The model an LLM names when nothing else does (Retell's default).
const DEFAULT_MODEL: &str = "gpt-4.1";

/// The install's default model server.
#[derive(Clone, Debug, Default)]
pub struct LlmServer {
    pub base_url: Option<Url>,
    pub api_key: Option<String>,
    pub model: Option<String>,
}

/// HTTP clients for model servers and tools, made once per install.
#[derive(Clone, Debug)]
pub struct Clients {
    /// For the operator's model server: no guard.
    pub operator: reqwest::Client,
    /// For tenants' model servers and tool URLs: the egress guard's client.
    pub tenant: reqwest::Client,
}

impl Clients {
    pub fn new(egress: Egress) -> anyhow::Result<Self> {
        let agent = concat!("uponai/", env!("CARGO_PKG_VERSION"));
        Ok(Self { operator: reqwest::Client::builder().user_agent(agent).build()?, tenant: egress.http_client(agent)? })
    }
}

/// Where a call's model requests go, and with which client.
#[derive(Clone, Debug)]
pub struct ChatTarget {
    pub base_url: Url,
    pub api_key: Option<String>,
    /// The install's or workspace's model name, which wins over the LLM's.
    pub model: Option<String>,
    /// A tenant's server: through the egress guard.
    pub guarded: bool,
}

impl ChatTarget {
    /// The endpoint for an LLM that names `llm_model`.
    pub fn endpoint(&self, llm_model: Option<&str>) -> ChatEndpoint {
        let model = self.model.clone().or_else(|| llm_model.map(str::to_owned)).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        ChatEndpoint { base_url: self.base_url.clone(), api_key: self.api_key.clone(), model }
    }
}

/// The model server of a workspace's calls: its own settings (`llm_base_url`, `llm_api_key`,
/// `llm_model`) over the install's. `None`: no server is configured anywhere.
pub fn chat_target(server: &LlmServer, workspace: &Document) -> Option<ChatTarget> {
    let text = |name: &str| workspace.get(name).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
    let model = text("llm_model").or_else(|| server.model.clone());
    match text("llm_base_url").and_then(|raw| Url::parse(&raw).ok()) {
        Some(base_url) => Some(ChatTarget { base_url, api_key: text("llm_api_key"), model, guarded: true }),
        None => server.base_url.clone().map(|base_url| ChatTarget { base_url, api_key: server.api_key.clone(), model, guarded: false }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_workspace_server_wins_over_the_install_s_and_its_model_over_the_llm_s() {
        let server = LlmServer { base_url: Some(Url::parse("http://op/v1").unwrap()), api_key: Some("k".into()), model: None };
        let none = Document::new();
        let target = chat_target(&server, &none).unwrap();
        assert!(!target.guarded);
        assert_eq!(target.endpoint(Some("gpt-4o")).model, "gpt-4o");
        assert_eq!(target.endpoint(None).model, DEFAULT_MODEL);
        let workspace: Document = serde_json::from_value(json!({"llm_base_url": "https://t.example/v1", "llm_model": "llama"})).unwrap();
        let target = chat_target(&server, &workspace).unwrap();
        assert!(target.guarded);
        assert_eq!((target.base_url.as_str(), target.api_key.as_deref()), ("https://t.example/v1", None));
        assert_eq!(target.endpoint(Some("gpt-4o")).model, "llama");
        assert!(chat_target(&LlmServer::default(), &none).is_none());
    }
}
