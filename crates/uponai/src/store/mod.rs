//! The store: the only module that writes SQL.
//!
//! Layout: `workspaces` (tenants and API keys), `versioned` (agents and Retell LLMs, both
//! versioned documents), `numbers`, `calls`, `call_states`, `batches`, `webhooks` (the
//! outbox and the webhook key); one file per table group, all as `impl Store`
//! blocks. Configuration documents (an agent version's
//! settings, a number's bindings, a call's per-call data) are JSON objects the store keeps as
//! text without interpreting them; the `api` layer validated them before they got here.
//!
//! The SQL is the portable subset of SQLite and PostgreSQL (`$n` placeholders, row-value
//! comparisons for keyset paging) so a Postgres backend is a pool type away.

mod batches;
mod call_states;
mod calls;
mod numbers;
mod paging;
mod versioned;
mod webhooks;
mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use batches::{BatchProgress, BatchRow, TaskRow};
pub use call_states::{CallEnd, EventPlan};
pub use calls::CallRow;
pub use numbers::{NumberRow, PasswordChange};
pub use paging::{Page, PageRequest};
pub use versioned::{AGENTS, FLOWS, LLMS, VersionRow, Versioned};
pub use webhooks::{AfterAttempt, AttemptRecord, AttemptRow, DeliveryState, NewWebhook, WebhookRow};
pub use workspaces::{ApiKeyRow, AuthenticatedKey};

/// A JSON object as stored in a `document` column.
pub type Document = Map<String, Value>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row in this workspace. Rows of other workspaces are never found.
    #[error("not found")]
    NotFound,
    /// The write would break a rule the store keeps (a duplicate key, a published version).
    #[error("{0}")]
    Conflict(String),
    /// A pagination key that names no row of this listing.
    #[error("pagination_key does not name an item of this list")]
    BadPaginationKey,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
}

pub struct Store {
    pool: SqlitePool,
    /// SQLite has one writer at a time. Holding this across each write transaction means a
    /// transaction that reads and then writes never fails to upgrade its lock, and ids
    /// computed inside it (the next version number) stay unique.
    write_lock: tokio::sync::Mutex<()>,
    /// The last creation stamp handed out; see `next_created_at`.
    last_created_at: std::sync::Mutex<i64>,
}

impl StoreError {
    /// SQLite's "database is locked" (SQLITE_BUSY, SQLITE_LOCKED and their extended codes):
    /// another process held the write lock past the busy timeout, or a snapshot went stale.
    /// The statement wrote nothing.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| matches!(code & 0xff, 5 | 6))
            }
            _ => false,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .context("sqlite path")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss
            // (a call's "dispatched" claim among them, so it would be dialed again); FULL
            // syncs the WAL at every commit, so a commit that returned survives.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .with_context(|| format!("open sqlite database {}", path.display()))?;
        sqlx::migrate!("../../migrations").run(&pool).await.context("migrate database")?;
        Ok(Self { pool, write_lock: tokio::sync::Mutex::new(()), last_created_at: std::sync::Mutex::new(0) })
    }

    /// The `created_at` of a new row: microseconds since the epoch, strictly increasing
    /// within this store, so listings in creation order are exact even for rows created in
    /// the same microsecond.
    fn next_created_at(&self) -> i64 {
        let now_us = now_us();
        // A poisoned lock only means another thread panicked mid-increment; the value is
        // still a valid lower bound.
        let mut last = self.last_created_at.lock().unwrap_or_else(|poison| poison.into_inner());
        *last = (*last + 1).max(now_us);
        *last
    }

    /// `(journal_mode, synchronous)` as `PRAGMA` reports them on `n` pooled connections held
    /// at once (so `n` distinct connections): what every commit's durability rests on.
    pub async fn durability_settings(&self, n: usize) -> Result<Vec<(String, i64)>, StoreError> {
        let mut held = Vec::with_capacity(n);
        let mut settings = Vec::with_capacity(n);
        for _ in 0..n {
            let mut conn = self.pool.acquire().await?;
            let journal: String = sqlx::query("PRAGMA journal_mode").fetch_one(&mut *conn).await?.try_get(0)?;
            let synchronous: i64 = sqlx::query("PRAGMA synchronous").fetch_one(&mut *conn).await?.try_get(0)?;
            settings.push((journal, synchronous));
            held.push(conn);
        }
        Ok(settings)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Microseconds since the epoch: the clock of `created_at`.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn encode_document(document: &Document) -> String {
    // Serialising a `Map<String, Value>` cannot fail: every key is a string.
    serde_json::to_string(document).expect("a JSON object always serialises")
}

fn decode_document(text: &str) -> Result<Document, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(err.to_string()))
}
