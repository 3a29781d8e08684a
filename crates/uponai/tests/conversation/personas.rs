//! Conversations with the simulator's persona, through the simulation API (`uponai simulate`
//! and the demo use it): the persona answers the agent's INVITE on its own SIP endpoint on
//! the server's loopback, speaks with Piper, presses digits, barges in, and reports what it
//! heard at its side of the wire.

use std::time::Duration;

use serde_json::{Value, json};
use uponai::sim::{Line, Persona, PersonaReport, When};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::receiver::{Answer, Receiver};
use crate::sipp::wait_for_end;

/// Creates `flow` (if any) and an agent with `agent_fields` on it, has the agent call
/// `persona` through the simulation API with `variables`, and returns Get Call once the call
/// has ended, and the persona's report.
async fn call_persona(
    app: &TestApp,
    flow: Option<Value>,
    agent_fields: Value,
    persona: Persona,
    variables: Value,
) -> (Value, PersonaReport) {
    let mut agent = json!({"voice_id": agent::offline::PIPER_VOICE_ID});
    agent["response_engine"] = match flow {
        Some(flow) => {
            let reply = app.post("/create-conversation-flow", flow).await;
            assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
            json!({"type": "conversation-flow", "conversation_flow_id": reply.body["conversation_flow_id"]})
        }
        None => {
            json!({"type": "retell-llm", "llm_id": app.create_llm(json!({"begin_message": "Hello, this is Joe from the dental office."})).await})
        }
    };
    agent.as_object_mut().unwrap().extend(agent_fields.as_object().unwrap().clone());
    agent_calls_persona(app, agent, persona, variables).await
}

