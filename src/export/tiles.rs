//! Offline tile packages for field apps and planners: the live vector tiles of an area and a
//! zoom range written to an MBTiles file (SQLite, gzipped MVT, TMS row order) or a PMTiles
//! archive (one file, Hilbert order, read over HTTP ranges), rendered in parallel from the same
//! index and the same renderer as `/tiles`, so each tile is the one a server gives for the same
//! data. `onemap export tiles` and `GET /api/v1/export/tiles` both write through here.

use std::path::Path;

use rayon::prelude::*;
use serde_json::json;

use super::ExportError;
use crate::geo::tile::{MAX_ZOOM, TileCoord, tile_range, tiles_covering};
use crate::index::{CityIndex, Record};
use crate::model::{Collection, with_model};
use crate::tiles::cache::Rendered;
use crate::tiles::{self, TileLayer};

/// The most tiles one package written by the command line may hold: z12-z16 of a city of
/// 1,000 km² is about 60,000. Over HTTP the `[cost_limits] package_tiles` bound applies.
pub const MAX_TILES: u64 = 2_000_000;

/// What to package.
#[derive(Debug, Clone)]
pub struct Package {
    pub layers: Vec<TileLayer>,
    /// lon/lat.
    pub bbox: [f64; 4],
    pub minzoom: u8,
    pub maxzoom: u8,
    /// Per layer, the property filters its features must match (a department's scope on cases).
    pub filters: Vec<Vec<(String, String)>>,
}

impl Package {
    /// Checks layer ids (comma-separated), zooms and the tile count against `max_tiles`.
    pub fn new(layers: &str, bbox: [f64; 4], minzoom: u8, maxzoom: u8, max_tiles: u64) -> Result<Package, ExportError> {
        let mut ids: Vec<TileLayer> = Vec::new();
        for id in layers.split(',').map(str::trim) {
            let l = TileLayer::find(id).ok_or_else(|| ExportError::Param(format!("unknown tile layer {id:?}")))?;
            if !ids.iter().any(|x| x.id == l.id) {
                ids.push(l);
            }
        }
        if minzoom > maxzoom || maxzoom > MAX_ZOOM {
            return Err(ExportError::Param(format!(
                "zooms {minzoom}-{maxzoom}: need minzoom <= maxzoom <= {MAX_ZOOM}"
            )));
        }
        if !(bbox[0] < bbox[2] && bbox[1] < bbox[3]) || bbox.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::Param(format!("bbox {bbox:?} must be minLon,minLat,maxLon,maxLat")));
        }
        let filters = vec![Vec::new(); ids.len()];
        let p = Package { layers: ids, bbox, minzoom, maxzoom, filters };
        // Counted from the corners, not listed: a world-wide bbox at z20 has 10^11 tiles.
        let n: u64 = (minzoom..=maxzoom)
            .map(|z| {
                let (c0, c1, r0, r1) = tile_range(bbox, z);
                (c1 - c0 + 1).saturating_mul(r1 - r0 + 1)
            })
            .fold(0u64, u64::saturating_add);
        if n > max_tiles {
            return Err(ExportError::TooManyTiles { count: n, max: max_tiles });
        }
        Ok(p)
    }

    /// A package as the command line and `GET /api/v1/export/tiles` ask for it: comma-separated
    /// layers (every feature collection when absent), `minLon,minLat,maxLon,maxLat` (the city's
    /// extent when absent), z12-z16 unless told.
    pub fn parse(
        index: &CityIndex,
        layers: Option<&str>,
        bbox: Option<&str>,
        minzoom: Option<u8>,
        maxzoom: Option<u8>,
        max_tiles: u64,
    ) -> Result<Package, ExportError> {
        let bbox = match bbox {
            Some(b) => {
                let numbers: Option<Vec<f64>> = b.split(',').map(|x| x.trim().parse::<f64>().ok()).collect();
                numbers.and_then(|v| <[f64; 4]>::try_from(v).ok()).ok_or_else(|| {
                    ExportError::Param(format!("bbox {b:?}: four numbers minLon,minLat,maxLon,maxLat"))
                })?
            }
            None => index
                .grids
                .read()
                .bbox()
                .ok_or_else(|| ExportError::Param("the store holds no unit grid: give a bbox".to_string()))?,
        };
        let all: Vec<&str> = Collection::FEATURES.iter().map(|c| c.as_str()).collect();
        let layers = layers.map_or_else(|| all.join(","), str::to_string);
        Package::new(&layers, bbox, minzoom.unwrap_or(12), maxzoom.unwrap_or(16), max_tiles)
    }

    /// Every tile of the package, zoom by zoom.
    pub fn coords(&self) -> Vec<TileCoord> {
        (self.minzoom..=self.maxzoom).flat_map(|z| tiles_covering(self.bbox, z)).collect()
    }
}

