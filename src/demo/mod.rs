//! Deterministic demo city: a Shigatse-like (日喀则) city, or a larger one at Chongqing scale
//! around the same centre, with the full hierarchy of districts, streets, communities and unit
//! grids, departments and who answers for what, class dictionaries, components, cases and
//! sensors.
//!
//! This module owns:
//! - [`generate`]: parameters in, [`City`] out, byte-identical for equal [`DemoParams`] (one
//!   ChaCha8 stream per part, no hash-map iteration, fixed "now" of [`DEMO_NOW`]);
//! - the class dictionaries in `data/` ([`component_classes`], [`event_classes`],
//!   [`major_classes`]), which real imports may also start from;
//! - unified social credit code checks ([`uscc_check_char`], [`is_valid_uscc`]).
//!
//! Geometry is built in local metres on a tangent plane ([`LocalFrame`]) and stored as
//! CGCS2000 lon/lat. Unit grids come from a jittered street lattice (see `layout`), so they
//! tile every community exactly; each higher level is the exact union of its children.

mod assets;
mod cases;
mod depts;
pub(crate) mod dict;
mod dissolve;
mod layout;
mod locate;
mod names;
mod planar;
pub mod simulate;
mod uscc;

#[cfg(test)]
mod tests;

use ::geo::{Coord, GeodesicArea, LineString, MultiPolygon, Polygon};
use chrono::{DateTime, NaiveDate, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::model::{
    Camera, City, Community, Component, Department, District, Grid, Responsibility, Sensor, Staff, StaffRole, Str,
    Street,
};
use dissolve::Region;
use layout::{StreetEdge, Tiling};
use locate::GridIndex;
use planar::P;

pub use dict::{MajorClass, component_classes, event_classes, major_classes};
pub use uscc::{is_valid_uscc, org_code_check_char, uscc_check_char};

/// Centre of the demo city: Shigatse, south of the Yarlung Tsangpo.
pub const SHIGATSE_CENTRE: (f64, f64) = (88.88, 29.27);

/// The demo's "now": cases cover the two years before it and component surveys the three
/// years before it, so output never depends on the clock (2026-11-01 00:00 Beijing time).
pub fn demo_now() -> DateTime<Utc> {
    DateTime::from_timestamp(DEMO_NOW, 0).expect("valid timestamp")
}

/// [`demo_now`] as a Unix timestamp.
pub const DEMO_NOW: i64 = 1_793_462_400;

/// How big a demo city to make.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoParams {
    pub seed: u64,
    pub grids: usize,
    pub components: usize,
    pub cases: usize,
    pub sensors: usize,
    pub districts: usize,
    pub streets: usize,
    pub communities: usize,
    pub departments: usize,
    /// When the city's history ends (Unix seconds): cases are reported over the two years
    /// before it and their steps stop at it. [`DEMO_NOW`] by default, so a city is the same
    /// whenever it is generated; a seeded demo ends at the moment it is seeded
    /// ([`DemoParams::ending_now`]), so today's counters and deadlines are alive on any day.
    pub end: i64,
}

impl DemoParams {
    /// The same city with its history ending now.
    pub fn ending_now(mut self) -> Self {
        self.end = Utc::now().timestamp();
        self
    }

    /// Shigatse's published figures: 6,453 unit grids, 4 districts, 9 streets, 43 communities,
    /// 90 departments; 150,000 components, 50,000 cases, 250 sensors.
    pub fn shigatse() -> Self {
        DemoParams {
            seed: 2026,
            grids: 6_453,
            components: 150_000,
            cases: 50_000,
            sensors: 250,
            districts: 4,
            streets: 9,
            communities: 43,
            departments: 90,
            end: DEMO_NOW,
        }
    }

    /// Chongqing scale (65,000 grids, 10 million components, 1 million cases), laid out around
    /// the same centre: what the server must hold on one machine.
    pub fn chongqing() -> Self {
        DemoParams {
            seed: 2026,
            grids: 65_000,
            components: 10_000_000,
            cases: 1_000_000,
            sensors: 3_000,
            districts: 41,
            streets: 90,
            communities: 430,
            departments: 600,
            end: DEMO_NOW,
        }
    }

