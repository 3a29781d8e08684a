//! Two workspaces on one server: a key of the second reads, lists, changes, deletes and stops
//! nothing of the first's, and cannot even tell that the first's objects exist (the answer
//! is the one for an id that names nothing).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app};

const NUMBER: &str = "+14155550100";

/// A key of a new workspace, made with the real `uponai keys create --new-workspace`.
async fn second_workspace_key(app: &TestApp) -> String {
    app.new_workspace_key("other").await
}

/// The same id with its last hex digit changed: well formed, naming nothing.
fn unknown_like(id: &str) -> String {
    let (head, last) = id.split_at(id.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

struct Intruder<'a> {
    app: &'a TestApp,
    key: String,
}

impl Intruder<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.app.request_as(Some(&self.key), method, path, body).await
    }

    /// Asserts that `path` with the first workspace's `id` answers exactly as it does with an
    /// id that names nothing: 422, and the same message but for the id.
    async fn sees_nothing(&self, method: Method, path: &str, id: &str, body: Option<Value>) {
        let fake = unknown_like(id);
        let real = self.call(method.clone(), path, body.clone()).await;
        let unknown = self.call(method, &path.replace(id, &fake), body).await;
        assert_eq!(real.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", real.body);
        assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", unknown.body);
        assert_eq!(real.message().replace(id, "ID"), unknown.message().replace(&fake, "ID"), "{path}");
    }
}

async fn two_workspaces() -> (TestApp, String) {
    let app = spawn_app().await;
    let key = second_workspace_key(&app).await;
    (app, key)
}

#[tokio::test]
async fn another_workspace_cannot_read_change_publish_or_delete_an_agent_or_its_versions() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let agent_id = app.create_agent("mine").await;
    let before = app.get(&format!("/get-agent/{agent_id}")).await.body;

    let a = &agent_id;
    intruder.sees_nothing(Method::GET, &format!("/get-agent/{a}"), a, None).await;
    intruder.sees_nothing(Method::GET, &format!("/get-agent/{a}?version=0"), a, None).await;
    intruder.sees_nothing(Method::PATCH, &format!("/update-agent/{a}"), a, Some(json!({"agent_name": "x"}))).await;
    intruder.sees_nothing(Method::POST, &format!("/publish-agent-version/{a}"), a, Some(json!({"version": 0}))).await;
    intruder.sees_nothing(Method::GET, &format!("/list-agent-versions/{a}"), a, None).await;
    intruder.sees_nothing(Method::GET, &format!("/get-agent-versions/{a}"), a, None).await;
    intruder.sees_nothing(Method::POST, &format!("/create-agent-version/{a}"), a, Some(json!({"base_version": 0}))).await;
    intruder.sees_nothing(Method::DELETE, &format!("/delete-agent-version/{a}?version=0"), a, None).await;
    intruder.sees_nothing(Method::DELETE, &format!("/delete-agent/{a}"), a, None).await;
    let listed = intruder.call(Method::POST, "/v2/list-agents", Some(json!({}))).await;
    assert_eq!((listed.status, &listed.body["items"]), (StatusCode::OK, &json!([])));

    let after = app.get(&format!("/get-agent/{agent_id}")).await.body;
    assert_eq!(after, before, "the owner's agent is unchanged");
    let versions = app.get(&format!("/list-agent-versions/{agent_id}")).await.body;
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1), "no version was added or deleted: {versions}");
    assert_eq!(after["is_published"], false);
}

#[tokio::test]
async fn another_workspace_cannot_read_change_or_delete_a_retell_llm() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let llm_id = app.create_llm(json!({"general_prompt": "Mine."})).await;
    let l = &llm_id;
    intruder.sees_nothing(Method::GET, &format!("/get-retell-llm/{l}"), l, None).await;
    intruder.sees_nothing(Method::PATCH, &format!("/update-retell-llm/{l}"), l, Some(json!({"general_prompt": "Theirs."}))).await;
    intruder.sees_nothing(Method::DELETE, &format!("/delete-retell-llm/{l}"), l, None).await;
    let listed = intruder.call(Method::GET, "/v2/list-retell-llms", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"], json!([]));
    assert_eq!(app.get(&format!("/get-retell-llm/{llm_id}")).await.body["general_prompt"], "Mine.");
}