/// The file an offline package is written as, told by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// SQLite, rows from the south (TMS): GDAL, QGIS and most field-app SDKs read it.
    MbTiles,
    /// One cloud-optimised file of Hilbert-ordered tiles: MapLibre reads it over HTTP ranges.
    PmTiles,
}

impl PackageFormat {
    /// A file's: `.mbtiles` or `.pmtiles`; anything else is refused.
    pub fn of(path: &Path) -> Result<PackageFormat, ExportError> {
        path.extension().and_then(|e| e.to_str()).and_then(PackageFormat::named).ok_or_else(|| {
            ExportError::Param(format!("{}: offline packages are written as .pmtiles or .mbtiles", path.display()))
        })
    }

    /// `?format=` over HTTP.
    pub fn parse(s: &str) -> Result<PackageFormat, ExportError> {
        PackageFormat::named(s).ok_or_else(|| ExportError::Param(format!("format {s:?}: expected pmtiles or mbtiles")))
    }

    fn named(s: &str) -> Option<PackageFormat> {
        [PackageFormat::MbTiles, PackageFormat::PmTiles].into_iter().find(|f| s.eq_ignore_ascii_case(f.extension()))
    }

    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::MbTiles => "mbtiles",
            PackageFormat::PmTiles => "pmtiles",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PackageFormat::MbTiles => "application/vnd.sqlite3",
            PackageFormat::PmTiles => "application/vnd.pmtiles",
        }
    }
}

/// Renders `p` from `index` into a new package at `path` (replacing any), in the format its
/// extension names, calling `progress(done, total)` as tiles are rendered. Returns the number of
/// non-empty tiles written.
pub fn write_package(
    index: &CityIndex,
    p: &Package,
    path: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<usize, ExportError> {
    let format = PackageFormat::of(path)?;
    let _ = std::fs::remove_file(path);
    match format {
        PackageFormat::MbTiles => write_mbtiles(index, p, path, progress),
        PackageFormat::PmTiles => write_pmtiles(index, p, path, progress),
    }
}

/// Renders every tile of `p` on every core, a batch at a time, and hands the non-empty ones to
/// `sink` in `coords` order on this thread (a writer needs no lock, and memory stays one batch).
fn render_each(
    index: &CityIndex,
    p: &Package,
    coords: &[TileCoord],
    progress: &(dyn Fn(u64, u64) + Sync),
    mut sink: impl FnMut(TileCoord, &Rendered) -> Result<(), ExportError>,
) -> Result<usize, ExportError> {
    let total = coords.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut written = 0;
    for batch in coords.chunks(4096) {
        let rendered: Vec<(TileCoord, Rendered)> = batch
            .par_iter()
            .map(|&t| {
                let r = Rendered::new(tiles::render(index, t, &p.layers, &p.filters));
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(1024) {
                    progress(n, total);
                }
                (t, r)
            })
            .collect();
        for (t, r) in rendered.iter().filter(|(_, r)| !r.is_empty()) {
            sink(*t, r)?;
            written += 1;
        }
    }
    progress(total, total);
    Ok(written)
}

fn write_mbtiles(
    index: &CityIndex,
    p: &Package,
    path: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<usize, ExportError> {
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE metadata (name TEXT, value TEXT);
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);",
    )?;
    let tx = db.transaction()?;
    let written = {
        let mut insert = tx.prepare("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)")?;
        render_each(index, p, &p.coords(), progress, |t, r| {
            // MBTiles counts rows from the south (TMS).
            let row = (1u64 << t.z) - 1 - u64::from(t.y);
            insert.execute(rusqlite::params![t.z, t.x, row as i64, &r.gzip[..]])?;
            Ok(())
        })?
    };
    for (k, v) in metadata(p) {
        tx.execute("INSERT INTO metadata VALUES (?1, ?2)", rusqlite::params![k, v])?;
    }
    tx.commit()?;
    Ok(written)
}