    /// [`Self::shigatse`] with grids, components, cases, sensors and communities multiplied
    /// by `factor` (at least one of each); streets and districts shrink only as far as needed
    /// to keep every street and district non-empty.
    pub fn scaled(factor: f64) -> Self {
        let s = Self::shigatse();
        let f = |n: usize| ((n as f64 * factor).round() as usize).max(1);
        let communities = f(s.communities);
        let streets = s.streets.min(communities);
        DemoParams {
            grids: f(s.grids),
            components: f(s.components),
            cases: f(s.cases),
            sensors: f(s.sensors),
            communities,
            streets,
            districts: s.districts.min(streets),
            ..s
        }
    }
}

/// Local tangent-plane metres around a centre, for building geometry at city scale: at
/// Shigatse's latitude 1 degree of longitude is about 97.1 km and of latitude about 110.8 km.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFrame {
    pub lon0: f64,
    pub lat0: f64,
    pub m_per_deg_lon: f64,
    pub m_per_deg_lat: f64,
}

impl LocalFrame {
    /// Frame at (lon0, lat0) on the CGCS2000 ellipsoid (radii of curvature at that latitude).
    pub fn at(lon0: f64, lat0: f64) -> Self {
        const A: f64 = 6_378_137.0;
        const F: f64 = 1.0 / 298.257_222_101;
        let e2 = F * (2.0 - F);
        let phi = lat0.to_radians();
        let w = (1.0 - e2 * phi.sin().powi(2)).sqrt();
        let deg = std::f64::consts::PI / 180.0;
        LocalFrame {
            lon0,
            lat0,
            m_per_deg_lon: deg * A * phi.cos() / w,
            m_per_deg_lat: deg * A * (1.0 - e2) / (w * w * w),
        }
    }

    pub fn shigatse() -> Self {
        Self::at(SHIGATSE_CENTRE.0, SHIGATSE_CENTRE.1)
    }

    pub fn to_lonlat(&self, p: [f64; 2]) -> [f64; 2] {
        [self.lon0 + p[0] / self.m_per_deg_lon, self.lat0 + p[1] / self.m_per_deg_lat]
    }

    pub fn to_local(&self, c: [f64; 2]) -> [f64; 2] {
        [(c[0] - self.lon0) * self.m_per_deg_lon, (c[1] - self.lat0) * self.m_per_deg_lat]
    }
}

/// Everything the later stages (components, sensors, cases) need to know about the plan.
struct World {
    /// When the history ends (Unix seconds), and the city's midnight at or after it: the day
    /// grid report times are drawn on ends there, and reports after `end` are dropped.
    end: i64,
    midnight: i64,
    frame: LocalFrame,
    tiling: Tiling,
    index: GridIndex,
    edges: Vec<StreetEdge>,
    grid_codes: Vec<Str>,
    grid_serial: Vec<u32>,
    grid_street: Vec<u32>,
    grid_district: Vec<u32>,
    district_codes: Vec<Str>,
    street_names: Vec<Str>,
    community_names: Vec<Str>,
    depts: depts::Depts,
}

impl World {
    fn grid_ring_local(&self, g: u32) -> Vec<P> {
        self.tiling.grids[g as usize].ring.iter().map(|&v| self.tiling.lattice.pos[v as usize]).collect()
    }

    fn grid_community(&self, g: u32) -> u32 {
        self.tiling.grids[g as usize].community
    }

    /// The city date `days` before the day that ends at [`World::midnight`]'s (the end's date
    /// when it is a midnight, tomorrow's otherwise).
    fn date_before(&self, days: i64) -> NaiveDate {
        let day = DateTime::from_timestamp(self.midnight, 0)
            .expect("valid timestamp")
            .with_timezone(&crate::model::city_tz());
        day.date_naive() - chrono::Duration::days(days)
    }

