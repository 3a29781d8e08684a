use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn cps_and_concurrency_settings_are_bounded_by_the_spec_table() {
    let app = spawn_app().await;
    let defaults = app.get("/get-workspace-settings").await.body;
    assert_eq!(defaults["cps_config"], json!({"twilio": 1, "telnyx": 1, "custom": 1, "twilio_max": 5, "telnyx_max": 16, "custom_max": 1}));
    assert_eq!(defaults["concurrency_limit"], 20);
    let cases = [
        (json!({"cps_config": {"twilio": 6}}), "cps_config.twilio: must be between 1 and 5"),
        (json!({"cps_config": {"telnyx": 17}}), "cps_config.telnyx: must be between 1 and 16"),
        (json!({"cps_config": {"telnyx": 0}}), "cps_config.telnyx: must be between 1 and 16"),
        (json!({"cps_config": {"custom": 2}}), "cps_config.custom: must be between 1 and 1 (concurrency_limit 20"),
        (json!({"concurrency_limit": 0}), "concurrency_limit: must be between 1 and 10000"),
    ];
    for (body, message) in cases {
        let reply = app.patch("/update-workspace-settings", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.message().starts_with(message), "{body}: {}", reply.message());
    }
    let raised =
        app.patch("/update-workspace-settings", json!({"concurrency_limit": 200, "cps_config": {"custom": 10, "telnyx": 16}})).await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);
    assert_eq!(raised.body["cps_config"]["custom_max"], 10);
    let lowered = app.patch("/update-workspace-settings", json!({"concurrency_limit": 100})).await;
    assert!(lowered.message().starts_with("cps_config.custom: must be between 1 and 5"), "{}", lowered.message());
    let concurrency = app.get("/get-concurrency").await.body;
    assert_eq!((concurrency["concurrency_limit"].as_u64(), concurrency["current_concurrency"].as_u64()), (Some(200), Some(0)));
}

#[tokio::test]
async fn a_call_over_the_cps_budget_is_refused_429_with_retry_headers_that_work() {
    let app = spawn_app().await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let body = json!({"from_number": "+14155550100", "to_number": "+12125550123"});
    assert_eq!(app.post("/v2/create-phone-call", body.clone()).await.status, StatusCode::CREATED);
    let refused = app.post("/v2/create-phone-call", body.clone()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.message().starts_with("rate_limited: the custom trunk's limit of 1 calls per second"), "{}", refused.message());
    let retry_ms: u64 = refused.headers["retry-after-ms"].to_str().unwrap().parse().unwrap();
    let retry_s: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // At most one second plus the pacer's 25 ms wire margin; seconds rounded up.
    assert!((1..=1050).contains(&retry_ms) && retry_s == retry_ms.div_ceil(1000), "{retry_ms} ms, {retry_s} s");
    tokio::time::sleep(Duration::from_millis(retry_ms)).await;
    assert_eq!(app.post("/v2/create-phone-call", body).await.status, StatusCode::CREATED, "the advertised retry succeeds");
    // Refused calls were not recorded.
    assert_eq!(app.post("/v3/list-calls", json!({})).await.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_refused_until_one_ends() {
    let app = spawn_app().await;
    app.patch("/update-workspace-settings", json!({"concurrency_limit": 1})).await;
    let agent_id = app.create_agent("a").await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let body = json!({"from_number": "+14155550100", "to_number": "+12125550123"});
    let first = app.post("/v2/create-phone-call", body.clone()).await.body;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/get-concurrency").await.body["current_concurrency"], 1, "the first call is still dialing");
    let refused = app.post("/v2/create-phone-call", body.clone()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.message().contains("concurrency limit of 1"), "{}", refused.message());
    app.post(&format!("/v2/stop-call/{}", first["call_id"].as_str().unwrap()), json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.get("/get-concurrency").await.body["current_concurrency"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stopped call's slot was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.post("/v2/create-phone-call", body).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn provider_numbers_call_only_the_fifteen_countries_and_lists_narrow_any_number() {
    let app = spawn_app().await;
    app.raise_limits().await;
    app.patch("/update-workspace-settings", json!({"twilio_trunk": {"termination_uri": "x.pstn.twilio.com"}, "cps_config": {"twilio": 5}}))
        .await;
    let agent_id = app.create_agent("a").await;
    let agents = json!([{"agent_id": agent_id, "weight": 1}]);
    app.post("/create-phone-number", json!({"phone_number": "+14155550111", "outbound_agents": agents})).await;
    app.import_number("+14155550100", &[&agent_id]).await;
    let call = |from: &str, to: &str| json!({"from_number": from, "to_number": to});

    let uk = app.post("/v2/create-phone-call", call("+14155550111", "+442071838750")).await;
    assert_eq!(uk.status, StatusCode::CREATED, "GB is one of the 15: {}", uk.body);
    let brazil = app.post("/v2/create-phone-call", call("+14155550111", "+5511987654321")).await;
    assert_eq!(brazil.status, StatusCode::BAD_REQUEST);
    assert!(brazil.message().starts_with("to_number: BR is not a country"), "{}", brazil.message());
    assert_eq!(
        app.post("/v2/create-phone-call", call("+14155550100", "+5511987654321")).await.status,
        StatusCode::CREATED,
        "custom numbers are unrestricted"
    );

    app.patch("/update-phone-number/+14155550100", json!({"allowed_outbound_country_list": ["US", "CA"]})).await;
    let narrowed = app.post("/v2/create-phone-call", call("+14155550100", "+442071838750")).await;
    assert_eq!(narrowed.status, StatusCode::BAD_REQUEST);
    assert!(narrowed.message().contains("GB is not in allowed_outbound_country_list"), "{}", narrowed.message());
    assert_eq!(app.post("/v2/create-phone-call", call("+14155550100", "+12125550123")).await.status, StatusCode::CREATED);
}