fn write_pmtiles(
    index: &CityIndex,
    p: &Package,
    path: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<usize, ExportError> {
    use pmtiles::{Compression, PmTilesWriter, TileId, TileType};
    let pm = |e: pmtiles::PmtError| ExportError::Source(format!("PMTiles: {e}"));
    let coord = |t: TileCoord| pmtiles::TileCoord::new(t.z, t.x, t.y).map_err(pm);
    // In tile-id (Hilbert) order, so the archive is clustered and readers fetch neighbours together.
    let mut coords = p.coords();
    coords.sort_by_cached_key(|&t| coord(t).map(|c| TileId::from(c).value()).unwrap_or(u64::MAX));
    let meta: serde_json::Map<String, serde_json::Value> = metadata(p)
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "json" | "bounds" | "center" | "minzoom" | "maxzoom"))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .chain([("vector_layers".to_string(), vector_layers(p).into())])
        .collect();
    let b = p.bbox;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut out = PmTilesWriter::new(TileType::Mvt)
        // The tiles are gzipped once, by the renderer, exactly as /tiles sends them.
        .precompressed(Compression::Gzip)
        .min_zoom(p.minzoom)
        .max_zoom(p.maxzoom)
        .bounds(b[0], b[1], b[2], b[3])
        .center((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
        .center_zoom(center_zoom(p))
        .metadata(serde_json::Value::Object(meta).to_string())
        .create(file)
        .map_err(pm)?;
    let written = render_each(index, p, &coords, progress, |t, r| out.add_tile(coord(t)?, &r.gzip).map_err(pm))?;
    out.finalize().map_err(pm)?;
    Ok(written)
}

fn center_zoom(p: &Package) -> u8 {
    p.maxzoom.min(16).max(p.minzoom)
}

/// The TileJSON `vector_layers` of a package: each layer's fields and zooms.
fn vector_layers(p: &Package) -> Vec<serde_json::Value> {
    p.layers
        .iter()
        .map(|l| {
            let props: &[&str] = Collection::feature(l.source)
                .map(|c| with_model!(c, |T| <T as Record>::TILE_PROPERTIES, &[]))
                .unwrap_or(&[]);
            let mut fields: serde_json::Map<String, serde_json::Value> =
                props.iter().map(|f| (f.to_string(), json!("String"))).collect();
            if l.derived || tiles::aggregate_below(l.id).is_some() {
                fields.insert("count".into(), json!("Number"));
            }
            json!({"id": l.id, "description": l.title, "fields": fields,
                "minzoom": tiles::min_zoom(l.id).max(p.minzoom), "maxzoom": p.maxzoom})
        })
        .collect()
}

/// The MBTiles metadata rows (PMTiles takes the same names into its JSON).
fn metadata(p: &Package) -> Vec<(&'static str, String)> {
    let b = p.bbox;
    let names: Vec<&str> = p.layers.iter().map(|l| l.id).collect();
    vec![
        ("name", format!("onemap {}", names.join(","))),
        ("format", "pbf".to_string()),
        ("type", "overlay".to_string()),
        ("version", "1".to_string()),
        ("description", "城市运行管理服务平台 一张图 offline package".to_string()),
        ("bounds", format!("{},{},{},{}", b[0], b[1], b[2], b[3])),
        ("center", format!("{},{},{}", (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, center_zoom(p))),
        ("minzoom", p.minzoom.to_string()),
        ("maxzoom", p.maxzoom.to_string()),
        ("json", json!({"vector_layers": vector_layers(p)}).to_string()),
    ]
}
