//! Retell's conversation flows as a response engine: a graph of nodes (say this, end the
//! call, transfer, press digits, branch) joined by edges whose conditions are equations over
//! dynamic variables or prompts.
//!
//! With a [`FlowModel`] (the service's chat model), a node's `prompt` conditions are judged
//! by the model (one question per caller turn: which condition holds) and `prompt`
//! instructions are spoken as the model words them. Without one, `prompt` instructions are
//! spoken as written (variables filled) and `prompt` conditions are judged by a built-in
//! matcher, documented on [`matches_prompt`]: affirmative and negative answers, DTMF digits,
//! and quoted phrases as keywords; the matcher also stands in for a model that fails. Anything
//! else does not match offline. No match: the node's `Else` edge if it has one, else the node
//! asks again. (Branch nodes judge their `prompt` conditions offline.)

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use std::sync::Arc;

use crate::conversation::Conversation;
use crate::provider::{BoxFuture, EngineInput, ProviderError, Reply, Request, ResponseEngine};
use crate::template::fill;
use crate::turn::Speaker;

/// Hops a single reply may take through nodes (skip-response edges, branches) before the
/// flow is taken to loop.
const MAX_HOPS: usize = 32;

/// A parsed, checked flow.
#[derive(Clone, Debug)]
pub struct Flow {
    start: String,
    nodes: HashMap<String, Node>,
    pub start_speaker: Speaker,
    defaults: HashMap<String, String>,
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    /// What the node says (templated), if anything.
    text: Option<String>,
    /// `text` is an instruction for a model (`instruction.type: "prompt"`).
    prompt: bool,
    edges: Vec<Edge>,
    else_to: Option<String>,
    /// Leave for this node right after speaking, without waiting for the caller.
    skip_to: Option<String>,
    /// After the caller's next turn, go here whatever was said.
    always_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Conversation,
    End,
    Transfer { to: String },
    PressDigit { digits: String },
    Branch,
}

#[derive(Clone, Debug)]
struct Edge {
    condition: Condition,
    to: String,
}

#[derive(Clone, Debug)]
enum Condition {
    Prompt(String),
    Equations { all: bool, equations: Vec<Equation> },
}

#[derive(Clone, Debug)]
struct Equation {
    left: String,
    operator: Operator,
    right: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    NotContains,
    Exists,
    NotExist,
}

/// A flow that does not parse, naming the field at fault (`nodes[2].edges[0]…`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FlowError {
    pub field: String,
    pub problem: String,
}

fn error(field: impl Into<String>, problem: impl Into<String>) -> FlowError {
    FlowError { field: field.into(), problem: problem.into() }
}

impl Flow {
    /// Parses a flow document (`nodes`, `start_node_id`, `start_speaker`,
    /// `default_dynamic_variables`), checking every edge's destination.
    pub fn parse(document: &serde_json::Map<String, Value>) -> Result<Self, FlowError> {
        let raw_nodes = document.get("nodes").and_then(Value::as_array).ok_or_else(|| error("nodes", "must be a list of nodes"))?;
        if raw_nodes.is_empty() {
            return Err(error("nodes", "must hold at least one node"));
        }
        let mut nodes = HashMap::new();
        let mut order = Vec::new();
        for (i, raw) in raw_nodes.iter().enumerate() {
            let at = format!("nodes[{i}]");
            let id = raw
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| error(format!("{at}.id"), "is required"))?;
            let node = parse_node(raw, &at)?;
            if nodes.insert(id.to_owned(), node).is_some() {
                return Err(error(format!("{at}.id"), format!("{id:?} is used by another node")));
            }
            order.push(id.to_owned());
        }
        let start = match document.get("start_node_id").and_then(Value::as_str) {
            Some(id) if nodes.contains_key(id) => id.to_owned(),
            Some(id) => return Err(error("start_node_id", format!("no node has the id {id:?}"))),
            None => order[0].clone(),
        };
        for (i, id) in order.iter().enumerate() {
            let node = &nodes[id];
            let targets = node.edges.iter().map(|e| &e.to).chain(&node.else_to).chain(&node.skip_to).chain(&node.always_to);
            for target in targets {
                if !nodes.contains_key(target) {
                    return Err(error(format!("nodes[{i}]"), format!("an edge goes to {target:?}, which is no node")));
                }
            }
        }
        let start_speaker = match document.get("start_speaker").and_then(Value::as_str) {
            Some("user") => Speaker::User,
            _ => Speaker::Agent,
        };
        let defaults = string_map(document.get("default_dynamic_variables"));
        Ok(Self { start, nodes, start_speaker, defaults })
    }
}

