//! The city's data in and out through GDAL: exports of any collection to the formats planners'
//! tools read (GeoPackage for QGIS, zipped Shapefile for ArcGIS, DXF for CAD, KML for Google
//! Earth, CSV for Excel, GeoJSON, FlatGeobuf) in the CRS they work in, and imports of a city's
//! own survey data (anything GDAL reads) with validation, reprojection to CGCS2000 and a
//! rejection report.
//!
//! GDAL calls block, so callers run them on blocking threads (`spawn_blocking`), never on the
//! async executor.

pub mod crs;
pub mod fields;
pub mod import;
pub mod read;
pub mod request;
pub mod rtree;
pub mod tiles;
pub mod topology;
pub mod write;

use crate::model::Collection;
use crate::store::StoreError;

pub use crs::OutCrs;
pub use request::{ExportRequest, export_from_store, export_index};
pub use write::{ExportSpec, Format};

/// What can go wrong importing or exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown format {0:?}: expected gpkg, shp, geojson, fgb, csv, kml or dxf")]
    UnknownFormat(String),
    #[error("{0}")]
    Crs(String),
    #[error("{0}")]
    Param(String),
    #[error(transparent)]
    Query(#[from] crate::index::query::QueryError),
    #[error("cannot read {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("{0}")]
    Source(String),
    #[error("GDAL: {0}")]
    Gdal(#[from] gdal::errors::GdalError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("GeoPackage index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} features rejected; nothing was imported (use --skip-invalid to import the rest)")]
    Rejected(usize),
    #[error("too many exports at once; try again shortly")]
    Busy,
    /// More matches than one export may write (`[cost_limits] export_features`).
    #[error(
        "{count} features match, more than {max} one export may write: narrow it with bbox, within, datetime or a filter"
    )]
    TooMany { count: usize, max: usize },
    /// More tiles than one offline package may hold (`[cost_limits] package_tiles` over HTTP).
    #[error("{count} tiles, more than {max} one package may hold: narrow the bbox or the zooms")]
    TooManyTiles { count: u64, max: u64 },
}

/// Checks a collection id for import and export (any feature collection; parents first in
/// [`Collection::FEATURES`]), naming the known ones when it is not one.
pub fn collection(id: &str) -> Result<Collection, ExportError> {
    Collection::feature(id).ok_or_else(|| {
        let known: Vec<&str> = Collection::FEATURES.iter().map(|c| c.as_str()).collect();
        ExportError::Param(format!("no collection {id:?}; collections are {}", known.join(", ")))
    })
}

/// Runs `$body` with `$ty` bound to the model type of a checked feature collection.
macro_rules! with_model {
    ($c:expr, |$ty:ident| $body:expr) => {
        $crate::model::with_model!($c, |$ty| $body, unreachable!("a feature collection"))
    };
}
pub(crate) use with_model;
