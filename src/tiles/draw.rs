//! Geometry drawn straight into MVT commands, the work of an uncached tile. Records are read
//! in place (no copy of their coordinates), projected into tile units in one pass, simplified to
//! half a screen pixel, clipped to the buffered tile only when they cross it (Sutherland-Hodgman
//! against the box, as PostGIS' `ST_AsMVTGeom` and tippecanoe clip), rounded, repaired and
//! zigzag-encoded, with scratch buffers reused across the features of a tile.
//!
//! Polygon boolean operations on every feature cost more than all the rest of a tile together;
//! a clip against an axis-aligned box needs none of their generality.

use geo::{Coord, LineString, MapCoords};
use geozero::ToMvt;
use geozero::mvt::tile::GeomType;

use super::{BUFFER, EXTENT, SCREEN_PX};
use crate::geo::tile::{TileCoord, lonlat_to_mercator};
use crate::index::{GeomRef, Projected};

/// Tile units of a screen pixel: the size below which a polygon is not drawn.
const PIXEL: f64 = EXTENT as f64 / SCREEN_PX;
/// The simplification tolerance: half a screen pixel, squared.
const TOLERANCE2: f64 = (PIXEL / 2.0) * (PIXEL / 2.0);
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
    to_tile: ToTile,
    ring: Vec<Coord<f64>>,
    spare: Vec<Coord<f64>>,
    ints: Vec<(i32, i32)>,
    keep: Vec<bool>,
    stack: Vec<(usize, usize)>,
}

/// The tile's placement: mercator x of its left edge and y of its top edge, tile units per
/// metre; and the same for world coordinates ([`Projected`]): tile units across the world and
/// the tile's offset in them.
#[derive(Debug, Clone, Copy)]
struct ToTile {
    left: f64,
    top: f64,
    scale: f64,
    world: f64,
    x0: f64,
    y0: f64,
}

impl ToTile {
    /// Longitude/latitude to tile units (y down), unrounded.
    #[inline]
    fn lonlat(&self, c: Coord<f64>) -> Coord<f64> {
        let (x, y) = lonlat_to_mercator(c.x, c.y);
        Coord { x: (x - self.left) * self.scale, y: (self.top - y) * self.scale }
    }

    /// World coordinates to tile units: a power-of-two scale and a shift.
    #[inline]
    fn world(&self, [x, y]: [f64; 2]) -> Coord<f64> {
        Coord { x: x * self.world - self.x0, y: y * self.world - self.y0 }
    }
}

