//! Aggregation units and their neighbour graphs: unit grids, communities, streets and districts
//! from the live index (queen contiguity: units that share at least one boundary point), and H3
//! cells covering the city at any resolution (neighbours: the ring-1 disk). Built once per
//! hierarchy generation and kept, since the geometry changes far less often than the counts.

use hashbrown::HashMap;
use std::sync::OnceLock;

use parking_lot::RwLock;

use geo::{BoundingRect, GeodesicArea, Intersects, MultiPolygon};
use h3o::geom::{ContainmentMode, TilerBuilder};
use h3o::{CellIndex, LatLng, Resolution};
use rayon::prelude::*;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree, RTreeObject};

use super::AnalysisError;
use super::stats::Neighbours;
use crate::index::{CityIndex, Layer, Record};
use crate::model::Str;

/// What counts are aggregated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitKind {
    Grid,
    Community,
    Street,
    District,
    H3(Resolution),
}

/// The most H3 cells one analysis may cover: about a resolution-11 cover of a Chongqing-sized
/// city's built-up area; finer resolutions over a whole city are refused rather than run for
/// minutes.
pub const MAX_H3_CELLS: usize = 2_000_000;

impl UnitKind {
    /// `grid`, `community`, `street`, `district` or `h3:<0-15>`.
    pub fn parse(s: &str) -> Result<UnitKind, AnalysisError> {
        Ok(match s {
            "grid" => UnitKind::Grid,
            "community" => UnitKind::Community,
            "street" => UnitKind::Street,
            "district" => UnitKind::District,
            _ => {
                let Some(r) = s.strip_prefix("h3:") else {
                    return Err(AnalysisError::UnknownUnit(s.to_string()));
                };
                let res = r
                    .parse::<u8>()
                    .ok()
                    .and_then(|r| Resolution::try_from(r).ok())
                    .ok_or_else(|| AnalysisError::H3Resolution(r.to_string()))?;
                UnitKind::H3(res)
            }
        })
    }

    pub fn as_str(&self) -> String {
        match self {
            UnitKind::Grid => "grid".into(),
            UnitKind::Community => "community".into(),
            UnitKind::Street => "street".into(),
            UnitKind::District => "district".into(),
            UnitKind::H3(r) => format!("h3:{}", u8::from(*r)),
        }
    }
}

type Envelope = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// A set of units with their geometry and neighbours, indexed `0..len()`.
pub struct Units {
    pub kind: UnitKind,
    pub codes: Vec<Str>,
    pub names: Vec<Str>,
    pub geoms: Vec<MultiPolygon<f64>>,
    /// Each unit's geometry as GeoJSON text, rendered on first use: answers of 65,000 polygons
    /// are then string concatenation rather than serialisation.
    geom_json: OnceLock<Vec<Box<str>>>,
    /// Geodesic area in m².
    pub area_m2: Vec<f64>,
    /// Found on first use: rankings need the units but not their neighbours.
    neighbours: OnceLock<Neighbours>,
    /// H3 units: the cells, whose ring-1 disks are the neighbours.
    cells: Vec<CellIndex>,
    by_code: HashMap<Str, u32>,
    /// Administrative units: the unit holding each unit grid, by grid code.
    by_grid: HashMap<Str, u32>,
    /// H3 units: the unit of each cell.
    by_cell: HashMap<u64, u32>,
    /// H3 units: the unit of each point seen (by its coordinates' bits; [`NO_UNIT`] outside).
    /// Finding a point's cell costs about half a microsecond, a million cases half a second;
    /// the points of cases rarely move, so later analyses look them up instead.
    point_units: RwLock<HashMap<(u64, u64), u32>>,
    tree: RTree<Envelope>,
}

/// Points remembered per H3 unit set: a city year's cases and alarms, not ten million components.
const MAX_REMEMBERED_POINTS: usize = 1_500_000;

/// The remembered unit of a point outside every unit.
const NO_UNIT: u32 = u32::MAX;

