//! The demo city's ground plan, in local metres: a jittered street lattice clipped to an
//! irregular outline, its cells grouped into communities, streets and districts, and cut or
//! merged into unit grids.
//!
//! Every shape here is a ring of vertex ids into one shared position table. Neighbouring
//! cells take their corners, mid-edge kinks and cut points from that table, so a shared
//! boundary is the same vertices in both rings: the grids tile the city with no gap and no
//! overlap by construction, and unions are exact (see [`super::dissolve`]).

use std::f64::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::dissolve::dissolve;
use super::planar::{P, ring_is_simple_ccw, signed_area};

pub(super) const NONE: u32 = u32::MAX;
/// Street spacing: a lattice cell is one "万米" unit grid of about 100 m x 100 m.
pub(super) const CELL_M: f64 = 100.0;
/// Corner jitter; below a quarter of the spacing, so each corner stays in its own box and a
/// cell can never fold over (see `build_lattice`).
const JITTER_M: f64 = 20.0;
/// The street network is turned and gently bent so it does not look like graph paper.
const ROTATION_RAD: f64 = 0.18;
const WARP_M: f64 = 30.0;
/// East-west over north-south extent of the outline: the town stretches along its river.
const ASPECT: f64 = 1.5;
const KINK_SHARE: f64 = 0.25;
/// Share of cells merged into pairs; as many cells are cut in two, so the grid count stays.
const MERGE_SHARE: f64 = 0.08;
/// Only small blocks are merged and only large ones cut, which keeps nearly every grid
/// between about 4,000 and 20,000 m2 like the "万米" grids of real cities.
const MERGED_MAX_M2: f64 = 19_000.0;
const CUT_MIN_M2: f64 = 10_500.0;

pub(super) struct Lattice {
    /// Cells across and up; corners are (w + 1) x (h + 1).
    pub w: usize,
    pub h: usize,
    /// Vertex positions: lattice corners first (row-major), then kinks and cut points.
    pub pos: Vec<P>,
    pub in_city: Vec<bool>,
    /// In-city cells, row-major.
    pub cells: Vec<u32>,
    /// Kink vertex of each horizontal edge (i, j)-(i + 1, j), indexed j * w + i, or NONE.
    hkink: Vec<u32>,
    /// Kink vertex of each vertical edge (i, j)-(i, j + 1), indexed j * (w + 1) + i, or NONE.
    vkink: Vec<u32>,
}

/// A street segment between two lattice corners: where components stand.
pub(super) struct StreetEdge {
    /// Start, kink (or NONE), end.
    pub path: [u32; 3],
    /// In-city cell on the left / right of the path, or NONE.
    pub left: u32,
    pub right: u32,
}

impl Lattice {
    fn corner(&self, i: usize, j: usize) -> u32 {
        (j * (self.w + 1) + i) as u32
    }

    pub fn ij(&self, c: u32) -> (usize, usize) {
        (c as usize % self.w, c as usize / self.w)
    }

    fn cell_at(&self, i: usize, j: usize) -> u32 {
        (j * self.w + i) as u32
    }

    fn city_cell(&self, i: isize, j: isize) -> u32 {
        if i < 0 || j < 0 || i >= self.w as isize || j >= self.h as isize {
            return NONE;
        }
        let c = self.cell_at(i as usize, j as usize);
        if self.in_city[c as usize] { c } else { NONE }
    }

    /// Counter-clockwise ring of a lattice cell, kinks included.
    pub fn cell_ring(&self, c: u32) -> Vec<u32> {
        let (i, j) = self.ij(c);
        let mut r = Vec::with_capacity(8);
        let mut push = |v: u32| {
            if v != NONE {
                r.push(v)
            }
        };
        push(self.corner(i, j));
        push(self.hkink[j * self.w + i]);
        push(self.corner(i + 1, j));
        push(self.vkink[j * (self.w + 1) + i + 1]);
        push(self.corner(i + 1, j + 1));
        push(self.hkink[(j + 1) * self.w + i]);
        push(self.corner(i, j + 1));
        push(self.vkink[j * (self.w + 1) + i]);
        r
    }