/// Creates the agent `agent` (a create-agent body), has it call `persona` through the
/// simulation API with `variables`, and returns Get Call once the call has ended, and the
/// persona's report.
pub(crate) async fn agent_calls_persona(app: &TestApp, agent: Value, persona: Persona, variables: Value) -> (Value, PersonaReport) {
    let reply = app.post("/create-agent", agent).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let agent_id = reply.body["agent_id"].as_str().unwrap().to_owned();
    let body = json!({"agent_id": agent_id, "persona": persona, "retell_llm_dynamic_variables": variables});
    let reply = app.post("/uponai/create-simulation", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status"], "running");
    let call_id = reply.body["call_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let report = loop {
        let simulation = app.get(&format!("/uponai/get-simulation/{call_id}")).await.body;
        match simulation["status"].as_str() {
            Some("ended") => break serde_json::from_value::<PersonaReport>(simulation["report"].clone()).unwrap(),
            Some("running") => {}
            _ => panic!("{simulation}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the simulation did not end: {simulation}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let call = wait_for_end(app, &call_id, Duration::from_secs(30)).await;
    println!("transcript:\n{}\nlatency: {}\npersona: {}", call["transcript"], call["latency"], serde_json::to_string(&report).unwrap());
    (call, report)
}

/// A server that refuses private targets, as in production: the simulator's persona is
/// reached all the same (it is the server's own, not a tenant's address).
async fn guarded_app() -> TestApp {
    spawn_app_with(tempfile::tempdir().unwrap(), |settings| settings.allow_private_targets = false).await
}

fn agent_lines(call: &Value) -> Vec<String> {
    let utterances = call["transcript_object"].as_array().cloned().unwrap_or_default();
    utterances.iter().filter(|u| u["role"] == "agent").map(|u| u["content"].as_str().unwrap_or_default().to_owned()).collect()
}

fn skip_to(id: &str, to: &str) -> Value {
    json!({"id": id, "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": to})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_branches_on_an_equation_over_a_dynamic_variable_then_on_the_persona_s_digit() {
    let _serial = crate::serial().await;
    // Webhooks to a receiver on loopback: this server allows private targets.
    let app = spawn_app().await;
    let hooks = Receiver::start(Answer::Ok).await;
    let menu = |id: &str, text: &str| {
        json!({"id": id, "type": "conversation", "instruction": {"type": "static_text", "text": text},
               "edges": [
                  {"id": format!("{id}-1"), "transition_condition": {"type": "prompt", "prompt": "User pressed 1"}, "destination_node_id": "billing"},
                  {"id": format!("{id}-2"), "transition_condition": {"type": "prompt", "prompt": "User pressed 2"}, "destination_node_id": "support"}]})
    };
    let flow = json!({
        "start_speaker": "agent", "start_node_id": "route",
        "nodes": [
            {"id": "route", "type": "branch",
             "edges": [{"id": "gold", "transition_condition": {"type": "equation", "operator": "&&",
                        "equations": [{"left": "{{tier}}", "operator": "==", "right": "gold"}]}, "destination_node_id": "gold"}],
             "else_edge": {"id": "else", "transition_condition": {"type": "prompt", "prompt": "Else"}, "destination_node_id": "standard"}},
            menu("gold", "Welcome back, gold member. Press one for billing or two for support."),
            menu("standard", "Hello. Press one for billing or two for support."),
            {"id": "billing", "type": "conversation", "instruction": {"type": "static_text", "text": "Billing it is."}, "skip_response_edge": skip_to("s1", "bye")},
            {"id": "support", "type": "conversation", "instruction": {"type": "static_text", "text": "Connecting you to support."}, "skip_response_edge": skip_to("s2", "bye")},
            {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}}
        ]
    });
    let persona = Persona {
        name: "presser".into(),
        lines: vec![Line { say: None, press: Some("2".into()), beep_ms: None, when: When::AfterAgentStops }],
        hang_up_after_ms: Some(20_000),
    };
    let fields = json!({"webhook_url": hooks.url(), "webhook_events": ["transcript_updated"]});
    let (call, report) = call_persona(&app, Some(flow), fields, persona, json!({"tier": "gold"})).await;
    assert_eq!(call["disconnection_reason"], "agent_hangup", "{}", call["transcript"]);
    // transcript_updated, utterance by utterance while the call runs, then once at its end.
    let updated = |received: &[crate::receiver::Received]| -> Vec<(String, usize)> {
        received
            .iter()
            .filter(|r| r.event() == "transcript_updated")
            .map(|r| {
                (
                    r.json["call"]["call_status"].as_str().unwrap_or_default().to_owned(),
                    r.json["call"]["transcript_object"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    };
    let received = hooks.wait_for(Duration::from_secs(20), |received| updated(received).iter().any(|(status, _)| status == "ended")).await;
    let updates = updated(&received);
    assert_eq!(updates, [("ongoing".to_owned(), 1), ("ongoing".to_owned(), 2), ("ended".to_owned(), 2)], "{updates:?}");
    assert_eq!(
        agent_lines(&call),
        ["Welcome back, gold member. Press one for billing or two for support.", "Connecting you to support. Goodbye."]
    );
    assert_eq!(report.ended_by, "agent");
    // The persona's own ears heard the menu, then the support line.
    let heard: Vec<&str> = report.heard.iter().map(|h| h.text.as_str()).collect();
    assert!(
        heard.len() >= 2 && heard[0].to_lowercase().contains("gold") && heard.last().unwrap().to_lowercase().contains("support"),
        "{heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_after_the_greeting_ends_the_call_with_inactivity() {
    let _serial = crate::serial().await;
    let app = guarded_app().await;
    // A callee that never speaks (nor hangs up).
    let persona = Persona { name: "mute".into(), lines: Vec::new(), hang_up_after_ms: None };
    let fields = json!({"end_call_after_silence_ms": 10_000, "reminder_max_count": 0});
    let (call, report) = call_persona(&app, None, fields, persona, json!({})).await;
    assert_eq!(call["disconnection_reason"], "inactivity", "{call}");
    assert_eq!(report.ended_by, "agent");
    // The timer counts from the end of the greeting, as the persona heard it.
    let greeting_end = report.heard.first().map(|h| h.end).unwrap_or_else(|| panic!("the persona heard no greeting: {report:?}"));
    let duration = call["duration_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        (greeting_end + 9.8..greeting_end + 11.5).contains(&duration),
        "ended {duration} s after the answer, greeting ended at {greeting_end} s"
    );
}

const LONG: &str = "Our office is open from eight in the morning until six in the evening on weekdays, \
                    and from nine until one on Saturdays, and we are closed on Sundays and on public holidays.";

/// The persona speaks over a long answer: the agent stops at the wire, the transcript keeps
/// only the words that went out, and the agent answers what it heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_cuts_the_agent_short_and_the_transcript_stops_at_what_was_played() {
    let _serial = crate::serial().await;
    let app = guarded_app().await;
    let flow = json!({
        "start_speaker": "agent", "start_node_id": "hours",
        "nodes": [
            {"id": "hours", "type": "conversation", "instruction": {"type": "static_text", "text": LONG},
             "edges": [{"id": "stop", "transition_condition": {"type": "prompt", "prompt": "User mentions \"stop\" or \"wait\""}, "destination_node_id": "sorry"}]},
            {"id": "sorry", "type": "conversation", "instruction": {"type": "static_text", "text": "Sorry, I will be brief."}, "skip_response_edge": skip_to("s", "bye")},
            {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}}
        ]
    });
    let persona = Persona {
        name: "interrupter".into(),
        lines: vec![Line { say: Some("Wait, please stop.".into()), press: None, beep_ms: None, when: When::OverAgent { after_ms: 2500 } }],
        hang_up_after_ms: Some(20_000),
    };
    let (call, report) = call_persona(&app, Some(flow), json!({}), persona, json!({})).await;
    assert_eq!(call["disconnection_reason"], "agent_hangup", "{}", call["transcript"]);
    let lines = agent_lines(&call);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // What was played: a strict prefix of the long answer, more than a word or two of it.
    let played: Vec<&str> = lines[0].split_whitespace().collect();
    let long: Vec<&str> = LONG.split_whitespace().collect();
    assert!(played.len() >= 4 && played.len() < long.len() * 2 / 3, "kept {played:?}");
    assert_eq!(played[..played.len() - 1], long[..played.len() - 1], "a prefix of the answer: {played:?}");
    assert_eq!(lines[1], "Sorry, I will be brief. Goodbye.");
    // At the persona's side of the wire: the agent's audio stopped soon after it spoke up.
    let said = &report.said[0];
    let cut = report.heard.iter().find(|h| h.start < said.start && h.end > said.start).unwrap_or_else(|| panic!("{report:?}"));
    let stopped_after_ms = (cut.end - said.start) * 1000.0;
    println!("barge-in: the agent stopped {stopped_after_ms:.0} ms after the persona spoke up");
    assert!(stopped_after_ms < 1500.0, "the agent talked on for {stopped_after_ms} ms");
}

/// A persona's line longer than the media queue's usual depth goes out whole: the agent's
/// transcript holds all of it and its words span the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_s_long_line_reaches_the_agent_whole() {
    let _serial = crate::serial().await;
    let app = guarded_app().await;
    const LINE: &str = "I would like to move my appointment to Thursday morning, because my daughter has a cleaning on Wednesday.";
    let persona = Persona {
        name: "talker".into(),
        lines: vec![Line { say: Some(LINE.into()), press: None, beep_ms: None, when: When::AfterAgentStops }],
        hang_up_after_ms: Some(3_000),
    };
    let (call, report) = call_persona(&app, None, json!({}), persona, json!({})).await;
    assert_eq!(report.ended_by, "persona", "{report:?}");
    let said = &report.said[0];
    assert!(said.end - said.start > 4.0, "a line of over 4 s: {said:?}");
    let utterances = call["transcript_object"].as_array().cloned().unwrap_or_default();
    let user: Vec<&Value> = utterances.iter().filter(|u| u["role"] == "user").collect();
    let heard: Vec<&str> = user.iter().map(|u| u["content"].as_str().unwrap_or_default()).collect();
    let recall = crate::calls::recall(LINE, &heard.join(" "));
    assert!(recall >= 0.9, "the agent heard {heard:?} ({recall})");
    let first = user[0]["words"][0]["start"].as_f64().unwrap();
    let last = user.last().unwrap()["words"].as_array().unwrap().last().unwrap()["end"].as_f64().unwrap();
    assert!(last - first > (said.end - said.start) - 0.8, "the agent heard {first}..{last} s of {said:?}");
}