impl Units {
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The neighbour graph: queen contiguity, or the ring-1 disk for H3 cells.
    pub fn neighbours(&self) -> &Neighbours {
        self.neighbours.get_or_init(|| match self.kind {
            UnitKind::H3(_) => {
                let lists: Vec<Vec<u32>> = self
                    .cells
                    .par_iter()
                    .map(|c| {
                        c.grid_disk::<Vec<_>>(1)
                            .into_iter()
                            .filter_map(|n| self.by_cell.get(&u64::from(n)).copied())
                            .collect()
                    })
                    .collect();
                Neighbours::from_lists(lists)
            }
            _ => queen(&self.geoms),
        })
    }

    /// Unit `i`'s geometry as GeoJSON text.
    pub fn geom_json(&self, i: usize) -> &str {
        &self.geom_json.get_or_init(|| self.geoms.par_iter().map(multipolygon_json).collect())[i]
    }

    pub fn index_of(&self, code: &str) -> Option<usize> {
        self.by_code.get(code).map(|&i| i as usize)
    }

    /// The unit of a record that lies in unit grid `grid` (when known) at `lon`, `lat`.
    pub fn unit_of(&self, grid: Option<&str>, lon: f64, lat: f64) -> Option<usize> {
        match self.kind {
            UnitKind::H3(res) => self.cell_unit(res, lon, lat).map(|i| i as usize),
            _ => grid.and_then(|g| self.by_grid.get(g)).map(|&i| i as usize),
        }
    }

    /// The H3 unit whose cell at `res` holds the point.
    fn cell_unit(&self, res: Resolution, lon: f64, lat: f64) -> Option<u32> {
        let cell = LatLng::new(lat, lon).ok()?.to_cell(res);
        self.by_cell.get(&u64::from(cell)).copied()
    }

    /// The unit of each point (lon, lat), for H3 units: remembered points are looked up, the
    /// others found in parallel and remembered while there is room.
    pub fn h3_units_of(&self, points: &[(f64, f64)]) -> Vec<Option<u32>> {
        let UnitKind::H3(res) = self.kind else { return points.iter().map(|_| None).collect() };
        let key = |&(lon, lat): &(f64, f64)| (lon.to_bits(), lat.to_bits());
        let found: Vec<(u32, bool)> = {
            let known = self.point_units.read();
            points
                .par_iter()
                .map(|p| match known.get(&key(p)) {
                    Some(&u) => (u, false),
                    None => (self.cell_unit(res, p.0, p.1).unwrap_or(NO_UNIT), true),
                })
                .collect()
        };
        let mut known = self.point_units.write();
        for (p, &(u, new)) in points.iter().zip(&found) {
            if new && known.len() < MAX_REMEMBERED_POINTS {
                known.insert(key(p), u);
            }
        }
        drop(known);
        found.into_iter().map(|(u, _)| (u != NO_UNIT).then_some(u)).collect()
    }

