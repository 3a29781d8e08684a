//! A call's webhook deliveries, and asking for one to be sent again.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Workspace;
use crate::domain::{CallId, EventId, now_ms};
use crate::store::{AttemptRow, DeliveryState, WebhookRow};

/// One event and its delivery so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// Sent as the `x-uponai-event-id` header on every attempt.
    pub event_id: String,
    pub call_id: String,
    /// `call_started`, `call_ended`, `call_analyzed`, `call_failed` or `transcript_updated`.
    pub event: String,
    pub url: String,
    /// `pending`, `delivered` or `failed` (retries exhausted).
    pub status: &'static str,
    pub attempts: i64,
    /// Milliseconds since the epoch.
    pub created_timestamp: i64,
    /// When the next attempt is due; null unless pending.
    pub next_attempt_timestamp: Option<i64>,
    pub delivered_timestamp: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub timeout_ms: i64,
    pub attempt_log: Vec<WebhookAttempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// 1 for the first.
    pub attempt: i64,
    /// When it was sent, milliseconds since the epoch.
    pub timestamp: i64,
    pub duration_ms: i64,
    /// The receiver's HTTP status; null when it did not answer.
    pub status_code: Option<i64>,
    /// Why the attempt failed; null when it succeeded.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    /// In the order they are delivered.
    pub items: Vec<WebhookDelivery>,
}

fn view((event, attempts): (WebhookRow, Vec<AttemptRow>)) -> WebhookDelivery {
    WebhookDelivery {
        event_id: event.event_id.to_string(),
        call_id: event.call_id,
        event: event.event,
        url: event.url,
        status: event.state.as_str(),
        attempts: event.attempts,
        created_timestamp: event.created_at / 1000,
        next_attempt_timestamp: (event.state == DeliveryState::Pending).then_some(event.next_attempt_at),
        delivered_timestamp: event.delivered_at,
        last_status_code: event.last_status_code,
        last_error: event.last_error,
        timeout_ms: event.timeout_ms,
        attempt_log: attempts
            .into_iter()
            .map(|a| WebhookAttempt {
                attempt: a.attempt,
                timestamp: a.started_at,
                duration_ms: a.duration_ms,
                status_code: a.status_code,
                error: a.error,
            })
            .collect(),
    }
}

/// A call's webhook events with every delivery attempt.
#[utoipa::path(get, path = "/list-call-webhooks/{call_id}", tag = "Webhook",
    params(("call_id" = String, Path)),
    responses((status = 200, body = WebhookDeliveryList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_call_webhooks(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(raw): Path<String>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    let not_found = |err| ApiError::from_store(err, format!("call {raw}"));
    let call_id = CallId::parse(&raw).ok_or_else(|| ApiError::NotFound(format!("call {raw}")))?;
    state.store.get_call(&key.workspace_id, &call_id).await.map_err(not_found)?;
    let events = state.store.call_webhooks(&key.workspace_id, &call_id).await.map_err(not_found)?;
    Ok(Json(WebhookDeliveryList { items: events.into_iter().map(view).collect() }))
}

/// Sends an event again now, with a fresh retry budget, whatever its status. Per-call order
/// still holds: it goes once the call's earlier pending events are done.
#[utoipa::path(post, path = "/redeliver-webhook/{event_id}", tag = "Webhook",
    params(("event_id" = String, Path)),
    responses((status = 200, body = WebhookDelivery), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn redeliver_webhook(
    State(state): State<ApiState>,
    Workspace(key): Workspace,
    Path(raw): Path<String>,
) -> ApiResult<Json<WebhookDelivery>> {
    let not_found = |err| ApiError::from_store(err, format!("webhook event {raw}"));
    let event_id = EventId::parse(&raw).ok_or_else(|| ApiError::NotFound(format!("webhook event {raw}")))?;
    state.store.redeliver_webhook(&key.workspace_id, &event_id, now_ms()).await.map_err(not_found)?;
    state.calls.webhooks.wake();
    let event = state.store.webhook(&key.workspace_id, &event_id).await.map_err(not_found)?;
    Ok(Json(view(event)))
}
