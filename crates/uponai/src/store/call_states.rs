//! A call's lifecycle in the store: registered → (dispatched) → ongoing → ended, or
//! registered → not_connected/error. Every transition names the states it leaves, so a call
//! ends exactly once however many parties try to end it.

use sqlx::Row;

use super::calls::{CALL_COLUMNS, call_from_row};
use super::webhooks::NewWebhook;
use super::{CallRow, Document, Store, StoreError, encode_document};
use crate::domain::{CallId, CallStatus, DisconnectionReason, WorkspaceId};

/// How a call ended, as the store records it.
#[derive(Clone, Debug)]
pub struct CallEnd {
    pub status: CallStatus,
    pub reason: DisconnectionReason,
    pub end_timestamp: i64,
    /// Merged into the call's document (recording files, telephony identifiers).
    pub document_patch: Document,
}

/// The webhook events a state change queues, given the call as it is after the change.
pub type EventPlan<'a> = &'a (dyn Fn(&CallRow) -> Vec<NewWebhook> + Send + Sync);

/// A call of `workspace_id`, read through `executor` (the pool, or a write transaction).
async fn call_in_workspace<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    workspace_id: &WorkspaceId,
    call_id: &CallId,
) -> Result<Option<CallRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE workspace_id = $1 AND call_id = $2"))
        .bind(workspace_id.as_str())
        .bind(call_id.as_str())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(call_from_row).transpose()
}

