//! The chat model of a conversation flow (`agent::flow::FlowModel`) on the model server:
//! it judges a node's `prompt` conditions (asked for the number of the condition the caller's
//! last turn meets) and words `prompt` instructions (asked what to say next).

use agent::Conversation;
use agent::flow::FlowModel;
use agent::provider::{BoxFuture, ProviderError};
use serde_json::{Value, json};

use super::openai::{ChatEndpoint, ChatRequest, stream_chat};
use super::retell_llm::chat_history;

pub struct ChatFlowModel {
    pub http: reqwest::Client,
    pub endpoint: ChatEndpoint,
}

impl ChatFlowModel {
    async fn ask(&self, messages: Vec<Value>) -> Result<String, ProviderError> {
        let request = ChatRequest { messages: &messages, tools: &[], temperature: Some(0.0), json_schema: None };
        let completion =
            stream_chat(&self.http, &self.endpoint, request, |_| {}).await.map_err(|err| ProviderError::failed("flow model", err))?;
        Ok(completion.content)
    }

    async fn choose_condition(
        &self,
        history: &Conversation,
        note: Option<&str>,
        conditions: &[String],
    ) -> Result<Option<usize>, ProviderError> {
        let mut ask = String::from(
            "You route a phone conversation. Read it, then answer with only the number of the first condition below that the user's last turn meets, or 0 if none does.\n",
        );
        for (i, condition) in conditions.iter().enumerate() {
            ask.push_str(&format!("{}. {condition}\n", i + 1));
        }
        let mut messages = vec![json!({"role": "system", "content": ask})];
        let transcript: Vec<String> = chat_history(history)
            .iter()
            .filter_map(|m| Some(format!("{}: {}", if m["role"] == "user" { "User" } else { "Agent" }, m["content"].as_str()?)))
            .collect();
        let mut conversation = transcript.join("\n");
        if let Some(note) = note {
            conversation.push_str(&format!("\n({note})"));
        }
        messages.push(json!({"role": "user", "content": conversation}));
        let answer = self.ask(messages).await?;
        let number: Option<usize> = answer.split(|c: char| !c.is_ascii_digit()).find(|part| !part.is_empty()).and_then(|n| n.parse().ok());
        Ok(number.filter(|n| (1..=conditions.len()).contains(n)).map(|n| n - 1))
    }

    async fn word_instruction(&self, history: &Conversation, instruction: &str) -> Result<String, ProviderError> {
        let system = format!(
            "You are the voice agent on a phone call. Say what comes next, in one or two short spoken sentences, following this instruction: {instruction}"
        );
        let mut messages = vec![json!({"role": "system", "content": system})];
        messages.extend(chat_history(history));
        self.ask(messages).await
    }
}

impl FlowModel for ChatFlowModel {
    fn choose<'a>(
        &'a self,
        history: &'a Conversation,
        note: Option<&'a str>,
        conditions: &'a [String],
    ) -> BoxFuture<'a, Result<Option<usize>, ProviderError>> {
        Box::pin(self.choose_condition(history, note, conditions))
    }

    fn word<'a>(&'a self, history: &'a Conversation, instruction: &'a str) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(self.word_instruction(history, instruction))
    }
}
