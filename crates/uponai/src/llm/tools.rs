//! The tools a Retell LLM gives its model: read from the stored LLM (the API checked names,
//! types and custom URLs when it was saved), offered to the model as OpenAI function tools,
//! and carried out: `end_call`, `transfer_call` and `press_digit` become the reply's
//! action (run once its words are spoken); `custom` tools are HTTP requests to the tenant's
//! URL through the egress guard; state edges are `transition_to_<state>` tools.

use std::collections::HashMap;
use std::time::Duration;

use agent::template::fill;
use serde_json::{Map, Value, json};
use url::Url;

use super::openai::error_chain;
use crate::egress::Egress;

/// Retell's default custom-tool timeout.
const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest timeout a tool may ask for.
const MAX_TOOL_TIMEOUT: Duration = Duration::from_secs(600);
/// Retell keeps this much of a tool's answer for the model.
const MAX_RESULT_CHARS: usize = 15_000;

/// A tool of the current state.
#[derive(Clone, Debug, PartialEq)]
pub enum Tool {
    EndCall {
        name: String,
        description: String,
    },
    /// `number`: a predefined destination; `None`: the model names it (`inferred`).
    TransferCall {
        name: String,
        description: String,
        number: Option<String>,
    },
    PressDigit {
        name: String,
        description: String,
    },
    Custom(CustomTool),
    /// A state edge: moves the LLM to `to`.
    Transition {
        name: String,
        to: String,
        description: String,
        parameters: Value,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct CustomTool {
    pub name: String,
    pub description: String,
    pub url: String,
    pub method: reqwest::Method,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub parameters: Value,
    pub args_at_root: bool,
    pub timeout: Duration,
    /// What to say while it runs (`speak_during_execution` with a static message).
    pub message_during: Option<String>,
    /// Ask the model again with the result (`speak_after_execution`, default true).
    pub speak_after: bool,
}

impl Tool {
    pub fn name(&self) -> &str {
        match self {
            Tool::EndCall { name, .. }
            | Tool::TransferCall { name, .. }
            | Tool::PressDigit { name, .. }
            | Tool::Transition { name, .. } => name,
            Tool::Custom(tool) => &tool.name,
        }
    }

    /// Reads one stored tool; types this install does not carry out yet give `None` (the
    /// model is not offered them).
    pub fn parse(tool: &Value) -> Option<Tool> {
        let text = |key: &str| tool.get(key).and_then(Value::as_str).map(str::to_owned);
        let name = text("name")?;
        let description = text("description").unwrap_or_default();
        match tool.get("type")?.as_str()? {
            "end_call" => Some(Tool::EndCall { name, description }),
            "press_digit" => Some(Tool::PressDigit { name, description }),
            "transfer_call" => {
                let destination = tool.get("transfer_destination");
                let number = match destination.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("inferred") => None,
                    _ => Some(destination.and_then(|d| d.get("number")).and_then(Value::as_str)?.to_owned()),
                };
                Some(Tool::TransferCall { name, description, number })
            }
            "custom" => {
                let pairs = |key: &str| -> Vec<(String, String)> {
                    let map = tool.get(key).and_then(Value::as_object);
                    map.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
                };
                let timeout = tool.get("timeout_ms").and_then(Value::as_u64).map_or(DEFAULT_TOOL_TIMEOUT, Duration::from_millis);
                let speak_during = tool.get("speak_during_execution").and_then(Value::as_bool).unwrap_or(false);
                let is_static = text("execution_message_type").as_deref() == Some("static_text");
                Some(Tool::Custom(CustomTool {
                    name,
                    description,
                    url: text("url")?,
                    method: text("method").and_then(|m| m.parse().ok()).unwrap_or(reqwest::Method::POST),
                    headers: pairs("headers"),
                    query: pairs("query_params"),
                    parameters: tool.get("parameters").cloned().unwrap_or_else(empty_parameters),
                    args_at_root: tool.get("args_at_root").and_then(Value::as_bool).unwrap_or(false),
                    timeout: timeout.min(MAX_TOOL_TIMEOUT),
                    message_during: (speak_during && is_static).then(|| text("execution_message_description")).flatten(),
                    speak_after: tool.get("speak_after_execution").and_then(Value::as_bool).unwrap_or(true),
                }))
            }
            _ => None,
        }
    }

    /// The tool as the model sees it: an OpenAI function tool.
    pub fn definition(&self) -> Value {
        let (description, parameters) = match self {
            Tool::EndCall { description, .. } => (or(description, "End the call."), empty_parameters()),
            Tool::TransferCall { description, number: Some(_), .. } => (or(description, "Transfer the call."), empty_parameters()),
            Tool::TransferCall { description, number: None, .. } => (
                or(description, "Transfer the call."),
                json!({"type": "object", "properties": {"number": {"type": "string", "description": "The phone number (E.164) or SIP URI to transfer to"}}, "required": ["number"]}),
            ),
            Tool::PressDigit { description, .. } => (
                or(description, "Press a key on the phone keypad, to navigate a phone menu."),
                json!({"type": "object", "properties": {"digit": {"type": "string", "description": "The digits to press: 0-9, * or #"}}, "required": ["digit"]}),
            ),
            Tool::Custom(tool) => (tool.description.clone(), tool.parameters.clone()),
            Tool::Transition { description, parameters, .. } => (description.clone(), parameters.clone()),
        };
        json!({"type": "function", "function": {"name": self.name(), "description": description, "parameters": parameters}})
    }
}

fn or(text: &str, default: &str) -> String {
    if text.trim().is_empty() { default.to_owned() } else { text.to_owned() }
}

fn empty_parameters() -> Value {
    json!({"type": "object", "properties": {}})
}

/// The result of a tool, for the model (and the transcript).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub content: String,
    pub ok: bool,
}

