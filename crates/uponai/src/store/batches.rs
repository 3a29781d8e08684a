//! Batch campaigns and their tasks.

use sqlx::Row;

use super::calls::insert_call_row;
use super::paging::{Page, PageRequest, cursor_row};
use super::{CallRow, Document, Store, StoreError, decode_document, encode_document};
use crate::domain::WorkspaceId;

#[derive(Clone, Debug)]
pub struct BatchRow {
    pub batch_call_id: String,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub from_number: String,
    pub created_at: i64,
    pub scheduled_timestamp: i64,
    pub reserved_concurrency: i64,
    pub call_time_window: Option<Document>,
    pub total_task_count: i64,
    pub status: String,
}

/// How far a batch has got.
#[derive(Clone, Debug, Default)]
pub struct BatchProgress {
    pub pending: i64,
    pub called: i64,
    pub failed: i64,
    /// Calls of the batch by `call_status`.
    pub calls_by_status: Vec<(String, i64)>,
}

#[derive(Clone, Debug)]
pub struct TaskRow {
    pub task_index: i64,
    pub document: Document,
}

/// `batch_tasks` has no workspace column: a task is the workspace's when its batch is.
/// `$1` is the workspace, `$2` the batch.
const TASK_OF_WORKSPACE: &str =
    "batch_call_id = $2 AND batch_call_id IN (SELECT batch_call_id FROM batch_calls WHERE workspace_id = $1 AND batch_call_id = $2)";

const BATCH_COLUMNS: &str = "batch_call_id, workspace_id, name, from_number, created_at, scheduled_timestamp,
    reserved_concurrency, call_time_window, total_task_count, status";

