//! Components along the streets, and lifeline sensors on suitable components.

use std::collections::{BTreeMap, BTreeSet};

use ::geo::{Coord, Geometry, LineString, Point, Polygon};
use compact_str::format_compact;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::World;
use super::dict::ComponentProfile;
use super::layout::NONE;
use super::planar::{P, centroid, convex_inside};
use crate::model::{Component, ComponentClass, Sensor, Str};

/// Condition mix of a census: nearly everything intact.
const STATUSES: [(&str, f64); 5] = [("完好", 0.92), ("破损", 0.04), ("丢失", 0.01), ("占用", 0.02), ("废弃", 0.01)];

/// Component surveys fall within this many days before the demo's "now" (three years).
const SURVEY_DAYS: i64 = 1095;

/// Classes that stand inside a block rather than at the kerb.
const INTERIOR_CLASSES: [&str; 3] = ["0201", "0601", "0602"];

/// Sensor kinds: (kind, code abbreviation, Chinese label, share, classes it is mounted on).
const SENSOR_KINDS: [(&str, &str, &str, f64, &[&str]); 10] = [
    ("water_level", "WL", "水位监测仪", 0.15, &["0103", "0104"]),
    ("flow", "FL", "流量计", 0.08, &["0102", "0103"]),
    ("gas_lel", "GAS", "可燃气体监测仪", 0.20, &["0111"]),
    ("pressure", "PR", "压力监测仪", 0.12, &["0101", "0113"]),
    ("leak_noise", "LN", "漏损噪声监测仪", 0.10, &["0101"]),
    ("strain", "ST", "应变计", 0.07, &["0208", "0205"]),
    ("displacement", "DP", "位移计", 0.05, &["0208", "0205"]),
    ("tilt", "TL", "倾角计", 0.10, &["0101", "0102", "0103", "0111", "0208"]),
    ("smoke", "SM", "烟感探测器", 0.07, &["0405", "0401"]),
    ("temperature", "TM", "温度监测仪", 0.06, &["0405", "0401"]),
];

