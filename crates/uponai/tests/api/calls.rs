use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_created_call_is_registered_with_the_bound_agent_and_every_parameter() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("outbound").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let reply = app
        .post(
            "/v2/create-phone-call",
            json!({
                "from_number": "+14155550100",
                "to_number": "+12125550123",
                "metadata": {"crm_id": "A-7"},
                "retell_llm_dynamic_variables": {"name": "Bob"},
                "custom_sip_headers": {"X-Campaign": "spring"},
                "agent_override": {"agent": {"voice_speed": 1.1}, "retell_llm": {"begin_message": "Hey"}},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let call = reply.body;
    assert_eq!(call["call_status"], "registered");
    assert_eq!(call["call_type"], "phone_call");
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["agent_id"], agent_id);
    assert_eq!(call["agent_version"], 0);
    assert_eq!(call["agent_name"], "outbound");
    assert_eq!(call["metadata"], json!({"crm_id": "A-7"}));
    assert_eq!(call["retell_llm_dynamic_variables"], json!({"name": "Bob"}));
    assert_eq!(call["custom_sip_headers"], json!({"X-Campaign": "spring"}));
    let fetched = app.get(&format!("/v2/get-call/{}", call["call_id"].as_str().unwrap())).await;
    assert_eq!(fetched.body, call);
}

#[tokio::test]
async fn bad_call_requests_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    app.import_number("+14155550199", &[]).await;
    let base = json!({"from_number": "+14155550100", "to_number": "+12125550123"});
    let with = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        body
    };
    let cases = [
        (with(json!({"to_number": "2125550123"})), "to_number"),
        (with(json!({"to_number": "+10000000000"})), "to_number"),
        (with(json!({"from_number": "+13105550100"})), "from_number"),
        (with(json!({"from_number": "+14155550199"})), "from_number"),
        (with(json!({"retell_llm_dynamic_variables": {"age": 42}})), "retell_llm_dynamic_variables.age"),
        (with(json!({"custom_sip_headers": {"Campaign": "x"}})), "custom_sip_headers.Campaign"),
        (with(json!({"custom_sip_headers": {"X-Evil": "a\r\nVia: x"}})), "custom_sip_headers.X-Evil"),
        (with(json!({"override_agent_id": "agent_ffff"})), "override_agent_id"),
        (with(json!({"override_agent_id": agent_id, "override_agent_version": 5})), "override_agent_version"),
        (with(json!({"agent_override": {"agent": {"voice_speed": 9}}})), "agent_override.agent.voice_speed"),
        (with(json!({"agent_override": {"agent": {"voice_id": "nope"}}})), "agent_override.agent.voice_id"),
        (with(json!({"idempotency_key": "a b"})), "idempotency_key"),
        (with(json!({"metadata": "not an object"})), "metadata"),
        (with(json!({"to_number": "10 01", "ignore_e164_validation": true})), "to_number"),
        (json!({"to_number": "+12125550123"}), "request body"),
    ];
    for (body, field) in cases {
        let reply = app.post("/v2/create-phone-call", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert!(reply.message().starts_with(field), "{body}: {}", reply.message());
    }
    // Nothing was recorded.
    let listed = app.post("/v3/list-calls", json!({})).await;
    assert_eq!(listed.body["items"], json!([]));
}

#[tokio::test]
async fn e164_validation_is_only_waived_for_custom_numbers() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let reply = app
        .post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "1001", "ignore_e164_validation": true}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["to_number"], "1001");

    app.patch("/update-workspace-settings", json!({"twilio_trunk": {"termination_uri": "x.pstn.twilio.com"}})).await;
    let twilio = app
        .post("/create-phone-number", json!({"phone_number": "+14155550111", "outbound_agents": [{"agent_id": agent_id, "weight": 1}]}))
        .await;
    assert_eq!(twilio.status, StatusCode::CREATED, "{}", twilio.body);
    let refused = app
        .post("/v2/create-phone-call", json!({"from_number": "+14155550111", "to_number": "1001", "ignore_e164_validation": true}))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().starts_with("ignore_e164_validation"), "{}", refused.message());
}

#[tokio::test]
async fn calls_without_an_outbound_agent_need_an_override() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[]).await;
    let refused = app.post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().contains("no outbound agent bound"), "{}", refused.message());
    app.post(&format!("/publish-agent-version/{agent_id}"), json!({"version": 0})).await;
    app.patch(&format!("/update-agent/{agent_id}"), json!({"agent_name": "draft"})).await;
    let pinned = app
        .post(
            "/v2/create-phone-call",
            json!({"from_number": "+14155550100", "to_number": "+12125550123", "override_agent_id": agent_id, "override_agent_version": "latest_published"}),
        )
        .await;
    assert_eq!(pinned.status, StatusCode::CREATED, "{}", pinned.body);
    assert_eq!(pinned.body["agent_version"], 0);
    let latest = app
        .post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123", "override_agent_id": agent_id}))
        .await;
    assert_eq!(latest.body["agent_version"], 1);
    assert_eq!(latest.body["agent_name"], "draft");
}

