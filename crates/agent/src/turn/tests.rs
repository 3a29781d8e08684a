use super::*;

const CHUNK: Duration = Duration::from_millis(32);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> TurnConfig {
    TurnConfig::from_agent(1.0, 1.0, Some(10_000), 1, 60_000)
}

/// Drives a `Turns` with virtual time: VAD chunks every 32 ms, ticks every 20 ms.
struct Sim {
    turns: Turns,
    now: Duration,
    decisions: Vec<(Duration, Decision)>,
}

impl Sim {
    fn new(config: TurnConfig) -> Self {
        Self { turns: Turns::new(config), now: Duration::ZERO, decisions: Vec::new() }
    }

    fn feed(&mut self, input: Input) -> Vec<Decision> {
        let out = self.turns.handle(input);
        self.decisions.extend(out.iter().cloned().map(|d| (self.now, d)));
        out
    }

    /// `duration` of chunks at `probability`.
    fn vad(&mut self, probability: f32, duration: Duration) -> Vec<Decision> {
        let end = self.now + duration;
        let mut out = Vec::new();
        while self.now + CHUNK <= end {
            self.now += CHUNK;
            out.extend(self.feed(Input::Vad { from: self.now - CHUNK, at: self.now, probability }));
        }
        out
    }

    fn speak(&mut self, duration: Duration) -> Vec<Decision> {
        self.vad(0.9, duration)
    }

    fn silence(&mut self, duration: Duration) -> Vec<Decision> {
        self.vad(0.05, duration)
    }

    /// Ticks (no VAD) for `duration`.
    fn wait(&mut self, duration: Duration) -> Vec<Decision> {
        let end = self.now + duration;
        let mut out = Vec::new();
        while self.now < end {
            self.now += ms(20);
            out.extend(self.feed(Input::Tick { now: self.now }));
        }
        out
    }

    fn transcribe_requests(out: &[Decision]) -> Vec<(u64, bool)> {
        out.iter()
            .filter_map(|d| match d {
                Decision::Transcribe { request, speculative, .. } => Some((*request, *speculative)),
                _ => None,
            })
            .collect()
    }
}

fn responds(out: &[Decision]) -> Option<(String, Duration)> {
    out.iter().find_map(|d| match d {
        Decision::Respond { text, last_speech, .. } => Some((text.clone(), *last_speech)),
        _ => None,
    })
}

#[test]
fn a_pause_is_transcribed_speculatively_and_the_turn_ends_with_that_text_without_another_decode() {
    let mut sim = Sim::new(config());
    sim.speak(ms(1000));
    let last_speech = sim.now;
    let out = sim.silence(ms(200));
    let requests = Sim::transcribe_requests(&out);
    assert_eq!(requests, [(1, true)], "one speculative request after the pause");
    sim.feed(Input::Transcript { request: 1, text: "Hello there".into() });
    let out = sim.silence(ms(400));
    assert_eq!(responds(&out), Some(("Hello there".into(), last_speech)));
    assert!(Sim::transcribe_requests(&out).is_empty(), "the speculative text was used");
    // The end of turn came after the configured silence, counted from the last speech chunk.
    let (at, _) = sim.decisions.iter().find(|(_, d)| matches!(d, Decision::Respond { .. })).unwrap();
    let waited = *at - last_speech;
    assert!(waited >= sim.turns.config().end_of_turn_silence && waited < sim.turns.config().end_of_turn_silence + CHUNK, "{waited:?}");
}

#[test]
fn speech_after_a_speculative_decode_makes_its_text_stale() {
    let mut sim = Sim::new(config());
    sim.speak(ms(600));
    let out = sim.silence(ms(200));
    assert_eq!(Sim::transcribe_requests(&out), [(1, true)]);
    sim.speak(ms(600));
    // The stale result arrives while the caller speaks again; it must not end the turn.
    assert!(sim.feed(Input::Transcript { request: 1, text: "I would".into() }).is_empty());
    let out = sim.silence(ms(200));
    assert_eq!(Sim::transcribe_requests(&out), [(2, true)]);
    let out = sim.silence(ms(400));
    assert!(responds(&out).is_none(), "waits for the text of the whole turn");
    let out = sim.feed(Input::Transcript { request: 2, text: "I would like Tuesday".into() });
    assert_eq!(responds(&out).map(|(text, _)| text).as_deref(), Some("I would like Tuesday"));
}

#[test]
fn a_skipped_speculative_decode_is_asked_for_again_when_the_turn_ends() {
    let mut sim = Sim::new(config());
    sim.speak(ms(500));
    let out = sim.silence(ms(200));
    assert_eq!(Sim::transcribe_requests(&out), [(1, true)]);
    assert!(sim.feed(Input::TranscribeSkipped { request: 1 }).is_empty());
    let out = sim.silence(ms(150));
    assert!(Sim::transcribe_requests(&out).is_empty(), "no second speculation");
    let out = sim.silence(ms(200));
    assert_eq!(Sim::transcribe_requests(&out), [(2, false)], "asked when the turn ends");
    let out = sim.feed(Input::Transcript { request: 2, text: "hello".into() });
    assert!(responds(&out).is_some());
}

