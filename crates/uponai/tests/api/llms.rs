use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_llm_round_trips_every_field_it_was_given() {
    let app = spawn_app().await;
    let body = json!({
        "general_prompt": "You sell {{product}}.",
        "begin_message": "Hi {{name}}",
        "model": "gpt-4.1",
        "model_temperature": 0.3,
        "default_dynamic_variables": {"product": "solar"},
        "general_tools": [{"type": "end_call", "name": "end_call", "description": "hang up"}],
        "states": [
            {"name": "intro", "state_prompt": "greet", "edges": [{"destination_state_name": "close", "description": "done"}]},
            {"name": "close", "state_prompt": "bye"}
        ],
        "starting_state": "intro",
        "kb_config": {"top_k": 3},
        "not_a_field": true,
    });
    let created = app.post("/create-retell-llm", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let llm_id = created.body["llm_id"].as_str().unwrap();
    let fetched = app.get(&format!("/get-retell-llm/{llm_id}")).await;
    for key in [
        "general_prompt",
        "begin_message",
        "model",
        "model_temperature",
        "default_dynamic_variables",
        "general_tools",
        "states",
        "starting_state",
        "kb_config",
    ] {
        assert_eq!(fetched.body[key], body[key], "{key}");
    }
    assert!(fetched.body.get("not_a_field").is_none(), "unknown fields are ignored");
    assert_eq!(fetched.body["version"], 0);
    assert_eq!(fetched.body["is_published"], false);
}

#[tokio::test]
async fn invalid_llm_configurations_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"model_temperature": 3}), "model_temperature"),
        (json!({"states": [{"name": "a"}]}), "starting_state"),
        (
            json!({"states": [{"name": "a", "edges": [{"destination_state_name": "b", "description": "x"}]}], "starting_state": "a"}),
            "states[0].edges[0].destination_state_name",
        ),
        (json!({"general_tools": [{"type": "custom", "name": "lookup", "url": "ftp://x"}]}), "general_tools[0].url"),
        (json!({"general_tools": [{"type": "end_call", "name": "bad name"}]}), "general_tools[0].name"),
        (json!({"default_dynamic_variables": {"n": 5}}), "default_dynamic_variables.n"),
    ];
    for (body, field) in cases {
        let reply = app.post("/create-retell-llm", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(field), "{body}: {}", reply.message());
    }
}

#[tokio::test]
async fn an_llm_in_use_is_only_deleted_when_forced() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("a").await;
    let llm_id = app.get(&format!("/get-agent/{agent_id}")).await.body["response_engine"]["llm_id"].as_str().unwrap().to_owned();
    let refused = app.delete(&format!("/delete-retell-llm/{llm_id}")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().contains(&agent_id));
    assert_eq!(app.delete(&format!("/delete-retell-llm/{llm_id}?force_delete=true")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/get-retell-llm/{llm_id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn llm_lists_page_through_every_item_once() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.create_llm(json!({"general_prompt": format!("p{i}")})).await);
    }
    let mut seen = Vec::new();
    let mut key: Option<String> = None;
    loop {
        let query = match &key {
            Some(k) => format!("?limit=3&sort_order=ascending&pagination_key={k}"),
            None => "?limit=3&sort_order=ascending".into(),
        };
        let page = app.get(&format!("/v2/list-retell-llms{query}")).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(page.body["items"].as_array().unwrap().iter().map(|i| i["llm_id"].as_str().unwrap().to_owned()));
        if page.body["has_more"] == false {
            assert!(page.body.get("pagination_key").is_none());
            break;
        }
        key = Some(page.body["pagination_key"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, created);
    assert_eq!(app.get("/v2/list-retell-llms?limit=0").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v2/list-retell-llms?limit=1001").await.status, StatusCode::BAD_REQUEST);
}