impl Store {
    /// Stores a batch and all its tasks (pending) in one transaction.
    pub async fn insert_batch(&self, batch: &BatchRow, tasks: &[Document]) -> Result<BatchRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let created_at = self.next_created_at();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT INTO batch_calls ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&batch.batch_call_id)
            .bind(batch.workspace_id.as_str())
            .bind(&batch.name)
            .bind(&batch.from_number)
            .bind(created_at)
            .bind(batch.scheduled_timestamp)
            .bind(batch.reserved_concurrency)
            .bind(batch.call_time_window.as_ref().map(encode_document))
            .bind(batch.total_task_count)
            .bind(&batch.status)
            .execute(&mut *tx)
            .await?;
        for (index, task) in tasks.iter().enumerate() {
            sqlx::query("INSERT INTO batch_tasks (batch_call_id, task_index, state, document) VALUES ($1, $2, 'pending', $3)")
                .bind(&batch.batch_call_id)
                .bind(i64::try_from(index).unwrap_or(i64::MAX))
                .bind(encode_document(task))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(BatchRow { created_at, ..batch.clone() })
    }

    pub async fn get_batch(&self, workspace_id: &WorkspaceId, batch_call_id: &str) -> Result<BatchRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {BATCH_COLUMNS} FROM batch_calls WHERE workspace_id = $1 AND batch_call_id = $2"))
            .bind(workspace_id.as_str())
            .bind(batch_call_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        batch_from_row(&row)
    }

    pub async fn list_batches(&self, workspace_id: &WorkspaceId, page: &PageRequest) -> Result<Page<BatchRow>, StoreError> {
        let (cmp, dir) = page.sql_parts();
        let cursor = match &page.after {
            None => None,
            Some(after) => Some(cursor_row(self.get_batch(workspace_id, after).await)?.created_at),
        };
        let keyset = if cursor.is_some() { format!("AND (created_at, batch_call_id) {cmp} ($2, $3)") } else { String::new() };
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batch_calls WHERE workspace_id = $1 {keyset}
             ORDER BY created_at {dir}, batch_call_id {dir} LIMIT {}",
            page.fetch_limit()
        );
        let mut query = sqlx::query(&sql).bind(workspace_id.as_str());
        if let (Some(created_at), Some(after)) = (cursor, &page.after) {
            query = query.bind(created_at).bind(after.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows = rows.iter().map(batch_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, page.limit))
    }

    /// Cross-workspace sweep, at start: the batches a worker should be running (scheduled or
    /// running) in every workspace, each naming its workspace (`BatchRow::workspace_id`),
    /// which the worker passes to every later query.
    pub async fn active_batches_any_workspace(&self) -> Result<Vec<BatchRow>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {BATCH_COLUMNS} FROM batch_calls WHERE status IN ('scheduled', 'running') ORDER BY created_at"))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(batch_from_row).collect()
    }

    pub async fn set_batch_status(&self, workspace_id: &WorkspaceId, batch_call_id: &str, status: &str) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(
            "UPDATE batch_calls SET status = $3
             WHERE workspace_id = $1 AND batch_call_id = $2 AND status IN ('scheduled', 'running')",
        )
        .bind(workspace_id.as_str())
        .bind(batch_call_id)
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The next pending tasks of a batch, in order.
    pub async fn pending_tasks(&self, workspace_id: &WorkspaceId, batch_call_id: &str, limit: i64) -> Result<Vec<TaskRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT task_index, document FROM batch_tasks WHERE {TASK_OF_WORKSPACE} AND state = 'pending'
             ORDER BY task_index LIMIT $3"
        ))
        .bind(workspace_id.as_str())
        .bind(batch_call_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(TaskRow { task_index: row.try_get("task_index")?, document: decode_document(row.try_get("document")?)? }))
            .collect()
    }

    /// Creates the task's call and marks the task called, atomically: a task gets at most one
    /// call. `false` (and nothing written) if the task was not pending any more.
    pub async fn call_batch_task(
        &self,
        workspace_id: &WorkspaceId,
        batch_call_id: &str,
        task_index: i64,
        call: &CallRow,
    ) -> Result<Option<CallRow>, StoreError> {
        let _writer = self.write_lock.lock().await;
        let call = CallRow { created_at: self.next_created_at(), batch_call_id: Some(batch_call_id.to_owned()), ..call.clone() };
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(&format!(
            "UPDATE batch_tasks SET state = 'called', call_id = $4
             WHERE {TASK_OF_WORKSPACE} AND task_index = $3 AND state = 'pending'"
        ))
        .bind(workspace_id.as_str())
        .bind(batch_call_id)
        .bind(task_index)
        .bind(call.call_id.as_str())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        insert_call_row(&mut tx, workspace_id, &call).await?;
        tx.commit().await?;
        Ok(Some(call))
    }

    pub async fn fail_batch_task(
        &self,
        workspace_id: &WorkspaceId,
        batch_call_id: &str,
        task_index: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(&format!(
            "UPDATE batch_tasks SET state = 'failed', error = $4
             WHERE {TASK_OF_WORKSPACE} AND task_index = $3 AND state = 'pending'"
        ))
        .bind(workspace_id.as_str())
        .bind(batch_call_id)
        .bind(task_index)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn batch_progress(&self, workspace_id: &WorkspaceId, batch_call_id: &str) -> Result<BatchProgress, StoreError> {
        let mut progress = BatchProgress::default();
        let rows = sqlx::query(&format!("SELECT state, COUNT(*) AS n FROM batch_tasks WHERE {TASK_OF_WORKSPACE} GROUP BY state"))
            .bind(workspace_id.as_str())
            .bind(batch_call_id)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("state")?.as_str() {
                "pending" => progress.pending = n,
                "called" => progress.called = n,
                _ => progress.failed = n,
            }
        }
        let rows = sqlx::query(
            "SELECT call_status, COUNT(*) AS n FROM calls WHERE workspace_id = $1 AND batch_call_id = $2
             GROUP BY call_status ORDER BY call_status",
        )
        .bind(workspace_id.as_str())
        .bind(batch_call_id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            progress.calls_by_status.push((row.try_get("call_status")?, row.try_get("n")?));
        }
        Ok(progress)
    }
}

fn batch_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BatchRow, StoreError> {
    let window: Option<String> = row.try_get("call_time_window")?;
    Ok(BatchRow {
        batch_call_id: row.try_get("batch_call_id")?,
        workspace_id: super::workspaces::parse_workspace_id(row.try_get("workspace_id")?)?,
        name: row.try_get("name")?,
        from_number: row.try_get("from_number")?,
        created_at: row.try_get("created_at")?,
        scheduled_timestamp: row.try_get("scheduled_timestamp")?,
        reserved_concurrency: row.try_get("reserved_concurrency")?,
        call_time_window: window.as_deref().map(decode_document).transpose()?,
        total_task_count: row.try_get("total_task_count")?,
        status: row.try_get("status")?,
    })
}