    /// The box `[minx, miny, maxx, maxy]` around every unit, `None` without units.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        (self.tree.size() > 0).then(|| {
            let e = self.tree.root().envelope();
            [e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1]]
        })
    }

    /// Units whose envelope meets the box `[minx, miny, maxx, maxy]`.
    pub fn in_bbox(&self, b: [f64; 4]) -> impl Iterator<Item = usize> + '_ {
        self.tree
            .locate_in_envelope_intersecting(&AABB::from_corners([b[0], b[1]], [b[2], b[3]]))
            .map(|e| e.data as usize)
    }

    /// Administrative units from one layer of the index. `parent_of_grid` maps each grid to the
    /// code of its unit in this layer.
    fn admin<T: Record>(
        kind: UnitKind,
        layer: &Layer<T>,
        geom: impl Fn(&T) -> MultiPolygon<f64>,
        by_grid: HashMap<Str, Str>,
    ) -> Units {
        let records: Vec<&T> = layer.iter().collect();
        let codes: Vec<Str> = records.iter().map(|r| r.key()).collect();
        let names = records
            .iter()
            .map(|r| match r.prop("name") {
                Some(crate::index::PropValue::Str(s)) => Str::from(s),
                _ => Str::default(),
            })
            .collect();
        let geoms: Vec<MultiPolygon<f64>> = records.iter().map(|r| geom(r)).collect();
        Units::finish(kind, codes, names, geoms, Vec::new(), by_grid)
    }

    /// The units with their lookups: by code, by the code of each unit grid in `grid_units`
    /// (grid code to unit code), and by H3 cell when `cells` are the units.
    fn finish(
        kind: UnitKind,
        codes: Vec<Str>,
        names: Vec<Str>,
        geoms: Vec<MultiPolygon<f64>>,
        cells: Vec<CellIndex>,
        grid_units: HashMap<Str, Str>,
    ) -> Units {
        let by_code: HashMap<Str, u32> = codes.iter().enumerate().map(|(i, c)| (c.clone(), i as u32)).collect();
        let by_grid = grid_units.into_iter().filter_map(|(g, u)| by_code.get(&u).map(|&i| (g, i))).collect();
        let by_cell = cells.iter().enumerate().map(|(i, c)| (u64::from(*c), i as u32)).collect();
        let area_m2 = geoms.par_iter().map(|g| g.geodesic_area_unsigned()).collect();
        let tree = envelope_tree(&geoms);
        Units {
            kind,
            codes,
            names,
            geoms,
            geom_json: OnceLock::new(),
            area_m2,
            neighbours: OnceLock::new(),
            cells,
            by_code,
            by_grid,
            by_cell,
            point_units: RwLock::new(HashMap::new()),
            tree,
        }
    }

    /// Builds the units of `kind` from the live index.
    pub fn build(index: &CityIndex, kind: UnitKind) -> Result<Units, AnalysisError> {
        let grids = index.grids.read();
        Ok(match kind {
            UnitKind::Grid => {
                let by_grid = grids.iter().map(|g| (g.code.clone(), g.code.clone())).collect();
                Units::admin(kind, &grids, |g| MultiPolygon(vec![g.geom.clone()]), by_grid)
            }
            UnitKind::Community => {
                let by_grid = grids.iter().map(|g| (g.code.clone(), g.community_code.clone())).collect();
                Units::admin(kind, &index.communities.read(), |c| c.geom.clone(), by_grid)
            }
            UnitKind::Street => {
                let communities = index.communities.read();
                let by_grid = grids
                    .iter()
                    .filter_map(|g| Some((g.code.clone(), communities.get(&g.community_code)?.street_code.clone())))
                    .collect();
                Units::admin(kind, &index.streets.read(), |s| s.geom.clone(), by_grid)
            }
            UnitKind::District => {
                let (communities, streets) = (index.communities.read(), index.streets.read());
                let by_grid = grids
                    .iter()
                    .filter_map(|g| {
                        let street = &communities.get(&g.community_code)?.street_code;
                        Some((g.code.clone(), streets.get(street)?.district_code.clone()))
                    })
                    .collect();
                Units::admin(kind, &index.districts.read(), |d| d.geom.clone(), by_grid)
            }
            UnitKind::H3(res) => {
                // The city is its unit grids, which tile it: small polygons tile far faster than
                // the district outlines dissolved from them (thousands of vertices each).
                let polygons: Vec<geo::Polygon<f64>> = grids.iter().map(|g| g.geom.clone()).collect();
                drop(grids);
                Units::h3(res, &polygons)?
            }
        })
    }

    /// The H3 cells at `res` that cover the polygons (every cell meeting one, so no part of the
    /// city is left out), with the ring-1 disk as neighbours. Each polygon is tiled on its own,
    /// in parallel: the cover of a union is the union of the covers.
    pub fn h3(res: Resolution, polygons: &[geo::Polygon<f64>]) -> Result<Units, AnalysisError> {
        // Refuse a resolution too fine for the area before tiling it: at least area / cell area.
        let area: f64 = polygons.par_iter().map(|p| p.geodesic_area_unsigned()).sum();
        let estimate = (area / res.area_m2()) as usize;
        if estimate > MAX_H3_CELLS {
            return Err(AnalysisError::TooManyCells { res: res.into(), cells: estimate });
        }
        let mut cells: Vec<CellIndex> = polygons
            .par_iter()
            .map(|p| {
                let mut tiler = TilerBuilder::new(res).containment_mode(ContainmentMode::Covers).build();
                tiler.add(p.clone()).map_err(|e| AnalysisError::Geometry(format!("unit polygon: {e}")))?;
                Ok(tiler.into_coverage().collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>, AnalysisError>>()?
            .into_iter()
            .flatten()
            .collect();
        cells.par_sort_unstable();
        cells.dedup();
        Units::from_cells(res, cells)
    }

    /// Units from an explicit set of H3 cells (all at `res`).
    pub fn from_cells(res: Resolution, cells: Vec<CellIndex>) -> Result<Units, AnalysisError> {
        if cells.len() > MAX_H3_CELLS {
            return Err(AnalysisError::TooManyCells { res: res.into(), cells: cells.len() });
        }
        let codes: Vec<Str> = cells.iter().map(|c| Str::from(c.to_string())).collect();
        let geoms = cells.par_iter().map(|c| MultiPolygon::from(*c)).collect();
        Ok(Units::finish(UnitKind::H3(res), codes.clone(), codes, geoms, cells, HashMap::new()))
    }

    /// Units from explicit polygons (for fixtures and tests): queen contiguity between them.
    pub fn from_polygons(codes: Vec<Str>, geoms: Vec<MultiPolygon<f64>>) -> Units {
        let grid_units = codes.iter().map(|c| (c.clone(), c.clone())).collect();
        Units::finish(UnitKind::Grid, codes.clone(), codes, geoms, Vec::new(), grid_units)
    }
}

/// Queen contiguity: units that share at least one boundary point. Units sharing a vertex (the
/// common case in a survey's tiling, found by hashing vertices) are neighbours at once; other
/// pairs whose envelopes meet are tested exactly, which also catches a vertex on the middle of
/// another unit's edge.
pub fn queen(geoms: &[MultiPolygon<f64>]) -> Neighbours {
    // Every vertex with its unit, sorted so that units meeting at a vertex lie side by side: a
    // sort of a few hundred thousand triples in parallel, where a map of vertex to units cost a
    // small vector per vertex.
    let mut vertices: Vec<(u64, u64, u32)> = geoms
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, g)| {
            g.0.iter()
                .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
                .flat_map(|ring| ring.0.iter())
                .map(move |c| (c.x.to_bits(), c.y.to_bits(), i as u32))
        })
        .collect();
    vertices.par_sort_unstable();
    vertices.dedup();
    let mut pairs: Vec<(u32, u32)> = vertices
        .chunk_by(|a, b| (a.0, a.1) == (b.0, b.1))
        .filter(|units| units.len() > 1)
        .flat_map(|units| units.iter().flat_map(move |a| units.iter().filter(move |b| b.2 != a.2).map(|b| (a.2, b.2))))
        .collect();
    drop(vertices);
    pairs.par_sort_unstable();
    pairs.dedup();
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); geoms.len()];
    for (a, b) in pairs {
        lists[a as usize].push(b);
    }
    let tree = envelope_tree(geoms);
    let extra: Vec<(u32, u32)> = tree
        .iter()
        .par_bridge()
        .flat_map_iter(|e| {
            let i = e.data;
            let env = e.geom().envelope();
            tree.locate_in_envelope_intersecting(&env)
                .map(|o| o.data)
                .filter(|&j| j > i && lists[i as usize].binary_search(&j).is_err())
                .filter(|&j| geoms[i as usize].intersects(&geoms[j as usize]))
                .map(|j| (i, j))
                .collect::<Vec<_>>()
        })
        .collect();
    for (i, j) in extra {
        lists[i as usize].push(j);
        lists[j as usize].push(i);
    }
    Neighbours::from_lists(lists)
}

