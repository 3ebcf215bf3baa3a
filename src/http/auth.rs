//! The bearer-token extractor: handlers that write take a [`Caller`], which is only built from a
//! valid `Authorization: Bearer` header.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

pub use crate::auth::Tokens;
use crate::auth::{AuthError, Principal};

use super::AppState;
use super::error::ApiError;

/// The authenticated caller of a write.
pub struct Caller(pub Principal);

/// Reads are open, but a caller who shows a token is held to it (a department sees its own
/// cases only): `Option<Caller>` is `None` without an `Authorization` header and a 401 with a
/// bad one.
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Option<Self>, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            <Caller as FromRequestParts<AppState>>::from_request_parts(parts, st).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        Ok(Caller(st.auth.check(token).await?))
    }
}