#[tokio::test]
async fn another_workspace_cannot_read_change_or_delete_a_number() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let agent_id = app.create_agent("mine").await;
    app.import_number(NUMBER, &[&agent_id]).await;
    let before = app.get(&format!("/get-phone-number/{NUMBER}")).await.body;

    intruder.sees_nothing(Method::GET, &format!("/get-phone-number/{NUMBER}"), NUMBER, None).await;
    intruder.sees_nothing(Method::PATCH, &format!("/update-phone-number/{NUMBER}"), NUMBER, Some(json!({"nickname": "x"}))).await;
    intruder.sees_nothing(Method::DELETE, &format!("/delete-phone-number/{NUMBER}"), NUMBER, None).await;
    let listed = intruder.call(Method::GET, "/v2/list-phone-numbers", None).await;
    assert_eq!((listed.status, &listed.body["items"]), (StatusCode::OK, &json!([])), "{}", listed.body);
    assert_eq!(app.get(&format!("/get-phone-number/{NUMBER}")).await.body, before);
}

#[tokio::test]
async fn adding_a_number_another_workspace_holds_is_refused_like_any_unavailable_number() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let agent_id = app.create_agent("mine").await;
    app.import_number(NUMBER, &[&agent_id]).await;
    let import = |number: &str| json!({"phone_number": number, "termination_uri": "sip:127.0.0.1:5090"});

    // Another workspace: the number as held, and its other spelling (inbound routing treats
    // them as one number).
    for number in [NUMBER, "14155550100"] {
        let reply = intruder.call(Method::POST, "/import-phone-number", Some(import(number))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{number}");
        assert_eq!(reply.message(), "phone_number: is not available to this workspace", "{number}");
    }
    let trunk = json!({"twilio_trunk": {"termination_uri": "sip:127.0.0.1:5091"}});
    assert_eq!(intruder.call(Method::PATCH, "/update-workspace-settings", Some(trunk)).await.status, StatusCode::OK);
    let created = intruder.call(Method::POST, "/create-phone-number", Some(json!({"phone_number": NUMBER}))).await;
    assert_eq!(created.status, StatusCode::BAD_REQUEST);
    assert_eq!(created.message(), "phone_number: is not available to this workspace");

    // The owner importing it again hears the same words: they say nothing about who holds it.
    let again = app.post("/import-phone-number", import(NUMBER)).await;
    assert_eq!((again.status, again.message()), (StatusCode::BAD_REQUEST, "phone_number: is not available to this workspace"));
    let number = app.get(&format!("/get-phone-number/{NUMBER}")).await.body;
    assert_eq!(number["outbound_agents"][0]["agent_id"], agent_id.as_str(), "the owner's number is untouched: {number}");
}

#[tokio::test]
async fn another_workspace_cannot_read_change_delete_or_stop_a_call() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let agent_id = app.create_agent("mine").await;
    let registered = app
        .post(
            "/v2/register-phone-call",
            json!({"agent_id": agent_id, "from_number": "+13105550199", "to_number": NUMBER, "metadata": {"mine": true}}),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
    let call_id = registered.body["call_id"].as_str().unwrap().to_owned();
    let c = &call_id;

    intruder.sees_nothing(Method::GET, &format!("/v2/get-call/{c}"), c, None).await;
    intruder.sees_nothing(Method::PATCH, &format!("/v2/update-call/{c}"), c, Some(json!({"metadata": {"theirs": true}}))).await;
    intruder.sees_nothing(Method::POST, &format!("/v2/stop-call/{c}"), c, None).await;
    intruder.sees_nothing(Method::DELETE, &format!("/v2/delete-call/{c}"), c, None).await;
    let listed = intruder.call(Method::POST, "/v3/list-calls", Some(json!({}))).await;
    assert_eq!((listed.status, &listed.body["items"]), (StatusCode::OK, &json!([])));
    let by_agent =
        intruder.call(Method::POST, "/v3/list-calls", Some(json!({"filter_criteria": {"agent": [{"agent_id": agent_id}]}}))).await;
    assert_eq!(by_agent.body["items"], json!([]), "{}", by_agent.body);

    let call = app.get(&format!("/v2/get-call/{call_id}")).await.body;
    assert_eq!((call["call_status"].as_str(), &call["metadata"]), (Some("registered"), &json!({"mine": true})), "{call}");
}