    /// Corners counter-clockwise from the south-west one.
    pub fn cell_corners(&self, c: u32) -> [P; 4] {
        let (i, j) = self.ij(c);
        [self.corner(i, j), self.corner(i + 1, j), self.corner(i + 1, j + 1), self.corner(i, j + 1)]
            .map(|v| self.pos[v as usize])
    }

    pub fn cell_centre(&self, c: u32) -> P {
        let k = self.cell_corners(c);
        [(k[0][0] + k[1][0] + k[2][0] + k[3][0]) / 4.0, (k[0][1] + k[1][1] + k[2][1] + k[3][1]) / 4.0]
    }

    fn neighbour(&self, c: u32, dir: usize) -> u32 {
        let (i, j) = self.ij(c);
        let (i, j) = (i as isize, j as isize);
        match dir {
            0 => self.city_cell(i + 1, j),
            1 => self.city_cell(i, j + 1),
            2 => self.city_cell(i - 1, j),
            _ => self.city_cell(i, j - 1),
        }
    }

    /// Every lattice edge with the city on at least one side, in a fixed order.
    pub fn street_edges(&self) -> Vec<StreetEdge> {
        let mut edges = Vec::new();
        for j in 0..=self.h {
            for i in 0..self.w {
                let (left, right) =
                    (self.city_cell(i as isize, j as isize), self.city_cell(i as isize, j as isize - 1));
                if left != NONE || right != NONE {
                    let path = [self.corner(i, j), self.hkink[j * self.w + i], self.corner(i + 1, j)];
                    edges.push(StreetEdge { path, left, right });
                }
            }
        }
        for j in 0..self.h {
            for i in 0..=self.w {
                let (left, right) =
                    (self.city_cell(i as isize - 1, j as isize), self.city_cell(i as isize, j as isize));
                if left != NONE || right != NONE {
                    let path = [self.corner(i, j), self.vkink[j * (self.w + 1) + i], self.corner(i, j + 1)];
                    edges.push(StreetEdge { path, left, right });
                }
            }
        }
        edges
    }

    fn ring_ok(&self, ring: &[u32]) -> bool {
        let pts: Vec<P> = ring.iter().map(|&v| self.pos[v as usize]).collect();
        ring_is_simple_ccw(&pts)
    }
}

