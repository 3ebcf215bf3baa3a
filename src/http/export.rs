//! `GET /api/v1/export/{collection}`: a filtered collection as a file, written by GDAL on a
//! blocking thread into a temporary file and streamed from there, so neither a ten-million-
//! feature export nor its clone of the index ever sits in memory whole. `onemap export` runs
//! the same code over a layer loaded from the store.

use std::path::Path;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use parking_lot::RwLock;

use super::error::{ApiError, ApiResult};
use super::features::ItemQuery;
use super::params::{Params, PathParams};
use crate::events::Indexed;
use crate::export::{ExportError, ExportSpec, Format, OutCrs, write};
use crate::index::{CityIndex, Layer, Record};
use crate::model::Collection;
use crate::{AppState, export};

/// Records cloned out of the index per short read lock.
const CHUNK: usize = 10_000;

/// Exports running at once per server (more wait for none: they get 429).
pub const CONCURRENT: usize = 2;

/// Parameters of an export that are not item filters.
const EXPORT_PARAMS: &[&str] = &["format", "crs"];

/// An export request parsed: what to write, and the filters (bbox in lon/lat, whatever `crs`).
pub struct ExportRequest {
    pub spec: ExportSpec,
    pub query: ItemQuery,
}

impl ExportRequest {
    /// `format` (default gpkg), `crs` (the output CRS, default cgcs2000) and the filters of
    /// the features API (`bbox`, `within`, `datetime`, property equality).
    pub fn parse(collection: Collection, p: &Params) -> ApiResult<ExportRequest> {
        let format = Format::parse(p.get("format").unwrap_or("gpkg"))?;
        let crs = OutCrs::parse(p.get("crs").unwrap_or("cgcs2000"))?;
        let spec = ExportSpec::new(format, crs)?;
        let filters = Params(
            p.0.iter()
                .filter(|(k, _)| !EXPORT_PARAMS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let props = crate::export::with_model!(collection, |T| <T as Record>::PROPERTIES);
        let query = ItemQuery::parse(&filters, props)?;
        if query.near.is_some() {
            return Err(ApiError::bad_request("invalid-parameter", "exports take bbox and within, not near"));
        }
        Ok(ExportRequest { spec, query })
    }
}

/// Writes the matching records of `collection` from the index to `out`; blocking.
pub fn export_index(
    index: &CityIndex,
    collection: Collection,
    req: &ExportRequest,
    out: &Path,
) -> Result<u64, ExportError> {
    let mut spec = req.spec.clone();
    spec.class_names =
        index.dict.read().component_classes.iter().map(|c| (c.code.to_string(), c.name.to_string())).collect();
    for c in index.dict.read().event_classes.iter() {
        spec.class_names.entry(c.code.to_string()).or_insert_with(|| c.name.to_string());
    }
    crate::export::with_model!(collection, |T| export_layer::<T>(index, &spec, &req.query, out))
}

/// Notes the slots of the matches under one read lock, then clones them out chunk by chunk
/// under short ones, so writers wait milliseconds, not the length of the export.
fn export_layer<T: Indexed>(
    index: &CityIndex,
    spec: &ExportSpec,
    query: &ItemQuery,
    out: &Path,
) -> Result<u64, ExportError> {
    let lock: &RwLock<Layer<T>> = T::layer(index);
    let slots: Vec<u32> = {
        let layer = lock.read();
        query.run(&layer).filter_map(|(r, _)| layer.slot(&r.key())).collect()
    };
    let mut done = 0;
    let mut next = move || -> Option<Vec<T>> {
        if done >= slots.len() {
            return None;
        }
        let end = (done + CHUNK).min(slots.len());
        let layer = lock.read();
        let chunk = slots[done..end].iter().filter_map(|&s| layer.at_slot(s).cloned()).collect();
        done = end;
        Some(chunk)
    };
    write::export(spec, out, &mut next)
}

/// `GET /api/v1/export/{collection}`.
pub async fn export(
    State(st): State<AppState>,
    PathParams(collection): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
    let collection = export::collection(&collection).map_err(|_| super::features::unknown_collection(&collection))?;
    let req = ExportRequest::parse(collection, &p)?;
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

/// `onemap export`: loads just `collection` (and the class names) from the store and writes the
/// matches of `params` (the HTTP export's parameters) to `out`.
pub async fn export_from_store(
    store: &dyn crate::store::Store,
    collection: &str,
    params: &Params,
    out: &Path,
) -> Result<u64, ApiError> {
    use crate::store::schema::Filter;
    let collection = export::collection(collection)?;
    let req = ExportRequest::parse(collection, params)?;
    let index = CityIndex::default();
    crate::export::with_model!(collection, |T| {
        let records: Vec<T> = crate::store::select(store, Filter::All).await?;
        *<T as crate::index::Layered>::layer(&index).write() = Layer::bulk(records);
    });
    let component_classes = crate::store::select(store, Filter::All).await?;
    let event_classes = crate::store::select(store, Filter::All).await?;
    {
        let mut dict = index.dict.write();
        dict.component_classes = component_classes;
        dict.event_classes = event_classes;
    }
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || export_index(&index, collection, &req, &out))
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}
