//! The webhook outbox: events written with their call's state change, their delivery
//! attempts, and the workspace's webhook key.
//!
//! A call's events are delivered in creation order: only the oldest pending event of a call
//! is ever due, so a later event waits until the earlier one is delivered or given up.

use sqlx::{Row, Sqlite, Transaction};

use super::{Store, StoreError};
use crate::domain::{CallId, EventId, KeyId, WorkspaceId};

/// An event to put in the outbox in the transaction of a call's state change.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    /// The wire name, such as `call_ended`.
    pub event: &'static str,
    pub url: String,
    pub timeout_ms: i64,
    /// The exact JSON text every attempt sends.
    pub body: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// The retry budget ran out; only a redelivery request sends it again.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!("webhook state {other:?}"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WebhookRow {
    pub event_id: EventId,
    pub workspace_id: WorkspaceId,
    pub call_id: String,
    /// Microseconds; the order of a call's events.
    pub created_at: i64,
    pub event: String,
    pub url: String,
    pub timeout_ms: i64,
    pub body: String,
    pub state: DeliveryState,
    /// Attempts made in all.
    pub attempts: i64,
    /// Attempts made since the event was (re)queued: what the retry budget counts.
    pub series_attempts: i64,
    /// Milliseconds; meaningful while pending.
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
}

/// What became of an event after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// One finished attempt, as the deliverer reports it.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub event_id: EventId,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub next: AfterAttempt,
}

const WEBHOOK_COLUMNS: &str = "event_id, workspace_id, call_id, created_at, event, url, timeout_ms, body, state,
    attempts, series_attempts, next_attempt_at, last_status_code, last_error, delivered_at";

