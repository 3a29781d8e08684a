//! The egress guard and the injection checks at the API edge: with the guard on (the
//! default of `uponai serve`), URLs the platform would call on loopback, private or
//! link-local addresses are refused with a 400 naming the field; text bound for SIP headers
//! cannot carry line breaks.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

async fn spawn_guarded() -> TestApp {
    spawn_app_with(tempfile::tempdir().unwrap(), |settings| settings.allow_private_targets = false).await
}

fn assert_refused(reply: &crate::helpers::Reply, field: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let message = reply.message();
    assert!(message.starts_with(&format!("{field}: refused target: ")), "{message}");
}

const REFUSED_URLS: [&str; 14] = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://127.1/hook",
    "http://2852039166/latest/meta-data/",
    "http://0xA9FEA9FE/",
    "http://0251.0376.0251.0376/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://10.0.0.7/hook",
    "http://100.64.1.1/hook",
    "http://0.0.0.0/hook",
    "http://[fe80::1]/hook",
];

#[tokio::test]
async fn a_workspace_webhook_url_on_a_private_address_is_refused_in_every_spelling() {
    let app = spawn_guarded().await;
    for url in REFUSED_URLS {
        let reply = app.patch("/update-workspace-settings", json!({"webhook_url": url})).await;
        assert_refused(&reply, "webhook_url");
    }
    assert!(app.get("/get-workspace-settings").await.body["webhook_url"].is_null(), "nothing was saved");
}

#[tokio::test]
async fn a_receiver_on_127_0_0_1_is_refused_as_an_agents_webhook_url() {
    let app = spawn_guarded().await;
    let agent_id = app.create_agent("a").await;
    let reply = app.patch(&format!("/update-agent/{agent_id}"), json!({"webhook_url": "http://127.0.0.1:9/hook"})).await;
    assert_refused(&reply, "webhook_url");
    let llm_id = app.create_llm(json!({})).await;
    let body = json!({"voice_id": "espeak-en-us-male", "response_engine": {"type": "retell-llm", "llm_id": llm_id},
        "webhook_url": "http://localhost:9/hook"});
    assert_refused(&app.post("/create-agent", body).await, "webhook_url");
}

#[tokio::test]
async fn custom_llm_websockets_and_custom_tools_on_private_addresses_are_refused() {
    let app = spawn_guarded().await;
    let body = json!({"voice_id": "espeak-en-us-male",
        "response_engine": {"type": "custom-llm", "llm_websocket_url": "ws://169.254.169.254/llm"}});
    assert_refused(&app.post("/create-agent", body).await, "response_engine.llm_websocket_url");
    let tool = json!({"type": "custom", "name": "lookup", "url": "http://[::1]:8080/tool", "description": "x"});
    assert_refused(&app.post("/create-retell-llm", json!({"general_tools": [tool]})).await, "general_tools[0].url");
}

#[tokio::test]
async fn public_addresses_and_names_that_do_not_resolve_yet_are_accepted() {
    let app = spawn_guarded().await;
    for url in ["https://93.184.216.34/hook", "http://[2606:4700::1111]/hook", "https://hooks.example.invalid/x?c={{customer}}"] {
        let reply = app.patch("/update-workspace-settings", json!({"webhook_url": url})).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
    }
}

