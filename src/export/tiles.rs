//! Offline tile packages for field apps and planners: the live vector tiles of an area and a
//! zoom range written to an MBTiles file (SQLite, gzipped MVT, TMS row order), rendered in
//! parallel from the same index and the same renderer as `/tiles`, so each tile is the one a
//! server gives for the same data.

use std::path::Path;

use rayon::prelude::*;
use serde_json::json;

use super::ExportError;
use crate::geo::tile::{MAX_ZOOM, TileCoord, tile_range, tiles_covering};
use crate::index::{CityIndex, Record};
use crate::model::{Collection, with_model};
use crate::tiles::cache::Rendered;
use crate::tiles::{self, TileLayer};

/// The most tiles one package may hold: z12-z16 of a city of 1,000 km² is about 60,000.
pub const MAX_TILES: usize = 2_000_000;

/// What to package.
#[derive(Debug, Clone)]
pub struct Package {
    pub layers: Vec<TileLayer>,
    /// lon/lat.
    pub bbox: [f64; 4],
    pub minzoom: u8,
    pub maxzoom: u8,
}

impl Package {
    /// Checks layer ids (comma-separated), zooms and the tile count.
    pub fn new(layers: &str, bbox: [f64; 4], minzoom: u8, maxzoom: u8) -> Result<Package, ExportError> {
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
        let p = Package { layers: ids, bbox, minzoom, maxzoom };
        // Counted from the corners, not listed: a world-wide bbox at z20 has 10^11 tiles.
        let n: u64 = (minzoom..=maxzoom)
            .map(|z| {
                let (c0, c1, r0, r1) = tile_range(bbox, z);
                (c1 - c0 + 1).saturating_mul(r1 - r0 + 1)
            })
            .fold(0u64, u64::saturating_add);
        if n > MAX_TILES as u64 {
            return Err(ExportError::Param(format!(
                "{n} tiles, more than {MAX_TILES} one package may hold: narrow the bbox or the zooms"
            )));
        }
        Ok(p)
    }

    /// Every tile of the package, zoom by zoom.
    pub fn coords(&self) -> Vec<TileCoord> {
        (self.minzoom..=self.maxzoom).flat_map(|z| tiles_covering(self.bbox, z)).collect()
    }
}

/// Renders `p` from `index` into a new MBTiles file at `path` (replacing any), calling
/// `progress(done, total)` as tiles are rendered. Returns the number of non-empty tiles written.
pub fn write_mbtiles(
    index: &CityIndex,
    p: &Package,
    path: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<usize, ExportError> {
    let coords = p.coords();
    let total = coords.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let none: Vec<Vec<(String, String)>> = vec![Vec::new(); p.layers.len()];
    let _ = std::fs::remove_file(path);
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE metadata (name TEXT, value TEXT);
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);",
    )?;
    let tx = db.transaction()?;
    let mut written = 0;
    {
        let mut insert = tx.prepare("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)")?;
        // A batch at a time: rendered on every core, then written in order by this thread.
        for batch in coords.chunks(4096) {
            let rendered: Vec<(TileCoord, Rendered)> = batch
                .par_iter()
                .map(|&t| {
                    let r = Rendered::new(tiles::render(index, t, &p.layers, &none));
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_multiple_of(1024) {
                        progress(n, total);
                    }
                    (t, r)
                })
                .collect();
            for (t, r) in rendered.into_iter().filter(|(_, r)| !r.is_empty()) {
                // MBTiles counts rows from the south (TMS).
                let row = (1u64 << t.z) - 1 - u64::from(t.y);
                insert.execute(rusqlite::params![t.z, t.x, row as i64, &r.gzip[..]])?;
                written += 1;
            }
        }
    }
    let b = p.bbox;
    let vector_layers: Vec<serde_json::Value> = p
        .layers
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
        .collect();
    let names: Vec<&str> = p.layers.iter().map(|l| l.id).collect();
    let meta = [
        ("name", format!("onemap {}", names.join(","))),
        ("format", "pbf".to_string()),
        ("type", "overlay".to_string()),
        ("version", "1".to_string()),
        ("description", "城市运行管理服务平台 一张图 offline package".to_string()),
        ("bounds", format!("{},{},{},{}", b[0], b[1], b[2], b[3])),
        ("center", format!("{},{},{}", (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, p.maxzoom.min(16).max(p.minzoom))),
        ("minzoom", p.minzoom.to_string()),
        ("maxzoom", p.maxzoom.to_string()),
        ("json", json!({"vector_layers": vector_layers}).to_string()),
    ];
    for (k, v) in meta {
        tx.execute("INSERT INTO metadata VALUES (?1, ?2)", rusqlite::params![k, v])?;
    }
    tx.commit()?;
    progress(total, total);
    Ok(written)
}
