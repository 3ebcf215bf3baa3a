//! Request extractors that turn malformed input into problem responses instead of axum's plain
//! text rejections, and the typed parsers shared by every route.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::geo::{Crs, check_lon_lat};

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
        for (k, v) in pairs {
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
        self.get(k).map(|v| parse_f64(k, v)).transpose()
    }

    pub fn usize(&self, k: &str) -> Result<Option<usize>, ApiError> {
        self.get(k)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request("invalid-parameter", format!("{k}={v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }

    /// The `crs` parameter, WGS84 when absent.
    pub fn crs(&self) -> Result<Crs, ApiError> {
        Ok(self.get("crs").map(str::parse::<Crs>).transpose()?.unwrap_or(Crs::Wgs84))
    }
}

pub fn parse_f64(k: &str, v: &str) -> Result<f64, ApiError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(ApiError::bad_request("invalid-parameter", format!("{k}={v:?} is not a finite number"))),
    }
}

/// Converts a lon/lat in `crs` to storage CGCS2000, checking range first.
pub fn to_storage(crs: &Crs, lon: f64, lat: f64) -> Result<(f64, f64), ApiError> {
    check_lon_lat(lon, lat)?;
    Ok(crs.to_cgcs2000(lon, lat)?)
}

/// A comma-separated list of numbers such as `bbox` or `near`.
pub fn parse_numbers(k: &str, v: &str) -> Result<Vec<f64>, ApiError> {
    v.split(',').map(|p| parse_f64(k, p)).collect()
}

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