#[tokio::test]
async fn without_the_guard_local_receivers_are_accepted() {
    let app = spawn_app().await;
    let reply = app.patch("/update-workspace-settings", json!({"webhook_url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

fn import_body(termination_uri: &str, extra: Value) -> Value {
    let mut body = json!({"phone_number": "+14155550100", "termination_uri": termination_uri});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn trunks_on_link_local_addresses_are_refused_and_private_ones_allowed() {
    let app = spawn_guarded().await;
    for uri in ["sip:169.254.169.254:5060", "169.254.10.1", "sip:[fe80::1]:5060;transport=udp", "sip:[::ffff:169.254.169.254]"] {
        assert_refused(&app.post("/import-phone-number", import_body(uri, json!({}))).await, "termination_uri");
        let trunk = json!({"twilio_trunk": {"termination_uri": uri}});
        assert_refused(&app.patch("/update-workspace-settings", trunk).await, "twilio_trunk.termination_uri");
        let trunk = json!({"telnyx_trunk": {"termination_uri": uri}});
        assert_refused(&app.patch("/update-workspace-settings", trunk).await, "telnyx_trunk.termination_uri");
    }
    for (i, uri) in ["sip:127.0.0.1:5090", "sip:10.0.0.5", "sip:192.168.1.20:5070;transport=tcp", "localhost"].iter().enumerate() {
        let body = json!({"phone_number": format!("+1415555011{i}"), "termination_uri": uri});
        let reply = app.post("/import-phone-number", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{uri}: {}", reply.body);
    }
    let number = "+14155550110";
    let reply = app.patch(&format!("/update-phone-number/{number}"), json!({"termination_uri": "sip:169.254.0.9"})).await;
    assert_refused(&reply, "termination_uri");
}

#[tokio::test]
async fn termination_uris_that_could_break_a_header_are_refused() {
    let app = spawn_app().await;
    for uri in
        ["sip:t.example.com\r\nVia: x", "sip:t.example.com;x=<y>", "sip:t.example.com;x=\"y\"", "sip:t.example.com\0", "sip:t .example.com"]
    {
        let reply = app.post("/import-phone-number", import_body(uri, json!({}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri:?}: {}", reply.body);
        assert!(reply.message().starts_with("termination_uri: "), "{}", reply.message());
    }
}

#[tokio::test]
async fn trunk_credentials_with_line_breaks_or_quotes_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let uri = "sip:127.0.0.1:5090";
    for (extra, field) in [
        (json!({"sip_trunk_auth_username": "alice\r\nX-Evil: 1"}), "sip_trunk_auth_username"),
        (json!({"sip_trunk_auth_username": "al\"ice"}), "sip_trunk_auth_username"),
        (json!({"sip_trunk_auth_password": "pa\nss"}), "sip_trunk_auth_password"),
    ] {
        let reply = app.post("/import-phone-number", import_body(uri, extra)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(reply.message().starts_with(&format!("{field}: ")), "{}", reply.message());
    }
    assert_eq!(app.post("/import-phone-number", import_body(uri, json!({}))).await.status, StatusCode::CREATED);
    let reply = app.patch("/update-phone-number/+14155550100", json!({"auth_username": "bob\u{0}"})).await;
    assert!(reply.message().starts_with("auth_username: "), "{}", reply.message());
    let reply = app.patch("/update-phone-number/+14155550100", json!({"auth_password": "x\ry"})).await;
    assert!(reply.message().starts_with("auth_password: "), "{}", reply.message());
    for provider in ["twilio_trunk", "telnyx_trunk"] {
        let trunk = json!({provider: {"termination_uri": "t.example.com", "auth_username": "u\r\nVia: x"}});
        let reply = app.patch("/update-workspace-settings", trunk).await;
        assert!(reply.message().starts_with(&format!("{provider}.auth_username: ")), "{}", reply.message());
        let trunk = json!({provider: {"termination_uri": "t.example.com", "auth_password": "p\np"}});
        let reply = app.patch("/update-workspace-settings", trunk).await;
        assert!(reply.message().starts_with(&format!("{provider}.auth_password: ")), "{}", reply.message());
    }
}

#[tokio::test]
async fn custom_sip_headers_with_control_characters_or_bad_names_are_refused() {
    let app = spawn_app().await;
    let call = |headers: Value| json!({"from_number": "+14155550100", "to_number": "+12125550123", "custom_sip_headers": headers});
    for value in ["a\r\nVia: SIP/2.0/UDP evil", "a\u{0}b", "\u{1b}[2J", "a\rb"] {
        let reply = app.post("/v2/create-phone-call", call(json!({"X-Foo": value}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.message(), "custom_sip_headers.X-Foo: must not contain CR, LF, NUL or other control characters");
    }
    let reply = app.post("/v2/create-phone-call", call(json!({"X-Foo": "a".repeat(1025)}))).await;
    assert!(reply.message().starts_with("custom_sip_headers.X-Foo: must be at most 1024 bytes"), "{}", reply.message());
    for name in ["Via", "X-Foo Bar", "X-Foo:", "X-Foo\r\nVia"] {
        let reply = app.post("/v2/create-phone-call", call(json!({name: "v"}))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(reply.message().contains("header names must start with X-"), "{}", reply.message());
        assert!(!reply.message().contains('\r'), "the bad name is not echoed raw: {:?}", reply.message());
    }
}

#[tokio::test]
async fn a_workspace_model_server_on_a_private_address_is_refused_and_its_key_never_shown() {
    let app = spawn_guarded().await;
    for url in REFUSED_URLS {
        let reply = app.patch("/update-workspace-settings", json!({"llm_base_url": url})).await;
        assert_refused(&reply, "llm_base_url");
    }
    let body = json!({"llm_base_url": "https://api.openai.com/v1", "llm_api_key": "sk-secret", "llm_model": "gpt-4.1-mini"});
    let reply = app.patch("/update-workspace-settings", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let settings = app.get("/get-workspace-settings").await.body;
    assert_eq!(settings["llm_base_url"], "https://api.openai.com/v1");
    assert_eq!(settings["llm_model"], "gpt-4.1-mini");
    assert_eq!(settings["has_llm_api_key"], true);
    assert!(!settings.to_string().contains("sk-secret"), "{settings}");
    let reply = app.patch("/update-workspace-settings", json!({"llm_api_key": "has space"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.message().starts_with("llm_api_key"), "{}", reply.message());
    let reply = app.patch("/update-workspace-settings", json!({"llm_base_url": null, "llm_api_key": null})).await;
    assert_eq!((reply.body["llm_base_url"].clone(), reply.body["has_llm_api_key"].clone()), (Value::Null, json!(false)));
}
