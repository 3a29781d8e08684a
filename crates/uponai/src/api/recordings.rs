//! Recording links: expiring URLs signed with a secret of this data directory, so that a
//! webhook consumer can fetch a recording without the API key.

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::view::is_safe_name;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    pub expires: i64,
    pub signature: String,
}

/// Download a recording through a signed link (no API key).
#[utoipa::path(get, path = "/recordings/{file}", tag = "Call", security(()),
    params(("file" = String, Path), LinkQuery),
    responses((status = 200, content_type = "audio/wav"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn download(
    State(state): State<ApiState>,
    UrlPath(file): UrlPath<String>,
    ApiQuery(query): ApiQuery<LinkQuery>,
) -> Result<Response, ApiError> {
    let links = &state.recording_links;
    if !is_safe_name(&file) || !links.verify(&file, query.expires, &query.signature) {
        return Ok((
            StatusCode::FORBIDDEN,
            axum::Json(ErrorBody { status: "error", message: "the link is invalid or has expired".into() }),
        )
            .into_response());
    }
    let bytes = match tokio::fs::read(links.path_of(&file)).await {
        Ok(bytes) => bytes,
        // The call was deleted (or kept no recording): the link is valid, the file is gone.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((StatusCode::NOT_FOUND, axum::Json(ErrorBody { status: "error", message: "the recording does not exist".into() }))
                .into_response());
        }
        Err(err) => return Err(ApiError::Internal(err.into())),
    };
    Ok(([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response())
}
