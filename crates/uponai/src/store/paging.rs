//! Keyset paging shared by every list: ordered by `(created_at, id)`, the pagination key is
//! the id of the last item of the previous page.

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// What the caller asked for; `limit` is already bounded by the API edge.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<String>,
    pub descending: bool,
}

impl PageRequest {
    /// `(comparison, direction)` for the keyset `WHERE` and `ORDER BY`.
    pub(super) fn sql_parts(&self) -> (&'static str, &'static str) {
        if self.descending { ("<", "DESC") } else { (">", "ASC") }
    }

    pub(super) fn fetch_limit(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX - 1) + 1
    }
}

/// A lookup of the row a pagination key names: "not found" means the key is bad.
pub(super) fn cursor_row<T>(lookup: Result<T, super::StoreError>) -> Result<T, super::StoreError> {
    lookup.map_err(|err| match err {
        super::StoreError::NotFound => super::StoreError::BadPaginationKey,
        other => other,
    })
}

impl<T> Page<T> {
    /// Turns `limit + 1` fetched rows into a page, using the extra row only to learn whether
    /// there are more.
    pub(super) fn from_overfetch(mut rows: Vec<T>, limit: usize) -> Self {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Self { items: rows, has_more }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), has_more: self.has_more }
    }
}
