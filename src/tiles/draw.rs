//! Geometry drawn straight into MVT commands, the work of an uncached tile. Records are read
//! in place (no copy of their coordinates), projected into tile units in one pass, simplified to
//! half a screen pixel, clipped to the buffered tile only when they cross it (Sutherland-Hodgman
//! against the box, as PostGIS' `ST_AsMVTGeom` and tippecanoe clip), rounded, repaired and
//! zigzag-encoded, with scratch buffers reused across the features of a tile.
//!
//! Polygon boolean operations on every feature cost more than all the rest of a tile together;
//! a clip against an axis-aligned box needs none of their generality.

use geo::{Coord, LineString, MapCoords, Simplify};
use geozero::ToMvt;
use geozero::mvt::tile::GeomType;

use super::{BUFFER, EXTENT, SCREEN_PX};
use crate::geo::tile::{TileCoord, lonlat_to_mercator};
use crate::index::GeomRef;

/// Tile units of a screen pixel: the size below which a polygon is not drawn.
const PIXEL: f64 = EXTENT as f64 / SCREEN_PX;
/// The simplification tolerance: half a screen pixel.
const TOLERANCE: f64 = PIXEL / 2.0;
/// The buffered tile in tile units.
const LO: f64 = -(BUFFER as f64);
const HI: f64 = (EXTENT + BUFFER) as f64;

const MOVE_TO: u32 = 1;
const LINE_TO: u32 = 2;
const CLOSE_PATH: u32 = 7;

fn command(id: u32, count: u32) -> u32 {
    (id & 0x7) | (count << 3)
}

fn zigzag(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

/// Twice the signed area of a ring given without its closing vertex (the surveyor's formula).
fn area2(ring: &[(i32, i32)]) -> i64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 as i64 * b.1 as i64 - b.0 as i64 * a.1 as i64
        })
        .sum()
}

/// The commands of a point at tile coordinates (x, y).
pub fn point(x: i32, y: i32) -> [u32; 3] {
    [command(MOVE_TO, 1), zigzag(x), zigzag(y)]
}

/// Draws the features of one tile; keep one per tile and feed it every feature.
pub struct Drawer {
    /// Mercator x of the tile's left edge and y of its top edge, and tile units per metre.
    left: f64,
    top: f64,
    scale: f64,
    ring: Vec<Coord<f64>>,
    spare: Vec<Coord<f64>>,
    ints: Vec<(i32, i32)>,
}

impl Drawer {
    pub fn new(tile: TileCoord) -> Drawer {
        let [l, _, r, t] = tile.bounds_mercator();
        Drawer {
            left: l,
            top: t,
            scale: EXTENT as f64 / (r - l),
            ring: Vec::new(),
            spare: Vec::new(),
            ints: Vec::new(),
        }
    }

    /// Longitude/latitude to tile units (y down), unrounded.
    #[inline]
    fn project(&self, c: Coord<f64>) -> Coord<f64> {
        let (x, y) = lonlat_to_mercator(c.x, c.y);
        Coord { x: (x - self.left) * self.scale, y: (self.top - y) * self.scale }
    }

    /// Appends the commands of `g` to `out` (cleared first) and tells its type; `None` when
    /// nothing of it is left in the tile.
    pub fn draw(&mut self, g: GeomRef<'_>, out: &mut Vec<u32>) -> Option<GeomType> {
        out.clear();
        let kind = match g {
            GeomRef::Point(p) => {
                let c = self.project(p.0);
                let (x, y) = (c.x.round() as i32, c.y.round() as i32);
                out.extend(point(x, y));
                GeomType::Point
            }
            GeomRef::Polygon(p) => {
                self.polygon(p, &mut (0, 0), out);
                GeomType::Polygon
            }
            GeomRef::MultiPolygon(mp) => {
                let mut cursor = (0, 0);
                for p in mp {
                    self.polygon(p, &mut cursor, out);
                }
                GeomType::Polygon
            }
            GeomRef::Other(g) => return self.other(g, out),
        };
        (!out.is_empty()).then_some(kind)
    }

