//! The agent task against the instant stand-in providers (`crate::instant`) and a simulated
//! media task, in virtual time: what the caller hears, what the transcript keeps, and when.

use std::sync::Mutex as StdMutex;

use super::*;
use crate::instant::{CountingStt, LoudnessVad, ToneTts};
use crate::provider::BoxFuture;

/// Begins with a greeting, then answers each turn with its words and a fixed tail.
struct EchoEngine {
    greeting: &'static str,
}

impl ResponseEngine for EchoEngine {
    fn name(&self) -> &str {
        "echo"
    }
    fn respond(&mut self, request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
        let text = match request.input {
            EngineInput::Begin => self.greeting.to_owned(),
            EngineInput::UserTurn { text } if text.contains("bye") => {
                return Box::pin(async { Ok(Reply { text: "Goodbye.".into(), end_call: true, ..Reply::default() }) });
            }
            EngineInput::UserTurn { text } => format!("You said {text}."),
            EngineInput::Dtmf { digit } => format!("You pressed {digit}."),
            EngineInput::Reminder { .. } => "Are you there?".into(),
            EngineInput::ActionFailed { .. } | EngineInput::Interrupt | EngineInput::Voicemail { .. } => String::new(),
        };
        Box::pin(async move { Ok(Reply { text, ..Reply::default() }) })
    }
}

/// The media side: frames queued by the agent, a gate, and what went out.
#[derive(Default)]
struct Wire {
    queue: StdMutex<VecDeque<(Generation, [i16; FRAME_SAMPLES], bool)>>,
    first_allowed: StdMutex<Generation>,
}

struct WireMouth(Arc<Wire>);

impl Mouth for WireMouth {
    fn speak(&self, generation: Generation, samples: [i16; FRAME_SAMPLES], last: bool) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // A bounded queue of 10 frames, as the real one is bounded.
            while self.0.queue.lock().unwrap().len() >= 10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.0.queue.lock().unwrap().push_back((generation, samples, last));
            true
        })
    }
    fn cancel_through(&self, generation: Generation) {
        let mut allowed = self.0.first_allowed.lock().unwrap();
        *allowed = (*allowed).max(generation + 1);
    }
    fn send_dtmf(&self, _digits: &str) {}
}

/// Plays the media task: every 20 ms one caller frame from `script` to the agent, one
/// agent frame out (playout reports as the real session makes them). Returns the agent
/// frames sent, as (time, generation).
async fn media(wire: Arc<Wire>, heard: mpsc::Sender<Heard>, script: Vec<(Duration, i16)>, until: Duration) -> Vec<(Duration, Generation)> {
    let mut sent = Vec::new();
    let mut active: Option<(Generation, u32, Duration, Duration)> = None;
    let mut at = Duration::ZERO;
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    while at < until {
        interval.tick().await;
        let level = script.iter().rev().find(|(from, _)| *from <= at).map_or(0, |(_, level)| *level);
        if heard.send(Heard::Audio { at, samples: [level; FRAME_SAMPLES], concealed: false }).await.is_err() {
            break;
        }
        let allowed = *wire.first_allowed.lock().unwrap();
        let ended = |active: &mut Option<(Generation, u32, Duration, Duration)>, cancelled: bool| {
            if let Some((generation, frames, first_at, last_at)) = active.take() {
                let _ = heard.try_send(Heard::PlayoutEnded { generation, frames, first_at, last_at, cancelled });
            }
        };
        if active.is_some_and(|(g, ..)| g < allowed) {
            ended(&mut active, true);
        }
        let next = loop {
            let frame = wire.queue.lock().unwrap().pop_front();
            match frame {
                Some((g, ..)) if g < allowed => continue,
                other => break other,
            }
        };
        if let Some((generation, _, last)) = next {
            if active.is_none() {
                active = Some((generation, 0, at, at));
                let _ = heard.try_send(Heard::PlayoutStarted { generation, at });
            }
            if let Some(a) = active.as_mut() {
                a.1 += 1;
                a.3 = at;
            }
            sent.push((at, generation));
            if last {
                ended(&mut active, false);
            }
        }
        at += Duration::from_millis(20);
    }
    sent
}

fn settings(start_speaker: Speaker) -> AgentSettings {
    AgentSettings {
        turn: TurnConfig::from_agent(1.0, 1.0, None, 0, 600_000),
        start_speaker,
        voice_speed: 1.0,
        volume: 1.0,
        deadlines: Deadlines::default(),
        voicemail: None,
        begin_after_user_silence: None,
    }
}

fn providers(greeting: &'static str) -> Providers {
    Providers { vad: Box::new(LoudnessVad), stt: Arc::new(CountingStt), tts: Arc::new(ToneTts), engine: Box::new(EchoEngine { greeting }) }
}

