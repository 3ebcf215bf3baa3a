//! Mapbox Vector Tiles (2.1) rendered in-process from the live index: each requested collection
//! becomes one MVT layer named after it, geometry simplified to the tile's pixel size, clipped to
//! the tile plus a buffer, and features smaller than a pixel dropped.

use geo::Geometry;
use geozero::mvt::TileValue;
use geozero::mvt::tile::GeomType;

pub mod cache;
mod draw;
pub mod mlt;
mod pbf;

use draw::Drawer;
pub use pbf::{EncodedLayer, encode_tile};
use pbf::{LayerBuilder, Value};

use crate::geo::tile::{TileCoord, mercator_to_lonlat};
use crate::index::{CityIndex, GeomRef, Layer, Record, pyramid};
use crate::model::Collection;

/// Tile coordinate space, as MapLibre expects.
pub const EXTENT: u32 = 4096;
/// Buffer around the tile, in tile units, so lines and polygon edges join seamlessly.
pub const BUFFER: u32 = 64;

/// The tile buffer at zoom `z`, in mercator metres.
pub fn buffer_m(z: u8) -> f64 {
    2.0 * crate::geo::tile::MERCATOR_HALF_WORLD_M / f64::from(1u32 << z) * BUFFER as f64 / EXTENT as f64
}

/// The tile's mercator bounds grown by the buffer, and the same box in lon/lat for the index.
pub fn buffered_bounds(tile: TileCoord) -> ([f64; 4], [f64; 4]) {
    let [l, b, r, t] = tile.bounds_mercator();
    let pad = buffer_m(tile.z);
    let m = [l - pad, b - pad, r + pad, t + pad];
    let (x0, y0) = mercator_to_lonlat(m[0], m[1]);
    let (x1, y1) = mercator_to_lonlat(m[2], m[3]);
    (m, [x0, y0, x1, y1])
}

/// One MVT layer with the records of `layer` that meet the tile and pass `keep`; `None` when no
/// feature is left.
pub fn encode_layer<T: Record>(layer: &Layer<T>, tile: TileCoord, keep: impl Fn(&T) -> bool) -> Option<EncodedLayer> {
    if tile.z < min_zoom(T::COLLECTION) {
        return None;
    }
    let (_, ll) = buffered_bounds(tile);
    let candidates = layer.envelope_in(ll);
    let mut drawer = Drawer::new(tile);
    let mut out = LayerBuilder::with_capacity(T::COLLECTION, candidates.size_hint().1.unwrap_or(0));
    // Key indices by property position, so features look their keys up without comparing names.
    let mut keys: Vec<Option<u32>> = vec![None; T::TILE_PROPERTIES.len()];
    let (mut geometry, mut tags) = (Vec::new(), Vec::new());
    for (slot, rec) in candidates.filter(|(_, r)| keep(r)) {
        let g = rec.geom_ref();
        let drawn = match g {
            // Only polygonal records have rings projected at load: points skip the lookup.
            GeomRef::Polygon(_) | GeomRef::MultiPolygon(_) => match layer.projected(slot) {
                Some(p) => drawer.draw_projected(p, &mut geometry),
                None => drawer.draw(g, &mut geometry),
            },
            _ => drawer.draw(g, &mut geometry),
        };
        let Some(kind) = drawn else { continue };
        tags.clear();
        for (k, name) in T::TILE_PROPERTIES.iter().enumerate() {
            let Some(value) = rec.tile_prop(k).and_then(Value::of_prop) else { continue };
            let key = *keys[k].get_or_insert_with(|| out.key(name));
            tags.extend([key, out.value(value)]);
        }
        out.feature(rec.tile_id(), kind, &tags, &geometry);
    }
    out.finish()
}

