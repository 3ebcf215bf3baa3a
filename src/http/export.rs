//! `GET /api/v1/export/{collection}`: a filtered collection as a file, written by GDAL on a
//! blocking thread into a temporary file and streamed from there, so neither a ten-million-
//! feature export nor its clone of the index ever sits in memory whole. `onemap export` runs
//! the same code over a layer loaded from the store.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::auth::{Caller, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{Params, PathParams};
use crate::export::{ExportError, ExportRequest, export_index};
use crate::model::Collection;
use crate::{AppState, export};

pub use crate::export::request::CONCURRENT;

/// `GET /api/v1/export/{collection}`.
pub async fn export(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams(collection): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
    let collection = export::collection(&collection).map_err(|_| super::features::unknown_collection(&collection))?;
    let mut req = ExportRequest::parse(collection, &p.0)?;
    req.max_features = st.analysis.limits.read().export_features;
    // A department exports its own cases, an area its area's.
    if collection == Collection::Cases {
        req.query.filters.extend(scope_of(&who).filters());
    }
    let permit = st.exports.clone().try_acquire_owned().map_err(|_| ExportError::Busy)?;
    let name = req.spec.file_name(collection);
    let format = req.spec.format;
    let index = st.index.clone();
    let (dir, path, n) = tokio::task::spawn_blocking(move || -> Result<_, ExportError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(req.spec.file_name(collection));
        let n = export_index(&index, collection, &req, &path)?;
        Ok((dir, path, n))
    })
    .await
    .map_err(ApiError::internal)??;
    drop(permit);
    let file = tokio::fs::File::open(&path).await.map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    // The temporary directory lives as long as the body streams from it.
    let body = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
        let _keep = &dir;
        chunk
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-feature-count", HeaderValue::from(n));
    if format.is_compact() {
        // Already compressed or binary: gzip would cost CPU for nothing.
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
    }
    Ok(resp)
}
