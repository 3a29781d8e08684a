//! Versioned documents: agents, Retell LLMs and conversation flows.
//!
//! Each has a parent row (id, workspace, creation time) and numbered versions. Version 0 is
//! created with the parent. A published version is immutable; editing "the latest" when the
//! latest is published first branches a new draft from it, so published configuration that
//! numbers and calls pin never changes underneath them.

use sqlx::Row;

use super::paging::{Page, PageRequest};
use super::{Document, Store, StoreError, decode_document, encode_document};
use crate::domain::{AgentVersionRef, WorkspaceId, now_ms};

/// Which tables hold one kind of versioned document.
#[derive(Clone, Copy, Debug)]
pub struct Versioned {
    parent_table: &'static str,
    versions_table: &'static str,
    id_column: &'static str,
    /// How error messages name the thing ("agent", "retell llm").
    noun: &'static str,
}

pub const AGENTS: Versioned = Versioned { parent_table: "agents", versions_table: "agent_versions", id_column: "agent_id", noun: "agent" };

pub const FLOWS: Versioned = Versioned {
    parent_table: "conversation_flows",
    versions_table: "conversation_flow_versions",
    id_column: "conversation_flow_id",
    noun: "conversation flow",
};

pub const LLMS: Versioned =
    Versioned { parent_table: "retell_llms", versions_table: "retell_llm_versions", id_column: "llm_id", noun: "retell llm" };

/// One version of a document.
#[derive(Clone, Debug)]
pub struct VersionRow {
    pub id: String,
    pub version: i64,
    pub is_published: bool,
    pub base_version: Option<i64>,
    pub last_modification_timestamp: i64,
    /// Creation order of the parent (see `Store::next_created_at`); identical across versions.
    pub created_at: i64,
    pub document: Document,
}

impl Versioned {
    /// A condition that a version row's document belongs to the workspace bound at `$n`:
    /// version tables have no workspace column, their parent row has.
    fn of_workspace(self, n: u8) -> String {
        format!("{id} IN (SELECT {id} FROM {p} WHERE workspace_id = ${n})", id = self.id_column, p = self.parent_table)
    }
}

