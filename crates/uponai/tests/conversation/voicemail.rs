//! Answering-machine detection on real calls to the simulator: a machine persona plays a
//! long greeting and a beep; a person says hello and waits.

use serde_json::json;
use uponai::sim::{Line, Persona, When};

use crate::helpers::spawn_app;
use crate::personas::agent_calls_persona;

const MESSAGE: &str = "Hi Ada, this is the dental office about your appointment. Please call us back.";

fn agent_with_voicemail(llm: String, action: serde_json::Value) -> serde_json::Value {
    json!({"voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": {"type": "retell-llm", "llm_id": llm},
        "voicemail_option": {"action": action}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_s_greeting_is_detected_and_the_message_is_left_after_its_beep() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let llm = app.create_llm(json!({"begin_message": "Hello, this is Joe from the dental office."})).await;
    let agent = agent_with_voicemail(
        llm,
        json!({"type": "static_text", "text": "Hi {{name}}, this is the dental office about your appointment. Please call us back."}),
    );
    let greeting = "Hi, you have reached Sam at Acme. I cannot take your call right now. Please leave your name and number after the tone.";
    let persona = Persona {
        name: "machine".into(),
        lines: vec![Line { say: Some(greeting.into()), press: None, beep_ms: Some(500), when: When::At { ms: 300 } }],
        hang_up_after_ms: Some(15_000),
    };
    let (call, report) = agent_calls_persona(&app, agent, persona, json!({"name": "Ada"})).await;
    assert_eq!(call["disconnection_reason"], "voicemail_reached", "{call}");
    assert_eq!(call["call_analysis"]["in_voicemail"], true, "{}", call["call_analysis"]);
    assert_eq!(call["machine_detection"]["result"], "machine", "{call}");
    let decided = call["machine_detection"]["decided_after_ms"].as_u64().unwrap();
    assert!(decided < 6_000, "decided after {decided} ms");
    // The message went out after the beep (the greeting's end), and the persona heard it.
    let beep_end = report.said[0].end;
    let after: Vec<&str> = report.heard.iter().filter(|h| h.start >= beep_end - 0.05).map(|h| h.text.as_str()).collect();
    assert!(crate::calls::recall(MESSAGE, &after.join(" ")) >= 0.7, "heard after the beep ({beep_end} s): {:?}", report.heard);
    assert_eq!(report.ended_by, "agent");
    let transcript = call["transcript"].as_str().unwrap_or_default();
    assert!(transcript.ends_with(&format!("Agent: {MESSAGE}")), "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_says_hello_is_not_a_machine_and_the_call_goes_on() {
    let _serial = crate::serial().await;
    let app = spawn_app().await;
    let llm = app.create_llm(json!({"begin_message": "Hello, this is Joe from the dental office."})).await;
    let agent = agent_with_voicemail(llm, json!({"type": "hangup"}));
    let persona = Persona {
        name: "person".into(),
        lines: vec![Line { say: Some("Hello? Who is this?".into()), press: None, beep_ms: None, when: When::AfterAgentStops }],
        hang_up_after_ms: Some(3_000),
    };
    let (call, report) = agent_calls_persona(&app, agent, persona, json!({})).await;
    assert_eq!(call["disconnection_reason"], "user_hangup", "{call}");
    assert_eq!(call["machine_detection"]["result"], "human", "{call}");
    assert_eq!(call["call_analysis"]["in_voicemail"], false);
    assert_eq!(report.ended_by, "persona");
}
