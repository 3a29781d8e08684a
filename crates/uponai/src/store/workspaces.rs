//! Workspaces (tenants) and their API keys.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Document, Store, StoreError, decode_document, encode_document};
use crate::domain::{KeyId, WorkspaceId, now_ms};

/// The workspace a presented key belongs to.
#[derive(Clone, Debug)]
pub struct AuthenticatedKey {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub key_id: KeyId,
    pub key_name: String,
}

#[derive(Clone, Debug)]
pub struct ApiKeyRow {
    pub key_id: KeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub key_prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The stored form of a key: hex SHA-256 of the secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    pub async fn workspace_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM workspaces").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// The first workspace created: the one a fresh data directory bootstraps.
    pub async fn first_workspace(&self) -> Result<Option<WorkspaceId>, StoreError> {
        let row =
            sqlx::query("SELECT workspace_id FROM workspaces ORDER BY created_at, workspace_id LIMIT 1").fetch_optional(&self.pool).await?;
        row.map(|row| parse_workspace_id(row.try_get("workspace_id")?)).transpose()
    }

    pub async fn create_workspace(&self, name: &str) -> Result<WorkspaceId, StoreError> {
        let _writer = self.write_lock.lock().await;
        let workspace_id = WorkspaceId::generate();
        sqlx::query("INSERT INTO workspaces (workspace_id, name, created_at, settings) VALUES ($1, $2, $3, '{}')")
            .bind(workspace_id.as_str())
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(workspace_id)
    }

    pub async fn workspace_exists(&self, workspace_id: &WorkspaceId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM workspaces WHERE workspace_id = $1")
            .bind(workspace_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Stores `secret` (hashed) as a key of the workspace. A secret already stored is a
    /// conflict: two workspaces can never share a key.
    pub async fn create_api_key(&self, workspace_id: &WorkspaceId, name: &str, secret: &str) -> Result<KeyId, StoreError> {
        let _writer = self.write_lock.lock().await;
        let key_id = KeyId::generate();
        let prefix: String = secret.chars().take(8).collect();
        let result = sqlx::query(
            "INSERT INTO api_keys (key_id, workspace_id, name, key_hash, key_prefix, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key_id.as_str())
        .bind(workspace_id.as_str())
        .bind(name)
        .bind(hash_secret(secret))
        .bind(prefix)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(key_id),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::Conflict("this key is already registered".into()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Whether a key with this secret exists (revoked or not).
    pub async fn api_key_exists(&self, secret: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM api_keys WHERE key_hash = $1").bind(hash_secret(secret)).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    /// The workspace of a live (unrevoked) key, or `None`.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<AuthenticatedKey>, StoreError> {
        let row = sqlx::query(
            "SELECT k.key_id, k.name AS key_name, w.workspace_id, w.name AS workspace_name
             FROM api_keys k JOIN workspaces w ON w.workspace_id = k.workspace_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthenticatedKey {
            workspace_id: parse_workspace_id(row.try_get("workspace_id")?)?,
            workspace_name: row.try_get("workspace_name")?,
            key_id: parse_key_id(row.try_get("key_id")?)?,
            key_name: row.try_get("key_name")?,
        }))
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, workspace_id, name, key_prefix, created_at, revoked_at
             FROM api_keys ORDER BY created_at, key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ApiKeyRow {
                    key_id: parse_key_id(row.try_get("key_id")?)?,
                    workspace_id: parse_workspace_id(row.try_get("workspace_id")?)?,
                    name: row.try_get("name")?,
                    key_prefix: row.try_get("key_prefix")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes a key; revoking twice is harmless. `NotFound` for an unknown key id.
    pub async fn revoke_api_key(&self, key_id: &KeyId) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let result = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1")
            .bind(key_id.as_str())
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn workspace_settings(&self, workspace_id: &WorkspaceId) -> Result<Document, StoreError> {
        let row = sqlx::query("SELECT settings FROM workspaces WHERE workspace_id = $1")
            .bind(workspace_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        decode_document(row.try_get("settings")?)
    }

    pub async fn put_workspace_settings(&self, workspace_id: &WorkspaceId, settings: &Document) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        sqlx::query("UPDATE workspaces SET settings = $2 WHERE workspace_id = $1")
            .bind(workspace_id.as_str())
            .bind(encode_document(settings))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(super) fn parse_workspace_id(raw: String) -> Result<WorkspaceId, StoreError> {
    WorkspaceId::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("workspace id {raw:?}")))
}

fn parse_key_id(raw: String) -> Result<KeyId, StoreError> {
    KeyId::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("key id {raw:?}")))
}
