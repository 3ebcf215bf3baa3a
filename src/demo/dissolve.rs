//! Exact union of tiles that share vertices by identity.
//!
//! The tiling is built so that neighbouring tiles use the very same vertex ids along a shared
//! edge, so the union of a set of tiles is found topologically: drop every edge that occurs in
//! both directions and chain what is left. Unlike a floating-point overlay this keeps every
//! output vertex bit-identical to a grid vertex, so a community boundary coincides exactly
//! with its grids' boundaries, and it costs O(edges).

use std::collections::{HashMap, HashSet};
use std::f64::consts::TAU;

use super::planar::{P, in_ring, signed_area};

/// One polygon of a union: counter-clockwise exterior, clockwise holes, as vertex ids.
#[derive(Debug, Clone)]
pub(super) struct Region {
    pub exterior: Vec<u32>,
    pub holes: Vec<Vec<u32>>,
}

/// Union of counter-clockwise tiles given as vertex-id rings (no closing vertex) over `pos`.
/// Tiles must not overlap. Where the union pinches to a single vertex (two tiles touching at a
/// corner only), the rings are split there, so each output ring is simple, as OGC requires.
pub(super) fn dissolve<'a>(tiles: impl IntoIterator<Item = &'a [u32]>, pos: &[P]) -> Vec<Region> {
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for r in tiles {
        for k in 0..r.len() {
            edges.push((r[k], r[(k + 1) % r.len()]));
        }
    }
    // The sets below are only looked up, never iterated, so output order is that of `tiles`.
    let set: HashSet<(u32, u32)> = edges.iter().copied().collect();
    assert_eq!(set.len(), edges.len(), "overlapping tiles: a directed edge occurs twice");
    let boundary: Vec<(u32, u32)> = edges.into_iter().filter(|&(u, v)| !set.contains(&(v, u))).collect();
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    for (k, &(u, _)) in boundary.iter().enumerate() {
        out.entry(u).or_default().push(k as u32);
    }
    let angle = |from: u32, to: u32| {
        let (a, b) = (pos[from as usize], pos[to as usize]);
        (b[1] - a[1]).atan2(b[0] - a[0])
    };
    // At a vertex with several outgoing boundary edges, the interior sector entered by edge k
    // is left through the first outgoing edge met turning clockwise from k's reverse.
    let next = |k: usize| -> usize {
        let (u, v) = boundary[k];
        let outs = &out[&v];
        if outs.len() == 1 {
            return outs[0] as usize;
        }
        let back = angle(v, u);
        let mut best = (f64::INFINITY, usize::MAX);
        for &f in outs {
            let w = boundary[f as usize].1;
            let cw = (back - angle(v, w)).rem_euclid(TAU);
            if cw > 0.0 && cw < best.0 {
                best = (cw, f as usize);
            }
        }
        best.1
    };
    let mut used = vec![false; boundary.len()];
    let mut rings: Vec<Vec<u32>> = Vec::new();
    for s in 0..boundary.len() {
        if used[s] {
            continue;
        }
        let mut ring = Vec::new();
        let mut k = s;
        loop {
            used[k] = true;
            ring.push(boundary[k].0);
            k = next(k);
            if k == s {
                break;
            }
            assert!(!used[k], "boundary walk re-entered a used edge");
        }
        rings.push(ring);
    }
    let coords = |r: &[u32]| r.iter().map(|&v| pos[v as usize]).collect::<Vec<P>>();
    let mut regions = Vec::new();
    let mut holes = Vec::new();
    for r in rings {
        if signed_area(&coords(&r)) > 0.0 {
            regions.push(Region { exterior: r, holes: Vec::new() });
        } else {
            holes.push(r);
        }
    }
    if !holes.is_empty() {
        let ext: Vec<(Vec<P>, f64)> = regions
            .iter()
            .map(|g| {
                let c = coords(&g.exterior);
                let a = signed_area(&c);
                (c, a)
            })
            .collect();
        for h in holes {
            // A hole edge's midpoint is never on another ring, so it is strictly in or out.
            let (a, b) = (pos[h[0] as usize], pos[h[1] as usize]);
            let m = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
            let owner = (0..ext.len())
                .filter(|&i| in_ring(&ext[i].0, m))
                .min_by(|&i, &j| ext[i].1.total_cmp(&ext[j].1).then(i.cmp(&j)))
                .expect("hole outside every exterior");
            regions[owner].holes.push(h);
        }
    }
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_grid(n: usize) -> Vec<P> {
        let mut pos = Vec::new();
        for j in 0..=n {
            for i in 0..=n {
                pos.push([i as f64, j as f64]);
            }
        }
        pos
    }

    fn cell(n: usize, i: usize, j: usize) -> Vec<u32> {
        let v = |i: usize, j: usize| (j * (n + 1) + i) as u32;
        vec![v(i, j), v(i + 1, j), v(i + 1, j + 1), v(i, j + 1)]
    }

    #[test]
    fn two_cells_make_one_ring() {
        let pos = square_grid(2);
        let tiles = [cell(2, 0, 0), cell(2, 1, 0)];
        let r = dissolve(tiles.iter().map(|t| t.as_slice()), &pos);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].exterior.len(), 6);
        assert!(r[0].holes.is_empty());
    }

    #[test]
    fn pinch_splits_and_ring_of_cells_has_hole() {
        let pos = square_grid(3);
        let tiles = [cell(3, 0, 0), cell(3, 1, 1)];
        let r = dissolve(tiles.iter().map(|t| t.as_slice()), &pos);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|g| g.exterior.len() == 4));
        let ring: Vec<Vec<u32>> = (0..3)
            .flat_map(|j| (0..3).map(move |i| (i, j)))
            .filter(|&(i, j)| (i, j) != (1, 1))
            .map(|(i, j)| cell(3, i, j))
            .collect();
        let r = dissolve(ring.iter().map(|t| t.as_slice()), &pos);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].holes.len(), 1);
        assert_eq!(r[0].holes[0].len(), 4);
    }
}