/// Carries out custom tools for one call.
#[derive(Clone)]
pub struct ToolRunner {
    pub http: reqwest::Client,
    pub egress: Egress,
    /// Retell's `call` in the request body.
    pub call: Value,
}

impl ToolRunner {
    /// Sends the tool's request and returns its answer; every failure is an outcome the
    /// model hears, never an error of the call.
    pub async fn run(&self, tool: &CustomTool, arguments: &str, variables: &HashMap<String, String>) -> Outcome {
        match self.request(tool, arguments, variables).await {
            Ok(outcome) => outcome,
            Err(why) => {
                tracing::warn!(tool = %tool.name, %why, "llm.tool_failed");
                Outcome { content: format!("The tool failed: {why}"), ok: false }
            }
        }
    }

    async fn request(&self, tool: &CustomTool, arguments: &str, variables: &HashMap<String, String>) -> Result<Outcome, String> {
        let args: Map<String, Value> = match serde_json::from_str::<Value>(if arguments.trim().is_empty() { "{}" } else { arguments }) {
            Ok(Value::Object(args)) => args,
            _ => return Err("its arguments are not a JSON object".into()),
        };
        let mut url = Url::parse(&fill(&tool.url, variables)).map_err(|err| format!("its URL is not valid: {err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("its URL is not http or https".into());
        }
        self.egress.check_literal(&url).map_err(|refused| refused.to_string())?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in &tool.query {
                query.append_pair(name, &fill(value, variables));
            }
            if matches!(tool.method, reqwest::Method::GET | reqwest::Method::DELETE) {
                for (name, value) in &args {
                    query.append_pair(name, &value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()));
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut request = self.http.request(tool.method.clone(), url).timeout(tool.timeout);
        for (name, value) in &tool.headers {
            let name =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header {name:?} is not a valid name"))?;
            let value = reqwest::header::HeaderValue::from_str(&fill(value, variables))
                .map_err(|_| format!("header {name} has a value that cannot be sent"))?;
            request = request.header(name, value);
        }
        if !matches!(tool.method, reqwest::Method::GET | reqwest::Method::DELETE) {
            let body = if tool.args_at_root { Value::Object(args) } else { json!({"name": tool.name, "call": self.call, "args": args}) };
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| error_chain(&err))?;
        let status = response.status();
        let text = response.text().await.map_err(|err| error_chain(&err))?;
        let content: String = text.chars().take(MAX_RESULT_CHARS).collect();
        if !status.is_success() {
            return Err(format!("it answered {status}: {content}"));
        }
        Ok(Outcome { content, ok: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_tools_become_function_tools_and_unbuilt_types_are_not_offered() {
        let custom = json!({"type": "custom", "name": "get_weather", "url": "https://example.com/w?k={{key}}", "method": "GET",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "speak_during_execution": true,
            "execution_message_type": "static_text", "execution_message_description": "One moment.", "timeout_ms": 5000});
        let Some(Tool::Custom(tool)) = Tool::parse(&custom) else { panic!("not a custom tool") };
        assert_eq!(
            (tool.method, tool.timeout, tool.message_during.as_deref(), tool.speak_after),
            (reqwest::Method::GET, Duration::from_secs(5), Some("One moment."), true)
        );
        let transfer = Tool::parse(
            &json!({"type": "transfer_call", "name": "to_human", "transfer_destination": {"type": "predefined", "number": "+14155550123"}}),
        );
        assert_eq!(
            transfer,
            Some(Tool::TransferCall { name: "to_human".into(), description: String::new(), number: Some("+14155550123".into()) })
        );
        let definition = transfer.unwrap().definition();
        assert_eq!(definition["function"]["name"], "to_human");
        assert_eq!(definition["function"]["parameters"]["type"], "object");
        assert_eq!(Tool::parse(&json!({"type": "send_sms", "name": "sms"})), None);
        assert_eq!(Tool::parse(&json!({"type": "end_call"})), None, "a tool needs a name");
    }
}
