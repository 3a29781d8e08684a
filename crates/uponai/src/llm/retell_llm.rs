//! The `retell-llm` response engine: the stored LLM's prompts, states and tools over any
//! OpenAI-compatible chat model, streamed into speech as it is written.
//!
//! Each request rebuilds the chat from the conversation as it was heard: the system prompt
//! (general prompt, then the current state's prompt, variables filled), then every
//! utterance and tool call in order. So a reply cut by a barge-in is remembered as far as
//! it was spoken, not as it was written. Within one request the model may call tools for a
//! few rounds; each invocation and result goes to the transcript as it happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agent::provider::{BoxFuture, EngineInput, ProviderError, Reply, ReplyPart, Request, ResponseEngine};
use agent::template::fill;
use agent::{Conversation, Entry, ToolEvent};
use serde_json::{Map, Value, json};

use super::openai::{ChatEndpoint, ChatRequest, Usage, stream_chat};
use super::tools::{Outcome, Tool, ToolRunner};

/// Model calls one request may make (tool rounds included).
const MAX_ROUNDS: usize = 6;

/// A stored Retell LLM, read for one call.
#[derive(Clone, Debug, Default)]
pub struct LlmDefinition {
    pub general_prompt: String,
    /// `None`: the model opens; `Some("")`: the agent waits for the caller.
    pub begin_message: Option<String>,
    pub general_tools: Vec<Tool>,
    pub states: Vec<State>,
    pub starting_state: Option<String>,
    pub temperature: Option<f64>,
    /// The LLM's `model`, used when the install names none.
    pub model: Option<String>,
    pub default_variables: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub name: String,
    pub prompt: String,
    pub tools: Vec<Tool>,
}

impl LlmDefinition {
    /// Reads the call's `effective_llm` (checked by the API when it was saved).
    pub fn parse(llm: &Map<String, Value>) -> Self {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        let tools = |value: Option<&Value>| -> Vec<Tool> {
            value.and_then(Value::as_array).into_iter().flatten().filter_map(Tool::parse).collect()
        };
        let states = llm
            .get("states")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|state| {
                let name = text(state.get("name"))?;
                let mut state_tools = tools(state.get("tools"));
                for edge in state.get("edges").and_then(Value::as_array).into_iter().flatten() {
                    let Some(to) = text(edge.get("destination_state_name")) else { continue };
                    state_tools.push(Tool::Transition {
                        name: format!("transition_to_{to}"),
                        description: text(edge.get("description")).unwrap_or_default(),
                        parameters: edge.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        to,
                    });
                }
                Some(State { prompt: text(state.get("state_prompt")).unwrap_or_default(), name, tools: state_tools })
            })
            .collect();
        let temperature =
            llm.get("model_temperature").or_else(|| llm.get("model_config").and_then(|c| c.get("temperature"))).and_then(Value::as_f64);
        Self {
            general_prompt: text(llm.get("general_prompt")).unwrap_or_default(),
            begin_message: text(llm.get("begin_message")),
            general_tools: tools(llm.get("general_tools")),
            states,
            starting_state: text(llm.get("starting_state")),
            temperature,
            model: text(llm.get("model"))
                .or_else(|| llm.get("model_config").and_then(|c| c.pointer("/primary/model")).and_then(Value::as_str).map(str::to_owned)),
            default_variables: llm
                .get("default_dynamic_variables")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect(),
        }
    }
}

/// Tokens used by a call's model requests, for `llm_token_usage`.
pub type UsageLog = Arc<Mutex<Vec<Usage>>>;

pub struct RetellLlmEngine {
    pub definition: LlmDefinition,
    pub http: reqwest::Client,
    pub endpoint: ChatEndpoint,
    pub tools: ToolRunner,
    pub variables: HashMap<String, String>,
    pub state: Option<String>,
    pub usage: UsageLog,
}

impl RetellLlmEngine {
    pub fn new(
        definition: LlmDefinition,
        http: reqwest::Client,
        endpoint: ChatEndpoint,
        tools: ToolRunner,
        mut variables: HashMap<String, String>,
        usage: UsageLog,
    ) -> Self {
        for (name, value) in &definition.default_variables {
            variables.entry(name.clone()).or_insert_with(|| value.clone());
        }
        let state = definition.starting_state.clone().or_else(|| definition.states.first().map(|s| s.name.clone()));
        Self { definition, http, endpoint, tools, variables, state, usage }
    }

    fn current_state(&self) -> Option<&State> {
        self.definition.states.iter().find(|s| Some(&s.name) == self.state.as_ref())
    }

    fn current_tools(&self) -> Vec<Tool> {
        let mut tools = self.definition.general_tools.clone();
        tools.extend(self.current_state().map(|s| s.tools.clone()).unwrap_or_default());
        tools
    }

