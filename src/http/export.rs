//! `GET /api/v1/export/{collection}`: a filtered collection as a file, written by GDAL on a
//! blocking thread into a temporary file and streamed from there, so neither a ten-million-
//! feature export nor its clone of the index ever sits in memory whole. `onemap export` runs
//! the same code over a layer loaded from the store. `GET /api/v1/export/tiles`: an area's
//! offline tile package, the same way.

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
    let name = req.spec.file_name(collection);
    let format = req.spec.format;
    let index = st.index.clone();
    let (mut resp, n) =
        write_and_stream(&st, name, format.content_type(), move |path| export_index(&index, collection, &req, path))
            .await?;
    let h = resp.headers_mut();
    h.insert("x-feature-count", HeaderValue::from(n));
    if format.is_compact() {
        // Already compressed or binary: gzip would cost CPU for nothing.
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
    }
    Ok(resp)
}

/// `GET /api/v1/export/tiles?format=pmtiles|mbtiles&layers=&bbox=&minzoom=&maxzoom=`: the live
/// tiles of an area as one offline package for a field app, at most `[cost_limits]
/// package_tiles` tiles (422 beyond, counted before any is rendered). A department's package
/// draws its own cases only, as its tiles do.
pub async fn export_tiles(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    use crate::export::tiles::{Package, PackageFormat, write_package};
    p.only(&["format", "layers", "bbox", "minzoom", "maxzoom"])?;
    let format = PackageFormat::parse(p.get("format").unwrap_or("pmtiles"))?;
    let zoom = |k: &str| -> ApiResult<Option<u8>> {
        p.get(k)
            .map(|v| {
                v.parse::<u8>()
                    .map_err(|_| ApiError::bad_request("invalid-parameter", format!("{k}={v:?} is not a zoom")))
            })
            .transpose()
    };
    let max = st.analysis.limits.read().package_tiles;
    let mut pkg = Package::parse(&st.index, p.get("layers"), p.get("bbox"), zoom("minzoom")?, zoom("maxzoom")?, max)?;
    super::tiles::scope_cases(&pkg.layers, &mut pkg.filters, &scope_of(&who).filters());
    let ids: Vec<&str> = pkg.layers.iter().map(|l| l.id).collect();
    let name = format!("onemap-{}.{}", ids.join("-"), format.extension());
    let index = st.index.clone();
    let (mut resp, n) = write_and_stream(&st, name, format.content_type(), move |path| {
        write_package(&index, &pkg, path, &|_, _| {}).map(|n| n as u64)
    })
    .await?;
    let h = resp.headers_mut();
    h.insert("x-tile-count", HeaderValue::from(n));
    // Gzipped tiles inside: compressing the package again would cost CPU for nothing.
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
    Ok(resp)
}

/// Writes a file named `name` with `write` on a blocking thread into a temporary directory,
/// holding one of the export permits (429 when none is free), and streams it from there as an
/// attachment; the directory lives as long as the body streams from it. Returns the response
/// and what `write` counted.
async fn write_and_stream(
    st: &AppState,
    name: String,
    content_type: &'static str,
    write: impl FnOnce(&std::path::Path) -> Result<u64, ExportError> + Send + 'static,
) -> ApiResult<(Response, u64)> {
    let permit = st.exports.clone().try_acquire_owned().map_err(|_| ExportError::Busy)?;
    let file_name = name.clone();
    let (dir, path, n) = tokio::task::spawn_blocking(move || -> Result<_, ExportError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(file_name);
        let n = write(&path)?;
        Ok((dir, path, n))
    })
    .await
    .map_err(ApiError::internal)??;
    drop(permit);
    let file = tokio::fs::File::open(&path).await.map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    let body = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
        let _keep = &dir;
        chunk
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((resp, n))
}