    /// Lines and the rare other shapes: projected and rounded, unclipped (a line's buffer is
    /// the decoder's business), encoded by geozero.
    fn other(&mut self, g: &geo::Geometry<f64>, out: &mut Vec<u32>) -> Option<GeomType> {
        let g = match g {
            geo::Geometry::Rect(r) => r.to_polygon().into(),
            geo::Geometry::Triangle(t) => t.to_polygon().into(),
            other => other.clone(),
        };
        if let geo::Geometry::Polygon(_) | geo::Geometry::MultiPolygon(_) = g {
            return self.draw((&g).into(), out);
        }
        let g = g.map_coords(|c| {
            let p = self.project(c);
            Coord { x: p.x.round(), y: p.y.round() }
        });
        let f = g.to_mvt_unscaled().ok().filter(|f| !f.geometry.is_empty())?;
        out.extend_from_slice(&f.geometry);
        GeomType::try_from(f.r#type?).ok()
    }

    /// Appends a polygon's rings, exterior first; nothing when its exterior is smaller than a
    /// pixel or left without area.
    fn polygon(&mut self, p: &geo::Polygon<f64>, cursor: &mut (i32, i32), out: &mut Vec<u32>) {
        if !self.ring(p.exterior(), true, cursor, out) {
            return;
        }
        for hole in p.interiors() {
            self.ring(hole, false, cursor, out);
        }
    }

    /// Appends one ring (MoveTo, LineTo, ClosePath); false when it was dropped.
    fn ring(&mut self, ls: &LineString<f64>, exterior: bool, cursor: &mut (i32, i32), out: &mut Vec<u32>) -> bool {
        let mut ring = std::mem::take(&mut self.ring);
        ring.clear();
        let (mut min, mut max) = (Coord { x: f64::MAX, y: f64::MAX }, Coord { x: f64::MIN, y: f64::MIN });
        for &c in &ls.0 {
            let p = self.project(c);
            min = Coord { x: min.x.min(p.x), y: min.y.min(p.y) };
            max = Coord { x: max.x.max(p.x), y: max.y.max(p.y) };
            ring.push(p);
        }
        if ring.len() < 4
            || (max.x - min.x < PIXEL && max.y - min.y < PIXEL)
            || max.x < LO
            || max.y < LO
            || min.x > HI
            || min.y > HI
        {
            self.ring = ring;
            return false;
        }
        // Douglas-Peucker only where it can remove something: a ring of a few vertices keeps them.
        if ring.len() > 5 {
            let simplified = LineString(ring).simplify(TOLERANCE);
            ring = simplified.0;
        }
        if min.x < LO || min.y < LO || max.x > HI || max.y > HI {
            clip(&mut ring, &mut self.spare);
        }
        let kept = self.encode_ring(&ring, exterior, cursor, out);
        self.ring = ring;
        kept
    }

    /// Rounds a (closed) ring to tile units, drops repeated vertices, drops the ring when fewer
    /// than three distinct vertices or no area are left, orients it as MVT wants (exterior rings
    /// with positive area in tile coordinates, holes negative) and appends its commands.
    fn encode_ring(
        &mut self,
        ring: &[Coord<f64>],
        exterior: bool,
        cursor: &mut (i32, i32),
        out: &mut Vec<u32>,
    ) -> bool {
        let ints = &mut self.ints;
        ints.clear();
        for c in ring {
            let p = (c.x.round() as i32, c.y.round() as i32);
            if ints.last() != Some(&p) {
                ints.push(p);
            }
        }
        while ints.len() > 1 && ints.first() == ints.last() {
            ints.pop();
        }
        if ints.len() < 3 {
            return false;
        }
        let n = ints.len();
        let area2 = area2(ints);
        if area2 == 0 {
            return false;
        }
        if (area2 > 0) != exterior {
            ints.reverse();
        }
        out.reserve(n * 2 + 3);
        for (i, &(x, y)) in ints.iter().enumerate() {
            match i {
                0 => out.push(command(MOVE_TO, 1)),
                1 => out.push(command(LINE_TO, n as u32 - 1)),
                _ => {}
            }
            out.extend([zigzag(x - cursor.0), zigzag(y - cursor.1)]);
            *cursor = (x, y);
        }
        out.push(command(CLOSE_PATH, 1));
        true
    }
}

/// Clips a closed ring to the buffered tile (Sutherland-Hodgman, one edge of the box at a time),
/// in place; `spare` is scratch space. The result is closed again, possibly with no area left,
/// which the caller drops.
fn clip(ring: &mut Vec<Coord<f64>>, spare: &mut Vec<Coord<f64>>) {
    // Each edge: a point is inside when `inside(p)`; `cut(a, b)` is where a-b crosses the edge.
    fn pass(
        input: &[Coord<f64>],
        out: &mut Vec<Coord<f64>>,
        inside: impl Fn(Coord<f64>) -> bool,
        cut: impl Fn(Coord<f64>, Coord<f64>) -> Coord<f64>,
    ) {
        out.clear();
        let Some(&last) = input.last() else { return };
        let mut prev = last;
        for &cur in input {
            match (inside(prev), inside(cur)) {
                (true, true) => out.push(cur),
                (true, false) => out.push(cut(prev, cur)),
                (false, true) => {
                    out.push(cut(prev, cur));
                    out.push(cur);
                }
                (false, false) => {}
            }
            prev = cur;
        }
    }
    let at_x = |x: f64| move |a: Coord<f64>, b: Coord<f64>| Coord { x, y: a.y + (b.y - a.y) * (x - a.x) / (b.x - a.x) };
    let at_y = |y: f64| move |a: Coord<f64>, b: Coord<f64>| Coord { x: a.x + (b.x - a.x) * (y - a.y) / (b.y - a.y), y };
    // The ring without its closing vertex, so the first edge is not walked twice.
    if ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    pass(ring, spare, |p| p.x >= LO, at_x(LO));
    pass(spare, ring, |p| p.x <= HI, at_x(HI));
    pass(ring, spare, |p| p.y >= LO, at_y(LO));
    pass(spare, ring, |p| p.y <= HI, at_y(HI));
    if let Some(&first) = ring.first() {
        ring.push(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(geometry: &[u32]) -> Vec<Vec<(i32, i32)>> {
        // Rings of a polygon feature, each without its closing vertex.
        let (mut rings, mut cur, mut pos, mut i) = (Vec::new(), Vec::new(), (0i32, 0i32), 0);
        let unzig = |v: u32| ((v >> 1) as i32) ^ -((v & 1) as i32);
        while i < geometry.len() {
            let (id, count) = (geometry[i] & 7, geometry[i] >> 3);
            i += 1;
            if id == CLOSE_PATH {
                rings.push(std::mem::take(&mut cur));
                continue;
            }
            for _ in 0..count {
                pos = (pos.0 + unzig(geometry[i]), pos.1 + unzig(geometry[i + 1]));
                cur.push(pos);
                i += 2;
            }
        }
        rings
    }

    #[test]
    fn a_polygon_crossing_the_tile_is_clipped_to_the_buffer_and_oriented() {
        let tile = TileCoord::new(14, 13_000, 6_000).unwrap();
        let [l, b, r, t] = tile.bounds_mercator();
        let (w, h) = (r - l, t - b);
        let ll = |fx: f64, fy: f64| {
            let (lon, lat) = crate::geo::tile::mercator_to_lonlat(l + fx * w, b + fy * h);
            Coord { x: lon, y: lat }
        };
        // A square from the middle of the tile to well past its right and top edges, with a hole
        // inside the tile, given clockwise (as a shapefile would) to check the orientation.
        let outer = LineString(vec![ll(0.5, 0.5), ll(0.5, 2.0), ll(2.0, 2.0), ll(2.0, 0.5), ll(0.5, 0.5)]);
        let hole = LineString(vec![ll(0.6, 0.6), ll(0.7, 0.6), ll(0.7, 0.7), ll(0.6, 0.7), ll(0.6, 0.6)]);
        let poly = geo::Polygon::new(outer, vec![hole]);
        let mut commands = Vec::new();
        assert_eq!(Drawer::new(tile).draw(GeomRef::Polygon(&poly), &mut commands), Some(GeomType::Polygon));
        let rings = decode(&commands);
        assert_eq!(rings.len(), 2);
        let (xs, ys): (Vec<i32>, Vec<i32>) = rings[0].iter().copied().unzip();
        assert_eq!((*xs.iter().min().unwrap(), *xs.iter().max().unwrap()), (2048, HI as i32));
        assert_eq!((*ys.iter().min().unwrap(), *ys.iter().max().unwrap()), (LO as i32, 2048));
        assert!(area2(&rings[0]) > 0, "exterior positive in tile coordinates");
        assert!(area2(&rings[1]) < 0, "hole negative");
    }

    #[test]
    fn polygons_outside_the_buffer_or_below_a_pixel_are_dropped() {
        let tile = TileCoord::new(16, 52_000, 24_000).unwrap();
        let [l, b, r, t] = tile.bounds_mercator();
        let (w, h) = (r - l, t - b);
        let square = |x0: f64, y0: f64, side: f64| {
            let ll = |fx: f64, fy: f64| {
                let (lon, lat) = crate::geo::tile::mercator_to_lonlat(l + fx * w, b + fy * h);
                Coord { x: lon, y: lat }
            };
            geo::Polygon::new(
                LineString(vec![
                    ll(x0, y0),
                    ll(x0 + side, y0),
                    ll(x0 + side, y0 + side),
                    ll(x0, y0 + side),
                    ll(x0, y0),
                ]),
                vec![],
            )
        };
        let (mut d, mut out) = (Drawer::new(tile), Vec::new());
        assert!(d.draw(GeomRef::Polygon(&square(1.1, 0.2, 0.3)), &mut out).is_none(), "beyond the buffer");
        assert!(d.draw(GeomRef::Polygon(&square(0.5, 0.5, 0.5 / 256.0)), &mut out).is_none(), "half a pixel");
        assert!(d.draw(GeomRef::Polygon(&square(0.5, 0.5, 2.0 / 256.0)), &mut out).is_some(), "two pixels");
    }
}