#[tokio::test]
async fn another_workspace_cannot_read_or_list_a_batch() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let agent_id = app.create_agent("mine").await;
    app.import_number(NUMBER, &[&agent_id]).await;
    let tomorrow = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 86_400_000) as i64;
    let created = app
        .post(
            "/create-batch-call",
            json!({"from_number": NUMBER, "name": "mine", "trigger_timestamp": tomorrow, "tasks": [{"to_number": "+12125550123"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let batch_id = created.body["batch_call_id"].as_str().unwrap().to_owned();
    intruder.sees_nothing(Method::GET, &format!("/get-batch-call/{batch_id}"), &batch_id, None).await;
    let listed = intruder.call(Method::GET, "/v2/list-batch-calls", None).await;
    assert_eq!((listed.status, &listed.body["items"]), (StatusCode::OK, &json!([])));
    assert_eq!(app.get(&format!("/get-batch-call/{batch_id}")).await.body["name"], "mine");
}

#[tokio::test]
async fn another_workspace_cannot_list_or_redeliver_a_calls_webhooks() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    // Nothing listens there: events stay pending, retrying.
    let hook = json!({"webhook_url": format!("http://127.0.0.1:{}/hook", closed_port())});
    assert_eq!(app.patch("/update-workspace-settings", hook).await.status, StatusCode::OK);
    let agent_id = app.create_agent("mine").await;
    let registered =
        app.post("/v2/register-phone-call", json!({"agent_id": agent_id, "from_number": "+13105550199", "to_number": NUMBER})).await;
    let call_id = registered.body["call_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, StatusCode::NO_CONTENT);
    let events = app.get(&format!("/list-call-webhooks/{call_id}")).await.body;
    let event_id = events["items"][0]["event_id"].as_str().unwrap_or_else(|| panic!("an event was queued: {events}")).to_owned();

    intruder.sees_nothing(Method::GET, &format!("/list-call-webhooks/{call_id}"), &call_id, None).await;
    intruder.sees_nothing(Method::POST, &format!("/redeliver-webhook/{event_id}"), &event_id, None).await;
    let after = app.get(&format!("/list-call-webhooks/{call_id}")).await.body;
    assert_eq!(after["items"].as_array().map(Vec::len), events["items"].as_array().map(Vec::len));
}

#[tokio::test]
async fn workspace_settings_and_concurrency_are_each_workspaces_own() {
    let (app, key) = two_workspaces().await;
    let intruder = Intruder { app: &app, key };
    let mine = json!({"concurrency_limit": 7, "webhook_url": "https://hooks.example.com/mine"});
    assert_eq!(app.patch("/update-workspace-settings", mine).await.status, StatusCode::OK);
    let theirs = json!({"concurrency_limit": 3, "webhook_url": "https://hooks.example.com/theirs"});
    assert_eq!(intruder.call(Method::PATCH, "/update-workspace-settings", Some(theirs)).await.status, StatusCode::OK);

    let settings = app.get("/get-workspace-settings").await.body;
    assert_eq!(settings["webhook_url"], "https://hooks.example.com/mine", "{settings}");
    let other = intruder.call(Method::GET, "/get-workspace-settings", None).await.body;
    assert_eq!(other["webhook_url"], "https://hooks.example.com/theirs", "{other}");
    let concurrency = app.get("/get-concurrency").await.body;
    let other_concurrency = intruder.call(Method::GET, "/get-concurrency", None).await.body;
    assert_eq!((&concurrency["concurrency_limit"], &other_concurrency["concurrency_limit"]), (&json!(7), &json!(3)));
}

#[tokio::test]
async fn deleting_a_call_deletes_its_webhook_history() {
    let app = spawn_app().await;
    let hook = json!({"webhook_url": format!("http://127.0.0.1:{}/hook", closed_port())});
    assert_eq!(app.patch("/update-workspace-settings", hook).await.status, StatusCode::OK);
    let agent_id = app.create_agent("mine").await;
    let registered =
        app.post("/v2/register-phone-call", json!({"agent_id": agent_id, "from_number": "+13105550199", "to_number": NUMBER})).await;
    let call_id = registered.body["call_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post(&format!("/v2/stop-call/{call_id}"), json!({})).await.status, StatusCode::NO_CONTENT);
    let events = app.get(&format!("/list-call-webhooks/{call_id}")).await.body;
    let event_id = events["items"][0]["event_id"].as_str().unwrap().to_owned();

    assert_eq!(app.delete(&format!("/v2/delete-call/{call_id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/list-call-webhooks/{call_id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let redeliver = app.post(&format!("/redeliver-webhook/{event_id}"), json!({})).await;
    assert_eq!(redeliver.status, StatusCode::UNPROCESSABLE_ENTITY, "the event went with its call: {}", redeliver.body);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn every_pooled_connection_commits_durably_in_wal_mode_with_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = uponai::store::Store::open(&dir.path().join("uponai.db")).await.unwrap();
    let settings = store.durability_settings(4).await.unwrap();
    // PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    assert_eq!(settings, vec![("wal".to_owned(), 2); 4]);
    store.close().await;
}
