//! Polygonal records' rings projected once, when they enter the index, for vector tiles: a tile
//! then scales and shifts each vertex (two multiplications and two subtractions) where
//! projecting it costs a tangent and a logarithm, the largest item of an uncached polygon tile.
//! Kept beside the layer for its polygonal records only (unit grids, regions, the few areal
//! components): a few megabytes for a city's 65,000 grids.

use geo::{MultiPolygon, Polygon};

use super::GeomRef;
use crate::geo::tile::{world_x, world_y};

/// A ring's end in [`Projected::coords`] carries this bit when the ring is a polygon's exterior.
const EXTERIOR: u32 = 1 << 31;

/// The rings of a polygon or multipolygon in world coordinates: web mercator as a fraction of
/// the world's width, x from the antimeridian and y from the top (as tile columns and rows
/// count), so a tile at zoom z is a square of side 2^-z.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    coords: Box<[[f64; 2]]>,
    /// Each ring's end in `coords`, [`EXTERIOR`] set on a polygon's first ring.
    ends: Box<[u32]>,
}

impl Projected {
    /// The projected rings of a polygonal geometry; `None` for any other.
    pub fn of(g: GeomRef<'_>) -> Option<Projected> {
        let polygons: &[Polygon<f64>] = match g {
            GeomRef::Polygon(p) => std::slice::from_ref(p),
            GeomRef::MultiPolygon(MultiPolygon(ps)) => ps,
            _ => return None,
        };
        let mut coords = Vec::new();
        let mut ends = Vec::new();
        for p in polygons {
            for (i, ring) in std::iter::once(p.exterior()).chain(p.interiors()).enumerate() {
                coords.extend(ring.0.iter().map(|c| [world_x(c.x), world_y(c.y)]));
                ends.push(coords.len() as u32 | if i == 0 { EXTERIOR } else { 0 });
            }
        }
        Some(Projected { coords: coords.into(), ends: ends.into() })
    }

    /// The rings in order, each with whether it is an exterior (a new polygon starts there).
    pub fn rings(&self) -> impl Iterator<Item = (bool, &[[f64; 2]])> {
        let mut start = 0;
        self.ends.iter().map(move |&e| {
            let end = (e & !EXTERIOR) as usize;
            let ring = &self.coords[start..end];
            start = end;
            (e & EXTERIOR != 0, ring)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    #[test]
    fn rings_keep_their_polygons_and_projection() {
        let a = polygon!(
            exterior: [(x: 91.0, y: 29.0), (x: 91.1, y: 29.0), (x: 91.1, y: 29.1), (x: 91.0, y: 29.0)],
            interiors: [[(x: 91.05, y: 29.02), (x: 91.06, y: 29.02), (x: 91.06, y: 29.03), (x: 91.05, y: 29.02)]],
        );
        let b = polygon![(x: 92.0, y: 30.0), (x: 92.1, y: 30.0), (x: 92.1, y: 30.1), (x: 92.0, y: 30.0)];
        let mp = MultiPolygon(vec![a, b]);
        let p = Projected::of(GeomRef::MultiPolygon(&mp)).unwrap();
        let rings: Vec<(bool, usize)> = p.rings().map(|(e, r)| (e, r.len())).collect();
        assert_eq!(rings, [(true, 4), (false, 4), (true, 4)]);
        let (_, first) = p.rings().next().unwrap();
        assert_eq!(first[0], [world_x(91.0), world_y(29.0)]);
        assert!(first[2][1] < first[0][1], "north is up: smaller y");
        assert!(Projected::of(GeomRef::Point(&geo::Point::new(91.0, 29.0))).is_none());
    }
}