impl Store {
    /// Creates the parent and its version 0 (a draft).
    pub async fn create_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        document: &Document,
    ) -> Result<VersionRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let now = now_ms();
        let created_at = self.next_created_at();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT INTO {} ({}, workspace_id, created_at) VALUES ($1, $2, $3)", kind.parent_table, kind.id_column))
            .bind(id)
            .bind(workspace_id.as_str())
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
        insert_version(&mut tx, kind, id, 0, None, now, document).await?;
        tx.commit().await?;
        Ok(VersionRow {
            id: id.to_owned(),
            version: 0,
            is_published: false,
            base_version: None,
            last_modification_timestamp: now,
            created_at,
            document: document.clone(),
        })
    }

    /// The version `selector` names; `None` means the latest.
    pub async fn get_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        selector: Option<AgentVersionRef>,
    ) -> Result<VersionRow, StoreError> {
        let mut conn = self.pool.acquire().await?;
        resolve(&mut conn, kind, workspace_id, id, selector.unwrap_or(AgentVersionRef::Latest)).await
    }

    /// Merges `patch` into the version `selector` names (default: latest). Editing the latest
    /// when it is published creates a new draft based on it; naming a published version
    /// explicitly is a conflict.
    pub async fn update_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        selector: Option<AgentVersionRef>,
        patch: &Document,
    ) -> Result<VersionRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let selector_given = selector.is_some();
        let target = resolve(&mut tx, kind, workspace_id, id, selector.unwrap_or(AgentVersionRef::Latest)).await?;
        let mut document = target.document.clone();
        document.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
        let row = if !target.is_published {
            sqlx::query(&format!(
                "UPDATE {} SET document = $3, last_modification_timestamp = $4
                 WHERE {} = $1 AND version = $2 AND {}",
                kind.versions_table,
                kind.id_column,
                kind.of_workspace(5)
            ))
            .bind(id)
            .bind(target.version)
            .bind(encode_document(&document))
            .bind(now)
            .bind(workspace_id.as_str())
            .execute(&mut *tx)
            .await?;
            VersionRow { document, last_modification_timestamp: now, ..target }
        } else if !selector_given || selector == Some(AgentVersionRef::Latest) {
            let version = next_version(&mut tx, kind, workspace_id, id).await?;
            insert_version(&mut tx, kind, id, version, Some(target.version), now, &document).await?;
            VersionRow {
                version,
                is_published: false,
                base_version: Some(target.version),
                last_modification_timestamp: now,
                document,
                ..target
            }
        } else {
            return Err(StoreError::Conflict(format!(
                "{} version {} is published and cannot be changed; create a new version from it",
                kind.noun, target.version
            )));
        };
        tx.commit().await?;
        Ok(row)
    }

    /// A new draft copied from `base_version`.
    pub async fn branch_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        base_version: i64,
    ) -> Result<VersionRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let base = resolve(&mut tx, kind, workspace_id, id, AgentVersionRef::Number(base_version)).await?;
        let version = next_version(&mut tx, kind, workspace_id, id).await?;
        insert_version(&mut tx, kind, id, version, Some(base.version), now, &base.document).await?;
        tx.commit().await?;
        Ok(VersionRow { version, is_published: false, base_version: Some(base.version), last_modification_timestamp: now, ..base })
    }

    /// Marks a version published, merging `patch` into it first (titles, pinned engine
    /// versions). Publishing a published version only applies the patch's titles.
    pub async fn publish_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        version: i64,
        patch: &Document,
    ) -> Result<VersionRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let target = resolve(&mut tx, kind, workspace_id, id, AgentVersionRef::Number(version)).await?;
        let mut document = target.document.clone();
        document.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
        sqlx::query(&format!(
            "UPDATE {} SET document = $3, is_published = TRUE, last_modification_timestamp = $4
             WHERE {} = $1 AND version = $2 AND {}",
            kind.versions_table,
            kind.id_column,
            kind.of_workspace(5)
        ))
        .bind(id)
        .bind(version)
        .bind(encode_document(&document))
        .bind(now)
        .bind(workspace_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(VersionRow { document, is_published: true, last_modification_timestamp: now, ..target })
    }

    /// Deletes one version; the last remaining version can only go with the whole document.
    pub async fn delete_version(&self, kind: Versioned, workspace_id: &WorkspaceId, id: &str, version: i64) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        resolve(&mut tx, kind, workspace_id, id, AgentVersionRef::Number(version)).await?;
        let n_versions: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {} WHERE {} = $1 AND {}",
            kind.versions_table,
            kind.id_column,
            kind.of_workspace(2)
        ))
        .bind(id)
        .bind(workspace_id.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if n_versions <= 1 {
            return Err(StoreError::Conflict(format!(
                "version {version} is the only version of this {}; delete the {} instead",
                kind.noun, kind.noun
            )));
        }
        sqlx::query(&format!(
            "DELETE FROM {} WHERE {} = $1 AND version = $2 AND {}",
            kind.versions_table,
            kind.id_column,
            kind.of_workspace(3)
        ))
        .bind(id)
        .bind(version)
        .bind(workspace_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the document and all its versions.
    pub async fn delete_versioned(&self, kind: Versioned, workspace_id: &WorkspaceId, id: &str) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("DELETE FROM {} WHERE {} = $1 AND {}", kind.versions_table, kind.id_column, kind.of_workspace(2)))
            .bind(id)
            .bind(workspace_id.as_str())
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query(&format!("DELETE FROM {} WHERE {} = $1 AND workspace_id = $2", kind.parent_table, kind.id_column))
            .bind(id)
            .bind(workspace_id.as_str())
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// One row per document (its latest version), keyset-paged by creation.
    pub async fn list_versioned(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<VersionRow>, StoreError> {
        let (cmp, dir) = page.sql_parts();
        let (p, v, id) = (kind.parent_table, kind.versions_table, kind.id_column);
        let cursor = match &page.after {
            None => None,
            Some(after) => {
                let row = sqlx::query(&format!("SELECT created_at FROM {p} WHERE workspace_id = $1 AND {id} = $2"))
                    .bind(workspace_id.as_str())
                    .bind(after)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::BadPaginationKey)?;
                Some((row.try_get::<i64, _>("created_at")?, after.clone()))
            }
        };
        let keyset = if cursor.is_some() { format!("AND (p.created_at, p.{id}) {cmp} ($2, $3)") } else { String::new() };
        let sql = format!(
            "SELECT p.{id} AS id, p.created_at, v.version, v.is_published, v.base_version,
                    v.last_modification_timestamp, v.document
             FROM {p} p JOIN {v} v ON v.{id} = p.{id}
                 AND v.version = (SELECT MAX(version) FROM {v} WHERE {id} = p.{id})
             WHERE p.workspace_id = $1 {keyset}
             ORDER BY p.created_at {dir}, p.{id} {dir}
             LIMIT {}",
            page.fetch_limit()
        );
        let mut query = sqlx::query(&sql).bind(workspace_id.as_str());
        if let Some((created_at, after)) = &cursor {
            query = query.bind(*created_at).bind(after.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows = rows.iter().map(version_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, page.limit))
    }

    /// Every version of one document, paged by version number (the pagination key is the
    /// last version number seen).
    pub async fn list_versions(
        &self,
        kind: Versioned,
        workspace_id: &WorkspaceId,
        id: &str,
        page: &PageRequest,
    ) -> Result<Page<VersionRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        resolve(&mut conn, kind, workspace_id, id, AgentVersionRef::Latest).await?;
        let (cmp, dir) = page.sql_parts();
        let after = match &page.after {
            None => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| StoreError::BadPaginationKey)?),
        };
        let keyset = if after.is_some() { format!("AND v.version {cmp} $3") } else { String::new() };
        let sql = format!(
            "SELECT v.{id} AS id, p.created_at, v.version, v.is_published, v.base_version,
                    v.last_modification_timestamp, v.document
             FROM {v} v JOIN {p} p ON p.{id} = v.{id}
             WHERE v.{id} = $1 AND p.workspace_id = $2 {keyset}
             ORDER BY v.version {dir}
             LIMIT {}",
            page.fetch_limit(),
            id = kind.id_column,
            v = kind.versions_table,
            p = kind.parent_table,
        );
        let mut query = sqlx::query(&sql).bind(id).bind(workspace_id.as_str());
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let rows = rows.iter().map(version_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, page.limit))
    }

    /// Ids of documents of `kind` in the workspace whose latest or any version's document
    /// mentions `token` (an id: random, so a substring match cannot collide).
    pub async fn versioned_mentioning(&self, kind: Versioned, workspace_id: &WorkspaceId, token: &str) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT p.{id} AS id FROM {p} p JOIN {v} v ON v.{id} = p.{id}
             WHERE p.workspace_id = $1 AND v.document LIKE $2 ORDER BY p.{id}",
            id = kind.id_column,
            p = kind.parent_table,
            v = kind.versions_table,
        );
        let rows = sqlx::query(&sql).bind(workspace_id.as_str()).bind(format!("%\"{token}\"%")).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
    }
}