fn string_map(value: Option<&Value>) -> HashMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect()
}

fn parse_node(raw: &Value, at: &str) -> Result<Node, FlowError> {
    let kind = raw.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = raw.get("instruction").and_then(|i| i.get("text")).and_then(Value::as_str).map(str::to_owned);
    let kind = match kind {
        "conversation" | "subagent" => Kind::Conversation,
        "end" => Kind::End,
        "branch" => Kind::Branch,
        "transfer_call" => {
            let destination = raw.get("transfer_destination");
            let to = destination
                .and_then(|d| d.get("number").or_else(|| d.get("uri")))
                .and_then(Value::as_str)
                .ok_or_else(|| error(format!("{at}.transfer_destination.number"), "is required"))?;
            Kind::Transfer { to: to.to_owned() }
        }
        "press_digit" => {
            let digits: String =
                text.as_deref().unwrap_or_default().chars().filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#')).collect();
            Kind::PressDigit { digits }
        }
        "" => return Err(error(format!("{at}.type"), "is required")),
        other => {
            return Err(error(
                format!("{at}.type"),
                format!("{other:?} nodes are not supported offline (conversation, end, transfer_call, press_digit, branch)"),
            ));
        }
    };
    let edge_to = |value: Option<&Value>, field: &str| -> Result<Option<String>, FlowError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(edge) => edge
                .get("destination_node_id")
                .and_then(Value::as_str)
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| error(format!("{at}.{field}.destination_node_id"), "is required")),
        }
    };
    let mut edges = Vec::new();
    for (j, edge) in raw.get("edges").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let field = format!("{at}.edges[{j}]");
        let to = edge
            .get("destination_node_id")
            .and_then(Value::as_str)
            .ok_or_else(|| error(format!("{field}.destination_node_id"), "is required"))?;
        let condition = parse_condition(edge.get("transition_condition"), &format!("{field}.transition_condition"))?;
        edges.push(Edge { condition, to: to.to_owned() });
    }
    let prompt = raw.get("instruction").and_then(|i| i.get("type")).and_then(Value::as_str) == Some("prompt");
    Ok(Node {
        kind,
        text,
        prompt,
        edges,
        else_to: edge_to(raw.get("else_edge"), "else_edge")?,
        skip_to: edge_to(raw.get("skip_response_edge"), "skip_response_edge")?,
        always_to: edge_to(raw.get("always_edge"), "always_edge")?,
    })
}

fn parse_condition(raw: Option<&Value>, at: &str) -> Result<Condition, FlowError> {
    let raw = raw.ok_or_else(|| error(at, "is required"))?;
    match raw.get("type").and_then(Value::as_str) {
        Some("prompt") => Ok(Condition::Prompt(raw.get("prompt").and_then(Value::as_str).unwrap_or_default().to_owned())),
        Some("equation") => {
            let all = match raw.get("operator").and_then(Value::as_str) {
                Some("&&" | "and") | None => true,
                Some("||" | "or") => false,
                Some(other) => return Err(error(format!("{at}.operator"), format!("{other:?} is not && or ||"))),
            };
            let mut equations = Vec::new();
            for (k, eq) in raw.get("equations").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let field = format!("{at}.equations[{k}]");
                let left = eq.get("left").and_then(Value::as_str).ok_or_else(|| error(format!("{field}.left"), "is required"))?;
                let operator = match eq.get("operator").and_then(Value::as_str).unwrap_or_default() {
                    "==" => Operator::Eq,
                    "!=" => Operator::Ne,
                    ">" => Operator::Gt,
                    ">=" => Operator::Ge,
                    "<" => Operator::Lt,
                    "<=" => Operator::Le,
                    "contains" => Operator::Contains,
                    "not_contains" => Operator::NotContains,
                    "exists" => Operator::Exists,
                    "not_exist" => Operator::NotExist,
                    other => return Err(error(format!("{field}.operator"), format!("{other:?} is not a known operator"))),
                };
                let right = match eq.get("right") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                equations.push(Equation { left: left.to_owned(), operator, right });
            }
            if equations.is_empty() {
                return Err(error(format!("{at}.equations"), "must hold at least one equation"));
            }
            Ok(Condition::Equations { all, equations })
        }
        _ => Err(error(format!("{at}.type"), "must be prompt or equation")),
    }
}

