//! `retell-llm` agents on real calls to the simulator's persona, against a scripted
//! OpenAI-compatible server that streams its answers (content and tool calls) the way the
//! real ones do, and a tool endpoint on loopback.

use serde_json::{Value, json};
use std::sync::Arc;
use uponai::sim::{Line, Persona, When};

use crate::helpers::{TestApp, spawn_app_with};
use crate::model_server::{Chunk, ModelServer, Script, ToolServer};
use crate::personas::agent_calls_persona;
use crate::receiver::{Answer, Receiver};

const GREETING: &str = "Hello, this is the weather line.";
const QUESTION: &str = "What is the weather in Paris today?";

fn line(say: &str) -> Line {
    Line { say: Some(say.to_owned()), press: None, beep_ms: None, when: When::AfterAgentStops }
}

async fn app_on(model: &ModelServer) -> TestApp {
    let base_url = url::Url::parse(&model.base_url).unwrap();
    spawn_app_with(tempfile::tempdir().unwrap(), |settings| {
        settings.llm_base_url = Some(base_url);
        settings.llm_api_key = Some("sk-test".into());
    })
    .await
}

/// The last message of a chat request.
fn last_message(request: &Value) -> Value {
    request["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_is_made_with_variables_filled_its_result_spoken_and_everything_logged_in_order() {
    let _serial = crate::serial().await;
    let tool = ToolServer::start(r#"{"forecast": "sunny", "celsius": 21}"#).await;
    // Turn 1: the model calls get_weather. Turn 2 (it has the result): it answers, then
    // calls end_call.
    let script: Script = Arc::new(|n, request| match n {
        // The post-call analysis: loose types on purpose.
        _ if request.get("response_format").is_some() => vec![Chunk::Text(
            json!({"call_summary": "The caller asked about the weather in Paris.", "user_sentiment": "Positive",
                "call_successful": true, "in_voicemail": false,
                "custom_analysis_data": {"city": "Paris", "celsius": "21", "satisfied": "yes", "topic": "weather"}})
            .to_string(),
        )],
        0 => vec![
            Chunk::Text("Let me check.".into()),
            Chunk::ToolCall { id: "call_w1".into(), name: "get_weather".into(), arguments: r#"{"city": "Paris"}"#.into() },
        ],
        _ if last_message(request)["role"] == "tool" => vec![
            Chunk::Text("It is sunny in Paris, twenty one degrees. Goodbye.".into()),
            Chunk::ToolCall { id: "call_e1".into(), name: "end_call".into(), arguments: "{}".into() },
        ],
        _ => vec![Chunk::Text("Sorry?".into())],
    });
    let model = ModelServer::start(script).await;
    let app = app_on(&model).await;
    let llm = app
        .create_llm(json!({
            "general_prompt": "You are the weather line of {{company}}. The caller is {{customer_id}}.",
            "begin_message": GREETING,
            "model": "gpt-4.1-mini",
            "general_tools": [
                {"type": "custom", "name": "get_weather", "description": "Weather for a city",
                 "url": format!("{}/weather/{{{{customer_id}}}}", tool.base_url),
                 "headers": {"X-Customer": "{{customer_id}}"}, "query_params": {"units": "metric"},
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                 "speak_after_execution": true},
                {"type": "end_call", "name": "end_call", "description": "Hang up"}
            ]
        }))
        .await;
    let hooks = Receiver::start(Answer::Ok).await;
    let agent = json!({"voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": {"type": "retell-llm", "llm_id": llm},
    "webhook_url": hooks.url(),
    "post_call_analysis_data": [
        {"type": "string", "name": "city", "description": "The city asked about"},
        {"type": "number", "name": "celsius", "description": "The temperature given"},
        {"type": "boolean", "name": "satisfied", "description": "Whether the caller got an answer"},
        {"type": "enum", "name": "topic", "description": "What the call was about", "choices": ["weather", "billing"]}
    ]});
    let persona = Persona { name: "weather".into(), lines: vec![line(QUESTION)], hang_up_after_ms: Some(20_000) };
    let variables = json!({"customer_id": "c-42", "company": "Acme"});
    let (call, report) = agent_calls_persona(&app, agent, persona, variables).await;

    assert_eq!(call["disconnection_reason"], "agent_hangup", "{call}");
    assert_eq!(report.ended_by, "agent");
    // The tool got the filled URL, header and query, and Retell's body.
    let received = tool.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].uri, "/weather/c-42?units=metric");
    assert_eq!(received[0].headers["x-customer"], "c-42");
    assert_eq!(received[0].body["name"], "get_weather");
    assert_eq!(received[0].body["args"], json!({"city": "Paris"}));
    assert_eq!(received[0].body["call"]["call_id"], call["call_id"]);
    // The model server: the system prompt filled, the key sent, the caller's words, then the
    // tool result under its call id.
    let all_requests = model.requests();
    let requests: Vec<Value> = all_requests.into_iter().filter(|r| r.get("response_format").is_none()).collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["model"], "gpt-4.1-mini");
    assert_eq!(requests[0]["_authorization"], "Bearer sk-test");
    assert_eq!(requests[0]["stream"], true);
    assert_eq!(requests[0]["messages"][0]["content"], "You are the weather line of Acme. The caller is c-42.");
    assert_eq!(requests[0]["messages"][1], json!({"role": "assistant", "content": GREETING}));
    let heard = requests[0]["messages"][2]["content"].as_str().unwrap_or_default();
    assert!(crate::calls::recall(QUESTION, heard) >= 0.8, "the agent heard {heard:?}");
    assert_eq!(requests[0]["tools"].as_array().map(Vec::len), Some(2));
    let tool_message = last_message(&requests[1]);
    assert_eq!(tool_message["tool_call_id"], "call_w1");
    assert!(tool_message["content"].as_str().unwrap().contains("sunny"), "{tool_message}");
    // Get Call: greeting, question, what was said before the call, invocation, result, the
    // answer, the hang-up call, in that order.
    let items = call["transcript_with_tool_calls"].as_array().unwrap_or_else(|| panic!("{call}"));
    let roles: Vec<&str> = items.iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["agent", "user", "agent", "tool_call_invocation", "tool_call_result", "agent", "tool_call_invocation", "tool_call_result"],
        "{items:?}"
    );
    assert_eq!(items[2]["content"], "Let me check.");
    assert_eq!(items[3]["name"], "get_weather");
    assert_eq!(items[3]["tool_call_id"], "call_w1");
    let arguments: Value = serde_json::from_str(items[3]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert_eq!(items[4]["tool_call_id"], "call_w1");
    assert!(items[4]["content"].as_str().unwrap().contains("sunny"));
    assert_eq!(items[5]["content"], "It is sunny in Paris, twenty one degrees. Goodbye.");
    assert_eq!(items[6]["name"], "end_call");
    // Word times carry on across the split: the answer starts where "check." ended.
    assert_eq!(items[5]["words"][0]["start"], items[2]["words"].as_array().unwrap().last().unwrap()["end"]);
    // The plain transcript has no tool calls.
    assert_eq!(call["transcript_object"].as_array().map(Vec::len), Some(4));
    // The answer was spoken: the persona heard it on the wire.
    let heard: Vec<String> = report.heard.iter().map(|h| h.text.clone()).collect();
    let all = heard.join(" ");
    // (Whisper writes numbers as digits, and may hear "goodbye" as "bye bye".)
    assert!(crate::calls::recall("Let me check. It is sunny in Paris degrees.", &all) >= 0.8, "the persona heard {heard:?}");
    assert_eq!(call["llm_token_usage"]["num_requests"], 2, "{}", call["llm_token_usage"]);
    assert!(call["latency"]["llm"]["num"].as_u64().unwrap_or(0) >= 1, "{}", call["latency"]);

    // The analysis: asked once with the schema, typed per post_call_analysis_data, and
    // delivered as call_analyzed after call_ended.
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    let received = hooks
        .wait_for(std::time::Duration::from_secs(30), |r| crate::receiver::events_of(r, &call_id).contains(&"call_analyzed".to_owned()))
        .await;
    let events = crate::receiver::events_of(&received, &call_id);
    let ended = events.iter().position(|e| e == "call_ended").unwrap();
    assert!(events.iter().position(|e| e == "call_analyzed").unwrap() > ended, "{events:?}");
    let analyzed = received.iter().find(|r| r.event() == "call_analyzed").unwrap();
    let expected = json!({"call_summary": "The caller asked about the weather in Paris.", "user_sentiment": "Positive",
        "call_successful": true, "in_voicemail": false,
        "custom_analysis_data": {"city": "Paris", "celsius": 21, "satisfied": true, "topic": "weather"}});
    assert_eq!(analyzed.json["call"]["call_analysis"], expected);
    assert_eq!(app.get(&format!("/v2/get-call/{call_id}")).await.body["call_analysis"], expected);
    let analysis_requests: Vec<Value> = model.requests().into_iter().filter(|r| r.get("response_format").is_some()).collect();
    assert_eq!(analysis_requests.len(), 1, "{analysis_requests:?}");
    let analysis_request = &analysis_requests[0];
    let schema = &analysis_request["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["custom_analysis_data"]["properties"]["celsius"]["type"], json!(["number", "null"]));
    let asked = analysis_request["messages"][1]["content"].as_str().unwrap();
    assert!(asked.contains("Agent: Hello, this is the weather line."), "{asked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_on_a_private_address_is_refused_at_save_and_when_called_and_the_model_hears_why() {
    // Saving: a guarded server refuses a loopback tool URL, naming the field.
    let model = ModelServer::start(Arc::new(|_, _| vec![Chunk::Text("Hi.".into())])).await;
    let base_url = url::Url::parse(&model.base_url).unwrap();
    let app = spawn_app_with(tempfile::tempdir().unwrap(), |settings| {
        settings.allow_private_targets = false;
        settings.llm_base_url = Some(base_url);
    })
    .await;
    let tool = ToolServer::start("secret").await;
    let body = json!({"general_tools": [{"type": "custom", "name": "peek", "url": format!("{}/admin", tool.base_url)}]});
    let reply = app.post("/create-retell-llm", body).await;
    assert_eq!(reply.status, reqwest::StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.message().contains("general_tools[0].url"), "{}", reply.message());
    // Calling: the guard is checked again at send time, and the refusal is the tool's result.
    let runner = uponai::llm::tools::ToolRunner {
        http: uponai::egress::Egress::guarded().http_client("test").unwrap(),
        egress: uponai::egress::Egress::guarded(),
        call: Value::Null,
    };
    let Some(uponai::llm::tools::Tool::Custom(custom)) =
        uponai::llm::tools::Tool::parse(&json!({"type": "custom", "name": "peek", "url": format!("{}/admin", tool.base_url)}))
    else {
        panic!("a custom tool");
    };
    let outcome = runner.run(&custom, "{}", &Default::default()).await;
    assert!(!outcome.ok);
    assert!(outcome.content.contains("loopback"), "{}", outcome.content);
    let hidden =
        uponai::llm::tools::Tool::parse(&json!({"type": "custom", "name": "meta", "url": "http://169.254.169.254/latest/meta-data"}));
    let Some(uponai::llm::tools::Tool::Custom(hidden)) = hidden else { panic!("a custom tool") };
    assert!(!runner.run(&hidden, "{}", &Default::default()).await.ok);
    // The requests were refused before they left: nothing reached the endpoint.
    assert!(tool.received().is_empty(), "the tool endpoint was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_s_prompt_edges_are_judged_and_its_prompt_nodes_worded_by_the_model() {
    let _serial = crate::serial().await;
    // The model: picks condition 2 of the greeting node, and words the instruction.
    let script: Script = Arc::new(|_, request| {
        let system = request["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
        if system.starts_with("You route a phone conversation") {
            vec![Chunk::Text("2".into())]
        } else if system.contains("Ask which day") {
            vec![Chunk::Text("Of course. Which day would suit you better?".into())]
        } else {
            vec![Chunk::Text("Sorry?".into())]
        }
    });
    let model = ModelServer::start(script).await;
    let app = app_on(&model).await;
    let flow = json!({"start_speaker": "agent", "start_node_id": "greet", "model_choice": {"type": "cascading", "model": "gpt-4.1-mini"},
    "nodes": [
        {"id": "greet", "type": "conversation", "instruction": {"type": "static_text", "text": "Hello, this is the dental office. How can I help?"},
         "edges": [
            {"id": "e1", "transition_condition": {"type": "prompt", "prompt": "The user wants to cancel"}, "destination_node_id": "bye"},
            {"id": "e2", "transition_condition": {"type": "prompt", "prompt": "The user wants to move an appointment"}, "destination_node_id": "day"}]},
        {"id": "day", "type": "conversation", "instruction": {"type": "prompt", "text": "Ask which day suits them better."},
         "edges": [{"id": "e3", "transition_condition": {"type": "prompt", "prompt": "Always"}, "destination_node_id": "bye"}]},
        {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}}
    ]});
    let reply = app.post("/create-conversation-flow", flow).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    let engine = json!({"type": "conversation-flow", "conversation_flow_id": reply.body["conversation_flow_id"]});
    let agent = json!({"voice_id": agent::offline::PIPER_VOICE_ID, "response_engine": engine});
    // No quoted keyword, no yes or no: only a model can route this.
    let persona =
        Persona { name: "mover".into(), lines: vec![line("I need to push my visit to another time.")], hang_up_after_ms: Some(6_000) };
    let (call, _report) = agent_calls_persona(&app, agent, persona, json!({})).await;
    let agent_lines: Vec<String> = call["transcript_object"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "agent")
        .map(|u| u["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        agent_lines[..2],
        ["Hello, this is the dental office. How can I help?", "Of course. Which day would suit you better?"],
        "{}",
        call["transcript"]
    );
    let requests = model.requests();
    let routing = requests.iter().find(|r| r["messages"][0]["content"].as_str().unwrap_or_default().starts_with("You route")).unwrap();
    assert_eq!(routing["model"], "gpt-4.1-mini");
    let asked = routing["messages"][0]["content"].as_str().unwrap();
    assert!(asked.contains("1. The user wants to cancel\n2. The user wants to move an appointment"), "{asked}");
    let conversation = routing["messages"][1]["content"].as_str().unwrap();
    assert!(conversation.starts_with("Agent: Hello, this is the dental office.") && conversation.contains("User: "), "{conversation}");
}