    fn system_prompt(&self) -> String {
        let mut prompt = fill(&self.definition.general_prompt, &self.variables);
        if let Some(state) = self.current_state().filter(|s| !s.prompt.is_empty()) {
            if !prompt.is_empty() {
                prompt.push_str("\n\n");
            }
            prompt.push_str(&fill(&state.prompt, &self.variables));
        }
        prompt
    }

    async fn answer(&mut self, request: Request) -> Result<Reply, ProviderError> {
        let Request { input, history, parts } = request;
        if input == EngineInput::Begin
            && let Some(begin) = &self.definition.begin_message
        {
            return Ok(Reply { text: fill(begin, &self.variables), ..Reply::default() });
        }
        let mut messages = vec![json!({"role": "system", "content": self.system_prompt()})];
        messages.extend(chat_history(&history));
        match &input {
            EngineInput::Begin | EngineInput::UserTurn { .. } | EngineInput::Interrupt => {}
            EngineInput::Dtmf { digit } => messages.push(json!({"role": "user", "content": format!("(pressed {digit} on the keypad)")})),
            EngineInput::Reminder { .. } => messages.push(json!({"role": "system", "content": "The user has not said anything for a while. Briefly check that they are still there."})),
            EngineInput::Voicemail { instruction } => messages.push(json!({"role": "system", "content": format!(
                "The call reached a voicemail. Say only the message to leave, in one or two sentences: {instruction}"
            )})),
            EngineInput::ActionFailed { action, reason } => messages.push(
                json!({"role": "system", "content": format!("The {action} failed: {reason}. Tell the user, and carry on.")}),
            ),
        }
        let mut reply = Reply::default();
        let mut said_something = false;
        for _ in 0..MAX_ROUNDS {
            let tools = self.current_tools();
            let definitions: Vec<Value> = tools.iter().map(Tool::definition).collect();
            let chat =
                ChatRequest { messages: &messages, tools: &definitions, temperature: self.definition.temperature, json_schema: None };
            if said_something {
                let _ = parts.send(ReplyPart::Text(" ".into()));
            }
            let completion = stream_chat(&self.http, &self.endpoint, chat, |text: &str| {
                let _ = parts.send(ReplyPart::Text(text.to_owned()));
            })
            .await
            .map_err(|err| ProviderError::failed("retell-llm", err))?;
            said_something |= !completion.content.trim().is_empty();
            if let Some(usage) = completion.usage
                && let Ok(mut log) = self.usage.lock()
            {
                log.push(usage);
            }
            if completion.tool_calls.is_empty() {
                break;
            }
            // What the model said before its calls is spoken while they run.
            let _ = parts.send(ReplyPart::Flush);
            let calls: Vec<Value> = completion
                .tool_calls
                .iter()
                .map(|call| json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}))
                .collect();
            let content = if completion.content.is_empty() { Value::Null } else { json!(completion.content) };
            messages.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
            let mut again = false;
            for call in completion.tool_calls {
                let invocation = ToolEvent::Invocation { id: call.id.clone(), name: call.name.clone(), arguments: call.arguments.clone() };
                let _ = parts.send(ReplyPart::Tool(invocation));
                let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
                let arg = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_owned);
                let outcome = match tools.iter().find(|tool| tool.name() == call.name) {
                    None => {
                        again = true;
                        Outcome { content: format!("There is no tool named {:?}.", call.name), ok: false }
                    }
                    Some(Tool::EndCall { .. }) => {
                        reply.end_call = true;
                        Outcome { content: "The call will end after your last words.".into(), ok: true }
                    }
                    Some(Tool::TransferCall { number, .. }) => {
                        match number.clone().map(|n| fill(&n, &self.variables)).or_else(|| arg("number")) {
                            Some(to) => {
                                let content = format!("Transferring the call to {to}.");
                                reply.transfer_to = Some(to);
                                Outcome { content, ok: true }
                            }
                            None => {
                                again = true;
                                Outcome { content: "No number to transfer to was given.".into(), ok: false }
                            }
                        }
                    }
                    Some(Tool::PressDigit { .. }) => {
                        let digits: String = arg("digit")
                            .unwrap_or_default()
                            .chars()
                            .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#'))
                            .take(20)
                            .collect();
                        if digits.is_empty() {
                            again = true;
                            Outcome { content: "No digit to press was given.".into(), ok: false }
                        } else {
                            let content = format!("Pressed {digits}.");
                            reply.send_dtmf = Some(digits);
                            Outcome { content, ok: true }
                        }
                    }
                    Some(Tool::Custom(tool)) => {
                        if let Some(message) = &tool.message_during {
                            let _ = parts.send(ReplyPart::Text(format!(" {}", fill(message, &self.variables))));
                            let _ = parts.send(ReplyPart::Flush);
                            said_something = true;
                        }
                        again |= tool.speak_after;
                        self.tools.run(tool, &call.arguments, &self.variables).await
                    }
                    Some(Tool::Transition { to, .. }) => {
                        again = true;
                        self.state = Some(to.clone());
                        Outcome { content: format!("Now in state {to}."), ok: true }
                    }
                };
                let result = ToolEvent::Result { id: call.id.clone(), content: outcome.content.clone() };
                let _ = parts.send(ReplyPart::Tool(result));
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": outcome.content}));
            }
            if reply.end_call || reply.transfer_to.is_some() || !again {
                break;
            }
        }
        Ok(reply)
    }
}

