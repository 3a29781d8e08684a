//! List conventions of the current API: `limit` (default 50, max 1000), `sort_order`
//! (default descending), `pagination_key`; answers `{items, has_more, pagination_key}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::store::PageRequest;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Ascending,
    #[default]
    Descending,
}

/// Paging parameters, in the query string for GET lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Maximum number of items to return (1–1000, default 50).
    pub limit: Option<i64>,
    /// The `pagination_key` of the previous page.
    pub pagination_key: Option<String>,
    /// By creation time; default descending.
    pub sort_order: Option<SortOrder>,
}

impl ListQuery {
    pub fn page_request(&self) -> Result<PageRequest, ApiError> {
        page_request(self.limit, self.pagination_key.clone(), self.sort_order)
    }
}

pub fn page_request(limit: Option<i64>, pagination_key: Option<String>, sort_order: Option<SortOrder>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_LIMIT}, got {limit}")));
    }
    Ok(PageRequest {
        // In 1..=1000, so the conversion cannot fail.
        limit: usize::try_from(limit).unwrap_or(1),
        after: pagination_key.filter(|key| !key.is_empty()),
        descending: sort_order.unwrap_or_default() == SortOrder::Descending,
    })
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paginated<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    /// Present when `has_more`: pass it back to get the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination_key: Option<String>,
}

impl<T> Paginated<T> {
    /// `key_of` gives the pagination key of an item (the last one's is the next cursor).
    pub fn new(items: Vec<T>, has_more: bool, key_of: impl Fn(&T) -> String) -> Self {
        let pagination_key = if has_more { items.last().map(key_of) } else { None };
        Self { items, has_more, pagination_key }
    }
}