#[tokio::test]
async fn an_ab_split_sends_calls_to_both_agents_in_proportion() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let a = app.create_agent("a").await;
    let b = app.create_agent("b").await;
    app.import_number("+14155550100", &[]).await;
    app.patch(
        "/update-phone-number/+14155550100",
        json!({"outbound_agents": [{"agent_id": a, "weight": 0.8}, {"agent_id": b, "weight": 0.2}]}),
    )
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let call = app.post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123"})).await;
        *counts.entry(call.body["agent_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    // 200 draws at p = 0.8: the chance of falling outside [130, 190] is below 1e-6.
    let n_a = counts.get(&a).copied().unwrap_or(0);
    assert!((130..=190).contains(&n_a), "{counts:?}");
    assert_eq!(n_a + counts.get(&b).copied().unwrap_or(0), 200);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_call() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let body = json!({"from_number": "+14155550100", "to_number": "+12125550123", "idempotency_key": "crm-run-42"});
    let first = app.post("/v2/create-phone-call", body.clone()).await;
    let second = app.post("/v2/create-phone-call", body).await;
    assert_eq!(first.body["call_id"], second.body["call_id"]);
    let listed = app.post("/v3/list-calls", json!({})).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn list_calls_filters_pages_and_counts() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let a = app.create_agent("a").await;
    let b = app.create_agent("b").await;
    app.import_number("+14155550100", &[&a]).await;
    for i in 0..6 {
        let agent = if i % 2 == 0 { &a } else { &b };
        let reply = app
            .post(
                "/v2/create-phone-call",
                json!({"from_number": "+14155550100", "to_number": format!("+1212555012{i}"), "override_agent_id": agent, "metadata": {"batch": if i < 3 { "x" } else { "y" }}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let registered =
        app.post("/v2/register-phone-call", json!({"agent_id": a, "from_number": "+13105550100", "to_number": "+14155550100"})).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    assert_eq!(registered.body["direction"], "inbound");

    let by_agent = app.post("/v3/list-calls", json!({"filter_criteria": {"agent": [{"agent_id": b}]}})).await.body;
    assert_eq!(by_agent["items"].as_array().unwrap().len(), 3);
    let outbound_x = app
        .post(
            "/v3/list-calls",
            json!({"filter_criteria": {
                "direction": {"type": "enum", "op": "in", "value": ["outbound"]},
                "metadata": [{"type": "string", "op": "eq", "value": "x", "key": "batch"}],
                "to_number": {"type": "string", "op": "sw", "value": "+1212"},
            }, "include_total": true}),
        )
        .await
        .body;
    assert_eq!(outbound_x["total"], 3);

    let mut seen = Vec::new();
    let mut key: Option<Value> = None;
    loop {
        let mut body = json!({"limit": 2, "sort_order": "ascending"});
        if let Some(k) = &key {
            body["pagination_key"] = k.clone();
        }
        let page = app.post("/v3/list-calls", body).await.body;
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["call_id"].clone()));
        if page["has_more"] == false {
            break;
        }
        key = Some(page["pagination_key"].clone());
    }
    assert_eq!(seen.len(), 7);
    let bad = app.post("/v3/list-calls", json!({"filter_criteria": {"call_status": {"type": "enum", "op": "eq", "value": "ended"}}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().starts_with("filter_criteria.call_status.op"), "{}", bad.message());
}

#[tokio::test]
async fn update_call_replaces_metadata_and_only_tightens_storage() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let call = app
        .post("/v2/create-phone-call", json!({"from_number": "+14155550100", "to_number": "+12125550123", "metadata": {"a": 1}}))
        .await
        .body;
    let id = call["call_id"].as_str().unwrap();
    let updated =
        app.patch(&format!("/v2/update-call/{id}"), json!({"metadata": {"b": 2}, "data_storage_setting": "basic_attributes_only"})).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["metadata"], json!({"b": 2}));
    let loosen = app.patch(&format!("/v2/update-call/{id}"), json!({"data_storage_setting": "everything"})).await;
    assert_eq!(loosen.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.delete(&format!("/v2/delete-call/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v2/get-call/{id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn uponai_initiate_maps_onto_the_same_call_creation() {
    let app = spawn_app().await;
    app.raise_limits().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[]).await;
    let reply = app
        .post(
            "/api/v1/calls/initiate",
            json!({
                "agentId": agent_id, "fromNumber": "+14155550100", "toNumber": "+12125550123",
                "customerName": "Dana", "trunkName": "main", "metadata": {"k": "v"},
                "uponai_dynamic_variables": {"plan": "gold"}, "customSipHeaders": {"X-Lead": "7"},
                "agentOverride": {"agent": {"maxCallDurationMs": 120000}, "llm": {"beginMessage": "Hi Dana"}},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["success"], true);
    let inner = &reply.body["call"]["call"];
    assert_eq!(inner["status"], "registered");
    assert_eq!(inner["agentId"], agent_id);
    assert_eq!(inner["uponai_dynamic_variables"], json!({"plan": "gold", "customer_name": "Dana"}));
    let call_id = reply.body["call_sid"].as_str().unwrap();
    let fetched = app.get(&format!("/v2/get-call/{call_id}")).await.body;
    assert_eq!(fetched["custom_sip_headers"], json!({"X-Lead": "7"}));

    let bad = app.post("/api/v1/calls/initiate", json!({"agentId": agent_id, "fromNumber": "+14155550100", "toNumber": "12"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().starts_with("toNumber"), "{}", bad.message());
    let bad_override = app
        .post("/api/v1/calls/initiate", json!({"agentId": agent_id, "fromNumber": "+14155550100", "toNumber": "+12125550123", "agentOverride": {"agent": {"maxCallDurationMs": 5}}}))
        .await;
    assert!(bad_override.message().starts_with("agentOverride.agent.max_call_duration_ms"), "{}", bad_override.message());
}