/// One MVT layer named `name` from features in lon/lat with their id and tags, each projected,
/// simplified to the pixel, clipped to the buffered tile and dropped when smaller than a pixel;
/// `None` when no feature is left.
pub fn encode_features<'a>(
    name: &'a str,
    tile: TileCoord,
    features: impl Iterator<Item = (Geometry<f64>, Option<u64>, Vec<(&'a str, TileValue)>)>,
) -> Option<EncodedLayer> {
    let mut drawer = Drawer::new(tile);
    let mut out = LayerBuilder::new(name);
    let (mut geometry, mut tags) = (Vec::new(), Vec::new());
    for (geom, id, props) in features {
        let Some(kind) = drawer.draw((&geom).into(), &mut geometry) else { continue };
        tags.clear();
        for (name, value) in props {
            tags.extend([out.key(name), out.value(value.into())]);
        }
        out.feature(id, kind, &tags, &geometry);
    }
    out.finish()
}

/// Screen pixels across a tile, for "smaller than a pixel" and simplification tolerances.
pub const SCREEN_PX: f64 = 256.0;

/// The lowest zoom at which a layer is drawn at all. A unit grid is about 100 m across, a few
/// pixels at z13; below that a city's 65,000 grids would only be a megabyte-sized blur.
pub fn min_zoom(collection: &str) -> u8 {
    match collection {
        "grids" => 13,
        _ => 0,
    }
}

/// A tile layer: its id, the collection it draws from, its title, and whether it is a derived
/// (always aggregated) layer.
#[derive(Debug, Clone, Copy)]
pub struct TileLayer {
    pub id: &'static str,
    pub source: &'static str,
    pub title: &'static str,
    pub derived: bool,
}

impl TileLayer {
    pub fn find(id: &str) -> Option<TileLayer> {
        let collections = Collection::FEATURES.iter().map(|c| TileLayer {
            id: c.as_str(),
            source: c.as_str(),
            title: c.title(),
            derived: false,
        });
        let derived = DERIVED.iter().map(|d| TileLayer { id: d.0, source: d.1, title: d.2, derived: true });
        collections.chain(derived).find(|l| l.id == id)
    }

    /// Whether the layer is drawn as counts per cell at zoom `z`.
    pub fn counts_at(&self, z: u8) -> bool {
        self.derived || aggregate_below(self.id).is_some_and(|below| z < below)
    }
}

/// Renders one tile from the live index: one MVT layer per requested layer, in order, each
/// with its own filters; `None` when every layer is empty.
pub fn render(
    index: &CityIndex,
    coord: TileCoord,
    ids: &[TileLayer],
    filters: &[Vec<(String, String)>],
) -> Option<Vec<u8>> {
    render_within(index, coord, ids, filters, MAX_TILE_BYTES)
}

/// The most records a tile may visit to be drawn on the request's own runtime thread: at about
/// half a microsecond a record, a millisecond at most, no longer than a page of GeoJSON features
/// takes to write. Larger tiles go to a blocking thread, whose hand-over costs a small tile more
/// than its drawing.
pub const INLINE_RECORDS: usize = 2_000;

/// Whether drawing the tile visits at most [`INLINE_RECORDS`] records (counts answered by a
/// layer's pyramid visit none). Counting stops at the limit, so the answer costs little either way.
pub fn is_small(index: &CityIndex, coord: TileCoord, ids: &[TileLayer], filters: &[Vec<(String, String)>]) -> bool {
    let (_, ll) = buffered_bounds(coord);
    let mut left = INLINE_RECORDS;
    for (tl, filters) in ids.iter().zip(filters) {
        let Some(source) = Collection::feature(tl.source) else { continue };
        let as_counts = tl.counts_at(coord.z);
        let visits = crate::index::with_layer!(
            index,
            source,
            |layer| {
                if as_counts && pyramid_cells(layer, coord, filters).is_some() {
                    0
                } else {
                    layer.count_in(ll, left + 1)
                }
            },
            0
        );
        if visits > left {
            return false;
        }
        left -= visits;
    }
    true
}

/// [`render`] with a size budget in bytes.
fn render_within(
    index: &CityIndex,
    coord: TileCoord,
    ids: &[TileLayer],
    filters: &[Vec<(String, String)>],
    budget: usize,
) -> Option<Vec<u8>> {
    // (position in the request, encoded layer, whether it could be drawn as counts instead)
    let mut out: Vec<(usize, EncodedLayer, bool)> = Vec::new();
    let draw = |i: usize, as_counts: bool| {
        let (tl, filters) = (&ids[i], &filters[i]);
        // Layers are parsed into known ones before rendering.
        let source = Collection::feature(tl.source)?;
        crate::index::with_layer!(
            index,
            source,
            |layer| {
                if as_counts {
                    encode_counts(layer, coord, tl.id, filters)
                } else {
                    encode_layer(layer, coord, |r: &_| Record::matches(r, filters))
                }
            },
            None
        )
    };
    for (i, tl) in ids.iter().enumerate() {
        // Point layers below their aggregation zoom, and derived density layers, are counts
        // per cell. Filters on properties a layer lacks leave that layer alone.
        let counts = tl.counts_at(coord.z);
        if let Some(layer) = draw(i, counts) {
            out.push((i, layer, !counts && aggregate_below(tl.source).is_some()));
        }
    }
    // The size guarantee: while the tile is over budget, the largest layer of single points
    // becomes counts per cell (a hotspot of a million cases at z15 is a blob of points anyway).
    loop {
        let total: usize = out.iter().map(|l| l.1.len()).sum();
        if total <= budget {
            break;
        }
        let Some(k) = out.iter().enumerate().filter(|(_, l)| l.2).max_by_key(|(_, l)| l.1.len()).map(|(k, _)| k) else {
            break;
        };
        let i = out[k].0;
        match draw(i, true) {
            Some(layer) => out[k] = (i, layer, false),
            None => {
                out.remove(k);
            }
        }
    }
    encode_tile(out.into_iter().map(|l| l.1).collect())
}

/// The most a tile may weigh before its point layers are aggregated: under the 500 KB that
/// keeps a big screen fluid, with room for the tile's framing.
pub const MAX_TILE_BYTES: usize = 480 * 1024;

/// Tile layers that are not collections: (id, the collection they aggregate, title).
pub const DERIVED: &[(&str, &str, &str)] = &[("case_density", "cases", "案件密度 Case density (count per cell)")];

/// The derived tile layers drawn from `collection`, which change when it does.
pub fn derived_layers(collection: &str) -> impl Iterator<Item = &'static str> + '_ {
    DERIVED.iter().filter(move |d| d.1 == collection).map(|d| d.0)
}

/// Side of an aggregation cell in tile units: 64 of 4096, so an aggregated tile holds at most
/// 4,096 features whatever the city's size.
pub const CELL: u32 = 64;

/// The zoom below which a point layer is drawn as counts per cell instead of single features:
/// a z10 tile of a ten-million-component city would otherwise carry a million points.
pub fn aggregate_below(collection: &str) -> Option<u8> {
    use crate::index::Record;
    match collection {
        "components" => crate::model::Component::AGGREGATE_BELOW,
        "cases" => crate::model::Case::AGGREGATE_BELOW,
        _ => None,
    }
}

/// The cells of a layer's count pyramid under the tile, where the pyramid answers: no filters,
/// and a zoom it covers.
fn pyramid_cells<'l, T: Record>(
    layer: &'l Layer<T>,
    tile: TileCoord,
    filters: &[(String, String)],
) -> Option<impl Iterator<Item = (&'l u64, &'l pyramid::Cell)>> {
    if !filters.is_empty() {
        return None;
    }
    layer.counts()?.tile_cells(tile.z, tile.x, tile.y)
}