/// An R-tree of the units' envelopes, each with its unit's index.
fn envelope_tree(geoms: &[MultiPolygon<f64>]) -> RTree<Envelope> {
    RTree::bulk_load(
        geoms
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let r = g.bounding_rect()?;
                Some(GeomWithData::new(Rectangle::from_corners(r.min().into(), r.max().into()), i as u32))
            })
            .collect(),
    )
}

/// A multipolygon as GeoJSON geometry text (shortest round-trip decimals).
fn multipolygon_json(g: &MultiPolygon<f64>) -> Box<str> {
    use std::fmt::Write;
    let mut s = String::from(r#"{"type":"MultiPolygon","coordinates":["#);
    for (pi, p) in g.0.iter().enumerate() {
        s.push_str(if pi == 0 { "[" } else { ",[" });
        for (ri, ring) in std::iter::once(p.exterior()).chain(p.interiors()).enumerate() {
            s.push_str(if ri == 0 { "[" } else { ",[" });
            for (ci, c) in ring.0.iter().enumerate() {
                let _ = write!(
                    s,
                    "{}[{},{}]",
                    if ci == 0 { "" } else { "," },
                    ryu::Buffer::new().format(c.x),
                    ryu::Buffer::new().format(c.y)
                );
            }
            s.push(']');
        }
        s.push(']');
    }
    s.push_str("]}");
    s.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn square(x: f64, y: f64) -> MultiPolygon<f64> {
        MultiPolygon(vec![polygon![(x: x, y: y), (x: x + 1.0, y: y), (x: x + 1.0, y: y + 1.0), (x: x, y: y + 1.0)]])
    }

    #[test]
    fn queen_counts_corners_and_t_junctions() {
        // A 2 x 2 block of squares, one more whose corner meets the middle of an edge, one apart.
        let mut geoms = vec![square(0.0, 0.0), square(1.0, 0.0), square(0.0, 1.0), square(1.0, 1.0)];
        geoms
            .push(MultiPolygon(vec![polygon![(x: 2.0, y: 0.5), (x: 3.0, y: 0.5), (x: 3.0, y: 1.5), (x: 2.0, y: 1.5)]]));
        geoms.push(square(10.0, 10.0));
        let w = queen(&geoms);
        assert_eq!(w.of(0), &[1, 2, 3], "rook and queen (corner) neighbours");
        assert_eq!(w.of(4), &[1, 3], "no shared vertex, but a shared edge stretch");
        assert_eq!(w.of(5), &[] as &[u32]);
    }

    #[test]
    fn units_parse() {
        assert_eq!(UnitKind::parse("h3:9").unwrap().as_str(), "h3:9");
        assert!(matches!(UnitKind::parse("h3:16"), Err(AnalysisError::H3Resolution(_))));
        assert!(matches!(UnitKind::parse("h3:-1"), Err(AnalysisError::H3Resolution(_))));
        assert!(matches!(UnitKind::parse("county"), Err(AnalysisError::UnknownUnit(_))));
    }

    #[test]
    fn h3_cover_has_every_point_and_ring_neighbours() {
        let outline =
            vec![polygon![(x: 88.80, y: 29.20), (x: 88.95, y: 29.20), (x: 88.95, y: 29.32), (x: 88.80, y: 29.32)]];
        let units = Units::h3(Resolution::Seven, &outline).unwrap();
        // Every point inside the outline falls in a cover cell.
        for k in 0..50 {
            let (lon, lat) = (88.80 + 0.003 * k as f64, 29.20 + 0.0024 * k as f64);
            assert!(units.unit_of(None, lon, lat).is_some(), "{lon} {lat}");
        }
        // Inner cells have six neighbours.
        let inner = units.unit_of(None, 88.875, 29.26).unwrap();
        assert_eq!(units.neighbours().degree(inner), 6);
        assert!(units.unit_of(None, 80.0, 29.0).is_none());
    }
}