/// The flow as one call's response engine.
pub struct FlowEngine {
    flow: Flow,
    current: String,
    variables: HashMap<String, String>,
    started: Instant,
    model: Option<Arc<dyn FlowModel>>,
    /// This turn's judgement of the current node's `prompt` conditions.
    judged: Judged,
    /// `prompt` instructions met in this reply, for the model to word (their places in the
    /// reply's text are marked).
    to_word: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Judged {
    /// The offline matcher decides.
    Offline,
    /// The model chose this condition (or none).
    Model(Option<String>),
}

/// A chat model for a flow: judges `prompt` conditions and words `prompt` instructions.
pub trait FlowModel: Send + Sync {
    /// Which of `conditions` (by index) the conversation's last caller turn meets, if any;
    /// `note` adds what the transcript does not hold (a key pressed).
    fn choose<'a>(
        &'a self,
        history: &'a Conversation,
        note: Option<&'a str>,
        conditions: &'a [String],
    ) -> BoxFuture<'a, Result<Option<usize>, ProviderError>>;
    /// What the agent says next, following `instruction`.
    fn word<'a>(&'a self, history: &'a Conversation, instruction: &'a str) -> BoxFuture<'a, Result<String, ProviderError>>;
}

/// Marks the place of the `n`th worded instruction in a reply's text.
fn marker(n: usize) -> String {
    format!("\u{1}{n}\u{1}")
}

impl FlowEngine {
    /// `variables`: the call's dynamic and system variables; the flow's defaults fill in
    /// what they lack. `start_node` overrides the flow's (Retell's `current_node_id`).
    pub fn new(flow: Flow, variables: HashMap<String, String>, start_node: Option<&str>) -> Self {
        let mut all = flow.defaults.clone();
        all.extend(variables);
        let current = start_node.filter(|id| flow.nodes.contains_key(*id)).unwrap_or(&flow.start).to_owned();
        Self { flow, current, variables: all, started: Instant::now(), model: None, judged: Judged::Offline, to_word: Vec::new() }
    }