struct Run {
    conversation: Conversation,
    sent: Vec<(Duration, Generation)>,
    events: Vec<AgentEvent>,
}

async fn run_call(settings: AgentSettings, providers: Providers, script: Vec<(Duration, i16)>, until: Duration) -> Run {
    let wire = Arc::new(Wire::default());
    let (heard_tx, heard_rx) = mpsc::channel(64);
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(run(settings, providers, heard_rx, Arc::new(WireMouth(wire.clone())), events_tx, cancel.clone()));
    let sent = media(wire, heard_tx, script, until).await;
    cancel.cancel();
    let conversation = agent.await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        events.push(event);
    }
    Run { conversation, sent, events }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn the_agent_greets_hears_a_turn_and_answers_it_at_the_wire() {
    // Caller: quiet while greeted, 1 s of speech at 2 s, then quiet.
    let script = vec![(ms(0), 0), (ms(2000), 8000), (ms(3000), 0)];
    let run = run_call(settings(Speaker::Agent), providers("Hello there."), script, ms(6000)).await;
    let transcript = run.conversation.transcript();
    assert_eq!(transcript, "Agent: Hello there.\nUser: word1 word2\nAgent: You said word1 word2.");
    // The greeting went out from the start: two words, 200 ms.
    assert_eq!(run.sent.iter().filter(|(_, g)| *g == 1).count(), 10);
    // e2e: from the last speech chunk (its end, 3.0 s) to the first answer frame.
    let first_answer = run.sent.iter().find(|(_, g)| *g == 2).unwrap().0;
    let e2e = run.conversation.latency.e2e.clone();
    assert_eq!(e2e.len(), 1);
    assert_eq!(u128::from(e2e[0]), first_answer.as_millis() - 3000, "e2e is measured at the wire");
    // Instant providers: the answer follows the end-of-turn silence within a few frames.
    let silence = settings(Speaker::Agent).turn.end_of_turn_silence.as_millis() as u32;
    assert!(e2e[0] >= silence && e2e[0] <= silence + 60, "e2e {} ms", e2e[0]);
    assert_eq!(run.conversation.n_stuck_turns, 0);
    assert!(run.events.iter().any(|e| matches!(e, AgentEvent::TranscriptUpdated(c) if !c.utterances.is_empty())));
}

#[tokio::test(start_paused = true)]
async fn a_barge_in_stops_the_agent_within_a_tick_and_the_transcript_keeps_only_what_was_played() {
    // The greeting is long (40 words, 4 s); the caller talks over it at 1 s for 1 s.
    let greeting = "one two three four five six seven eight nine ten. one two three four five six seven eight nine ten. \
                    one two three four five six seven eight nine ten. one two three four five six seven eight nine ten.";
    let script = vec![(ms(0), 0), (ms(1000), 8000), (ms(2000), 0)];
    let run = run_call(settings(Speaker::Agent), providers(greeting), script, ms(6000)).await;
    let greeting_frames: Vec<_> = run.sent.iter().filter(|(_, g)| *g == 1).collect();
    let last_greeting = greeting_frames.last().unwrap().0;
    // 200 ms of speech interrupts: the run began at 1.0 s, so by the chunk that ends at
    // 1.2 s; the frame sent at 1.18 s was the greeting's last, or one tick later at most.
    assert!(last_greeting >= ms(1180) && last_greeting <= ms(1200), "greeting stopped at {last_greeting:?}");
    let first = &run.conversation.utterances[0];
    assert_eq!(first.role, Role::Agent);
    let n_words = first.words.len();
    // About 1.2 s of 100 ms words: 12 words, not 40.
    assert!((11..=13).contains(&n_words), "{}", first.content);
    assert_eq!(run.conversation.utterances[1].content, "word1 word2");
}

#[tokio::test(start_paused = true)]
async fn a_noise_over_the_agent_without_words_resumes_the_cut_sentence() {
    // 300 ms of noise at 1 s: enough to interrupt, too short for a word of CountingStt.
    let greeting = "one two three four five six seven eight nine ten. eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty.";
    let script = vec![(ms(0), 0), (ms(1000), 8000), (ms(1300), 0)];
    let run = run_call(settings(Speaker::Agent), providers(greeting), script, ms(6000)).await;
    let resumed: Vec<_> = run.sent.iter().filter(|(_, g)| *g == 2).collect();
    assert!(!resumed.is_empty(), "the agent resumed");
    let transcript = run.conversation.transcript();
    assert!(
        transcript.ends_with("Agent: eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty."),
        "{transcript}"
    );
    assert!(!transcript.contains("User:"), "{transcript}");
}

