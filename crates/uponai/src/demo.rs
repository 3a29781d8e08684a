//! `uponai demo`: everything on embedded defaults, in a temporary data directory and on free
//! ports: the server, a demo agent (a conversation flow: greet by `{{name}}`, ask a yes/no
//! question, branch, confirm, end), and a simulated callee (`sim`) it calls over real SIP and
//! RTP on loopback. Prints the transcript, the latency table, what the callee heard and the
//! recording's path. Everything goes through the public API, as a user's code would.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::calls::voice::Speech;
use crate::config::Settings;
use crate::sim::{Callee, Line, Persona, When};
use crate::startup::App;

const FROM: &str = "+14155550100";
const TO: &str = "+12125550123";

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
        lines: vec![Line { say: Some("Yes, that works for me.".into()), press: None, when: When::AfterAgentStops }],
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
        // The callee is on loopback.
        allow_private_targets: true,
        assets_dir: assets_dir.clone(),
    };
    println!("Loading the offline speech engines…");
    let speech = Speech::check(assets_dir.as_deref())?;
    let engines = speech.engines().await.context("load the offline speech engines")?;
    let app = App::build(settings).await?;
    let base = format!("http://{}", app.http_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let result = converse(&base, &key, &engines).await;
    shutdown.cancel();
    let _ = server.await;
    let call_id = result?;
    println!("\nRecording (left: callee, right: agent): {}", data_dir.join("recordings").join(format!("{call_id}.stereo.wav")).display());
    println!("Data (database and recordings) kept in {}", data_dir.display());
    Ok(())
}

/// Sets the demo up through the API, places the call, prints what happened; returns the call id.
async fn converse(base: &str, key: &str, engines: &crate::calls::voice::Loaded) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let call_api = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = client.request(method, format!("{base}{path}")).bearer_auth(key);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(status.is_success(), "{status}: {body}");
            Ok::<Value, anyhow::Error>(body)
        }
    };
    let callee = Callee::bind().await?;
    let flow = call_api(reqwest::Method::POST, "/create-conversation-flow", Some(demo_flow())).await?;
    let engine = json!({"type": "conversation-flow", "conversation_flow_id": flow["conversation_flow_id"]});
    let agent = call_api(
        reqwest::Method::POST,
        "/create-agent",
        Some(json!({"agent_name": "Dental reminder (demo)", "voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": engine})),
    )
    .await?;
    let number = json!({
        "phone_number": FROM,
        "termination_uri": format!("sip:{};transport=udp", callee.addr()),
        "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}],
    });
    call_api(reqwest::Method::POST, "/import-phone-number", Some(number)).await?;
    println!("Calling the simulated callee {:?} at sip:{}…\n", demo_persona().name, callee.addr());
    let persona = demo_persona();
    let speech = engines.offline.clone();
    let ears = engines.stt.clone();
    let persona_task = tokio::spawn(async move { callee.run(&persona, &speech, ears).await });
    let body = json!({"from_number": FROM, "to_number": TO, "retell_llm_dynamic_variables": {"name": "Ada"}});
    let call = call_api(reqwest::Method::POST, "/v2/create-phone-call", Some(body)).await?;
    let call_id = call["call_id"].as_str().context("call_id")?.to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let call = loop {
        let call = call_api(reqwest::Method::GET, &format!("/v2/get-call/{call_id}"), None).await?;
        if ["ended", "not_connected", "error"].contains(&call["call_status"].as_str().unwrap_or_default()) {
            break call;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the call did not end in 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let report = persona_task.await??;

    println!("{}", call["transcript"].as_str().unwrap_or_default());
    println!("\ncall {} ended: {} ({} ms)", call_id, call["disconnection_reason"], call["duration_ms"]);
    println!("\nlatency (ms)   p50    p90    max    n");
    for name in ["e2e", "asr", "llm", "tts"] {
        let row = &call["latency"][name];
        if row.is_object() {
            println!("{name:<12} {:>5}  {:>5}  {:>5}  {:>3}", row["p50"], row["p90"], row["max"], row["num"]);
        }
    }
    println!("\nThe callee heard (its own Whisper, on its side of the wire):");
    for heard in &report.heard {
        println!("  {:>5.1}–{:>5.1} s  {}", heard.start, heard.end, heard.text);
    }
    for said in &report.said {
        if let Some(ms) = said.agent_answered_after_ms {
            println!("  the agent answered {:?} {ms} ms after the callee's last voice packet", said.text);
        }
    }
    Ok(call_id)
}
