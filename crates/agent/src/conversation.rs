//! What was said in a call and how fast: the transcript (only the agent words whose audio
//! went out) and the latency samples, in Retell's shapes but as plain types.

use std::time::Duration;

/// Who spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Agent,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::User => "user",
        }
    }
}

/// One word with its time, from the call's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: Duration,
    pub end: Duration,
}

/// One utterance.
#[derive(Clone, Debug, PartialEq)]
pub struct Utterance {
    pub role: Role,
    pub content: String,
    pub words: Vec<Word>,
}

impl Utterance {
    /// Spreads `text`'s words evenly over `start..end` (the engines give no word timings:
    /// Whisper is run without timestamps and Piper's alignment is not exposed).
    pub fn spread(role: Role, text: &str, start: Duration, end: Duration) -> Self {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let n = tokens.len().max(1) as u32;
        let span = end.saturating_sub(start);
        let words = tokens
            .iter()
            .enumerate()
            .map(|(i, word)| Word { word: (*word).to_owned(), start: start + span * i as u32 / n, end: start + span * (i as u32 + 1) / n })
            .collect();
        Self { role, content: tokens.join(" "), words }
    }

    /// The utterance cut before each word index of `cuts` (ascending), as consecutive
    /// utterances; empty pieces are left out.
    pub fn split_at_words(&self, cuts: &[usize]) -> Vec<Utterance> {
        let mut out = Vec::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([self.words.len()]) {
            let end = end.clamp(start, self.words.len());
            if end > start {
                let words = self.words[start..end].to_vec();
                let content = words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ");
                out.push(Utterance { role: self.role, content, words });
            }
            start = end;
        }
        out
    }
}

/// Latency samples in milliseconds, one per answered turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Caller's last speech chunk → first agent audio frame sent.
    pub e2e: Vec<u32>,
    /// Speech-to-text time of the transcript that ended the turn.
    pub asr: Vec<u32>,
    /// Response engine time.
    pub llm: Vec<u32>,
    /// Text-to-speech time to the first audio of a reply.
    pub tts: Vec<u32>,
}

/// A tool call of the response engine, in Retell's `transcript_with_tool_calls` terms.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolEvent {
    /// `arguments` is the JSON text the model wrote.
    Invocation {
        id: String,
        name: String,
        arguments: String,
    },
    Result {
        id: String,
        content: String,
    },
}

/// An item of the transcript with tool calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a> {
    Utterance(&'a Utterance),
    Tool(&'a ToolEvent),
}

/// The conversation of one call, as it stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversation {
    pub utterances: Vec<Utterance>,
    /// Tool calls, each after the number of utterances that preceded it.
    pub tool_events: Vec<(usize, ToolEvent)>,
    pub latency: Latency,
    /// Caller turns that got no answer within the deadline (the goal is zero).
    pub n_stuck_turns: u32,
    /// What answering-machine detection decided, if it ran and decided.
    pub machine_detection: Option<MachineDetection>,
}

/// The answering-machine detector's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineDetection {
    pub machine: bool,
    /// Media-clock time of the decision (from the answer).
    pub decided_at: Duration,
}

impl Conversation {
    /// Retell's `transcript`: one `Agent: …` / `User: …` line per utterance.
    pub fn transcript(&self) -> String {
        self.utterances
            .iter()
            .filter(|u| !u.content.is_empty())
            .map(|u| format!("{}: {}", if u.role == Role::Agent { "Agent" } else { "User" }, u.content))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Utterances and tool calls in the order they happened.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let mut out = Vec::with_capacity(self.utterances.len() + self.tool_events.len());
        let mut tools = self.tool_events.iter().peekable();
        for (i, utterance) in self.utterances.iter().enumerate() {
            while let Some((_, event)) = tools.next_if(|(after, _)| *after <= i) {
                out.push(Entry::Tool(event));
            }
            out.push(Entry::Utterance(utterance));
        }
        out.extend(tools.map(|(_, event)| Entry::Tool(event)));
        out
    }

    /// Adds a tool event after the utterances so far.
    pub fn push_tool_event(&mut self, event: ToolEvent) {
        self.tool_events.push((self.utterances.len(), event));
    }
}

pub(crate) fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_spread_over_the_utterance_and_lines_name_the_speaker() {
        let u = Utterance::spread(Role::User, " yes  please ", Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(u.content, "yes please");
        assert_eq!(u.words[1].start, Duration::from_millis(1500));
        assert_eq!(u.words[1].end, Duration::from_secs(2));
        let c = Conversation {
            utterances: vec![Utterance::spread(Role::Agent, "Hi.", Duration::ZERO, Duration::ZERO), u],
            ..Default::default()
        };
        assert_eq!(c.transcript(), "Agent: Hi.\nUser: yes please");
    }

    #[test]
    fn tool_events_sit_between_the_utterances_they_came_between() {
        let mut c = Conversation::default();
        c.utterances.push(Utterance::spread(Role::User, "weather?", Duration::ZERO, Duration::ZERO));
        c.push_tool_event(ToolEvent::Invocation { id: "1".into(), name: "weather".into(), arguments: "{}".into() });
        c.push_tool_event(ToolEvent::Result { id: "1".into(), content: "sunny".into() });
        c.utterances.push(Utterance::spread(Role::Agent, "It is sunny.", Duration::ZERO, Duration::ZERO));
        c.push_tool_event(ToolEvent::Invocation { id: "2".into(), name: "end_call".into(), arguments: "{}".into() });
        let kinds: Vec<String> = c
            .entries()
            .iter()
            .map(|e| match e {
                Entry::Utterance(u) => u.content.clone(),
                Entry::Tool(ToolEvent::Invocation { name, .. }) => format!("call {name}"),
                Entry::Tool(ToolEvent::Result { content, .. }) => format!("result {content}"),
            })
            .collect();
        assert_eq!(kinds, ["weather?", "call weather", "result sunny", "It is sunny.", "call end_call"]);
    }
}