impl Store {
    /// Queues `events` for `call_id`, in order, inside the caller's transaction.
    pub(super) async fn insert_webhooks(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        events: &[NewWebhook],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for event in events {
            sqlx::query(
                "INSERT INTO webhook_events (event_id, workspace_id, call_id, created_at, event, url, timeout_ms,
                     body, state, attempts, series_attempts, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, 0, $9)",
            )
            .bind(EventId::generate().as_str())
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .bind(self.next_created_at())
            .bind(event.event)
            .bind(&event.url)
            .bind(event.timeout_ms)
            .bind(&event.body)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Cross-workspace sweep for the deliverer: pending events of every workspace due at `now_ms` that are the oldest pending event of their call,
    /// soonest first, at most `per_workspace` of each workspace (so one workspace's backlog
    /// cannot fill the read) and `limit` in all. Each names its workspace
    /// (`WebhookRow::workspace_id`), which signs it and records its attempt.
    pub async fn due_webhooks_any_workspace(&self, now_ms: i64, per_workspace: i64, limit: i64) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM (
                 SELECT e.*, ROW_NUMBER() OVER (PARTITION BY e.workspace_id ORDER BY e.next_attempt_at, e.created_at) AS nth
                 FROM webhook_events e
                 WHERE e.state = 'pending' AND e.next_attempt_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM webhook_events p
                                   WHERE p.workspace_id = e.workspace_id AND p.call_id = e.call_id AND p.state = 'pending' AND p.created_at < e.created_at)
             ) due
             WHERE nth <= $2
             ORDER BY next_attempt_at, created_at LIMIT $3"
        ))
        .bind(now_ms)
        .bind(per_workspace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Records an attempt and the event's next state in one transaction.
    pub async fn record_webhook_attempt(&self, workspace_id: &WorkspaceId, record: &AttemptRecord) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT attempts FROM webhook_events WHERE workspace_id = $1 AND event_id = $2")
            .bind(workspace_id.as_str())
            .bind(record.event_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let attempt: i64 = row.try_get::<i64, _>("attempts")? + 1;
        sqlx::query(
            "INSERT INTO webhook_attempts (event_id, attempt, started_at, duration_ms, status_code, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.event_id.as_str())
        .bind(attempt)
        .bind(record.started_at)
        .bind(record.duration_ms)
        .bind(record.status_code.map(i64::from))
        .bind(record.error.as_deref())
        .execute(&mut *tx)
        .await?;
        let (state, next_attempt_at, delivered_at) = match record.next {
            AfterAttempt::Delivered => (DeliveryState::Delivered, None, Some(record.started_at + record.duration_ms)),
            AfterAttempt::RetryAt(at) => (DeliveryState::Pending, Some(at), None),
            AfterAttempt::GiveUp => (DeliveryState::Failed, None, None),
        };
        sqlx::query(
            "UPDATE webhook_events SET attempts = $3, series_attempts = series_attempts + 1, state = $4,
                 next_attempt_at = COALESCE($5, next_attempt_at), last_status_code = $6, last_error = $7,
                 delivered_at = COALESCE($8, delivered_at)
             WHERE workspace_id = $1 AND event_id = $2",
        )
        .bind(workspace_id.as_str())
        .bind(record.event_id.as_str())
        .bind(attempt)
        .bind(state.as_str())
        .bind(next_attempt_at)
        .bind(record.status_code.map(i64::from))
        .bind(record.error.as_deref())
        .bind(delivered_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A call's events in order, each with its attempts.
    pub async fn call_webhooks(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
    ) -> Result<Vec<(WebhookRow, Vec<AttemptRow>)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_events
             WHERE workspace_id = $1 AND call_id = $2 ORDER BY created_at"
        ))
        .bind(workspace_id.as_str())
        .bind(call_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = webhook_from_row(row)?;
            let attempts = self.webhook_attempts(workspace_id, &event.event_id).await?;
            events.push((event, attempts));
        }
        Ok(events)
    }

    /// One event of the workspace, with its attempts.
    pub async fn webhook(&self, workspace_id: &WorkspaceId, event_id: &EventId) -> Result<(WebhookRow, Vec<AttemptRow>), StoreError> {
        let row = sqlx::query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_events WHERE workspace_id = $1 AND event_id = $2"))
            .bind(workspace_id.as_str())
            .bind(event_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let event = webhook_from_row(&row)?;
        let attempts = self.webhook_attempts(workspace_id, event_id).await?;
        Ok((event, attempts))
    }

    async fn webhook_attempts(&self, workspace_id: &WorkspaceId, event_id: &EventId) -> Result<Vec<AttemptRow>, StoreError> {
        // Attempts have no workspace column: they are the workspace's when their event is.
        let rows = sqlx::query(
            "SELECT attempt, started_at, duration_ms, status_code, error FROM webhook_attempts
             WHERE event_id = $2 AND event_id IN (SELECT event_id FROM webhook_events WHERE workspace_id = $1 AND event_id = $2)
             ORDER BY attempt",
        )
        .bind(workspace_id.as_str())
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRow {
                    attempt: row.try_get("attempt")?,
                    started_at: row.try_get("started_at")?,
                    duration_ms: row.try_get("duration_ms")?,
                    status_code: row.try_get("status_code")?,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    /// Queues an event again, with a fresh retry budget, whatever its state.
    pub async fn redeliver_webhook(&self, workspace_id: &WorkspaceId, event_id: &EventId, now_ms: i64) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let result = sqlx::query(
            "UPDATE webhook_events SET state = 'pending', series_attempts = 0, next_attempt_at = $3
             WHERE workspace_id = $1 AND event_id = $2",
        )
        .bind(workspace_id.as_str())
        .bind(event_id.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The secret webhooks of this workspace are signed with, if it has a webhook key.
    pub async fn webhook_secret(&self, workspace_id: &WorkspaceId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret FROM webhook_keys WHERE workspace_id = $1")
            .bind(workspace_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.try_get("secret").map_err(StoreError::from)).transpose()
    }

    /// Makes a key of the workspace its webhook key (replacing the previous one).
    pub async fn set_webhook_key(&self, workspace_id: &WorkspaceId, key_id: &KeyId, secret: &str) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO webhook_keys (workspace_id, key_id, secret) VALUES ($1, $2, $3)
             ON CONFLICT (workspace_id) DO UPDATE SET key_id = excluded.key_id, secret = excluded.secret",
        )
        .bind(workspace_id.as_str())
        .bind(key_id.as_str())
        .bind(secret)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Operator level (the `keys` command), any workspace: whether `key_id` is some
    /// workspace's webhook key.
    pub async fn is_webhook_key(&self, key_id: &KeyId) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM webhook_keys WHERE key_id = $1").bind(key_id.as_str()).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }
}

fn webhook_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<WebhookRow, StoreError> {
    let event_id: String = row.try_get("event_id")?;
    let workspace_id: String = row.try_get("workspace_id")?;
    let state: String = row.try_get("state")?;
    Ok(WebhookRow {
        event_id: EventId::parse(&event_id).ok_or_else(|| StoreError::Corrupt(format!("event id {event_id:?}")))?,
        workspace_id: super::workspaces::parse_workspace_id(workspace_id)?,
        call_id: row.try_get("call_id")?,
        created_at: row.try_get("created_at")?,
        event: row.try_get("event")?,
        url: row.try_get("url")?,
        timeout_ms: row.try_get("timeout_ms")?,
        body: row.try_get("body")?,
        state: DeliveryState::parse(&state)?,
        attempts: row.try_get("attempts")?,
        series_attempts: row.try_get("series_attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}