impl ResponseEngine for RetellLlmEngine {
    fn name(&self) -> &str {
        "retell-llm"
    }

    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
        Box::pin(self.answer(request))
    }
}

/// The chat messages of a conversation: utterances as user and assistant turns, tool
/// calls that have a result as assistant tool calls and tool messages (a call cut before
/// its result is left out: the chat format requires both).
pub fn chat_history(history: &Conversation) -> Vec<Value> {
    let entries = history.entries();
    let answered: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Tool(ToolEvent::Result { id, .. }) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let invoked: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Tool(ToolEvent::Invocation { id, .. }) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut messages: Vec<Value> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Utterance(u) if u.content.trim().is_empty() => {}
            Entry::Utterance(u) => {
                let role = if u.role == agent::conversation::Role::Agent { "assistant" } else { "user" };
                messages.push(json!({"role": role, "content": u.content}));
            }
            Entry::Tool(ToolEvent::Invocation { id, name, arguments }) if answered.contains(id.as_str()) => {
                let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
                // Calls made together are one assistant message.
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                        if let Some(calls) = last["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            Entry::Tool(ToolEvent::Result { id, content }) if invoked.contains(id.as_str()) => {
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            Entry::Tool(_) => {}
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent::conversation::{Role, Utterance};

    use super::*;

    #[test]
    fn the_chat_is_the_conversation_as_heard_with_answered_tool_calls() {
        let mut c = Conversation::default();
        c.utterances.push(Utterance::spread(Role::Agent, "Hi.", Duration::ZERO, Duration::ZERO));
        c.utterances.push(Utterance::spread(Role::User, "Weather in Paris?", Duration::ZERO, Duration::ZERO));
        c.push_tool_event(ToolEvent::Invocation { id: "a".into(), name: "weather".into(), arguments: "{}".into() });
        c.push_tool_event(ToolEvent::Invocation { id: "b".into(), name: "time".into(), arguments: "{}".into() });
        c.push_tool_event(ToolEvent::Result { id: "a".into(), content: "sunny".into() });
        c.push_tool_event(ToolEvent::Result { id: "b".into(), content: "noon".into() });
        // Cut before its result: left out.
        c.push_tool_event(ToolEvent::Invocation { id: "c".into(), name: "weather".into(), arguments: "{}".into() });
        c.utterances.push(Utterance::spread(Role::Agent, "Sunny at noon.", Duration::ZERO, Duration::ZERO));
        let chat = chat_history(&c);
        let roles: Vec<&str> = chat.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["assistant", "user", "assistant", "tool", "tool", "assistant"]);
        assert_eq!(chat[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(chat[4]["tool_call_id"], "b");
    }

    #[test]
    fn states_offer_their_tools_and_edges_and_the_prompt_is_general_then_state() {
        let llm = json!({
            "general_prompt": "You are {{name}}.", "starting_state": "greet", "model_temperature": 0.2,
            "general_tools": [{"type": "end_call", "name": "end_call"}],
            "states": [
                {"name": "greet", "state_prompt": "Greet.", "edges": [{"destination_state_name": "book", "description": "wants to book"}]},
                {"name": "book", "state_prompt": "Book.", "tools": [{"type": "press_digit", "name": "press"}]}
            ],
            "default_dynamic_variables": {"name": "Joe"}
        });
        let definition = LlmDefinition::parse(llm.as_object().unwrap());
        assert_eq!(definition.temperature, Some(0.2));
        let endpoint = ChatEndpoint { base_url: url::Url::parse("http://127.0.0.1:9/v1").unwrap(), api_key: None, model: "m".into() };
        let runner = ToolRunner { http: reqwest::Client::new(), egress: crate::egress::Egress::guarded(), call: Value::Null };
        let mut engine = RetellLlmEngine::new(definition, reqwest::Client::new(), endpoint, runner, HashMap::new(), UsageLog::default());
        assert_eq!(engine.system_prompt(), "You are Joe.\n\nGreet.");
        let names: Vec<String> = engine.current_tools().iter().map(|t| t.name().to_owned()).collect();
        assert_eq!(names, ["end_call", "transition_to_book"]);
        engine.state = Some("book".into());
        let names: Vec<String> = engine.current_tools().iter().map(|t| t.name().to_owned()).collect();
        assert_eq!(names, ["end_call", "press"]);
    }
}
