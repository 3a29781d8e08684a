//! Extractors whose rejections are `ApiError`s that name the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiState;
use super::error::ApiError;
use crate::store::AuthenticatedKey;

/// A JSON body. An empty body reads as `{}` (the SDK sends none on some POSTs); a type or
/// shape error is a 400 whose message starts with the path of the field (`agent.voice_speed`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(req, state).await.map_err(|rejection| ApiError::BadRequest(format!("request body: {rejection}")))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        parse_json(bytes).map(ApiJson)
    }
}

/// Deserialises `bytes`, reporting the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::BadRequest(format!("request body is not valid JSON: {inner}")))
            } else if path == "." {
                Err(ApiError::BadRequest(format!("request body: {inner}")))
            } else {
                Err(ApiError::field(path, strip_position(&inner.to_string())))
            }
        }
    }
}

/// serde_json appends " at line 1 column 42", which means nothing to an API caller who did
/// not write the bytes by hand.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// Query parameters; a bad one is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|query| ApiQuery(query.0))
            .map_err(|rejection| ApiError::BadRequest(format!("query: {}", rejection.body_text())))
    }
}

/// The workspace of the presented `Authorization: Bearer <key>`.
pub struct Workspace(pub AuthenticatedKey);

impl FromRequestParts<ApiState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let secret = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let key = state.store.authenticate(secret).await.map_err(|err| ApiError::Internal(err.into()))?.ok_or(ApiError::Unauthorized)?;
        Ok(Workspace(key))
    }
}