#[test]
fn a_late_transcript_ends_the_turn_when_it_arrives() {
    let mut sim = Sim::new(config());
    sim.speak(ms(500));
    let out = sim.silence(ms(1000));
    assert_eq!(Sim::transcribe_requests(&out).len(), 1);
    assert!(responds(&out).is_none());
    let out = sim.feed(Input::Transcript { request: 1, text: "yes".into() });
    assert!(responds(&out).is_some());
}

#[test]
fn a_blip_shorter_than_a_turn_starts_nothing() {
    let mut sim = Sim::new(config());
    let mut out = sim.speak(ms(64));
    out.extend(sim.silence(ms(2000)));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn vad_hysteresis_keeps_a_word_whole() {
    let mut sim = Sim::new(config());
    sim.speak(ms(300));
    // 0.4 is below onset but above the release threshold: still speech.
    sim.vad(0.4, ms(600));
    let last = sim.now;
    sim.silence(ms(200));
    let Some((_, Decision::Transcribe { to, .. })) = sim.decisions.iter().find(|(_, d)| matches!(d, Decision::Transcribe { .. })) else {
        panic!("no transcription: {:?}", sim.decisions)
    };
    assert_eq!(*to, last + POST_ROLL);
}

fn agent_playing(sim: &mut Sim, generation: Generation) {
    let now = sim.now;
    sim.feed(Input::Responding { generation, at: now });
    sim.feed(Input::PlayoutStarted { generation, at: now });
}

#[test]
fn two_hundred_ms_of_speech_over_the_agent_interrupts_it_at_sensitivity_one() {
    let mut sim = Sim::new(config());
    agent_playing(&mut sim, 7);
    let start = sim.now;
    let out = sim.speak(ms(160));
    assert!(!out.iter().any(|d| matches!(d, Decision::BargeIn { .. })), "too short: {out:?}");
    let out = sim.speak(ms(96));
    let at = out.iter().find_map(|d| match d {
        Decision::BargeIn { generation: 7, at } => Some(*at),
        _ => None,
    });
    let at = at.expect("barge-in");
    // The first chunk's end is the run's start, so 200 ms of run is reached at 7 chunks.
    assert!(at - start >= ms(200) && at - start <= ms(256), "{:?}", at - start);
}

#[test]
fn lower_sensitivity_needs_longer_speech_and_zero_never_interrupts() {
    assert_eq!(TurnConfig::from_agent(1.0, 0.5, None, 0, 60_000).barge_in_after, Some(ms(400)));
    assert_eq!(TurnConfig::from_agent(1.0, 0.0, None, 0, 60_000).barge_in_after, None);
    let mut sim = Sim::new(TurnConfig::from_agent(1.0, 0.0, None, 0, 60_000));
    agent_playing(&mut sim, 1);
    let out = sim.speak(ms(3000));
    assert!(!out.iter().any(|d| matches!(d, Decision::BargeIn { .. })));
}

#[test]
fn a_cough_over_the_agent_that_carries_no_words_resumes_it() {
    let mut sim = Sim::new(config());
    agent_playing(&mut sim, 3);
    sim.speak(ms(300));
    assert!(sim.decisions.iter().any(|(_, d)| matches!(d, Decision::BargeIn { generation: 3, .. })));
    let out = sim.silence(ms(200));
    let [(request, _)] = Sim::transcribe_requests(&out)[..] else { panic!("{out:?}") };
    sim.feed(Input::Transcript { request, text: " [BLANK_AUDIO]".into() });
    let out = sim.silence(ms(400));
    assert_eq!(out, [Decision::Resume { generation: 3 }]);
}

#[test]
fn a_real_interruption_is_answered() {
    let mut sim = Sim::new(config());
    agent_playing(&mut sim, 3);
    sim.speak(ms(700));
    let out = sim.silence(ms(200));
    let [(request, _)] = Sim::transcribe_requests(&out)[..] else { panic!("{out:?}") };
    sim.feed(Input::Transcript { request, text: "Wait, no.".into() });
    let out = sim.silence(ms(400));
    assert_eq!(responds(&out).map(|(t, _)| t).as_deref(), Some("Wait, no."));
}

#[test]
fn an_unanswered_turn_is_reported_stuck_once_at_the_deadline() {
    let mut sim = Sim::new(config());
    sim.speak(ms(500));
    sim.silence(ms(200));
    sim.feed(Input::Transcript { request: 1, text: "hello".into() });
    let out = sim.silence(ms(400));
    assert!(responds(&out).is_some());
    let answered_at = sim.now;
    sim.feed(Input::Responding { generation: 1, at: answered_at });
    let out = sim.wait(ms(9000));
    let stuck: Vec<_> = out.iter().filter(|d| matches!(d, Decision::Stuck { .. })).collect();
    assert_eq!(stuck.len(), 1, "{out:?}");
}

#[test]
fn an_answered_turn_is_not_stuck() {
    let mut sim = Sim::new(config());
    sim.speak(ms(500));
    sim.silence(ms(200));
    sim.feed(Input::Transcript { request: 1, text: "hello".into() });
    sim.silence(ms(400));
    let now = sim.now;
    sim.feed(Input::Responding { generation: 1, at: now });
    sim.wait(ms(700));
    let now = sim.now;
    sim.feed(Input::PlayoutStarted { generation: 1, at: now });
    let out = sim.wait(ms(9000));
    assert!(!out.iter().any(|d| matches!(d, Decision::Stuck { .. })), "{out:?}");
}

#[test]
fn silence_brings_reminders_up_to_the_count_then_ends_the_call_for_inactivity() {
    let mut sim = Sim::new(TurnConfig::from_agent(1.0, 1.0, Some(2_000), 2, 7_000));
    let out = sim.wait(ms(2100));
    assert_eq!(out, [Decision::Reminder { count: 1 }]);
    // The reminder is spoken: 1 s of agent audio.
    let now = sim.now;
    sim.feed(Input::Responding { generation: 1, at: now });
    sim.feed(Input::PlayoutStarted { generation: 1, at: now });
    sim.wait(ms(1000));
    let spoken_end = sim.now;
    sim.feed(Input::PlayoutEnded { generation: 1, at: spoken_end });
    let out = sim.wait(ms(2100));
    assert_eq!(out, [Decision::Reminder { count: 2 }]);
    let (reminder_2, _) = *sim.decisions.last().unwrap();
    // The engine has nothing to say this time.
    let now = sim.now;
    sim.feed(Input::Responding { generation: 2, at: now });
    sim.feed(Input::Silent { generation: 2, at: now });
    let out = sim.wait(ms(7100));
    assert_eq!(out, [Decision::EndForInactivity]);
    // Inactivity counts from the end of the last speech by either side: the second reminder
    // (its response carried no audio, so from the moment it was decided).
    let (at, _) = sim.decisions.last().unwrap();
    assert!(*at - reminder_2 >= ms(7000) && *at - reminder_2 < ms(7040), "{:?}", *at - reminder_2);
    assert!(sim.wait(ms(5000)).is_empty(), "nothing after the end");
}

#[test]
fn caller_speech_resets_the_reminder_count_and_the_inactivity_clock() {
    let mut sim = Sim::new(TurnConfig::from_agent(1.0, 1.0, Some(2_000), 1, 3_000));
    sim.wait(ms(1900));
    sim.speak(ms(300));
    sim.silence(ms(200));
    sim.feed(Input::Transcript { request: 1, text: "".into() });
    let out = sim.silence(ms(400));
    assert!(matches!(out[..], [Decision::NoWords { .. }]), "{out:?}");
    let out = sim.wait(ms(1500));
    assert_eq!(out, [Decision::Reminder { count: 1 }], "2 s after the caller's speech");
}

#[test]
fn dtmf_reaches_the_engine_and_counts_as_activity() {
    let mut sim = Sim::new(TurnConfig::from_agent(1.0, 1.0, None, 0, 1_000));
    sim.wait(ms(900));
    let now = sim.now;
    assert_eq!(sim.feed(Input::Dtmf { at: now, digit: '1' }), [Decision::Dtmf { digit: '1', at: now }]);
    assert!(sim.wait(ms(900)).is_empty());
    assert_eq!(sim.wait(ms(200)), [Decision::EndForInactivity]);
}

#[test]
fn words_are_told_from_noise_markers() {
    assert!(has_words(" Yes."));
    assert!(has_words("3"));
    assert!(!has_words(" ."));
    assert!(!has_words("[BLANK_AUDIO]"));
    assert!(!has_words("(coughs)"));
    assert!(!has_words(""));
}

#[test]
fn settings_out_of_range_are_clamped() {
    let config = TurnConfig::from_agent(f64::NAN, 7.0, Some(0), 0, 0);
    assert_eq!(config.end_of_turn_silence, ms(450));
    assert_eq!(config.barge_in_after, Some(ms(200)));
    assert_eq!(config.reminder_after, None);
    let slow = TurnConfig::from_agent(-1.0, 0.01, None, 0, 10);
    assert_eq!(slow.end_of_turn_silence, ms(1500));
    assert_eq!(slow.barge_in_after, Some(ms(2000)));
}

#[test]
fn an_update_agent_changes_only_the_fields_it_names() {
    let base = TurnConfig::from_agent(1.0, 1.0, Some(10_000), 1, 600_000);
    let sensitive = base.updated(TurnUpdate { interruption_sensitivity: Some(0.5), ..TurnUpdate::default() });
    assert_eq!(sensitive.barge_in_after, Some(Duration::from_millis(400)));
    assert_eq!((sensitive.end_of_turn_silence, sensitive.reminder_after), (base.end_of_turn_silence, base.reminder_after));
    let patient = base.updated(TurnUpdate { responsiveness: Some(0.0), reminder_max_count: Some(3), ..TurnUpdate::default() });
    assert_eq!(patient.end_of_turn_silence, Duration::from_millis(1_500));
    assert_eq!((patient.barge_in_after, patient.reminder_max_count), (base.barge_in_after, 3));
    assert_eq!(patient.end_call_after_silence, base.end_call_after_silence);
}