/// Splits `n` by `weights` (largest remainder), giving every part at least one when there is
/// enough to go round, so every class appears even in small test cities.
pub(super) fn apportion(weights: &[f64], n: usize) -> Vec<usize> {
    let k = weights.len();
    let base = if n >= k { 1 } else { 0 };
    let rest = n - base * k;
    let total: f64 = weights.iter().sum();
    let quotas: Vec<f64> = weights.iter().map(|w| w / total * rest as f64).collect();
    let mut out: Vec<usize> = quotas.iter().map(|q| base + q.floor() as usize).collect();
    let mut left = n - out.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| (quotas[b] - quotas[b].floor()).total_cmp(&(quotas[a] - quotas[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

fn pick_weighted<'a, T>(items: &'a [(T, f64)], rng: &mut ChaCha8Rng) -> &'a T {
    let total: f64 = items.iter().map(|x| x.1).sum();
    let mut u = rng.random_range(0.0..total);
    for (t, w) in items {
        if u < *w {
            return t;
        }
        u -= w;
    }
    &items[items.len() - 1].0
}

enum DeptChoice {
    Fixed(u32),
    Tag(&'static str),
    Street,
    SameAsOwner,
}

fn parse_choices(tokens: &[&'static str], world: &World) -> Vec<DeptChoice> {
    tokens
        .iter()
        .map(|&t| {
            if let Some(tag) = t.strip_prefix("tag:") {
                assert!(world.depts.by_tag.contains_key(tag), "no department with tag {tag:?}");
                DeptChoice::Tag(tag)
            } else if t == "@street" {
                DeptChoice::Street
            } else if t == "=owner" {
                DeptChoice::SameAsOwner
            } else {
                DeptChoice::Fixed(world.depts.key(t))
            }
        })
        .collect()
}

fn choose_dept(
    choices: &[DeptChoice],
    owner: Option<&Str>,
    g: u32,
    world: &World,
    rng: &mut ChaCha8Rng,
) -> Option<Str> {
    let c = &choices[if choices.len() == 1 { 0 } else { rng.random_range(0..choices.len()) }];
    Some(match c {
        DeptChoice::Fixed(i) => world.depts.code(*i).clone(),
        DeptChoice::Tag(t) => {
            let v = &world.depts.by_tag[t];
            world.depts.code(v[rng.random_range(0..v.len())]).clone()
        }
        DeptChoice::Street => world.street_office_code(g).clone(),
        DeptChoice::SameAsOwner => return owner.cloned(),
    })
}

fn point_geom(ll: P) -> Geometry<f64> {
    Geometry::Point(Point::new(ll[0], ll[1]))
}

/// A point 3-8 m to one side of a street centre line, on the city side, and its grid.
fn on_street(world: &World, rng: &mut ChaCha8Rng) -> Option<(P, u32)> {
    let e = &world.edges[rng.random_range(0..world.edges.len())];
    let (side, cell) = match (e.left != NONE, e.right != NONE) {
        (true, true) => {
            if rng.random_bool(0.5) {
                (1.0, e.left)
            } else {
                (-1.0, e.right)
            }
        }
        (true, false) => (1.0, e.left),
        _ => (-1.0, e.right),
    };
    let pos = &world.tiling.lattice.pos;
    let mut pts = [[0.0; 2]; 3];
    let mut n = 0;
    for &v in &e.path {
        if v != NONE {
            pts[n] = pos[v as usize];
            n += 1;
        }
    }
    let seg_len = |k: usize| ((pts[k + 1][0] - pts[k][0]).powi(2) + (pts[k + 1][1] - pts[k][1]).powi(2)).sqrt();
    let total: f64 = (0..n - 1).map(seg_len).sum();
    // Keep clear of the corners, where the neighbouring street's kerb is close.
    let mut s = rng.random_range(0.2..0.8) * total;
    let mut k = 0;
    while k + 2 < n && s > seg_len(k) {
        s -= seg_len(k);
        k += 1;
    }
    let len = seg_len(k);
    let (dx, dy) = ((pts[k + 1][0] - pts[k][0]) / len, (pts[k + 1][1] - pts[k][1]) / len);
    let t = s.min(len);
    let off = rng.random_range(3.0..8.0) * side;
    let q = [pts[k][0] + t * dx - off * dy, pts[k][1] + t * dy + off * dx];
    let ll = world.frame.to_lonlat(q);
    world.index.locate_hinted(ll, world.tiling.cell_grids[cell as usize]).map(|g| (ll, g))
}

/// A point in the middle part of a random lattice cell, and its grid.
pub(super) fn in_block(world: &World, rng: &mut ChaCha8Rng, spread: f64) -> Option<(P, u32)> {
    let lat = &world.tiling.lattice;
    let cell = lat.cells[rng.random_range(0..lat.cells.len())];
    let k = lat.cell_corners(cell);
    let s = rng.random_range(0.5 - spread..0.5 + spread);
    let t = rng.random_range(0.5 - spread..0.5 + spread);
    let w = [(1.0 - s) * (1.0 - t), s * (1.0 - t), s * t, (1.0 - s) * t];
    let q = [
        w[0] * k[0][0] + w[1] * k[1][0] + w[2] * k[2][0] + w[3] * k[3][0],
        w[0] * k[0][1] + w[1] * k[1][1] + w[2] * k[2][1] + w[3] * k[3][1],
    ];
    let ll = world.frame.to_lonlat(q);
    world.index.locate_hinted(ll, world.tiling.cell_grids[cell as usize]).map(|g| (ll, g))
}

/// A 20-40 m square green space well inside one random grid, clear of the green spaces
/// already there (`placed`: per grid, centre and circumradius in local metres) unless
/// `crowded`, when a tiny city has more green spaces than room.
fn green_square(
    world: &World,
    placed: &mut [Vec<(P, f64)>],
    crowded: bool,
    rng: &mut ChaCha8Rng,
) -> Option<(Geometry<f64>, u32)> {
    let g = rng.random_range(0..world.tiling.grids.len()) as u32;
    let ring = world.grid_ring_local(g);
    let c = centroid(&ring);
    let (sin, cos) = rng.random_range(0.0..std::f64::consts::FRAC_PI_2).sin_cos();
    let mut side: f64 = rng.random_range(20.0..40.0);
    for _ in 0..6 {
        let centre = [c[0] + rng.random_range(-30.0..30.0), c[1] + rng.random_range(-30.0..30.0)];
        let square = |half: f64| -> Vec<P> {
            [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]
                .iter()
                .map(|u| {
                    let (x, y) = (u[0] * half, u[1] * half);
                    [centre[0] + x * cos - y * sin, centre[1] + x * sin + y * cos]
                })
                .collect()
        };
        let radius = (side / 2.0 + 1.0) * std::f64::consts::SQRT_2;
        let clear =
            crowded || placed[g as usize].iter().all(|(q, r)| (q[0] - centre[0]).hypot(q[1] - centre[1]) > r + radius);
        // Test a square 1 m larger all round, so the stored one keeps clear of the grid edge.
        if clear && convex_inside(&ring, &square(side / 2.0 + 1.0)) {
            placed[g as usize].push((centre, radius));
            let mut pts: Vec<Coord<f64>> = square(side / 2.0)
                .into_iter()
                .map(|q| {
                    let ll = world.frame.to_lonlat(q);
                    Coord { x: ll[0], y: ll[1] }
                })
                .collect();
            pts.push(pts[0]);
            return Some((Geometry::Polygon(Polygon::new(LineString(pts), vec![])), g));
        }
        side = (side * 0.85).max(12.0);
    }
    None
}

fn retry<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(x) = f() {
            return x;
        }
    }
    panic!("demo placement kept failing");
}

/// `n` components over the classes in proportion to the profile weights, sorted by code.
/// Also returns each component's grid index.
pub(super) fn components(
    world: &World,
    classes: &[ComponentClass],
    profiles: &[ComponentProfile],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<Component>, Vec<u32>) {
    let counts = apportion(&profiles.iter().map(|p| p.weight).collect::<Vec<_>>(), n);
    let nd = world.district_codes.len();
    let mut out: Vec<Component> = Vec::with_capacity(n);
    let mut grid_of: Vec<u32> = Vec::with_capacity(n);
    let mut district_of: Vec<u32> = Vec::with_capacity(n);
    let statuses: Vec<(&str, f64)> = STATUSES.to_vec();
    let mut placed: Vec<Vec<(P, f64)>> = vec![Vec::new(); world.tiling.grids.len()];
    for ((class, prof), &count) in classes.iter().zip(profiles).zip(&counts) {
        let owners = parse_choices(&prof.owners, world);
        let maintainers = parse_choices(&prof.maintainers, world);
        let competent = Some(world.depts.code(world.depts.key(prof.competent)).clone());
        let interior = INTERIOR_CLASSES.contains(&class.code.as_str());
        for _ in 0..count {
            let (geom, g) = if class.geom_type == "polygon" {
                let mut tries = 0;
                retry(|| {
                    tries += 1;
                    green_square(world, &mut placed, tries > 200, rng)
                })
            } else if interior {
                retry(|| in_block(world, rng, 0.2)).map_first(point_geom)
            } else {
                retry(|| on_street(world, rng)).map_first(point_geom)
            };
            let status = *pick_weighted(&statuses, rng);
            let surveyed = rng.random_range(1..=SURVEY_DAYS);
            let changed = if surveyed > 1 && (status != "完好" || rng.random_bool(0.2)) {
                rng.random_range(1..surveyed)
            } else {
                surveyed
            };
            let owner = choose_dept(&owners, None, g, world, rng);
            let maint = choose_dept(&maintainers, owner.as_ref(), g, world, rng);
            out.push(Component {
                code: Str::default(),
                class_code: class.code.clone(),
                name: Str::default(),
                status: status.into(),
                competent_dept: competent.clone(),
                owner_dept: owner,
                maint_dept: maint,
                grid_code: Some(world.grid_codes[g as usize].clone()),
                survey_date: Some(world.date_before(surveyed)),
                change_date: Some(world.date_before(changed)),
                source: "普查".into(),
                geom: geom.into(),
            });
            grid_of.push(g);
            district_of.push(world.grid_district[g as usize]);
        }
    }

    // Reorder district-major (classes are already in code order), in place so a
    // ten-million-component city is never held twice.
    let mut start = vec![0usize; nd + 1];
    for &d in &district_of {
        start[d as usize + 1] += 1;
    }
    for d in 0..nd {
        start[d + 1] += start[d];
    }
    let mut dest: Vec<u32> = district_of
        .iter()
        .map(|&d| {
            let i = start[d as usize];
            start[d as usize] += 1;
            i as u32
        })
        .collect();
    drop(district_of);
    for i in 0..dest.len() {
        while dest[i] as usize != i {
            let j = dest[i] as usize;
            out.swap(i, j);
            grid_of.swap(i, j);
            dest.swap(i, j);
        }
    }

    let mut serial = 0u32;
    let mut class_name = Str::default();
    for i in 0..out.len() {
        let d = world.grid_district[grid_of[i] as usize] as usize;
        let same_run = i > 0
            && out[i - 1].class_code == out[i].class_code
            && world.grid_district[grid_of[i - 1] as usize] as usize == d;
        if !same_run {
            serial = 0;
            class_name = classes.iter().find(|k| k.code == out[i].class_code).expect("class").name.clone();
        }
        serial += 1;
        assert!(serial <= 999_999, "more than 999,999 components of one class in one district");
        let c = &mut out[i];
        c.code = format_compact!("{}{}{:06}", world.district_codes[d], c.class_code, serial);
        c.name = format_compact!("{}{:06}", class_name, serial);
    }
    (out, grid_of)
}

trait MapFirst<A, B> {
    fn map_first<C>(self, f: impl FnOnce(A) -> C) -> (C, B);
}

impl<A, B> MapFirst<A, B> for (A, B) {
    fn map_first<C>(self, f: impl FnOnce(A) -> C) -> (C, B) {
        (f(self.0), self.1)
    }
}

/// Where a component "is" for a point feature: the point, or a polygon's vertex average.
pub(super) fn anchor(geom: &Geometry<f64>) -> P {
    match geom {
        Geometry::Point(p) => [p.x(), p.y()],
        Geometry::Polygon(poly) => {
            let r = &poly.exterior().0[..poly.exterior().0.len() - 1];
            let n = r.len() as f64;
            [r.iter().map(|c| c.x).sum::<f64>() / n, r.iter().map(|c| c.y).sum::<f64>() / n]
        }
        _ => unreachable!("demo components are points or polygons"),
    }
}

/// `n` sensors over the kinds, each mounted on a component of a suitable class where the city
/// has one (a fresh one while any is left).
pub(super) fn sensors(
    world: &World,
    components: &[Component],
    grid_of: &[u32],
    classes: &[ComponentClass],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Sensor> {
    let wanted: BTreeSet<&str> = SENSOR_KINDS.iter().flat_map(|k| k.4.iter().copied()).collect();
    let mut by_class: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        if let Some(&k) = wanted.get(c.class_code.as_str()) {
            by_class.entry(k).or_default().push(i as u32);
        }
    }
    let counts = apportion(&SENSOR_KINDS.iter().map(|k| k.3).collect::<Vec<_>>(), n);
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    for (&(kind, abbr, label, _, mounts), &count) in SENSOR_KINDS.iter().zip(&counts) {
        let pool: Vec<u32> = mounts.iter().flat_map(|m| by_class.get(m).into_iter().flatten().copied()).collect();
        for k in 0..count {
            let comp = if pool.is_empty() {
                None
            } else {
                let mut pick = pool[rng.random_range(0..pool.len())];
                for _ in 0..8 {
                    if !used.contains(&pick) {
                        break;
                    }
                    pick = pool[rng.random_range(0..pool.len())];
                }
                used.insert(pick);
                Some(pick)
            };
            let (ll, g, what) = match comp {
                Some(i) => {
                    let c = &components[i as usize];
                    let cname = &classes.iter().find(|k| k.code == c.class_code).expect("class").name;
                    (anchor(&c.geom.to_geometry()), grid_of[i as usize], cname.as_str())
                }
                None => {
                    let (ll, g) = retry(|| in_block(world, rng, 0.3));
                    (ll, g, "")
                }
            };
            let community = &world.community_names[world.grid_community(g) as usize];
            out.push(Sensor {
                code: format_compact!("SEN-{abbr}-{:04}", k + 1),
                kind: kind.into(),
                name: format!("{community}{what}{label}").into(),
                component_code: comp.map(|i| components[i as usize].code.clone()),
                grid_code: Some(world.grid_codes[g as usize].clone()),
                thresholds: None,
                geom: Point::new(ll[0], ll[1]),
                live: Default::default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::apportion;

    #[test]
    fn apportion_is_exact_and_covers_all() {
        let w = [9.0, 0.04, 18.0, 0.3];
        let a = apportion(&w, 1000);
        assert_eq!(a.iter().sum::<usize>(), 1000);
        assert!(a.iter().all(|&x| x >= 1));
        assert!(a[2] > a[0] && a[0] > a[3]);
        assert_eq!(apportion(&w, 2).iter().sum::<usize>(), 2);
        assert_eq!(apportion(&w, 0), vec![0; 4]);
    }
}
