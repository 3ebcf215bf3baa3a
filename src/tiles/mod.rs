//! Mapbox Vector Tiles (2.1) rendered in-process from the live index: each requested collection
//! becomes one MVT layer named after it, geometry simplified to the tile's pixel size, clipped to
//! the tile plus a buffer, and features smaller than a pixel dropped.

use geo::orient::{Direction, Orient};
use geo::{Area, BooleanOps, BoundingRect, Geometry, MapCoords, MultiPolygon, Polygon, Rect, Simplify};
use geozero::ToMvt;
use geozero::mvt::{Message, TagsBuilder, Tile, TileValue, tile};

pub mod cache;
pub mod mlt;

use crate::geo::tile::{TileCoord, lonlat_to_mercator, mercator_to_lonlat};
use crate::index::{CityIndex, Layer, PropValue, Record, pyramid};
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
pub fn encode_layer<T: Record>(layer: &Layer<T>, tile: TileCoord, keep: impl Fn(&T) -> bool) -> Option<tile::Layer> {
    if tile.z < min_zoom(T::COLLECTION) {
        return None;
    }
    let (_, ll) = buffered_bounds(tile);
    let features = layer.in_bbox(ll).into_iter().filter(|r| keep(r)).map(|rec| {
        let tags = T::TILE_PROPERTIES.iter().filter_map(|&name| {
            let value = match rec.prop(name)? {
                PropValue::Str(s) => TileValue::Str(s.to_string()),
                PropValue::Owned(s) => TileValue::Str(s),
                PropValue::Num(n) => TileValue::Double(n),
                PropValue::Int(n) => TileValue::Sint(n),
                PropValue::Bool(b) => TileValue::Bool(b),
                PropValue::Null => return None,
            };
            Some((name, value))
        });
        (rec.geometry(), rec.key().parse::<u64>().ok(), tags.collect())
    });
    encode_features(T::COLLECTION, tile, features)
}

