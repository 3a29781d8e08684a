//! The one mapping from failures to HTTP: status code plus `{"status":"error","message":…}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The error body of every non-2xx answer, as the hosted API sends it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `"error"`.
    pub status: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no key, or a key that is unknown or revoked.
    #[error("API key is missing or invalid.")]
    Unauthorized,
    /// 422, as the hosted API answers for an id it cannot find under the caller's key
    /// (including ids of other workspaces).
    #[error("Cannot find requested asset under given api key: {0}")]
    NotFound(String),
    /// 429: a calls-per-second or concurrency limit; retrying after `retry_after` finds room
    /// (for CPS, unless someone else takes it first).
    #[error("{message}")]
    RateLimited { message: String, retry_after: std::time::Duration },
    /// 404 for paths that are not part of the API.
    #[error("The requested resource was not found.")]
    NoRoute,
    /// 500. The cause is logged, never sent.
    #[error("An unexpected server error occurred.")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: impl std::fmt::Display, problem: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("{field}: {problem}"))
    }

    /// Maps a store failure, naming the object (`agent agent_…`) if it was not found.
    pub fn from_store(err: StoreError, what: impl std::fmt::Display) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound(what.to_string()),
            StoreError::Conflict(message) => Self::BadRequest(message),
            StoreError::BadPaginationKey => Self::field("pagination_key", "does not name an item of this list"),
            other @ (StoreError::Database(_) | StoreError::Corrupt(_)) => Self::Internal(anyhow::Error::new(other)),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let body = ErrorBody { status: "error", message: self.to_string() };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Self::RateLimited { retry_after, .. } = &self {
            // Both headers the official SDKs read: seconds (whole, rounded up) and milliseconds.
            let ms = retry_after.as_millis().max(1);
            let headers = response.headers_mut();
            if let Ok(value) = axum::http::HeaderValue::from_str(&ms.div_ceil(1000).to_string()) {
                headers.insert(axum::http::header::RETRY_AFTER, value);
            }
            if let Ok(value) = axum::http::HeaderValue::from_str(&ms.to_string()) {
                headers.insert("retry-after-ms", value);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
