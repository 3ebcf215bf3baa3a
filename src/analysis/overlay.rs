//! The analysis overlays as vector tiles: `hotspots` (the units of the latest Gi* analysis with
//! their bins) and `density` (a kernel density grid sampled as heat points). They are drawn from
//! results the analysis module keeps, not from the index, so the tile cache does not hold them.

use geozero::mvt::TileValue;

use super::Hotspots;
use super::density::Grid;
use crate::geo::tile::{TileCoord, mercator_to_lonlat};
use crate::tiles::{CELL, EXTENT, encode_features, encode_tile};

/// The properties the `hotspots` layer carries.
pub const HOTSPOT_FIELDS: &[&str] = &["code", "name", "count", "z", "p", "bin"];

/// The units of a Gi* result that meet the tile, with `code`, `name`, `count`, `z`, `p`, `bin`.
pub fn hotspots(h: &Hotspots, tile: TileCoord) -> Option<Vec<u8>> {
    let (_, ll) = crate::tiles::buffered_bounds(tile);
    let units = &h.units;
    let gi = h.gi.as_ref()?;
    let bins = h.bins.as_ref()?;
    let features = units.in_bbox(ll).map(|i| {
        let mut tags = vec![
            ("code", TileValue::Str(units.codes[i].to_string())),
            ("name", TileValue::Str(units.names[i].to_string())),
            ("count", TileValue::Double(h.counts[i])),
            ("bin", TileValue::Sint(bins[i] as i64)),
        ];
        if let (Some(z), Some(p)) = (gi[i].z, gi[i].p) {
            tags.extend([("z", TileValue::Double(z)), ("p", TileValue::Double(p))]);
        }
        (units.geoms[i].clone().into(), None, tags)
    });
    encode_tile(encode_features("hotspots", tile, features).into_iter().collect())
}

/// Heat points of a density grid: one per non-empty 64-unit cell of the tile, at the cell's
/// centre, with the grid's `density` there (per km²) and `weight` (density over the grid's
/// maximum, 0 to 1, for a heatmap layer).
pub fn density(g: &Grid, tile: TileCoord) -> Option<Vec<u8>> {
    let [l, b, r, t] = tile.bounds_mercator();
    let per_side = EXTENT / CELL;
    let step = (r - l) / per_side as f64;
    let mut features = Vec::new();
    for row in 0..per_side {
        for col in 0..per_side {
            let (mx, my) = (l + (col as f64 + 0.5) * step, t - (row as f64 + 0.5) * step);
            if my < b {
                continue;
            }
            let (lon, lat) = mercator_to_lonlat(mx, my);
            let (x, y) = g.projection.forward(lon, lat);
            let v = g.at(x, y);
            if v <= 0.0 {
                continue;
            }
            let tags = vec![("density", TileValue::Double(v)), ("weight", TileValue::Double(v / g.max))];
            features.push((geo::Point::new(lon, lat).into(), None, tags));
        }
    }
    encode_tile(encode_features("density", tile, features.into_iter()).into_iter().collect())
}
