//! The unit-grid rule of GB/T 30428.1: grids tile their community without gaps or overlaps and
//! never cross its boundary. Checked on import over the new grids together with those already
//! stored, with an area tolerance (survey data carries slivers of floating-point noise).

use std::collections::HashMap;

use geo::orient::{Direction, Orient};
use geo::{BooleanOps, GeodesicArea, InteriorPoint, MultiPolygon, Polygon};
use rayon::prelude::*;
use rstar::{AABB, RTree, RTreeObject};

use crate::model::{Community, Grid};

/// Area in square metres on the CGCS2000 ellipsoid. Rings are oriented first: on the
/// ellipsoid a clockwise ring (as Shapefiles store them) encloses the rest of the Earth.
pub fn area_m2(g: &MultiPolygon<f64>) -> f64 {
    g.orient(Direction::Default).geodesic_area_unsigned()
}

/// A problem found: the index of the offending new grid (or `None` for a community-wide gap),
/// and the reason.
pub type Finding = (Option<usize>, String);

struct Env {
    env: AABB<[f64; 2]>,
    /// Index into the combined list: new grids first, then stored ones.
    i: usize,
}

impl RTreeObject for Env {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

fn envelope(p: &Polygon<f64>) -> Option<AABB<[f64; 2]>> {
    crate::index::envelope_of(&p.clone().into())
}

/// Checks `new` grids (in file order) against each other, against `stored` ones and against
/// their communities. An overlap rejects the later grid of the pair (a stored grid is always
/// earlier); a grid crossing its community's boundary is rejected; a community left with an
/// uncovered area is reported as a gap (no grid to blame).
pub fn check(
    new: &[&Grid],
    stored: &[Grid],
    communities: &HashMap<&str, &Community>,
    tolerance_m2: f64,
) -> Vec<Finding> {
    let all: Vec<&Grid> = new.iter().copied().chain(stored.iter()).collect();
    let tree = RTree::bulk_load(
        all.iter().enumerate().filter_map(|(i, g)| envelope(&g.geom).map(|env| Env { env, i })).collect(),
    );
    let mut findings: Vec<Finding> = new
        .par_iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let env = envelope(&g.geom)?;
            let mine = MultiPolygon::new(vec![g.geom.clone()]);
            // Earlier in the combined order: stored grids count as earlier than every new one.
            let earlier = |j: usize| j >= new.len() || j < i;
            let mut hits: Vec<usize> =
                tree.locate_in_envelope_intersecting(&env).map(|e| e.i).filter(|&j| j != i && earlier(j)).collect();
            hits.sort_unstable();
            for j in hits {
                let other = MultiPolygon::new(vec![all[j].geom.clone()]);
                let a = area_m2(&mine.intersection(&other));
                if a > tolerance_m2 {
                    return Some((Some(i), format!("overlaps unit grid {} by {a:.1} m²", all[j].code)));
                }
            }
            None
        })
        .collect();
    // Per community: the union of its grids against the community itself.
    let mut by_community: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, g) in all.iter().enumerate() {
        by_community.entry(g.community_code.as_str()).or_default().push(i);
    }
    let touched: Vec<(&str, &Vec<usize>)> = by_community
        .iter()
        .filter(|(_, members)| members.iter().any(|&i| i < new.len()))
        .map(|(c, m)| (*c, m))
        .collect();
    let mut per_community: Vec<Finding> = touched
        .par_iter()
        .flat_map_iter(|(code, members)| {
            let mut out = Vec::new();
            let Some(community) = communities.get(code) else { return out };
            let polys: Vec<MultiPolygon<f64>> =
                members.iter().map(|&i| MultiPolygon::new(vec![all[i].geom.clone()])).collect();
            let union = geo::unary_union(polys.iter());
            let outside = area_m2(&union.difference(&community.geom));
            if outside > tolerance_m2 {
                for &i in members.iter().filter(|&&i| i < new.len()) {
                    let a = area_m2(
                        &polys[members.iter().position(|&m| m == i).expect("member")].difference(&community.geom),
                    );
                    if a > tolerance_m2 {
                        out.push((Some(i), format!("extends {a:.1} m² outside its community {code}")));
                    }
                }
            }
            let gap = community.geom.difference(&union);
            let gap_area = area_m2(&gap);
            if gap_area > tolerance_m2 {
                let at = gap
                    .0
                    .iter()
                    .max_by(|a, b| {
                        area_m2(&MultiPolygon::new(vec![(*a).clone()]))
                            .total_cmp(&area_m2(&MultiPolygon::new(vec![(*b).clone()])))
                    })
                    .and_then(|p| p.interior_point())
                    .map(|p| format!(" (largest near {:.6}, {:.6})", p.x(), p.y()))
                    .unwrap_or_default();
                out.push((None, format!("community {code}: {gap_area:.1} m² not covered by any unit grid (gap){at}")));
            }
            out
        })
        .collect();
    findings.append(&mut per_community);
    findings.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    findings
}
