//! Calls: the lifecycle columns the API filters and sorts on, plus a document with the
//! per-call data (metadata, variables, headers, the effective agent configuration).

use sqlx::Row;

use super::paging::cursor_row;
use super::{Document, Store, StoreError, decode_document, encode_document};
use crate::domain::{AgentId, CallId, CallStatus, CallType, Direction, DisconnectionReason, WorkspaceId};

#[derive(Clone, Debug)]
pub struct CallRow {
    pub call_id: CallId,
    pub call_type: CallType,
    pub direction: Direction,
    pub call_status: CallStatus,
    pub agent_id: AgentId,
    pub agent_version: i64,
    pub from_number: String,
    pub to_number: String,
    /// Creation order (see `Store::next_created_at`); the sort key of listings. Set by
    /// `insert_call`.
    pub created_at: i64,
    pub start_timestamp: Option<i64>,
    pub end_timestamp: Option<i64>,
    pub duration_ms: Option<i64>,
    pub disconnection_reason: Option<DisconnectionReason>,
    pub batch_call_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub document: Document,
}

pub(super) const CALL_COLUMNS: &str = "call_id, call_type, direction, call_status, agent_id, agent_version,
    from_number, to_number, created_at, start_timestamp, end_timestamp, duration_ms,
    disconnection_reason, batch_call_id, idempotency_key, document";

/// How long an `idempotency_key` keeps answering with the call it first created, in the
/// microseconds of `created_at`.
const IDEMPOTENCY_WINDOW_US: i64 = 60 * 60 * 1_000_000;

impl Store {
    /// Inserts a call, unless the workspace already made one with the same idempotency key
    /// within the window: then that call is returned and nothing is inserted. The check and
    /// the insert are one critical section, so concurrent retries cannot both insert.
    pub async fn insert_call(&self, workspace_id: &WorkspaceId, call: &CallRow) -> Result<(CallRow, bool), StoreError> {
        let _writer = self.write_lock.lock().await;
        let call = CallRow { created_at: self.next_created_at(), ..call.clone() };
        if let Some(key) = &call.idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {CALL_COLUMNS} FROM calls
                 WHERE workspace_id = $1 AND idempotency_key = $2 AND created_at > $3
                 ORDER BY created_at LIMIT 1"
            ))
            .bind(workspace_id.as_str())
            .bind(key)
            .bind(call.created_at - IDEMPOTENCY_WINDOW_US)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = existing {
                return Ok((call_from_row(&row)?, false));
            }
        }
        insert_call_row(&mut *self.pool.acquire().await?, workspace_id, &call).await?;
        Ok((call, true))
    }

    /// The call first made with `key` within the idempotency window, if any.
    pub async fn find_idempotent_call(&self, workspace_id: &WorkspaceId, key: &str) -> Result<Option<CallRow>, StoreError> {
        let since = super::now_us() - IDEMPOTENCY_WINDOW_US;
        let row = sqlx::query(&format!(
            "SELECT {CALL_COLUMNS} FROM calls
             WHERE workspace_id = $1 AND idempotency_key = $2 AND created_at > $3
             ORDER BY created_at LIMIT 1"
        ))
        .bind(workspace_id.as_str())
        .bind(key)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    pub async fn get_call(&self, workspace_id: &WorkspaceId, call_id: &CallId) -> Result<CallRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE workspace_id = $1 AND call_id = $2"))
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    /// Merges `patch` into the call's document.
    pub async fn patch_call_document(&self, workspace_id: &WorkspaceId, call_id: &CallId, patch: &Document) -> Result<CallRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut call = self.get_call(workspace_id, call_id).await?;
        call.document.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
        sqlx::query("UPDATE calls SET document = $3 WHERE workspace_id = $1 AND call_id = $2")
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .bind(encode_document(&call.document))
            .execute(&self.pool)
            .await?;
        Ok(call)
    }

    /// Deletes an ended or not yet answered call, and its webhook events (their bodies hold
    /// the call), returning the row as it was so the caller can remove the files it names.
    /// An ongoing call is `Conflict`: its task is still writing it.
    pub async fn delete_call(&self, workspace_id: &WorkspaceId, call_id: &CallId) -> Result<CallRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE workspace_id = $1 AND call_id = $2"))
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let call = call_from_row(&row)?;
        if call.call_status == CallStatus::Ongoing {
            return Err(StoreError::Conflict(format!("call {call_id} is ongoing; end it with stop-call first")));
        }
        // Attempts go with their events (ON DELETE CASCADE).
        sqlx::query("DELETE FROM webhook_events WHERE workspace_id = $1 AND call_id = $2")
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM calls WHERE workspace_id = $1 AND call_id = $2")
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(call)
    }

    /// Up to `limit` calls after `cursor` (a call id) in creation order. The API filters
    /// these chunks itself, so filters on any field of the call, documents included, share
    /// one implementation.
    pub async fn scan_calls(
        &self,
        workspace_id: &WorkspaceId,
        cursor: Option<&CallId>,
        descending: bool,
        limit: i64,
    ) -> Result<Vec<CallRow>, StoreError> {
        let (cmp, dir) = if descending { ("<", "DESC") } else { (">", "ASC") };
        let cursor_created_at = match cursor {
            None => None,
            Some(call_id) => Some(cursor_row(self.get_call(workspace_id, call_id).await)?.created_at),
        };
        let keyset = if cursor.is_some() { format!("AND (created_at, call_id) {cmp} ($2, $3)") } else { String::new() };
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE workspace_id = $1 {keyset}
             ORDER BY created_at {dir}, call_id {dir} LIMIT {limit}"
        );
        let mut query = sqlx::query(&sql).bind(workspace_id.as_str());
        if let (Some(created_at), Some(call_id)) = (cursor_created_at, cursor) {
            query = query.bind(created_at).bind(call_id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(call_from_row).collect()
    }
}