    fn street_office_code(&self, g: u32) -> &Str {
        self.depts.code(self.depts.street_office[self.grid_street[g as usize] as usize])
    }
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

fn ring_lonlat(ring: &[u32], lonlat: &[P]) -> LineString<f64> {
    let mut pts: Vec<Coord<f64>> =
        ring.iter().map(|&v| Coord { x: lonlat[v as usize][0], y: lonlat[v as usize][1] }).collect();
    pts.push(pts[0]);
    LineString(pts)
}

fn regions_to_multipolygon(regions: &[Region], lonlat: &[P]) -> MultiPolygon<f64> {
    MultiPolygon(
        regions
            .iter()
            .map(|r| {
                Polygon::new(ring_lonlat(&r.exterior, lonlat), r.holes.iter().map(|h| ring_lonlat(h, lonlat)).collect())
            })
            .collect(),
    )
}

/// Builds the demo city for `p`. Counts are taken as given except where they would leave a
/// level empty or overflow a code: 1 <= districts <= streets <= communities <= grids, at most
/// 500 grids per community on average, and at least as many departments as the city bodies,
/// district governments and street offices need.
pub fn generate(p: &DemoParams) -> City {
    let grids_n = p.grids.max(1);
    let communities_n = p.communities.clamp(1, grids_n).max(grids_n.div_ceil(500));
    let streets_n = p.streets.clamp(1, communities_n);
    let districts_n = p.districts.clamp(1, streets_n);

    let tiling = layout::build_tiling(grids_n, communities_n, streets_n, districts_n, &mut rng_for(p.seed, 1));
    let frame = LocalFrame::shigatse();
    let lonlat: Vec<P> = tiling.lattice.pos.iter().map(|&q| frame.to_lonlat(q)).collect();

    // Codes and names, level by level; each level's children are contiguous and in order.
    let mut districts: Vec<District> = Vec::with_capacity(districts_n);
    for i in 0..districts_n {
        let (code, name) = names::district(i);
        districts.push(District { code: code.into(), name: name.into(), geom: MultiPolygon(vec![]) });
    }
    let mut streets: Vec<Street> = Vec::with_capacity(streets_n);
    let mut serial = vec![0usize; districts_n];
    for (s, &d) in tiling.street_district.iter().enumerate() {
        serial[d as usize] += 1;
        assert!(serial[d as usize] <= 999, "more than 999 streets in a district");
        let dc = &districts[d as usize].code;
        streets.push(Street {
            code: format!("{dc}{:03}", serial[d as usize]).into(),
            name: names::street(s).into(),
            district_code: dc.clone(),
            geom: MultiPolygon(vec![]),
        });
    }
    let mut communities: Vec<Community> = Vec::with_capacity(communities_n);
    let mut serial = vec![0usize; streets_n];
    for (c, &s) in tiling.community_street.iter().enumerate() {
        serial[s as usize] += 1;
        assert!(serial[s as usize] <= 999, "more than 999 communities in a street");
        let sc = &streets[s as usize].code;
        communities.push(Community {
            code: format!("{sc}{:03}", serial[s as usize]).into(),
            name: names::community(c).into(),
            street_code: sc.clone(),
            geom: MultiPolygon(vec![]),
        });
    }
    let mut per_comm = vec![0usize; communities_n];
    for g in &tiling.grids {
        per_comm[g.community as usize] += 1;
    }
    let max_per_comm = per_comm.iter().copied().max().unwrap_or(0);
    assert!(max_per_comm <= 999, "more than 999 grids in a community");
    // One width per city: the 14-digit form unless some community needs more than 99 grids.
    let width = if max_per_comm <= 99 { 2 } else { 3 };
    let mut grids: Vec<Grid> = Vec::with_capacity(tiling.grids.len());
    let mut grid_serial = Vec::with_capacity(tiling.grids.len());
    let mut serial = vec![0u32; communities_n];
    for g in &tiling.grids {
        let c = g.community as usize;
        serial[c] += 1;
        grid_serial.push(serial[c]);
        let comm = &communities[c];
        let geom = Polygon::new(ring_lonlat(&g.ring, &lonlat), vec![]);
        grids.push(Grid {
            code: format!("{}{:0width$}", comm.code, serial[c]).into(),
            name: format!("{}第{:03}网格", comm.name, serial[c]).into(),
            community_code: comm.code.clone(),
            area_m2: geom.geodesic_area_unsigned(),
            geom,
        });
    }

    // Unions: grids are ordered by district, street, community, so every unit is a run.
    let runs = |key: &dyn Fn(usize) -> u32, n: usize| -> Vec<std::ops::Range<usize>> {
        let mut r = vec![0..0; n];
        let mut start = 0;
        for g in 1..=tiling.grids.len() {
            if g == tiling.grids.len() || key(g) != key(start) {
                r[key(start) as usize] = start..g;
                start = g;
            }
        }
        r
    };
    let comm_of = |g: usize| tiling.grids[g].community;
    let street_of = |g: usize| tiling.community_street[comm_of(g) as usize];
    let district_of = |g: usize| tiling.street_district[street_of(g) as usize];
    let union = |range: std::ops::Range<usize>| {
        let regions = dissolve::dissolve(tiling.grids[range].iter().map(|g| g.ring.as_slice()), &tiling.lattice.pos);
        regions_to_multipolygon(&regions, &lonlat)
    };
    for (c, r) in runs(&comm_of, communities_n).into_iter().enumerate() {
        communities[c].geom = union(r);
    }
    for (s, r) in runs(&street_of, streets_n).into_iter().enumerate() {
        streets[s].geom = union(r);
    }
    for (d, r) in runs(&district_of, districts_n).into_iter().enumerate() {
        districts[d].geom = union(r);
    }
    let grid_street: Vec<u32> = (0..grids.len()).map(street_of).collect();
    let grid_district: Vec<u32> = (0..grids.len()).map(district_of).collect();

    let dept_districts: Vec<(Str, Str)> = districts.iter().map(|d| (d.code.clone(), d.name.clone())).collect();
    let dept_streets: Vec<(Str, Str, u32)> =
        streets.iter().zip(&tiling.street_district).map(|(s, &d)| (s.code.clone(), s.name.clone(), d)).collect();
    let depts = depts::build(p.departments, &dept_districts, &dept_streets, &mut rng_for(p.seed, 2));

    let cprof = dict::component_profile();
    let eprof = dict::event_profile();
    let mut component_classes = dict::component_classes();
    for (c, pr) in component_classes.iter_mut().zip(&cprof) {
        assert_eq!(pr.code, c.code.as_str(), "demo_component_profile.csv must list the classes in order");
        c.competent_dept = Some(depts.code(depts.key(pr.competent)).clone());
    }
    let mut event_classes = dict::event_classes();
    for (c, pr) in event_classes.iter_mut().zip(&eprof) {
        assert_eq!(pr.code, c.code.as_str(), "demo_event_profile.csv must list the classes in order");
        c.default_dept = Some(depts.code(depts.key(pr.default_dept)).clone());
    }

    let mut responsibilities = Vec::new();
    let mut resp = |dept: &Str, scope: &str, target: &Str, role: &str| {
        responsibilities.push(Responsibility {
            dept_code: dept.clone(),
            scope: scope.into(),
            target: target.clone(),
            role: role.into(),
        })
    };
    for (s, &o) in streets.iter().zip(&depts.street_office) {
        resp(depts.code(o), "territory", &s.code, "street_office");
    }
    for (d, &o) in districts.iter().zip(&depts.district_gov) {
        resp(depts.code(o), "territory", &d.code, "district_government");
    }
    for c in &event_classes {
        resp(c.default_dept.as_ref().unwrap(), "event_class", &c.code, "class_default");
    }
    // Component and event class codes share the 4-digit space, hence two class scopes.
    for c in &component_classes {
        resp(c.competent_dept.as_ref().unwrap(), "component_class", &c.code, "competent");
    }

    let index = GridIndex::new(
        grids
            .iter()
            .map(|g| g.geom.exterior().0[..g.geom.exterior().0.len() - 1].iter().map(|c| [c.x, c.y]).collect())
            .collect(),
    );
    let world = World {
        end: p.end,
        midnight: local_midnight_at_or_after(p.end),
        frame,
        edges: tiling.lattice.street_edges(),
        index,
        grid_codes: grids.iter().map(|g| g.code.clone()).collect(),
        grid_serial,
        grid_street,
        grid_district,
        district_codes: districts.iter().map(|d| d.code.clone()).collect(),
        street_names: streets.iter().map(|s| s.name.clone()).collect(),
        community_names: communities.iter().map(|c| c.name.clone()).collect(),
        depts,
        tiling,
    };

    let (components, comp_grid) =
        assets::components(&world, &component_classes, &cprof, p.components, &mut rng_for(p.seed, 3));
    let sensors =
        assets::sensors(&world, &components, &comp_grid, &component_classes, p.sensors, &mut rng_for(p.seed, 4));
    let catalogue = cases::Catalogue { components: &component_classes, events: &event_classes, event_profile: &eprof };
    let scripted = cases::cases(&world, &components, &comp_grid, &catalogue, p.cases, &mut rng_for(p.seed, 5));
    drop(comp_grid);
    // Each case goes through its workflow; dispatches go where owner-first routing sends them.
    let departments = world.depts.list;
    let dict = crate::index::Dictionaries::new(departments.clone(), responsibilities.clone(), vec![], vec![]);
    let by_code: std::collections::HashMap<&str, &Component> =
        components.iter().map(|c| (c.code.as_str(), c)).collect();
    let deadlines = crate::cases::Deadlines::default();
    let mut cases = Vec::with_capacity(scripted.len());
    let mut case_steps = Vec::with_capacity(scripted.len() * 7);
    for (mut c, script) in scripted {
        let component = c.component_code.as_deref().and_then(|k| by_code.get(k).copied());
        let dept = crate::cases::routing::suggest(&dict, &c, component).map(|s| s.0);
        cases::play(&mut c, &script, dept, &deadlines, p.end, &mut case_steps);
        cases.push(c);
    }
    drop(by_code);
    let staff = supervisors(&communities, &grids);
    let cameras = cameras(&grids, &sensors);

    City {
        districts,
        streets,
        communities,
        grids,
        departments,
        responsibilities,
        component_classes,
        event_classes,
        components,
        cases,
        case_steps,
        sensors,
        staff,
        cameras,
    }
}

/// The department code of a demo department key (`data/departments.csv`) among `departments`.
pub fn dept_by_key(departments: &[Department], key: &str) -> Option<Str> {
    let seed = dict::department_seeds().into_iter().find(|s| s.key == key)?;
    departments.iter().find(|d| d.name == seed.name).map(|d| d.code.clone())
}

/// Video cameras (视频监控): one over every eighth unit grid, and one beside each sensor of the
/// lifelines the centre confirms by eye (drain levels, gas, water mains).
fn cameras(grids: &[Grid], sensors: &[Sensor]) -> Vec<Camera> {
    use ::geo::InteriorPoint;
    let over_grids =
        grids.iter().step_by(8).filter_map(|g| Some((g.code.clone(), g.geom.interior_point()?, Some(g.code.clone()))));
    // About 20 m off, in the same grid as a rule (the camera's own grid is located on import).
    let beside_sensors = sensors
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "water_level" | "gas_lel" | "pressure"))
        .map(|s| (s.code.clone(), ::geo::Point::new(s.geom.x() + 0.0002, s.geom.y() + 0.0001), s.grid_code.clone()));
    over_grids
        .chain(beside_sensors)
        .enumerate()
        .map(|(i, (near, at, grid_code))| {
            let code: Str = format!("SXT-{near}").into();
            Camera {
                name: format!("视频监控 {near}").into(),
                stream_url: Some(format!("rtsp://video.local/{code}").into()),
                direction: Some((i * 37 % 360) as f64),
                grid_code,
                geom: at,
                code,
            }
        })
        .collect()
}

/// One supervisor (监督员) per community, patrolling its grids, registered at an inner point
/// of its first grid (where the simulator starts them).
fn supervisors(communities: &[Community], grids: &[Grid]) -> Vec<Staff> {
    use ::geo::InteriorPoint;
    let mut first: std::collections::HashMap<&str, &Grid> = std::collections::HashMap::new();
    for g in grids {
        first.entry(g.community_code.as_str()).or_insert(g);
    }
    communities
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let home = first.get(c.code.as_str())?.geom.interior_point()?;
            Some(Staff {
                code: format!("JDY-{}", c.code).into(),
                name: names::person(i).into(),
                role: StaffRole::Supervisor,
                dept_code: None,
                community_code: Some(c.code.clone()),
                grids: Vec::new().into(),
                geom: home,
                last_seen: None,
                on_duty: false,
                grid_code: None,
            })
        })
        .collect()
}

/// The city's (UTC+8) midnight at or after `t` (Unix seconds).
fn local_midnight_at_or_after(t: i64) -> i64 {
    const DAY: i64 = 86_400;
    const OFFSET: i64 = 8 * 3600;
    (t + OFFSET + DAY - 1).div_euclid(DAY) * DAY - OFFSET
}