impl Drawer {
    pub fn new(tile: TileCoord) -> Drawer {
        let [l, _, r, t] = tile.bounds_mercator();
        let extent = EXTENT as f64;
        Drawer {
            to_tile: ToTile {
                left: l,
                top: t,
                scale: extent / (r - l),
                world: extent * f64::from(1u32 << tile.z),
                x0: tile.x as f64 * extent,
                y0: tile.y as f64 * extent,
            },
            ring: Vec::new(),
            spare: Vec::new(),
            ints: Vec::new(),
            keep: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// [`Drawer::draw`] for a polygonal record's rings projected at load: the same commands
    /// without projecting a vertex.
    pub fn draw_projected(&mut self, p: &Projected, out: &mut Vec<u32>) -> Option<GeomType> {
        out.clear();
        let (to_tile, mut cursor, mut exterior_kept) = (self.to_tile, (0, 0), false);
        for (exterior, ring) in p.rings() {
            let vertices = ring.iter().map(|&c| to_tile.world(c));
            if exterior {
                exterior_kept = self.ring(vertices, true, &mut cursor, out);
            } else if exterior_kept {
                self.ring(vertices, false, &mut cursor, out);
            }
        }
        (!out.is_empty()).then_some(GeomType::Polygon)
    }

    /// Appends the commands of `g` to `out` (cleared first) and tells its type; `None` when
    /// nothing of it is left in the tile.
    pub fn draw(&mut self, g: GeomRef<'_>, out: &mut Vec<u32>) -> Option<GeomType> {
        out.clear();
        let kind = match g {
            GeomRef::Point(p) => {
                let c = self.to_tile.lonlat(p.0);
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
            let p = self.to_tile.lonlat(c);
            Coord { x: p.x.round(), y: p.y.round() }
        });
        let f = g.to_mvt_unscaled().ok().filter(|f| !f.geometry.is_empty())?;
        out.extend_from_slice(&f.geometry);
        GeomType::try_from(f.r#type?).ok()
    }

    /// Appends a polygon's rings, exterior first; nothing when its exterior is smaller than a
    /// pixel or left without area.
    fn polygon(&mut self, p: &geo::Polygon<f64>, cursor: &mut (i32, i32), out: &mut Vec<u32>) {
        let to_tile = self.to_tile;
        fn vertices(ls: &LineString<f64>, to_tile: ToTile) -> impl Iterator<Item = Coord<f64>> + '_ {
            ls.0.iter().map(move |&c| to_tile.lonlat(c))
        }
        if !self.ring(vertices(p.exterior(), to_tile), true, cursor, out) {
            return;
        }
        for hole in p.interiors() {
            self.ring(vertices(hole, to_tile), false, cursor, out);
        }
    }

    /// Appends one ring, given by its vertices in tile units (MoveTo, LineTo, ClosePath); false
    /// when it was dropped.
    fn ring(
        &mut self,
        vertices: impl Iterator<Item = Coord<f64>>,
        exterior: bool,
        cursor: &mut (i32, i32),
        out: &mut Vec<u32>,
    ) -> bool {
        let mut ring = std::mem::take(&mut self.ring);
        ring.clear();
        let (mut min, mut max) = (Coord { x: f64::MAX, y: f64::MAX }, Coord { x: f64::MIN, y: f64::MIN });
        for p in vertices {
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
            simplify(&mut ring, &mut self.keep, &mut self.stack);
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

/// Douglas-Peucker to [`TOLERANCE2`] in place: keeps a line's ends and, stretch by stretch, the
/// vertex farthest from the stretch's chord (the last of equals, as geo picks) while it is
/// farther than the tolerance. Squared
/// distances and reused scratch space: the library's version measures with `hypot` and
/// allocates, which made it a fifth of drawing a unit grid.
fn simplify(line: &mut Vec<Coord<f64>>, keep: &mut Vec<bool>, stack: &mut Vec<(usize, usize)>) {
    let n = line.len();
    keep.clear();
    keep.resize(n, false);
    keep[0] = true;
    keep[n - 1] = true;
    stack.clear();
    stack.push((0, n - 1));
    while let Some((a, b)) = stack.pop() {
        let (start, end) = (line[a], line[b]);
        let (mut farthest, mut at) = (0.0, a);
        for (i, &p) in line.iter().enumerate().take(b).skip(a + 1) {
            let d = segment_distance2(p, start, end);
            if d >= farthest {
                (farthest, at) = (d, i);
            }
        }
        if farthest > TOLERANCE2 {
            keep[at] = true;
            stack.extend([(a, at), (at, b)]);
        }
    }
    let mut kept = 0;
    for i in 0..n {
        if keep[i] {
            line[kept] = line[i];
            kept += 1;
        }
    }
    line.truncate(kept);
}

/// The squared distance from `p` to the segment `a`-`b` (to `a` when the segment is a point, as
/// a closed ring's ends are).
fn segment_distance2(p: Coord<f64>, a: Coord<f64>, b: Coord<f64>) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0) };
    let (ex, ey) = (a.x + t * dx - p.x, a.y + t * dy - p.y);
    ex * ex + ey * ey
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
    fn simplify_keeps_what_the_library_keeps() {
        use geo::Simplify;
        // Wiggly closed lines at several scales around the tolerance, as rings arrive.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let (mut keep, mut stack) = (Vec::new(), Vec::new());
        // Two vertices equally far from the chord, past the tolerance: whichever is kept, the
        // other falls within it, so the pick shows.
        let c = |x: f64, y: f64| Coord { x, y };
        let mut tie = vec![c(0.0, 0.0), c(10.0, 9.0), c(20.0, 9.0), c(30.0, 0.0)];
        let expected = LineString(tie.clone()).simplify(PIXEL / 2.0).0;
        simplify(&mut tie, &mut keep, &mut stack);
        assert_eq!((tie.len(), &tie), (3, &expected), "ties");
        for scale in [2.0, 10.0, 40.0, 400.0] {
            for _ in 0..50 {
                let mut line: Vec<Coord<f64>> = (0..30)
                    .map(|i| {
                        let a = i as f64 / 30.0 * std::f64::consts::TAU;
                        let r = scale * (1.0 + 0.2 * next());
                        Coord { x: r * a.cos(), y: r * a.sin() }
                    })
                    .collect();
                line.push(line[0]);
                let expected = LineString(line.clone()).simplify(PIXEL / 2.0).0;
                simplify(&mut line, &mut keep, &mut stack);
                assert_eq!(line, expected, "scale {scale}");
            }
        }
    }

    #[test]
    fn rings_projected_at_load_draw_as_projected_on_the_fly() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let (mut same, mut total) = (0, 0);
        for g in city.grids.iter().take(300) {
            let p = Projected::of(GeomRef::Polygon(&g.geom)).unwrap();
            let c = g.geom.exterior().0[0];
            for z in [13u8, 15, 17] {
                let tile = crate::geo::tile::tiles_covering([c.x, c.y, c.x, c.y], z).next().unwrap();
                let mut d = Drawer::new(tile);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                assert_eq!(d.draw(GeomRef::Polygon(&g.geom), &mut a), d.draw_projected(&p, &mut b));
                let (ra, rb) = (decode(&a), decode(&b));
                assert_eq!(ra.len(), rb.len(), "rings of grid {} at z{z}", g.code);
                for (x, y) in ra.iter().zip(&rb) {
                    assert_eq!(x.len(), y.len());
                    for (u, v) in x.iter().zip(y) {
                        // The two paths round the same point, computed two ways: a tie may fall
                        // either side.
                        assert!((u.0 - v.0).abs() <= 1 && (u.1 - v.1).abs() <= 1, "{u:?} {v:?}");
                    }
                }
                same += usize::from(a == b);
                total += 1;
            }
        }
        assert!(same * 100 >= total * 99, "{same} of {total} identical");
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