async fn resolve(
    conn: &mut sqlx::SqliteConnection,
    kind: Versioned,
    workspace_id: &WorkspaceId,
    id: &str,
    selector: AgentVersionRef,
) -> Result<VersionRow, StoreError> {
    let (p, v, idc) = (kind.parent_table, kind.versions_table, kind.id_column);
    let filter = match selector {
        AgentVersionRef::Number(_) => "AND v.version = $3",
        AgentVersionRef::Latest => "",
        AgentVersionRef::LatestPublished => "AND v.is_published = TRUE",
    };
    let sql = format!(
        "SELECT v.{idc} AS id, p.created_at, v.version, v.is_published, v.base_version,
                v.last_modification_timestamp, v.document
         FROM {v} v JOIN {p} p ON p.{idc} = v.{idc}
         WHERE v.{idc} = $1 AND p.workspace_id = $2 {filter}
         ORDER BY v.version DESC LIMIT 1"
    );
    let mut query = sqlx::query(&sql).bind(id).bind(workspace_id.as_str());
    if let AgentVersionRef::Number(version) = selector {
        query = query.bind(version);
    }
    let row = query.fetch_optional(&mut *conn).await?.ok_or(StoreError::NotFound)?;
    version_from_row(&row)
}

async fn next_version(conn: &mut sqlx::SqliteConnection, kind: Versioned, workspace_id: &WorkspaceId, id: &str) -> Result<i64, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT COALESCE(MAX(version), -1) + 1 AS next FROM {} WHERE {} = $1 AND {}",
        kind.versions_table,
        kind.id_column,
        kind.of_workspace(2)
    ))
    .bind(id)
    .bind(workspace_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("next")?)
}

async fn insert_version(
    conn: &mut sqlx::SqliteConnection,
    kind: Versioned,
    id: &str,
    version: i64,
    base_version: Option<i64>,
    now: i64,
    document: &Document,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO {} ({}, version, is_published, base_version, last_modification_timestamp, document)
         VALUES ($1, $2, FALSE, $3, $4, $5)",
        kind.versions_table, kind.id_column
    ))
    .bind(id)
    .bind(version)
    .bind(base_version)
    .bind(now)
    .bind(encode_document(document))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn version_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<VersionRow, StoreError> {
    Ok(VersionRow {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        is_published: row.try_get("is_published")?,
        base_version: row.try_get("base_version")?,
        last_modification_timestamp: row.try_get("last_modification_timestamp")?,
        created_at: row.try_get("created_at")?,
        document: decode_document(row.try_get("document")?)?,
    })
}