/// Lays out a lattice with exactly `n_cells` cells inside the outline.
///
/// Why the cells cannot fold: each corner stays within +-JITTER_M of its lattice point, so the
/// corners of a cell lie in four disjoint boxes and opposite edges cannot meet. Kinks can, in
/// rare extreme cases, so a cell whose ring is not simple loses its kinks.
pub(super) fn build_lattice(n_cells: usize, rng: &mut ChaCha8Rng) -> Lattice {
    let ax = (n_cells as f64 * ASPECT / PI).sqrt().max(1.0);
    let ay = ax / ASPECT;
    let hx = (ax * 2.2).ceil() as usize + 2;
    let hy = (ay * 2.2).ceil() as usize + 2;
    let (w, h) = (2 * hx, 2 * hy);

    // Outline: a noisy ellipse, cut on the north by a meandering river (Shigatse lies south
    // of the Yarlung Tsangpo). Cells are ranked by how far out they are, and the innermost
    // n_cells are taken, so the count is exact whatever the noise.
    let harmonics: Vec<(f64, f64, f64)> =
        (2..=9).map(|k| (k as f64, rng.random_range(0.5..1.0) * 0.24 / k as f64, rng.random_range(0.0..TAU))).collect();
    let (rp1, rp2) = (rng.random_range(0.0..TAU), rng.random_range(0.0..TAU));
    let river = |x: f64| ay * (0.45 + 0.07 * (2.1 * x / ax + rp1).sin() + 0.03 * (5.3 * x / ax + rp2).sin());
    let mut ranked: Vec<(f64, u32)> = Vec::new();
    for j in 0..h {
        for i in 0..w {
            let x = i as f64 - hx as f64 + 0.5;
            let y = j as f64 - hy as f64 + 0.5;
            if y > river(x) {
                continue;
            }
            let (u, v) = (x / ax, y / ay);
            let theta = v.atan2(u);
            let r = 1.0 + harmonics.iter().map(|&(k, a, ph)| a * (k * theta + ph).sin()).sum::<f64>();
            ranked.push(((u * u + v * v).sqrt() / r, (j * w + i) as u32));
        }
    }
    assert!(ranked.len() >= n_cells, "lattice too small for {n_cells} cells");
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut in_city = vec![false; w * h];
    for &(_, c) in &ranked[..n_cells] {
        let (i, j) = (c as usize % w, c as usize / w);
        assert!(i > 0 && j > 0 && i + 1 < w && j + 1 < h, "outline reaches the lattice border");
        in_city[c as usize] = true;
    }
    let cells: Vec<u32> = (0..(w * h) as u32).filter(|&c| in_city[c as usize]).collect();

    let (sin_r, cos_r) = ROTATION_RAD.sin_cos();
    let (wp1, wp2) = (rng.random_range(0.0..TAU), rng.random_range(0.0..TAU));
    let mut pos = Vec::with_capacity((w + 1) * (h + 1) + n_cells);
    for j in 0..=h {
        for i in 0..=w {
            let bx = (i as f64 - hx as f64) * CELL_M;
            let by = (j as f64 - hy as f64) * CELL_M;
            let (rx, ry) = (bx * cos_r - by * sin_r, bx * sin_r + by * cos_r);
            let (x, y) = (rx + WARP_M * (ry / 730.0 + wp1).sin(), ry + WARP_M * (rx / 910.0 + wp2).sin());
            let jx = rng.random_range(-JITTER_M..=JITTER_M);
            let jy = rng.random_range(-JITTER_M..=JITTER_M);
            pos.push([x + jx, y + jy]);
        }
    }
    let mut lat = Lattice { w, h, pos, in_city, cells, hkink: vec![NONE; w * (h + 1)], vkink: vec![NONE; (w + 1) * h] };

    // Put the city's centroid at the local origin, i.e. at the configured lon/lat centre.
    let (mut sx, mut sy) = (0.0, 0.0);
    for &c in &lat.cells {
        let p = lat.cell_centre(c);
        sx += p[0];
        sy += p[1];
    }
    let (sx, sy) = (sx / n_cells as f64, sy / n_cells as f64);
    for p in &mut lat.pos {
        p[0] -= sx;
        p[1] -= sy;
    }

    let add_kink = |lat: &mut Lattice, a: u32, b: u32, rng: &mut ChaCha8Rng| -> u32 {
        let (pa, pb) = (lat.pos[a as usize], lat.pos[b as usize]);
        let (dx, dy) = (pb[0] - pa[0], pb[1] - pa[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let t = 0.5 + rng.random_range(-0.1..0.1);
        let d = rng.random_range(3.0..8.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        lat.pos.push([pa[0] + t * dx - d * dy / len, pa[1] + t * dy + d * dx / len]);
        (lat.pos.len() - 1) as u32
    };
    for j in 0..=h {
        for i in 0..w {
            let touches =
                lat.city_cell(i as isize, j as isize) != NONE || lat.city_cell(i as isize, j as isize - 1) != NONE;
            if touches && rng.random_bool(KINK_SHARE) {
                let (a, b) = (lat.corner(i, j), lat.corner(i + 1, j));
                let k = add_kink(&mut lat, a, b, rng);
                lat.hkink[j * w + i] = k;
            }
        }
    }
    for j in 0..h {
        for i in 0..=w {
            let touches =
                lat.city_cell(i as isize - 1, j as isize) != NONE || lat.city_cell(i as isize, j as isize) != NONE;
            if touches && rng.random_bool(KINK_SHARE) {
                let (a, b) = (lat.corner(i, j), lat.corner(i, j + 1));
                let k = add_kink(&mut lat, a, b, rng);
                lat.vkink[j * (w + 1) + i] = k;
            }
        }
    }
    // Removing kinks only straightens rings, so this settles in a pass or two. Unused kink
    // vertices stay in `pos`; nothing refers to them.
    loop {
        let bad: Vec<u32> = lat.cells.iter().copied().filter(|&c| !lat.ring_ok(&lat.cell_ring(c))).collect();
        if bad.is_empty() {
            break;
        }
        for c in bad {
            let (i, j) = lat.ij(c);
            lat.hkink[j * w + i] = NONE;
            lat.hkink[(j + 1) * w + i] = NONE;
            lat.vkink[j * (w + 1) + i] = NONE;
            lat.vkink[j * (w + 1) + i + 1] = NONE;
        }
    }
    lat
}

/// Groups weighted points into `k` clusters around seeds drawn among the points, with a few
/// Lloyd rounds for even sizes. Seeds stay on actual points, so no cluster is ever empty.
pub(super) fn cluster(points: &[P], weights: &[f64], k: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let n = points.len();
    assert!(k >= 1 && k <= n);
    let mut idx: Vec<usize> = (0..n).collect();
    for s in 0..k {
        let t = rng.random_range(s..n);
        idx.swap(s, t);
    }
    let mut seeds: Vec<usize> = idx[..k].to_vec();
    let assign = |seeds: &[usize]| -> Vec<u32> {
        points
            .iter()
            .map(|p| {
                let mut best = (f64::INFINITY, 0u32);
                for (s, &q) in seeds.iter().enumerate() {
                    let q = points[q];
                    let d = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
                    if d < best.0 {
                        best = (d, s as u32);
                    }
                }
                best.1
            })
            .collect()
    };
    for _ in 0..5 {
        let a = assign(&seeds);
        let mut acc = vec![[0.0f64; 3]; k];
        for (i, &s) in a.iter().enumerate() {
            let wgt = weights[i];
            acc[s as usize][0] += points[i][0] * wgt;
            acc[s as usize][1] += points[i][1] * wgt;
            acc[s as usize][2] += wgt;
        }
        let mut best = vec![(f64::INFINITY, usize::MAX); k];
        for (i, &s) in a.iter().enumerate() {
            let c = acc[s as usize];
            let d = (points[i][0] - c[0] / c[2]).powi(2) + (points[i][1] - c[1] / c[2]).powi(2);
            if d < best[s as usize].0 {
                best[s as usize] = (d, i);
            }
        }
        for s in 0..k {
            if best[s].1 != usize::MAX {
                seeds[s] = best[s].1;
            }
        }
    }
    let mut a = assign(&seeds);
    for (s, &q) in seeds.iter().enumerate() {
        a[q] = s as u32;
    }
    a
}

/// One unit grid: a ring of vertex ids and the lattice cells it came from.
pub(super) struct GridShape {
    pub ring: Vec<u32>,
    /// Final community index (after [`build_tiling`]).
    pub community: u32,
    /// One cell, or two for a merged pair (second NONE otherwise).
    pub cells: [u32; 2],
    /// North-to-south, west-to-east reading order within a community, for numbering.
    key: (i64, i64, u8),
}

pub(super) struct Tiling {
    pub lattice: Lattice,
    /// Grids ordered by district, street, community, then reading order.
    pub grids: Vec<GridShape>,
    pub community_street: Vec<u32>,
    pub street_district: Vec<u32>,
    /// For each lattice cell (w * h), the grids covering it (NONE-padded).
    pub cell_grids: Vec<[u32; 2]>,
}

fn centroid_of(members: impl Iterator<Item = (P, f64)>) -> (P, f64) {
    let (mut x, mut y, mut n) = (0.0, 0.0, 0.0);
    for (p, wgt) in members {
        x += p[0] * wgt;
        y += p[1] * wgt;
        n += wgt;
    }
    ([x / n, y / n], n)
}

fn north_west_first(a: P, b: P) -> std::cmp::Ordering {
    b[1].total_cmp(&a[1]).then(a[0].total_cmp(&b[0]))
}

/// The whole ground plan. Counts must satisfy 1 <= districts <= streets <= communities <= grids.
pub(super) fn build_tiling(
    grids: usize,
    communities: usize,
    streets: usize,
    districts: usize,
    rng: &mut ChaCha8Rng,
) -> Tiling {
    let mut lat = build_lattice(grids, rng);
    let n = lat.cells.len();
    let centres: Vec<P> = lat.cells.iter().map(|&c| lat.cell_centre(c)).collect();
    let cell_comm_raw = cluster(&centres, &vec![1.0; n], communities, rng);
    let mut comm_of_cell = vec![NONE; lat.w * lat.h];
    for (k, &c) in lat.cells.iter().enumerate() {
        comm_of_cell[c as usize] = cell_comm_raw[k];
    }

    let (comm_centre, comm_cells): (Vec<P>, Vec<f64>) = {
        let mut acc = vec![[0.0f64; 3]; communities];
        for (k, &rc) in cell_comm_raw.iter().enumerate() {
            acc[rc as usize][0] += centres[k][0];
            acc[rc as usize][1] += centres[k][1];
            acc[rc as usize][2] += 1.0;
        }
        acc.iter().map(|a| ([a[0] / a[2], a[1] / a[2]], a[2])).unzip()
    };
    let comm_street_raw = cluster(&comm_centre, &comm_cells, streets, rng);
    let (street_centre, street_cells): (Vec<P>, Vec<f64>) = (0..streets as u32)
        .map(|s| {
            centroid_of((0..communities).filter(|&c| comm_street_raw[c] == s).map(|c| (comm_centre[c], comm_cells[c])))
        })
        .unzip();
    let street_district_raw = cluster(&street_centre, &street_cells, districts, rng);
    let district_centre: Vec<P> = (0..districts as u32)
        .map(|d| {
            centroid_of(
                (0..streets).filter(|&s| street_district_raw[s] == d).map(|s| (street_centre[s], street_cells[s])),
            )
            .0
        })
        .collect();

    // Final numbering: the most central district first (the urban district, 桑珠孜区), then
    // streets and communities in reading order within their parent.
    let mut dist_order: Vec<usize> = (0..districts).collect();
    dist_order.sort_by(|&a, &b| {
        let (pa, pb) = (district_centre[a], district_centre[b]);
        (pa[0] * pa[0] + pa[1] * pa[1]).total_cmp(&(pb[0] * pb[0] + pb[1] * pb[1])).then(a.cmp(&b))
    });
    let mut comm_final = vec![NONE; communities];
    let mut community_street = Vec::with_capacity(communities);
    let mut street_district = Vec::with_capacity(streets);
    for (fd, &rd) in dist_order.iter().enumerate() {
        let mut st: Vec<usize> = (0..streets).filter(|&s| street_district_raw[s] as usize == rd).collect();
        st.sort_by(|&a, &b| north_west_first(street_centre[a], street_centre[b]).then(a.cmp(&b)));
        for rs in st {
            let fs = street_district.len() as u32;
            street_district.push(fd as u32);
            let mut cm: Vec<usize> = (0..communities).filter(|&c| comm_street_raw[c] as usize == rs).collect();
            cm.sort_by(|&a, &b| north_west_first(comm_centre[a], comm_centre[b]).then(a.cmp(&b)));
            for rc in cm {
                comm_final[rc] = community_street.len() as u32;
                community_street.push(fs);
            }
        }
    }

    // Irregularity: merge some neighbouring pairs within a community, cut as many other cells
    // in two along a (sometimes bent) line between two of their vertices.
    let mut used = vec![false; lat.w * lat.h];
    let mut shapes: Vec<GridShape> = Vec::with_capacity(n);
    let key_of = |lat: &Lattice, c: u32, half: u8| {
        let (i, j) = lat.ij(c);
        (-(j as i64), i as i64, half)
    };
    let target = (n as f64 * MERGE_SHARE).round() as usize;
    let mut order = lat.cells.clone();
    shuffle(&mut order, rng);
    let mut merges = 0;
    for &c in &order {
        if merges >= target {
            break;
        }
        let nb = lat.neighbour(c, rng.random_range(0..4));
        if used[c as usize] || nb == NONE || used[nb as usize] || comm_of_cell[nb as usize] != comm_of_cell[c as usize]
        {
            continue;
        }
        let (ra, rb) = (lat.cell_ring(c), lat.cell_ring(nb));
        let u = dissolve([ra.as_slice(), rb.as_slice()], &lat.pos);
        if u.len() != 1 || !u[0].holes.is_empty() || !lat.ring_ok(&u[0].exterior) {
            continue;
        }
        let area = signed_area(&u[0].exterior.iter().map(|&v| lat.pos[v as usize]).collect::<Vec<_>>());
        if area > MERGED_MAX_M2 {
            continue;
        }
        used[c as usize] = true;
        used[nb as usize] = true;
        let key = key_of(&lat, c, 0).min(key_of(&lat, nb, 0));
        shapes.push(GridShape {
            ring: u.into_iter().next().unwrap().exterior,
            community: comm_final[comm_of_cell[c as usize] as usize],
            cells: [c, nb],
            key,
        });
        merges += 1;
    }
    shuffle(&mut order, rng);
    let mut cuts = 0;
    for &c in &order {
        if cuts >= merges {
            break;
        }
        if used[c as usize] {
            continue;
        }
        if let Some((h1, h2)) = try_cut(&mut lat, c, rng) {
            used[c as usize] = true;
            let comm = comm_final[comm_of_cell[c as usize] as usize];
            shapes.push(GridShape { ring: h1, community: comm, cells: [c, NONE], key: key_of(&lat, c, 0) });
            shapes.push(GridShape { ring: h2, community: comm, cells: [c, NONE], key: key_of(&lat, c, 1) });
            cuts += 1;
        }
    }
    for &c in &lat.cells {
        if !used[c as usize] {
            shapes.push(GridShape {
                ring: lat.cell_ring(c),
                community: comm_final[comm_of_cell[c as usize] as usize],
                cells: [c, NONE],
                key: key_of(&lat, c, 0),
            });
        }
    }
    shapes.sort_by(|a, b| a.community.cmp(&b.community).then(a.key.cmp(&b.key)));

    let mut cell_grids = vec![[NONE; 2]; lat.w * lat.h];
    for (g, s) in shapes.iter().enumerate() {
        for &c in s.cells.iter().filter(|&&c| c != NONE) {
            let slot = &mut cell_grids[c as usize];
            if slot[0] == NONE { slot[0] = g as u32 } else { slot[1] = g as u32 }
        }
    }
    Tiling { lattice: lat, grids: shapes, community_street, street_district, cell_grids }
}

/// Cuts cell `c` in two between two non-adjacent ring vertices, sometimes through an extra
/// bend point; both halves get the same cut vertices, so they still tile the cell.
fn try_cut(lat: &mut Lattice, c: u32, rng: &mut ChaCha8Rng) -> Option<(Vec<u32>, Vec<u32>)> {
    let r = lat.cell_ring(c);
    let n = r.len();
    let pairs: Vec<(usize, usize)> =
        (0..n).flat_map(|p| (p + 2..n).map(move |q| (p, q))).filter(|&(p, q)| n - (q - p) >= 2).collect();
    let total = signed_area(&r.iter().map(|&v| lat.pos[v as usize]).collect::<Vec<_>>());
    if total < CUT_MIN_M2 {
        return None;
    }
    for _ in 0..4 {
        let (p, q) = pairs[rng.random_range(0..pairs.len())];
        let (a, b) = (lat.pos[r[p] as usize], lat.pos[r[q] as usize]);
        let bend = if rng.random_bool(0.5) {
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = (dx * dx + dy * dy).sqrt();
            let t = rng.random_range(0.35..0.65);
            let d = rng.random_range(3.0..10.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            Some([a[0] + t * dx - d * dy / len, a[1] + t * dy + d * dx / len])
        } else {
            None
        };
        let new_id = lat.pos.len() as u32;
        let mut h1: Vec<u32> = r[p..=q].to_vec();
        let mut h2: Vec<u32> = r[q..].iter().chain(&r[..=p]).copied().collect();
        if bend.is_some() {
            h1.push(new_id);
            h2.push(new_id);
        }
        let pts = |h: &[u32]| -> Vec<P> {
            h.iter().map(|&v| if v == new_id { bend.unwrap() } else { lat.pos[v as usize] }).collect()
        };
        let (p1, p2) = (pts(&h1), pts(&h2));
        let fair = |pp: &[P]| signed_area(pp) >= 0.4 * total;
        if ring_is_simple_ccw(&p1) && ring_is_simple_ccw(&p2) && fair(&p1) && fair(&p2) {
            if let Some(x) = bend {
                lat.pos.push(x);
            }
            return Some((h1, h2));
        }
    }
    None
}

pub(super) fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
