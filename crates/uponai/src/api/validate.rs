//! Checks shared by the resources: ranges, URLs, documents.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::egress::Egress;
use crate::store::Document;

pub fn range_f64(field: &str, value: Option<f64>, lo: f64, hi: f64) -> Result<(), ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(ApiError::field(field, format!("must be between {lo} and {hi}, got {v}"))),
        _ => Ok(()),
    }
}

pub fn range_i64(field: &str, value: Option<i64>, lo: i64, hi: i64) -> Result<(), ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(ApiError::field(field, format!("must be between {lo} and {hi}, got {v}"))),
        _ => Ok(()),
    }
}

/// An absolute URL with one of `schemes` and a host.
pub fn url(field: &str, raw: &str, schemes: &[&str]) -> Result<url::Url, ApiError> {
    let parsed = url::Url::parse(raw).map_err(|err| ApiError::field(field, format!("{raw:?} is not a URL: {err}")))?;
    if !schemes.contains(&parsed.scheme()) || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::field(field, format!("{raw:?} must be an absolute {} URL", schemes.join(" or "))));
    }
    Ok(parsed)
}

/// A URL the platform will call for the tenant: `url`'s checks, then the egress guard
/// (`field: refused target: … is a loopback address`).
pub async fn target_url(egress: Egress, field: &str, raw: &str, schemes: &[&str]) -> Result<url::Url, ApiError> {
    let parsed = url(field, raw, schemes)?;
    egress.check_url(&parsed).await.map_err(|refused| ApiError::field(field, refused))?;
    Ok(parsed)
}

/// The wire struct as a stored document: present keys only, `null` kept (it clears).
pub fn to_document<T: Serialize>(fields: &T) -> Result<Document, ApiError> {
    match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::Internal(anyhow::anyhow!("document serialised to {other}"))),
        Err(err) => Err(ApiError::Internal(err.into())),
    }
}

/// A stored document read back as its wire struct.
pub fn from_document<T: DeserializeOwned>(document: &Document) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(document.clone()))
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("stored document does not parse: {err}")))
}

/// `base` with every key of `patch` written over it.
pub fn merged(base: &Document, patch: &Document) -> Document {
    let mut out: Map<String, Value> = base.clone();
    out.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}