#[tokio::test(start_paused = true)]
async fn the_engine_ending_the_call_is_reported_after_its_goodbye_is_played() {
    struct ByeStt;
    impl SpeechToText for ByeStt {
        fn name(&self) -> &str {
            "bye"
        }
        fn transcribe(&self, _audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
            Box::pin(async { Ok("ok bye".to_owned()) })
        }
    }
    let mut providers = providers("Hi.");
    providers.stt = Arc::new(ByeStt);
    let script = vec![(ms(0), 0), (ms(1000), 8000), (ms(1500), 0)];
    let run = run_call(settings(Speaker::User), providers, script, ms(5000)).await;
    assert_eq!(run.conversation.transcript(), "User: ok bye\nAgent: Goodbye.");
    assert!(run.events.contains(&AgentEvent::End(AgentEnd::Hangup)), "{:?}", run.events);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_engine_is_a_stuck_turn_recovered_by_a_reprompt_then_an_end() {
    struct Hanging;
    impl ResponseEngine for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        fn respond(&mut self, _request: Request) -> BoxFuture<'_, Result<Reply, ProviderError>> {
            Box::pin(std::future::pending())
        }
    }
    let mut providers = providers("unused");
    providers.engine = Box::new(Hanging);
    let mut settings = settings(Speaker::User);
    settings.deadlines.engine = Duration::from_secs(30);
    let script = vec![(ms(0), 0), (ms(1000), 8000), (ms(2000), 0), (ms(15_000), 8000), (ms(16_000), 0)];
    let run = run_call(settings, providers, script, ms(30_000)).await;
    assert_eq!(run.conversation.n_stuck_turns, 2);
    assert!(run.conversation.transcript().contains(&format!("Agent: {REPROMPT}")), "{}", run.conversation.transcript());
    assert!(matches!(run.events.last(), Some(AgentEvent::End(AgentEnd::Engine(_)))), "{:?}", run.events);
}

#[test]
fn played_text_keeps_whole_sentences_then_the_played_share_of_the_cut_one() {
    let sentences = vec![("a b.".to_owned(), 10), ("c d e f.".to_owned(), 20)];
    assert_eq!(played_text(&sentences, 10), "a b.");
    assert_eq!(played_text(&sentences, 20), "a b. c d");
    assert_eq!(played_text(&sentences, 99), "a b. c d e f.");
    assert_eq!(played_text(&[], 5), "");
}

#[tokio::test(start_paused = true)]
async fn a_missed_transcription_deadline_costs_the_turn_and_three_in_a_row_end_the_call() {
    struct Stalled;
    impl SpeechToText for Stalled {
        fn name(&self) -> &str {
            "stalled"
        }
        fn transcribe(&self, _audio: Vec<i16>) -> BoxFuture<'_, Result<String, ProviderError>> {
            Box::pin(std::future::pending())
        }
    }
    let mut providers = providers("unused");
    providers.stt = Arc::new(Stalled);
    let mut settings = settings(Speaker::User);
    settings.deadlines.stt = Duration::from_secs(2);
    // Three turns, each 1 s of speech, 5 s apart.
    let script = vec![(ms(0), 0), (ms(1000), 8000), (ms(2000), 0), (ms(6000), 8000), (ms(7000), 0), (ms(11_000), 8000), (ms(12_000), 0)];
    let run = run_call(settings.clone(), providers, script.clone(), ms(9_000)).await;
    assert!(!run.events.iter().any(|e| matches!(e, AgentEvent::End(_))), "two misses cost their turns only: {:?}", run.events);
    let mut providers = self::providers("unused");
    providers.stt = Arc::new(Stalled);
    let run = run_call(settings, providers, script, ms(16_000)).await;
    assert!(matches!(run.events.last(), Some(AgentEvent::End(AgentEnd::SpeechToText(ProviderError::Timeout { .. })))), "{:?}", run.events);
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_should_speak_first_but_stays_silent_is_greeted_after_begin_after_user_silence() {
    let mut waiting = settings(Speaker::User);
    waiting.begin_after_user_silence = Some(ms(3_000));
    let run = run_call(waiting.clone(), providers("Hello, anyone there?"), vec![(ms(0), 0)], ms(6_000)).await;
    assert_eq!(run.conversation.transcript(), "Agent: Hello, anyone there?");
    let first = run.sent.first().map(|(at, _)| *at).unwrap();
    assert!((ms(3_000)..ms(3_200)).contains(&first), "first agent frame at {first:?}");
    // A caller who speaks first is answered, not greeted.
    let script = vec![(ms(0), 0), (ms(1_000), 8000), (ms(2_000), 0)];
    let run = run_call(waiting, providers("Hello, anyone there?"), script, ms(6_000)).await;
    assert!(!run.conversation.transcript().contains("anyone there"), "{}", run.conversation.transcript());
}
