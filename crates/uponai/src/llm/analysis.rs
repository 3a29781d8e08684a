//! Post-call analysis: after `call_ended`, the call's transcript is put to the model server
//! as one JSON question (with a JSON schema, for servers that take one): Retell's
//! `call_summary`, `user_sentiment`, `call_successful`, `in_voicemail`, and the agent's
//! `post_call_analysis_data` items. The answer is typed item by item (a number is a JSON
//! number, an enum one of its choices, anything else null), so a model's loose answer never
//! reaches the call object as the wrong type.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::openai::{ChatEndpoint, ChatError, ChatRequest, Usage, stream_chat};

/// The longest an analysis may take.
pub const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(30);
const SENTIMENTS: [&str; 4] = ["Negative", "Positive", "Neutral", "Unknown"];

/// One `post_call_analysis_data` item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Text,
    Choice(Vec<String>),
    Boolean,
    Number,
}

/// What to ask, from the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Questions {
    pub items: Vec<Item>,
    pub summary_prompt: Option<String>,
    pub success_prompt: Option<String>,
    pub sentiment_prompt: Option<String>,
}

impl Questions {
    /// From the effective agent: `post_call_analysis_data` (presets tune the built-in
    /// questions) and the `analysis_*_prompt` fields.
    pub fn of_agent(agent: &Map<String, Value>) -> Self {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).filter(|t| !t.trim().is_empty()).map(str::to_owned);
        let mut questions = Self {
            items: Vec::new(),
            summary_prompt: text(agent.get("analysis_summary_prompt")),
            success_prompt: text(agent.get("analysis_successful_prompt")),
            sentiment_prompt: text(agent.get("analysis_user_sentiment_prompt")),
        };
        for item in agent.get("post_call_analysis_data").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = text(item.get("name")) else { continue };
            let description = text(item.get("description")).unwrap_or_default();
            let kind = match item.get("type").and_then(Value::as_str) {
                Some("string") => Kind::Text,
                Some("boolean") => Kind::Boolean,
                Some("number") => Kind::Number,
                Some("enum") => {
                    let choices: Vec<String> = item
                        .get("choices")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect();
                    Kind::Choice(choices)
                }
                Some("system-presets") => {
                    let prompt = Some(description).filter(|d| !d.is_empty());
                    match name.as_str() {
                        "call_summary" => questions.summary_prompt = prompt.or(questions.summary_prompt.take()),
                        "call_successful" => questions.success_prompt = prompt.or(questions.success_prompt.take()),
                        "user_sentiment" => questions.sentiment_prompt = prompt.or(questions.sentiment_prompt.take()),
                        _ => {}
                    }
                    continue;
                }
                _ => continue,
            };
            let examples = item
                .get("examples")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect();
            questions.items.push(Item { name, description, kind, examples });
        }
        questions
    }

    /// The JSON schema of the answer.
    pub fn schema(&self) -> Value {
        let mut custom = Map::new();
        for item in &self.items {
            let schema = match &item.kind {
                Kind::Text => json!({"type": ["string", "null"]}),
                Kind::Boolean => json!({"type": ["boolean", "null"]}),
                Kind::Number => json!({"type": ["number", "null"]}),
                Kind::Choice(choices) => {
                    json!({"type": ["string", "null"], "enum": choices.iter().map(|c| json!(c)).chain([Value::Null]).collect::<Vec<_>>()})
                }
            };
            custom.insert(item.name.clone(), schema);
        }
        let names: Vec<&str> = self.items.iter().map(|i| i.name.as_str()).collect();
        json!({
            "type": "object",
            "properties": {
                "call_summary": {"type": "string"},
                "user_sentiment": {"type": "string", "enum": SENTIMENTS},
                "call_successful": {"type": "boolean"},
                "in_voicemail": {"type": "boolean"},
                "custom_analysis_data": {"type": "object", "properties": custom, "required": names, "additionalProperties": false},
            },
            "required": ["call_summary", "user_sentiment", "call_successful", "in_voicemail", "custom_analysis_data"],
            "additionalProperties": false,
        })
    }

    /// The chat that asks for the analysis of `transcript`.
    pub fn messages(&self, transcript: &str) -> Vec<Value> {
        let mut ask = String::from(
            "You analyse phone calls between an AI agent and a user. Read the transcript and answer with one JSON object, nothing else, with these keys:\n",
        );
        let or = |prompt: &Option<String>, default: &str| prompt.clone().unwrap_or_else(|| default.to_owned());
        ask.push_str(&format!("- call_summary: {}\n", or(&self.summary_prompt, "a summary of the call in a few sentences")));
        ask.push_str(&format!(
            "- user_sentiment: one of Negative, Positive, Neutral, Unknown: {}\n",
            or(&self.sentiment_prompt, "the user's sentiment over the call")
        ));
        ask.push_str(&format!(
            "- call_successful: true or false: {}\n",
            or(&self.success_prompt, "whether the agent did what the call was for")
        ));
        ask.push_str("- in_voicemail: true or false: whether the call reached a voicemail or answering machine\n");
        ask.push_str("- custom_analysis_data: an object with these keys (null where the call does not say):\n");
        for item in &self.items {
            let kind = match &item.kind {
                Kind::Text => "text".to_owned(),
                Kind::Boolean => "true or false".to_owned(),
                Kind::Number => "a number".to_owned(),
                Kind::Choice(choices) => format!("one of {}", choices.join(", ")),
            };
            ask.push_str(&format!("  - {} ({kind}): {}", item.name, item.description));
            if !item.examples.is_empty() {
                ask.push_str(&format!(" (for example: {})", item.examples.join("; ")));
            }
            ask.push('\n');
        }
        vec![json!({"role": "system", "content": ask}), json!({"role": "user", "content": format!("Transcript:\n{transcript}")})]
    }

    /// Retell's `call_analysis` from the model's answer, every field of its type.
    pub fn typed(&self, answer: &Value) -> Value {
        let sentiment = answer
            .get("user_sentiment")
            .and_then(Value::as_str)
            .and_then(|s| SENTIMENTS.iter().find(|known| known.eq_ignore_ascii_case(s.trim())))
            .copied()
            .unwrap_or("Unknown");
        let mut custom = Map::new();
        for item in &self.items {
            let raw = answer.pointer(&format!("/custom_analysis_data/{}", item.name.replace('~', "~0").replace('/', "~1")));
            custom.insert(item.name.clone(), typed_value(&item.kind, raw));
        }
        json!({
            "call_summary": answer.get("call_summary").and_then(Value::as_str).map(str::trim),
            "user_sentiment": sentiment,
            "call_successful": typed_value(&Kind::Boolean, answer.get("call_successful")),
            "in_voicemail": typed_value(&Kind::Boolean, answer.get("in_voicemail")).as_bool().unwrap_or(false),
            "custom_analysis_data": custom,
        })
    }
}