/// Counts per cell of the records that match `filters` and whose representative point (the
/// envelope centre) lies in the tile itself (not the buffer, so no record is counted in two
/// tiles), as one point feature per non-empty cell at the mean position of its records, with a
/// `count` property. The layer is named `name`.
///
/// Without filters, a layer's count pyramid answers from at most 4,096 cells; with filters, or
/// at zooms the pyramid does not cover, the records under the tile are counted. Both place
/// records in cells the same way ([`pyramid::fixed`]), so both give the same tile.
pub fn encode_counts<T: Record>(
    layer: &Layer<T>,
    tile: TileCoord,
    name: &str,
    filters: &[(String, String)],
) -> Option<EncodedLayer> {
    let level = tile.z + pyramid::CELL_BITS;
    let from_pyramid = pyramid_cells(layer, tile, filters);
    let cells: Vec<pyramid::Cell> = match from_pyramid {
        Some(cells) => cells.map(|(_, c)| *c).collect(),
        None => {
            // Keyed like the pyramid (Morton order), so both paths emit features in one order.
            let mut cells: std::collections::BTreeMap<u64, pyramid::Cell> = std::collections::BTreeMap::new();
            let shift = 32 - tile.z as u32;
            for (rec, [cx, cy]) in layer.in_envelope(tile.bounds()) {
                let p = pyramid::fixed(cx, cy);
                if (p.0 as u64) >> shift != tile.x as u64
                    || (p.1 as u64) >> shift != tile.y as u64
                    || !rec.matches(filters)
                {
                    continue;
                }
                cells.entry(pyramid::cell_key(p, level)).or_default().add(p);
            }
            cells.into_values().collect()
        }
    };
    // Fixed-point units per tile, and the tile's origin in them.
    let per_tile = 2f64.powi(32 - tile.z as i32);
    let (ox, oy) = (tile.x as f64 * per_tile, tile.y as f64 * per_tile);
    let to_tile = |sum: u64, n: u64, origin: f64| ((sum as f64 / n as f64 - origin) / per_tile * EXTENT as f64).round();
    let mut out = LayerBuilder::new(name);
    let count = out.key("count");
    for c in cells {
        let tags = [count, out.value(Value::Uint(c.n))];
        let (x, y) = (to_tile(c.sx, c.n, ox) as i32, to_tile(c.sy, c.n, oy) as i32);
        out.feature(None, GeomType::Point, &tags, &draw::point(x, y));
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use geozero::mvt::{Message, Tile};

    use super::*;

    #[test]
    fn the_count_pyramid_and_a_full_count_draw_the_same_tile() {
        let mut city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        // Every case at version 1, so that a filter on it keeps all and forces the full count.
        city.cases.iter_mut().for_each(|c| c.version = 1);
        let mut layer = Layer::bulk(city.cases.clone());
        // Live changes keep the pyramid in step: move one case, remove another.
        let mut moved = city.cases[0].clone();
        moved.geom = city.cases[1].geom;
        layer.upsert(moved);
        layer.remove(&city.cases[2].id.to_string());
        let p = city.cases[1].geom;
        let all = [("version".to_string(), "1".to_string())];
        for z in 6..15u8 {
            let t = crate::geo::tile::tiles_covering([p.x(), p.y(), p.x(), p.y()], z).next().unwrap();
            let fast = encode_counts(&layer, t, "cases", &[]).expect("cases here");
            let full = encode_counts(&layer, t, "cases", &all).expect("cases here");
            assert_eq!(fast, full, "z{z}");
        }
    }

    #[test]
    fn a_tile_over_budget_draws_its_points_as_counts() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let p = city.cases[0].geom;
        let index = CityIndex::from_city(city);
        let t = crate::geo::tile::tiles_covering([p.x(), p.y(), p.x(), p.y()], 15).next().unwrap();
        let ids = [TileLayer::find("grids").unwrap(), TileLayer::find("cases").unwrap()];
        let filters = [vec![], vec![]];
        let decode = |b: Vec<u8>| Tile::decode(&b[..]).unwrap();
        let full_bytes = render(&index, t, &ids, &filters).unwrap();
        let full = decode(full_bytes.clone());
        let cases = |tile: &Tile| tile.layers.iter().find(|l| l.name == "cases").cloned().unwrap();
        assert!(cases(&full).keys.iter().any(|k| k == "status"), "single cases at z15");
        let grids_size = full.layers.iter().find(|l| l.name == "grids").unwrap().encoded_len();
        let small = render_within(&index, t, &ids, &filters, grids_size + 200).unwrap();
        assert!(small.len() < full_bytes.len(), "{} < {}", small.len(), full_bytes.len());
        let small = decode(small);
        assert_eq!(small.layers[0].name, "grids", "layer order kept");
        assert_eq!(cases(&small).keys, ["count"], "cases became counts");
    }

    #[test]
    fn small_tiles_are_told_from_large_ones() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let p = city.components[0].envelope().lower();
        let index = CityIndex::from_city(city);
        let at = |z| crate::geo::tile::tiles_covering([p[0], p[1], p[0], p[1]], z).next().unwrap();
        let components = [TileLayer::find("components").unwrap()];
        let status = vec![vec![("status".to_string(), "完好".to_string())]];
        assert!(is_small(&index, at(18), &components, &[vec![]]), "a z18 tile holds a few components");
        assert!(is_small(&index, at(8), &components, &[vec![]]), "the count pyramid answers z8");
        assert!(!is_small(&index, at(8), &components, &status), "a filtered z8 count visits every component");
    }

    #[test]
    fn buffer_grows_the_tile_on_every_side() {
        let t = TileCoord::new(14, 12_236, 6_793).unwrap();
        let inner = t.bounds();
        let (_, outer) = buffered_bounds(t);
        assert!(outer[0] < inner[0] && outer[1] < inner[1] && outer[2] > inner[2] && outer[3] > inner[3]);
    }
}
