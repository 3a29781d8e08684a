//! Phone numbers: a number's bindings and trunk settings as a document, its trunk password
//! beside it (never in the document, so it can never be returned by accident).

use sqlx::Row;

use super::paging::{Page, PageRequest, cursor_row};
use super::{Document, Store, StoreError, decode_document, encode_document};
use crate::domain::{WorkspaceId, now_ms};

#[derive(Clone, Debug)]
pub struct NumberRow {
    pub phone_number: String,
    pub phone_number_type: String,
    pub created_at: i64,
    pub last_modification_timestamp: i64,
    pub auth_password: Option<String>,
    pub document: Document,
}

/// The `Conflict` of adding a number some workspace already holds.
const NUMBER_TAKEN: &str = "the phone number is held by a workspace";

/// A change to a number's trunk password: keep it, or set it to a value or to none.
#[derive(Clone, Debug)]
pub enum PasswordChange {
    Keep,
    Set(Option<String>),
}

impl Store {
    /// Adds a number. A number belongs to one workspace only: adding it again, in this
    /// workspace or another, is `Conflict`, and so is adding the other spelling of a number
    /// already held (`+15551234` and `15551234` reach the same inbound routing), so that an
    /// inbound call's number names at most one row. The caller must not tell the cases
    /// apart to its client: whether another workspace holds a number is not its business.
    pub async fn insert_number(
        &self,
        workspace_id: &WorkspaceId,
        phone_number: &str,
        phone_number_type: &str,
        auth_password: Option<&str>,
        document: &Document,
    ) -> Result<NumberRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let now = now_ms();
        let created_at = self.next_created_at();
        let taken = sqlx::query("SELECT 1 AS one FROM phone_numbers WHERE phone_number IN ($1, $2)")
            .bind(phone_number)
            .bind(other_spelling(phone_number))
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(NUMBER_TAKEN.into()));
        }
        let result = sqlx::query(
            "INSERT INTO phone_numbers
                 (phone_number, workspace_id, phone_number_type, created_at,
                  last_modification_timestamp, auth_password, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(phone_number)
        .bind(workspace_id.as_str())
        .bind(phone_number_type)
        .bind(created_at)
        .bind(now)
        .bind(auth_password)
        .bind(encode_document(document))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(NumberRow {
                phone_number: phone_number.to_owned(),
                phone_number_type: phone_number_type.to_owned(),
                created_at,
                last_modification_timestamp: now,
                auth_password: auth_password.map(str::to_owned),
                document: document.clone(),
            }),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(StoreError::Conflict(NUMBER_TAKEN.into())),
            Err(err) => Err(err.into()),
        }
    }

    /// Cross-workspace: the numbers an inbound INVITE's Request-URI user can mean (as
    /// written, and with a leading `+` added or removed), each with its workspace. For SIP
    /// routing, which carries no key; `insert_number` keeps this to at most one row, and the
    /// caller still checks the row's trunk allow-list against the request's source.
    pub async fn find_dialed_number_any_workspace(&self, dialed: &str) -> Result<Vec<(WorkspaceId, NumberRow)>, StoreError> {
        let rows = sqlx::query(
            "SELECT workspace_id, phone_number, phone_number_type, created_at, last_modification_timestamp,
                    auth_password, document
             FROM phone_numbers WHERE phone_number IN ($1, $2) ORDER BY phone_number",
        )
        .bind(dialed)
        .bind(other_spelling(dialed))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((super::workspaces::parse_workspace_id(row.try_get("workspace_id")?)?, number_from_row(row)?))).collect()
    }

    pub async fn get_number(&self, workspace_id: &WorkspaceId, phone_number: &str) -> Result<NumberRow, StoreError> {
        let row = sqlx::query(
            "SELECT phone_number, phone_number_type, created_at, last_modification_timestamp,
                    auth_password, document
             FROM phone_numbers WHERE workspace_id = $1 AND phone_number = $2",
        )
        .bind(workspace_id.as_str())
        .bind(phone_number)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        number_from_row(&row)
    }

    /// Replaces a number's document (the caller merged the change into it).
    pub async fn update_number(
        &self,
        workspace_id: &WorkspaceId,
        phone_number: &str,
        document: &Document,
        password: PasswordChange,
    ) -> Result<NumberRow, StoreError> {
        let _writer = self.write_lock.lock().await;
        let (set_password, new_password) = match password {
            PasswordChange::Keep => (false, None),
            PasswordChange::Set(value) => (true, value),
        };
        let result = sqlx::query(
            "UPDATE phone_numbers
             SET document = $3, last_modification_timestamp = $4,
                 auth_password = CASE WHEN $5 THEN $6 ELSE auth_password END
             WHERE workspace_id = $1 AND phone_number = $2",
        )
        .bind(workspace_id.as_str())
        .bind(phone_number)
        .bind(encode_document(document))
        .bind(now_ms())
        .bind(set_password)
        .bind(new_password)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        drop(_writer);
        self.get_number(workspace_id, phone_number).await
    }

    pub async fn delete_number(&self, workspace_id: &WorkspaceId, phone_number: &str) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let result = sqlx::query("DELETE FROM phone_numbers WHERE workspace_id = $1 AND phone_number = $2")
            .bind(workspace_id.as_str())
            .bind(phone_number)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn list_numbers(&self, workspace_id: &WorkspaceId, page: &PageRequest) -> Result<Page<NumberRow>, StoreError> {
        let (cmp, dir) = page.sql_parts();
        let cursor = match &page.after {
            None => None,
            Some(after) => Some(cursor_row(self.get_number(workspace_id, after).await)?.created_at),
        };
        let keyset = if cursor.is_some() { format!("AND (created_at, phone_number) {cmp} ($2, $3)") } else { String::new() };
        let sql = format!(
            "SELECT phone_number, phone_number_type, created_at, last_modification_timestamp,
                    auth_password, document
             FROM phone_numbers WHERE workspace_id = $1 {keyset}
             ORDER BY created_at {dir}, phone_number {dir} LIMIT {}",
            page.fetch_limit()
        );
        let mut query = sqlx::query(&sql).bind(workspace_id.as_str());
        if let (Some(created_at), Some(after)) = (cursor, &page.after) {
            query = query.bind(created_at).bind(after.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows = rows.iter().map(number_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, page.limit))
    }

    /// Numbers of the workspace whose bindings mention `agent_id`.
    pub async fn numbers_mentioning(&self, workspace_id: &WorkspaceId, token: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT phone_number FROM phone_numbers
             WHERE workspace_id = $1 AND document LIKE $2 ORDER BY phone_number",
        )
        .bind(workspace_id.as_str())
        .bind(format!("%\"{token}\"%"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("phone_number")?)).collect()
    }
}

/// `+15551234` for `15551234` and the other way round.
fn other_spelling(phone_number: &str) -> String {
    match phone_number.strip_prefix('+') {
        Some(bare) => bare.to_owned(),
        None => format!("+{phone_number}"),
    }
}

fn number_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<NumberRow, StoreError> {
    Ok(NumberRow {
        phone_number: row.try_get("phone_number")?,
        phone_number_type: row.try_get("phone_number_type")?,
        created_at: row.try_get("created_at")?,
        last_modification_timestamp: row.try_get("last_modification_timestamp")?,
        auth_password: row.try_get("auth_password")?,
        document: decode_document(row.try_get("document")?)?,
    })
}