fn typed_value(kind: &Kind, raw: Option<&Value>) -> Value {
    let Some(raw) = raw else { return Value::Null };
    match kind {
        Kind::Text => match raw {
            Value::String(text) => json!(text),
            Value::Number(_) | Value::Bool(_) => json!(raw.to_string()),
            _ => Value::Null,
        },
        Kind::Boolean => match raw {
            Value::Bool(b) => json!(b),
            Value::String(text) if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("yes") => json!(true),
            Value::String(text) if text.eq_ignore_ascii_case("false") || text.eq_ignore_ascii_case("no") => json!(false),
            _ => Value::Null,
        },
        Kind::Number => match raw {
            Value::Number(_) => raw.clone(),
            Value::String(text) => text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, |n| {
                // "42" is 42, not 42.0.
                n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map_or(Value::Number(n.clone()), |f| json!(f as i64))
            }),
            _ => Value::Null,
        },
        Kind::Choice(choices) => match raw {
            Value::String(text) => choices.iter().find(|c| c.eq_ignore_ascii_case(text.trim())).map_or(Value::Null, |c| json!(c)),
            _ => Value::Null,
        },
    }
}

/// Asks the model; a server that refuses the JSON schema is asked again without it.
pub async fn analyze(
    http: &reqwest::Client,
    endpoint: &ChatEndpoint,
    questions: &Questions,
    transcript: &str,
) -> Result<(Value, Option<Usage>), String> {
    let messages = questions.messages(transcript);
    let ask = |schema: Option<Value>| {
        let request = ChatRequest { messages: &messages, tools: &[], temperature: Some(0.0), json_schema: schema };
        stream_chat(http, endpoint, request, |_| {})
    };
    let completion = match ask(Some(questions.schema())).await {
        Err(ChatError::Status { status: 400 | 422, .. }) => ask(None).await,
        other => other,
    }
    .map_err(|err| err.to_string())?;
    let answer =
        json_in(&completion.content).ok_or_else(|| format!("the model's answer is not a JSON object: {:.200}", completion.content))?;
    Ok((questions.typed(&answer), completion.usage))
}

/// The JSON object in a model's answer (some wrap it in a code fence or a sentence).
fn json_in(text: &str) -> Option<Value> {
    if let Ok(value @ Value::Object(_)) = serde_json::from_str(text.trim()) {
        return Some(value);
    }
    let (start, end) = (text.find('{')?, text.rfind('}')?);
    match serde_json::from_str(text.get(start..=end)?) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn questions() -> Questions {
        let agent = json!({"post_call_analysis_data": [
            {"type": "string", "name": "reason", "description": "why they called"},
            {"type": "enum", "name": "tier", "description": "plan", "choices": ["basic", "pro"]},
            {"type": "boolean", "name": "wants_callback", "description": "asked to be called back"},
            {"type": "number", "name": "order_count", "description": "how many orders"},
            {"type": "system-presets", "name": "call_summary", "description": "One line."}
        ]});
        Questions::of_agent(agent.as_object().unwrap())
    }

    #[test]
    fn answers_are_typed_per_item_and_loose_ones_become_null() {
        let q = questions();
        assert_eq!(q.summary_prompt.as_deref(), Some("One line."));
        assert_eq!(q.items.len(), 4);
        let answer = json!({"call_summary": " Asked about orders. ", "user_sentiment": "positive", "call_successful": "yes",
            "in_voicemail": false, "custom_analysis_data": {"reason": "orders", "tier": "PRO", "wants_callback": true, "order_count": "3"}});
        let typed = q.typed(&answer);
        assert_eq!(
            typed,
            json!({"call_summary": "Asked about orders.", "user_sentiment": "Positive", "call_successful": true,
            "in_voicemail": false, "custom_analysis_data": {"reason": "orders", "tier": "pro", "wants_callback": true, "order_count": 3}})
        );
        let loose = q.typed(
            &json!({"user_sentiment": "ecstatic", "custom_analysis_data": {"tier": "gold", "order_count": "many", "wants_callback": [1]}}),
        );
        assert_eq!(loose["user_sentiment"], "Unknown");
        assert_eq!(loose["custom_analysis_data"], json!({"reason": null, "tier": null, "wants_callback": null, "order_count": null}));
        assert_eq!(loose["call_successful"], Value::Null);
        let schema = q.schema();
        assert_eq!(schema["properties"]["custom_analysis_data"]["required"], json!(["reason", "tier", "wants_callback", "order_count"]));
        assert_eq!(json_in("Here it is: ```json\n{\"a\": 1}\n```"), Some(json!({"a": 1})));
        assert_eq!(json_in("no json"), None);
    }
}
