//! Request extractors that turn malformed input into problem responses instead of axum's plain
//! text rejections, and the typed parsers shared by every route.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::geo::Crs;
use crate::index::query;

/// The query string as ordered key/value pairs; a repeated key is a 400.
#[derive(Debug, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::bad_request("malformed-query", format!("query string: {e}")))?;
        let mut map = BTreeMap::new();
        // The token a browser's EventSource sends in the query is the `access` middleware's,
        // not a parameter of the route.
        for (k, v) in pairs.into_iter().filter(|(k, _)| k != "access_token") {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_request("malformed-query", format!("parameter {k:?} given more than once")));
            }
        }
        Ok(Params(map))
    }
}

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn required(&self, k: &str) -> Result<&str, ApiError> {
        self.get(k).ok_or_else(|| ApiError::bad_request("missing-parameter", format!("parameter {k:?} is required")))
    }

    /// A finite number, or a 400 naming the parameter.
    pub fn f64(&self, k: &str) -> Result<Option<f64>, ApiError> {
        Ok(query::f64_of(&self.0, k)?)
    }

    pub fn usize(&self, k: &str) -> Result<Option<usize>, ApiError> {
        Ok(query::usize_of(&self.0, k)?)
    }

    /// Refuses (400) any parameter not in `allowed`, naming them.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(
                "invalid-parameter",
                format!("unknown parameter {k:?}; use {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// A `true`/`false` parameter, `default` when absent.
    pub fn bool(&self, k: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(k) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request("invalid-parameter", format!("{k} must be true or false, not {v:?}"))),
        }
    }

    /// The `crs` parameter, WGS84 when absent.
    pub fn crs(&self) -> Result<Crs, ApiError> {
        Ok(query::crs_of(&self.0)?)
    }
}

pub use crate::index::query::{parse_f64, parse_numbers, to_storage};

/// A JSON body whose rejection is a problem response.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(v))
    }
}

/// Path parameters whose rejection (e.g. invalid percent-encoding) is a problem response.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParams(v)),
            Err(e) => Err(ApiError::bad_request("invalid-path", e.body_text())),
        }
    }
}
