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

/// The conversation of one call, as it stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversation {
    pub utterances: Vec<Utterance>,
    pub latency: Latency,
    /// Caller turns that got no answer within the deadline (the goal is zero).
    pub n_stuck_turns: u32,
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
}
