//! An export as both `GET /api/v1/export/{collection}` and `onemap export` make it: the
//! parameters parsed into a file spec and an items query, and the matching records written from
//! the index (under short read locks, chunk by chunk) or from a layer loaded from the store.

use std::path::Path;

use parking_lot::RwLock;

use super::{ExportError, ExportSpec, Format, OutCrs, write};
use crate::index::query::{ItemQuery, Params};
use crate::index::{CityIndex, Layer, Layered, Record};
use crate::model::Collection;

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
    /// The most features it may write: counted before anything is written.
    pub max_features: usize,
}

impl ExportRequest {
    /// `format` (default gpkg), `crs` (the output CRS, default cgcs2000) and the filters of
    /// the features API (`bbox`, `within`, `datetime`, property equality).
    pub fn parse(collection: Collection, p: &Params) -> Result<ExportRequest, ExportError> {
        let param = |k: &str| p.get(k).map(String::as_str);
        let format = Format::parse(param("format").unwrap_or("gpkg"))?;
        let crs = OutCrs::parse(param("crs").unwrap_or("cgcs2000"))?;
        let spec = ExportSpec::new(format, crs)?;
        let filters: Params = p
            .iter()
            .filter(|(k, _)| !EXPORT_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let props = super::with_model!(collection, |T| <T as Record>::PROPERTIES);
        let query = ItemQuery::parse(&filters, props)?;
        if query.near.is_some() {
            return Err(ExportError::Param("exports take bbox and within, not near".into()));
        }
        Ok(ExportRequest { spec, query, max_features: usize::MAX })
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
    super::with_model!(collection, |T| export_layer::<T>(index, &spec, req, out))
}

/// Notes the slots of the matches under one read lock, then clones them out chunk by chunk
/// under short ones, so writers wait milliseconds, not the length of the export.
fn export_layer<T: Layered + Clone>(
    index: &CityIndex,
    spec: &ExportSpec,
    req: &ExportRequest,
    out: &Path,
) -> Result<u64, ExportError> {
    let lock: &RwLock<Layer<T>> = T::layer(index);
    let slots: Vec<u32> = {
        let layer = lock.read();
        req.query.run(&layer).filter_map(|(r, _)| layer.slot(&r.key())).collect()
    };
    if slots.len() > req.max_features {
        return Err(ExportError::TooMany { count: slots.len(), max: req.max_features });
    }
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

/// `onemap export`: loads just `collection` (and the class names) from the store and writes the
/// matches of `params` (the HTTP export's parameters) to `out`.
pub async fn export_from_store(
    store: &dyn crate::store::Store,
    collection: Collection,
    params: &Params,
    out: &Path,
) -> Result<u64, ExportError> {
    use crate::store::schema::Filter;
    let req = ExportRequest::parse(collection, params)?;
    let index = CityIndex::default();
    super::with_model!(collection, |T| {
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
        .map_err(|e| ExportError::Io(std::io::Error::other(e)))?
}