/// Inserts a call row on `conn` (inside a caller's transaction when it needs one).
pub(super) async fn insert_call_row(
    conn: &mut sqlx::SqliteConnection,
    workspace_id: &WorkspaceId,
    call: &CallRow,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO calls (workspace_id, {CALL_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(workspace_id.as_str())
    .bind(call.call_id.as_str())
    .bind(call.call_type.as_str())
    .bind(call.direction.as_str())
    .bind(call.call_status.as_str())
    .bind(call.agent_id.as_str())
    .bind(call.agent_version)
    .bind(&call.from_number)
    .bind(&call.to_number)
    .bind(call.created_at)
    .bind(call.start_timestamp)
    .bind(call.end_timestamp)
    .bind(call.duration_ms)
    .bind(call.disconnection_reason.map(DisconnectionReason::as_str))
    .bind(&call.batch_call_id)
    .bind(&call.idempotency_key)
    .bind(encode_document(&call.document))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) fn call_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<CallRow, StoreError> {
    fn corrupt(what: &str, raw: &str) -> StoreError {
        StoreError::Corrupt(format!("{what} {raw:?}"))
    }
    let call_id: String = row.try_get("call_id")?;
    let call_type: String = row.try_get("call_type")?;
    let direction: String = row.try_get("direction")?;
    let call_status: String = row.try_get("call_status")?;
    let agent_id: String = row.try_get("agent_id")?;
    let reason: Option<String> = row.try_get("disconnection_reason")?;
    Ok(CallRow {
        call_id: CallId::parse(&call_id).ok_or_else(|| corrupt("call id", &call_id))?,
        call_type: CallType::parse(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
        direction: Direction::parse(&direction).ok_or_else(|| corrupt("direction", &direction))?,
        call_status: CallStatus::parse(&call_status).ok_or_else(|| corrupt("call status", &call_status))?,
        agent_id: AgentId::parse(&agent_id).ok_or_else(|| corrupt("agent id", &agent_id))?,
        agent_version: row.try_get("agent_version")?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        created_at: row.try_get("created_at")?,
        start_timestamp: row.try_get("start_timestamp")?,
        end_timestamp: row.try_get("end_timestamp")?,
        duration_ms: row.try_get("duration_ms")?,
        disconnection_reason: match reason {
            None => None,
            Some(raw) => Some(DisconnectionReason::parse(&raw).ok_or_else(|| corrupt("disconnection reason", &raw))?),
        },
        batch_call_id: row.try_get("batch_call_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        document: decode_document(row.try_get("document")?)?,
    })
}
