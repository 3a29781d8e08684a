use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_imported_number_keeps_its_trunk_but_never_returns_the_password() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("a").await;
    let number = app.import_number("+14155550100", &[&agent_id]).await;
    assert_eq!(number["phone_number_type"], "custom");
    assert_eq!(number["sip_outbound_trunk_config"]["termination_uri"], "sip:127.0.0.1:5090;transport=udp");
    assert_eq!(number["sip_outbound_trunk_config"]["auth_username"], "trunkuser");
    assert_eq!(number["sip_outbound_trunk_config"]["transport"], "TCP");
    let fetched = app.get("/get-phone-number/+14155550100").await;
    assert!(!fetched.body.to_string().contains("trunksecret"), "{}", fetched.body);
    assert_eq!(fetched.body["outbound_agents"][0]["agent_id"], agent_id);
    assert_eq!(fetched.body["inbound_agents"], json!(null));
}

#[tokio::test]
async fn weights_must_lie_in_the_unit_interval_and_sum_to_one() {
    let app = spawn_app().await;
    let a = app.create_agent("a").await;
    let b = app.create_agent("b").await;
    app.import_number("+14155550100", &[]).await;
    let cases = [
        (json!({"outbound_agents": [{"agent_id": a, "weight": 0.5}, {"agent_id": b, "weight": 0.4}]}), "outbound_agents"),
        (json!({"inbound_agents": [{"agent_id": a, "weight": 0}, {"agent_id": b, "weight": 1}]}), "inbound_agents"),
        (json!({"outbound_agents": [{"agent_id": a, "weight": 1.5}]}), "outbound_agents"),
        (json!({"outbound_agents": [{"agent_id": "agent_ffff", "weight": 1}]}), "outbound_agents[0].agent_id"),
        (json!({"outbound_agents": [{"agent_id": a, "weight": 1, "agent_version": 9}]}), "outbound_agents[0].agent_id"),
        (json!({"outbound_agents": [{"agent_id": a, "weight": 1, "agent_version": "prod"}]}), "outbound_agents[0].agent_version"),
        (json!({"allowed_outbound_country_list": ["usa"]}), "allowed_outbound_country_list[0]"),
        (json!({"transport": "SCTP"}), "transport"),
        (json!({"termination_uri": "sip:"}), "termination_uri"),
        (json!({"fallback_number": "+14155550100"}), "fallback_number"),
    ];
    for (body, field) in cases {
        let reply = app.patch("/update-phone-number/+14155550100", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(field), "{body}: {}", reply.message());
    }
    let third = 1.0 / 3.0;
    let c = app.create_agent("c").await;
    let ok = app
        .patch(
            "/update-phone-number/+14155550100",
            json!({"outbound_agents": [{"agent_id": a, "weight": third}, {"agent_id": b, "weight": third}, {"agent_id": c, "weight": third, "agent_version": "latest"}],
                   "inbound_agents": [{"agent_id": b, "weight": 1}], "nickname": "main line"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["outbound_agents"].as_array().unwrap().len(), 3);
    assert_eq!(ok.body["inbound_agent_id"], b);
    assert_eq!(ok.body["nickname"], "main line");
}

#[tokio::test]
async fn legacy_single_agent_fields_become_one_entry_lists() {
    let app = spawn_app().await;
    let a = app.create_agent("a").await;
    let reply = app
        .post("/import-phone-number", json!({"phone_number": "+14155550100", "termination_uri": "trunk.example.com", "inbound_agent_id": a, "outbound_agent_id": a, "outbound_agent_version": 0}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["inbound_agents"], json!([{"agent_id": a, "weight": 1.0}]));
    assert_eq!(reply.body["outbound_agents"], json!([{"agent_id": a, "weight": 1.0, "agent_version": 0}]));
    assert_eq!(reply.body["outbound_agent_id"], a);
}

#[tokio::test]
async fn provider_numbers_need_the_workspace_trunk_and_a_real_number() {
    let app = spawn_app().await;
    let refused = app.post("/create-phone-number", json!({"phone_number": "+14155550100", "number_provider": "telnyx"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().starts_with("number_provider"));

    let settings = app
        .patch(
            "/update-workspace-settings",
            json!({"telnyx_trunk": {"termination_uri": "sip.telnyx.com", "auth_username": "u", "auth_password": "p", "transport": "tcp"}}),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.body["telnyx_trunk"]["has_auth_password"], true);
    assert!(!settings.body.to_string().contains("\"p\""));

    let missing = app.post("/create-phone-number", json!({"number_provider": "telnyx", "area_code": 415})).await;
    assert!(missing.message().starts_with("phone_number"));
    let wrong_area =
        app.post("/create-phone-number", json!({"number_provider": "telnyx", "phone_number": "+14155550100", "area_code": 212})).await;
    assert!(wrong_area.message().starts_with("area_code"));
    let created =
        app.post("/create-phone-number", json!({"number_provider": "telnyx", "phone_number": "+14155550100", "area_code": 415})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["phone_number_type"], "retell-telnyx");
    assert_eq!(created.body["area_code"], 415);
    assert!(created.body.get("sip_outbound_trunk_config").is_none());
    let twice = app.post("/import-phone-number", json!({"phone_number": "+14155550100", "termination_uri": "x.example.com"})).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn numbers_list_pages_and_delete_removes() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.import_number(&format!("+1415555010{n}"), &[]).await;
    }
    let first = app.get("/v2/list-phone-numbers?limit=2&sort_order=ascending").await.body;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    // Percent-encoded, as the SDKs send it: a raw `+` in a query string means a space.
    let key = first["pagination_key"].as_str().unwrap().replace('+', "%2B");
    let second = app.get(&format!("/v2/list-phone-numbers?limit=10&sort_order=ascending&pagination_key={key}")).await.body;
    let numbers: Vec<&str> = second["items"].as_array().unwrap().iter().map(|n| n["phone_number"].as_str().unwrap()).collect();
    assert_eq!(numbers, vec!["+14155550102", "+14155550103", "+14155550104"]);
    assert_eq!(app.delete("/delete-phone-number/+14155550103").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/get-phone-number/+14155550103").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.delete("/delete-phone-number/+14155550103").await.status, StatusCode::UNPROCESSABLE_ENTITY);
}