    /// The flow judged and worded by `model`.
    pub fn with_model(mut self, model: Arc<dyn FlowModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Answers with the model: first its judgement of the current node's conditions, then the
    /// flow's moves, then its wording of the `prompt` instructions met.
    async fn answer_with_model(&mut self, model: Arc<dyn FlowModel>, input: EngineInput, history: Conversation) -> Reply {
        self.judged = Judged::Offline;
        if matches!(input, EngineInput::UserTurn { .. } | EngineInput::Dtmf { .. }) {
            let vars = self.vars();
            let prompts: Vec<&String> = self.flow.nodes[&self.current]
                .edges
                .iter()
                .filter_map(|edge| match &edge.condition {
                    Condition::Prompt(prompt) => Some(prompt),
                    Condition::Equations { .. } => None,
                })
                .collect();
            if !prompts.is_empty() {
                let filled: Vec<String> = prompts.iter().map(|p| fill(p, &vars)).collect();
                let note = match &input {
                    EngineInput::Dtmf { digit } => Some(format!("The user pressed {digit} on the keypad.")),
                    _ => None,
                };
                match model.choose(&history, note.as_deref(), &filled).await {
                    Ok(choice) => self.judged = Judged::Model(choice.and_then(|i| prompts.get(i)).map(|p| (*p).clone())),
                    Err(error) => tracing::warn!(%error, "flow.model_failed: judging offline"),
                }
            }
        }
        self.to_word.clear();
        let mut reply = self.answer(input);
        for (n, instruction) in std::mem::take(&mut self.to_word).into_iter().enumerate() {
            let worded = match model.word(&history, &instruction).await {
                Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
                Ok(_) => instruction.clone(),
                Err(error) => {
                    tracing::warn!(%error, "flow.model_failed: speaking the instruction as written");
                    instruction.clone()
                }
            };
            reply.text = reply.text.replace(&marker(n), &worded);
        }
        reply
    }

    pub fn current_node(&self) -> &str {
        &self.current
    }

    fn vars(&self) -> HashMap<String, String> {
        let mut vars = self.variables.clone();
        vars.insert("session_duration".into(), format!("{} seconds", self.started.elapsed().as_secs()));
        vars
    }

    /// Enters `node` (and whatever branches and skip-response edges lead on from it),
    /// collecting what is said into `reply`.
    fn enter(&mut self, node: String, reply: &mut Reply) {
        let mut next = Some(node);
        let mut hops = 0;
        while let Some(id) = next.take() {
            hops += 1;
            if hops > MAX_HOPS {
                tracing::warn!(node = %id, "flow.loop: too many hops in one reply");
                return;
            }
            self.current = id.clone();
            let node = self.flow.nodes[&id].clone();
            if node.kind == Kind::Branch {
                next = self.pick_edge(&node, None).or(node.else_to.clone());
                if next.is_none() {
                    tracing::warn!(node = %id, "flow.branch_without_match: staying");
                }
                continue;
            }
            if let Some(text) = &node.text {
                let spoken = if node.prompt && self.model.is_some() {
                    self.to_word.push(fill(text, &self.vars()));
                    marker(self.to_word.len() - 1)
                } else {
                    fill(text, &self.vars())
                };
                if !spoken.trim().is_empty() {
                    if !reply.text.is_empty() {
                        reply.text.push(' ');
                    }
                    reply.text.push_str(spoken.trim());
                }
            }
            match &node.kind {
                Kind::End => reply.end_call = true,
                Kind::Transfer { to } => reply.transfer_to = Some(fill(to, &self.vars())),
                Kind::PressDigit { digits } => reply.send_dtmf = Some(digits.clone()),
                Kind::Conversation | Kind::Branch => {}
            }
            next = node.skip_to.clone();
        }
    }

    /// The destination of the first edge whose condition holds for `input`.
    fn pick_edge(&self, node: &Node, input: Option<&EngineInput>) -> Option<String> {
        let vars = self.vars();
        node.edges
            .iter()
            .find(|edge| match &edge.condition {
                Condition::Equations { all, equations } => {
                    let mut results = equations.iter().map(|eq| evaluate(eq, &vars));
                    if *all { results.all(|r| r) } else { results.any(|r| r) }
                }
                Condition::Prompt(prompt) => match &self.judged {
                    Judged::Model(choice) if input.is_some() => choice.as_ref() == Some(prompt),
                    _ => input.is_some_and(|input| matches_prompt(prompt, input)),
                },
            })
            .map(|edge| edge.to.clone())
    }

    fn answer(&mut self, input: EngineInput) -> Reply {
        let mut reply = Reply::default();
        match &input {
            EngineInput::Begin => {
                let start = self.current.clone();
                self.enter(start, &mut reply);
            }
            EngineInput::Reminder { .. } => {
                // Say the current node again.
                let current = self.current.clone();
                if let Some(text) = self.flow.nodes.get(&current).and_then(|n| n.text.clone()) {
                    reply.text = fill(&text, &self.vars());
                }
            }
            // A transfer node's transfer failed: the flow stays where it is and says nothing.
            EngineInput::ActionFailed { .. } | EngineInput::Interrupt | EngineInput::Voicemail { .. } => {}
            EngineInput::UserTurn { .. } | EngineInput::Dtmf { .. } => {
                let node = self.flow.nodes[&self.current].clone();
                if let EngineInput::UserTurn { text } = &input {
                    self.variables.insert("last_user_utterance".into(), text.clone());
                }
                let target = self.pick_edge(&node, Some(&input)).or(node.always_to.clone()).or(node.else_to.clone());
                match target {
                    Some(target) => self.enter(target, &mut reply),
                    None => {
                        tracing::info!(node = %self.current, "flow.no_match: asking again");
                        if let Some(text) = &node.text {
                            reply.text = fill(text, &self.vars());
                        }
                    }
                }
            }
        }
        reply
    }
}

impl ResponseEngine for FlowEngine {
    fn name(&self) -> &str {
        "conversation-flow"
    }

    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
        match self.model.clone() {
            Some(model) => Box::pin(async move { Ok(self.answer_with_model(model, request.input, request.history).await) }),
            None => {
                let reply = self.answer(request.input);
                Box::pin(async move { Ok(reply) })
            }
        }
    }
}

