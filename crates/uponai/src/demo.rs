//! `uponai demo`: everything on embedded defaults, in a temporary data directory and on free
//! ports: the server, a demo agent (a conversation flow: greet by `{{name}}`, ask a yes/no
//! question, branch, confirm, end), and a simulated callee (`sim`) it calls over real SIP and
//! RTP on loopback, through the simulation API (`uponai simulate`'s). Prints the transcript,
//! the latency table, what the callee heard and the recording's path. Everything goes
//! through the public API, as a user's code would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::calls::voice::Speech;
use crate::cli_simulate::{Client, print, simulate};
use crate::config::Settings;
use crate::sim::{Line, Persona, When};
use crate::startup::App;

/// The demo agent's flow.
pub fn demo_flow() -> Value {
    json!({
        "start_speaker": "agent",
        "start_node_id": "greet",
        "default_dynamic_variables": {"name": "there"},
        "nodes": [
            {"id": "greet", "type": "conversation",
             "instruction": {"type": "static_text", "text": "Hi {{name}}, this is Joe from the dental office. Can you make your check-up on Tuesday at ten?"},
             "edges": [
                {"id": "yes", "transition_condition": {"type": "prompt", "prompt": "User said yes"}, "destination_node_id": "confirm"},
                {"id": "no", "transition_condition": {"type": "prompt", "prompt": "User said no"}, "destination_node_id": "reschedule"}]},
            {"id": "confirm", "type": "conversation", "instruction": {"type": "static_text", "text": "Great, you are booked for Tuesday at ten."},
             "skip_response_edge": {"id": "s1", "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": "bye"}},
            {"id": "reschedule", "type": "conversation", "instruction": {"type": "static_text", "text": "No problem, our team will call you to find another time."},
             "skip_response_edge": {"id": "s2", "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": "bye"}},
            {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Thank you {{name}}, goodbye."}}
        ]
    })
}

/// The demo's callee: answers yes once the agent has asked.
pub fn demo_persona() -> Persona {
    Persona {
        name: "Ada".into(),
        lines: vec![Line { say: Some("Yes, that works for me.".into()), press: None, beep_ms: None, when: When::AfterAgentStops }],
        hang_up_after_ms: Some(15_000),
    }
}

pub async fn run(assets_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("uponai-demo-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let key = format!("demo_{:032x}", rand::random::<u128>());
    let settings = Settings {
        http: "127.0.0.1:0".parse()?,
        sip: "127.0.0.1:0".parse()?,
        data_dir: data_dir.clone(),
        bootstrap_api_key: Some(key.clone()),
        rtp_ports: 20_000..=29_999,
        external_ip: None,
        public_url: None,
        no_audio_timeout: Duration::from_secs(30),
        inbound_queue: Duration::from_secs(2),
        webhook_retry: crate::webhooks::RetryPolicy::DEFAULT,
        // The simulator's callee is on loopback, reached without a trunk; nothing else is.
        allow_private_targets: false,
        assets_dir: assets_dir.clone(),
        instant_speech: false,
        // The demo's agent is a conversation flow: no model server needed.
        llm_base_url: None,
        llm_api_key: None,
        llm_model: None,
        deepgram_api_key: None,
        deepgram_url: None,
        elevenlabs_api_key: None,
        elevenlabs_url: None,
    };
    println!("Loading the offline speech engines…");
    let speech = Speech::check(assets_dir.as_deref())?;
    // Loaded before the call, so that the demo's first turn is not the one that waits for them.
    speech.engines().await.context("load the offline speech engines")?;
    let app = App::build(settings).await?;
    let base = format!("http://{}", app.http_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let result = converse(&base, &key).await;
    shutdown.cancel();
    let _ = server.await;
    let call_id = result?;
    println!("\nRecording (left: callee, right: agent): {}", data_dir.join("recordings").join(format!("{call_id}.stereo.wav")).display());
    println!("Data (database and recordings) kept in {}", data_dir.display());
    Ok(())
}

/// Sets the demo up through the API, has the agent call the persona, prints what happened;
/// returns the call id.
async fn converse(base: &str, key: &str) -> anyhow::Result<String> {
    let client = Client::new(base, key);
    let flow = client.call(reqwest::Method::POST, "/create-conversation-flow", Some(demo_flow())).await?;
    let engine = json!({"type": "conversation-flow", "conversation_flow_id": flow["conversation_flow_id"]});
    let body = json!({"agent_name": "Dental reminder (demo)", "voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": engine});
    let agent = client.call(reqwest::Method::POST, "/create-agent", Some(body)).await?;
    let agent_id = agent["agent_id"].as_str().context("agent_id")?;
    let persona = demo_persona();
    println!("The demo agent is calling the simulated callee {:?} over SIP on loopback…\n", persona.name);
    let variables = BTreeMap::from([("name".to_owned(), "Ada".to_owned())]);
    let outcome = simulate(&client, agent_id, &persona, &variables).await?;
    print(&outcome);
    Ok(outcome.call["call_id"].as_str().context("call_id")?.to_owned())
}