impl Store {
    /// Marks an outbound call as handed to the dialer; `false` if it was already (or is no
    /// longer registered), so two dialers can never dial one call.
    pub async fn mark_call_dispatched(&self, workspace_id: &WorkspaceId, call_id: &CallId, now_ms: i64) -> Result<bool, StoreError> {
        let _writer = self.write_lock.lock().await;
        let result = sqlx::query(
            "UPDATE calls SET dispatched_at = $3
             WHERE workspace_id = $1 AND call_id = $2 AND call_status = 'registered' AND dispatched_at IS NULL",
        )
        .bind(workspace_id.as_str())
        .bind(call_id.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn set_sip_call_id(&self, workspace_id: &WorkspaceId, call_id: &CallId, sip_call_id: &str) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        sqlx::query("UPDATE calls SET sip_call_id = $3 WHERE workspace_id = $1 AND call_id = $2")
            .bind(workspace_id.as_str())
            .bind(call_id.as_str())
            .bind(sip_call_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// registered → ongoing, with `document_patch` merged into the call's document and the
    /// events `plan` asks for queued in the same transaction. `false` if the call was not
    /// registered any more.
    pub async fn mark_call_ongoing(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        start_timestamp: i64,
        document_patch: Document,
        plan: EventPlan<'_>,
    ) -> Result<bool, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut call = call_in_workspace(&mut *tx, workspace_id, call_id).await?.ok_or(StoreError::NotFound)?;
        if call.call_status != CallStatus::Registered {
            return Ok(false);
        }
        call.call_status = CallStatus::Ongoing;
        call.start_timestamp = Some(start_timestamp);
        call.document.extend(document_patch);
        sqlx::query(
            "UPDATE calls SET call_status = 'ongoing', start_timestamp = $3, document = $4
             WHERE workspace_id = $1 AND call_id = $2 AND call_status = 'registered'",
        )
        .bind(workspace_id.as_str())
        .bind(call_id.as_str())
        .bind(start_timestamp)
        .bind(encode_document(&call.document))
        .execute(&mut *tx)
        .await?;
        self.insert_webhooks(&mut tx, workspace_id, call_id, &plan(&call), start_timestamp).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Merges the patch `patch_of` makes from the call as it stands into an ongoing call's
    /// document, queueing the events `plan` asks for in the same transaction; `false` (and
    /// nothing written) if the call is not ongoing.
    pub async fn update_ongoing_call(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        patch_of: &(dyn Fn(&CallRow) -> Document + Send + Sync),
        plan: EventPlan<'_>,
    ) -> Result<bool, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut call = call_in_workspace(&mut *tx, workspace_id, call_id).await?.ok_or(StoreError::NotFound)?;
        if call.call_status != CallStatus::Ongoing {
            return Ok(false);
        }
        let patch = patch_of(&call);
        call.document.extend(patch);
        self.write_document_with_events(tx, workspace_id, &call, plan).await?;
        Ok(true)
    }

    /// Writes `call`'s document and queues `plan`'s events for it, then commits `tx`.
    async fn write_document_with_events(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
        workspace_id: &WorkspaceId,
        call: &CallRow,
        plan: EventPlan<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET document = $3 WHERE workspace_id = $1 AND call_id = $2")
            .bind(workspace_id.as_str())
            .bind(call.call_id.as_str())
            .bind(encode_document(&call.document))
            .execute(&mut *tx)
            .await?;
        self.insert_webhooks(&mut tx, workspace_id, &call.call_id, &plan(call), crate::domain::now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a call that is registered or ongoing, queueing the events `plan` asks for in the
    /// same transaction; `false` if it had already ended.
    pub async fn end_call(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        end: &CallEnd,
        plan: EventPlan<'_>,
    ) -> Result<bool, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut call = call_in_workspace(&mut *tx, workspace_id, call_id).await?.ok_or(StoreError::NotFound)?;
        if !matches!(call.call_status, CallStatus::Registered | CallStatus::Ongoing) {
            return Ok(false);
        }
        call.document.extend(end.document_patch.clone());
        let duration = call.start_timestamp.map(|start| (end.end_timestamp - start).max(0)).unwrap_or(0);
        call.call_status = end.status;
        call.disconnection_reason = Some(end.reason);
        call.end_timestamp = Some(end.end_timestamp);
        call.duration_ms = Some(duration);
        sqlx::query(
            "UPDATE calls SET call_status = $3, disconnection_reason = $4, end_timestamp = $5,
                 duration_ms = $6, document = $7
             WHERE workspace_id = $1 AND call_id = $2 AND call_status IN ('registered', 'ongoing')",
        )
        .bind(workspace_id.as_str())
        .bind(call_id.as_str())
        .bind(end.status.as_str())
        .bind(end.reason.as_str())
        .bind(end.end_timestamp)
        .bind(duration)
        .bind(encode_document(&call.document))
        .execute(&mut *tx)
        .await?;
        self.insert_webhooks(&mut tx, workspace_id, call_id, &plan(&call), end.end_timestamp).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Cross-workspace: a call of any workspace, with its workspace. For a SIP INVITE to
    /// `sip:{call_id}@…` (dial-in of a registered call), which carries no key: the random
    /// call id is the credential, and every later step uses the workspace returned here.
    pub async fn find_call_any_workspace(&self, call_id: &CallId) -> Result<Option<(WorkspaceId, CallRow)>, StoreError> {
        let row = sqlx::query(&format!("SELECT workspace_id, {CALL_COLUMNS} FROM calls WHERE call_id = $1"))
            .bind(call_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((super::workspaces::parse_workspace_id(row.try_get("workspace_id")?)?, call_from_row(&row)?))).transpose()
    }

    /// Records the post-call analysis of an ended call whose document has `pending_key` set:
    /// the key is removed, `patch` merged, and `plan`'s events queued, in one transaction;
    /// `false` if there was no analysis pending (it was recorded already).
    pub async fn record_analysis(
        &self,
        workspace_id: &WorkspaceId,
        call_id: &CallId,
        pending_key: &str,
        patch: Document,
        plan: EventPlan<'_>,
    ) -> Result<bool, StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let mut call = call_in_workspace(&mut *tx, workspace_id, call_id).await?.ok_or(StoreError::NotFound)?;
        if call.document.remove(pending_key).and_then(|v| v.as_bool()) != Some(true) {
            return Ok(false);
        }
        call.document.extend(patch);
        self.write_document_with_events(tx, workspace_id, &call, plan).await?;
        Ok(true)
    }

    /// Ended calls of every workspace whose analysis was still running when a previous run
    /// stopped (their document has `pending_key` true).
    pub async fn calls_pending_analysis_any_workspace(&self, pending_key: &str) -> Result<Vec<(WorkspaceId, CallId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT workspace_id, call_id FROM calls WHERE call_status NOT IN ('registered', 'ongoing')
             AND json_extract(document, '$.' || $1) = 1",
        )
        .bind(pending_key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let workspace_id = super::workspaces::parse_workspace_id(row.try_get("workspace_id")?)?;
                let raw: String = row.try_get("call_id")?;
                let call_id = CallId::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("call id {raw:?}")))?;
                Ok((workspace_id, call_id))
            })
            .collect()
    }

    /// Cross-workspace sweep: calls left in flight by a previous run, and dial-in calls
    /// waiting too long. `(workspace, call, was_dispatched)` for every registered or ongoing
    /// call of every workspace; whatever is done to one then goes through its workspace.
    pub async fn unfinished_calls_any_workspace(&self) -> Result<Vec<(WorkspaceId, CallRow, bool)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT workspace_id, dispatched_at, {CALL_COLUMNS} FROM calls
             WHERE call_status IN ('registered', 'ongoing') ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let dispatched: Option<i64> = row.try_get("dispatched_at")?;
                Ok((super::workspaces::parse_workspace_id(row.try_get("workspace_id")?)?, call_from_row(row)?, dispatched.is_some()))
            })
            .collect()
    }
}