/// An equation over filled templates. A left side whose variable is unknown (still
/// `{{…}}`) does not exist. Sides that both parse as numbers compare as numbers, else as text.
fn evaluate(equation: &Equation, vars: &HashMap<String, String>) -> bool {
    let left = fill(&equation.left, vars);
    let exists = !left.contains("{{") && !left.trim().is_empty();
    let right = fill(&equation.right, vars);
    let numbers = left.trim().parse::<f64>().ok().zip(right.trim().parse::<f64>().ok());
    let ordering = match numbers {
        Some((a, b)) => a.partial_cmp(&b),
        None => Some(left.as_str().cmp(right.as_str())),
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match equation.operator {
        Operator::Exists => exists,
        Operator::NotExist => !exists,
        _ if !exists => false,
        Operator::Eq => ordering == Some(Equal),
        Operator::Ne => ordering != Some(Equal),
        Operator::Gt => ordering == Some(Greater),
        Operator::Ge => matches!(ordering, Some(Greater | Equal)),
        Operator::Lt => ordering == Some(Less),
        Operator::Le => matches!(ordering, Some(Less | Equal)),
        Operator::Contains => left.to_lowercase().contains(&right.to_lowercase()),
        Operator::NotContains => !left.to_lowercase().contains(&right.to_lowercase()),
    }
}

const AFFIRMATIVE: [&str; 16] = [
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "correct",
    "right",
    "ok",
    "okay",
    "absolutely",
    "definitely",
    "certainly",
    "works",
    "fine",
    "agree",
    "please",
];
const NEGATIVE: [&str; 12] = ["no", "nope", "nah", "not", "don't", "dont", "can't", "cannot", "never", "won't", "busy", "negative"];

/// The offline judge of a `prompt` condition (until M7's LLM):
/// - a prompt with quoted phrases (`User mentions "Tuesday" or "next week"`) matches a turn
///   that contains any of them (case-insensitive, whole words);
/// - a prompt naming a digit press (`User pressed 1`, `presses 2`) matches that DTMF digit,
///   or the digit or its name spoken;
/// - a prompt about agreeing (`User said yes`, `agrees`, `confirms`) matches an affirmative
///   answer without a negation; one about refusing (`User said no`, `declines`) a negative one;
/// - `Always` matches anything; every other prompt matches nothing offline.
pub fn matches_prompt(prompt: &str, input: &EngineInput) -> bool {
    let lowered = prompt.to_lowercase();
    if lowered.trim() == "always" {
        return true;
    }
    let quoted: Vec<String> = prompt.split('"').skip(1).step_by(2).map(str::to_lowercase).filter(|q| !q.trim().is_empty()).collect();
    let words_of = |text: &str| -> Vec<String> {
        text.to_lowercase().split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).map(str::to_owned).collect()
    };
    let prompt_words = words_of(&lowered);
    let pressed = prompt_words.iter().position(|w| w.starts_with("press")).and_then(|i| prompt_words.get(i + 1)).and_then(|w| digit_of(w));
    match input {
        EngineInput::Dtmf { digit } => pressed == Some(*digit),
        EngineInput::UserTurn { text } => {
            let said = words_of(text);
            if !quoted.is_empty() {
                let padded = format!(" {} ", said.join(" "));
                return quoted.iter().any(|q| padded.contains(&format!(" {} ", words_of(q).join(" "))));
            }
            if let Some(digit) = pressed {
                return said.iter().any(|w| digit_of(w) == Some(digit));
            }
            let negative = said.iter().any(|w| NEGATIVE.contains(&w.as_str()));
            let affirmative = !negative && said.iter().any(|w| AFFIRMATIVE.contains(&w.as_str()));
            let about_yes = prompt_words
                .iter()
                .any(|w| ["yes", "agree", "agrees", "confirm", "confirms", "affirmative", "accepts"].contains(&w.as_str()));
            let about_no =
                prompt_words.iter().any(|w| ["no", "declines", "decline", "refuses", "negative", "disagrees"].contains(&w.as_str()));
            (about_yes && affirmative) || (about_no && !about_yes && negative)
        }
        _ => false,
    }
}

fn digit_of(word: &str) -> Option<char> {
    const NAMES: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let mut chars = word.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
        _ => NAMES.iter().position(|n| *n == word).and_then(|i| char::from_digit(i as u32, 10)),
    }
}

#[cfg(test)]
mod tests;