/// One MVT layer named `name` from features in lon/lat with their id and tags, each projected,
/// simplified to the pixel, clipped to the buffered tile and dropped when smaller than a pixel;
/// `None` when no feature is left.
pub fn encode_features<'a>(
    name: &str,
    tile: TileCoord,
    features: impl Iterator<Item = (Geometry<f64>, Option<u64>, Vec<(&'a str, TileValue)>)>,
) -> Option<tile::Layer> {
    let [l, b, r, t] = tile.bounds_mercator();
    let (m, _) = buffered_bounds(tile);
    // A screen pixel of a 256-pixel tile: what a viewer can see, not the finer tile unit.
    let pixel = (r - l) / SCREEN_PX;
    let clip = Rect::new((m[0], m[1]), (m[2], m[3])).to_polygon();
    let mut tags = TagsBuilder::new();
    let mut out = Vec::new();
    for (geom, id, props) in features {
        let Some(geom) = shape_for_tile(geom, &clip, pixel) else { continue };
        let Some(geom) = to_tile_space(geom, [l, b, r, t]) else { continue };
        let Ok(mut feature) = geom.to_mvt_unscaled() else { continue };
        if feature.geometry.is_empty() {
            continue;
        }
        feature.id = id;
        for (name, value) in props {
            let (k, v) = tags.insert_ref(name, value);
            feature.tags.extend([k, v]);
        }
        out.push(feature);
    }
    finish_layer(name, out, tags)
}

/// An MVT layer from its features and their tag dictionary; `None` without features.
fn finish_layer(name: &str, features: Vec<tile::Feature>, tags: TagsBuilder) -> Option<tile::Layer> {
    if features.is_empty() {
        return None;
    }
    let (keys, values) = tags.into_tags();
    Some(tile::Layer {
        version: 2,
        name: name.to_string(),
        features,
        keys,
        values: values.into_iter().map(Into::into).collect(),
        extent: Some(EXTENT),
    })
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

/// [`render`] with a size budget in bytes.
fn render_within(
    index: &CityIndex,
    coord: TileCoord,
    ids: &[TileLayer],
    filters: &[Vec<(String, String)>],
    budget: usize,
) -> Option<Vec<u8>> {
    // (position in the request, encoded layer, whether it could be drawn as counts instead)
    let mut out: Vec<(usize, tile::Layer, bool)> = Vec::new();
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
        let total: usize = out.iter().map(|l| l.1.encoded_len()).sum();
        if total <= budget {
            break;
        }
        let Some(k) =
            out.iter().enumerate().filter(|(_, l)| l.2).max_by_key(|(_, l)| l.1.encoded_len()).map(|(k, _)| k)
        else {
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
) -> Option<tile::Layer> {
    let level = tile.z + pyramid::CELL_BITS;
    let from_pyramid =
        if filters.is_empty() { layer.counts().and_then(|p| p.tile_cells(tile.z, tile.x, tile.y)) } else { None };
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
    let mut tags = TagsBuilder::new();
    let features: Vec<tile::Feature> = cells
        .into_iter()
        .filter_map(|c| {
            let p: Geometry<f64> = geo::Point::new(to_tile(c.sx, c.n, ox), to_tile(c.sy, c.n, oy)).into();
            let mut f = p.to_mvt_unscaled().ok()?;
            let (k, v) = tags.insert_ref("count", TileValue::Uint(c.n));
            f.tags.extend([k, v]);
            Some(f)
        })
        .collect();
    finish_layer(name, features, tags)
}

/// Projects to web mercator, simplifies to a pixel, drops what is smaller than a pixel, and clips
/// areas to the buffered tile.
fn shape_for_tile(g: Geometry<f64>, clip: &Polygon<f64>, pixel: f64) -> Option<Geometry<f64>> {
    let g = g.map_coords(|c| {
        let (x, y) = lonlat_to_mercator(c.x, c.y);
        geo::coord! { x: x, y: y }
    });
    let areal = |mp: MultiPolygon<f64>| -> Option<Geometry<f64>> {
        let bb = mp.bounding_rect()?;
        if bb.width() < pixel && bb.height() < pixel {
            return None;
        }
        let simplified = mp.simplify(pixel / 2.0);
        let clipped = simplified.intersection(&MultiPolygon(vec![clip.clone()]));
        (!clipped.0.is_empty()).then_some(Geometry::MultiPolygon(clipped))
    };
    match g {
        Geometry::Point(_) | Geometry::MultiPoint(_) => Some(g),
        Geometry::Polygon(p) => areal(MultiPolygon(vec![p])),
        Geometry::MultiPolygon(mp) => areal(mp),
        other => Some(other),
    }
}

/// Moves mercator geometry into integer tile coordinates (y down) and repairs what rounding
/// breaks: repeated vertices are dropped, and rings left with fewer than three distinct
/// vertices or no area are dropped with them, so every ring a decoder sees is well formed.
fn to_tile_space(g: Geometry<f64>, [l, b, r, t]: [f64; 4]) -> Option<Geometry<f64>> {
    let (sx, sy) = (EXTENT as f64 / (r - l), EXTENT as f64 / (t - b));
    let g = g.map_coords(|c| geo::coord! { x: ((c.x - l) * sx).round(), y: ((t - c.y) * sy).round() });
    let ring = |ls: &geo::LineString<f64>| -> Option<geo::LineString<f64>> {
        let mut pts: Vec<geo::Coord<f64>> = Vec::with_capacity(ls.0.len());
        for c in &ls.0 {
            if pts.last() != Some(c) {
                pts.push(*c);
            }
        }
        let closed = geo::LineString(pts);
        (closed.0.len() >= 4 && geo::Polygon::new(closed.clone(), vec![]).unsigned_area() > 0.0).then_some(closed)
    };
    // MVT wants exterior rings with positive signed area in tile coordinates (clockwise on
    // screen, y down) and holes negative: geo's default orientation, applied after the flip.
    let poly = |p: &Polygon<f64>| -> Option<Polygon<f64>> {
        let p = Polygon::new(ring(p.exterior())?, p.interiors().iter().filter_map(ring).collect());
        Some(p.orient(Direction::Default))
    };
    match g {
        Geometry::Polygon(p) => poly(&p).map(Geometry::Polygon),
        Geometry::MultiPolygon(mp) => {
            let parts: Vec<Polygon<f64>> = mp.0.iter().filter_map(poly).collect();
            (!parts.is_empty()).then_some(Geometry::MultiPolygon(MultiPolygon(parts)))
        }
        other => Some(other),
    }
}

/// A whole tile from already-encoded layers; `None` when every layer was empty.
pub fn encode_tile(layers: Vec<tile::Layer>) -> Option<Vec<u8>> {
    (!layers.is_empty()).then(|| Tile { layers }.encode_to_vec())
}

#[cfg(test)]
mod tests {
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
    fn buffer_grows_the_tile_on_every_side() {
        let t = TileCoord::new(14, 12_236, 6_793).unwrap();
        let inner = t.bounds();
        let (_, outer) = buffered_bounds(t);
        assert!(outer[0] < inner[0] && outer[1] < inner[1] && outer[2] > inner[2] && outer[3] > inner[3]);
    }

    #[test]
    fn sub_pixel_polygons_are_dropped_and_big_ones_clipped() {
        let clip = Rect::new((0.0, 0.0), (100.0, 100.0)).to_polygon();
        let tiny: Geometry<f64> = Rect::new((10.0, 10.0), (10.0001, 10.0001)).to_polygon().into();
        // Geometry is given in lon/lat; keep it tiny in mercator metres too.
        assert!(shape_for_tile(tiny, &clip, 1.0).is_none());
        let big: Geometry<f64> = Rect::new((-1.0, -1.0), (1.0, 1.0)).to_polygon().into();
        let clipped = shape_for_tile(big, &clip, 0.5).unwrap();
        let bb = clipped.bounding_rect().unwrap();
        assert!(bb.min().x >= 0.0 && bb.max().x <= 100.0 && bb.max().y <= 100.0);
    }
}
