//! Field staff (巡查人员: 监督员, 信息采集员, departments' 处置人员): the registry, positions into
//! tracks and the live layer ([`positions`]), who is nearest a place, a member's track, and
//! patrol coverage (巡查覆盖率, [`patrol`]).

pub mod patrol;
pub mod positions;
pub mod tasks;

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::events::{Change, Item, Live, bbox_of};
use crate::geo::Crs;
use crate::index::{CityIndex, Record};
use crate::model::{Collection, MAX_CODE, Position, Staff, StaffRole, Str, check_text, rfc3339_ms, valid_code};
use crate::store::StoreError;
use crate::store::log::{ChangeRow, Op};

/// What can be wrong with a registration, a positions request or a staff query.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StaffError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown staff role {0:?}; one of supervisor, collector, worker")]
    UnknownRole(String),
    #[error("unknown staff member {0:?}")]
    UnknownStaff(String),
    #[error("a staff member {0:?} is already registered")]
    Exists(String),
    #[error("unknown unit grid {0:?}")]
    UnknownGrid(String),
    #[error("unknown community {0:?}")]
    UnknownCommunity(String),
    #[error("unknown department {0:?}")]
    UnknownDepartment(String),
    #[error("the point ({0}, {1}) is in no unit grid of this city")]
    OutsideCity(f64, f64),
    #[error("{0}")]
    TooMuch(String),
}

/// The body of `POST /api/v1/staff`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub code: String,
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub dept_code: Option<String>,
    /// The community whose grids the member patrols.
    #[serde(default)]
    pub community: Option<String>,
    /// Unit grids the member patrols (besides the community's).
    #[serde(default)]
    pub grids: Option<Vec<String>>,
    /// Where the member starts; by default an inner point of their first grid.
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub crs: Option<String>,
}

/// Most grids one member may be given by name.
pub const MAX_GRIDS: usize = 2_000;

/// What a registration is checked against: the codes the city knows.
pub struct Known<'a> {
    pub community: &'a dyn Fn(&str) -> bool,
    pub grid: &'a dyn Fn(&str) -> bool,
    pub department: &'a dyn Fn(&str) -> bool,
}

impl Known<'_> {
    /// The codes the live index knows.
    pub fn of_index<R>(index: &CityIndex, f: impl FnOnce(&Known) -> R) -> R {
        let communities = index.communities.read();
        let grids = index.grids.read();
        let dict = index.dict.read();
        let community = |c: &str| communities.get(c).is_some();
        let grid = |g: &str| grids.get(g).is_some();
        let department = |d: &str| dict.departments.contains_key(d);
        f(&Known { community: &community, grid: &grid, department: &department })
    }
}

/// Checks a member's record against the city (shared by the API and `onemap import staff`).
pub fn check(s: &Staff, known: &Known) -> Result<(), StaffError> {
    let invalid = |m: String| StaffError::Invalid(m);
    if !valid_code(&s.code) {
        return Err(invalid(format!("code {:?}: 1 to {MAX_CODE} letters, digits, '-', '_', '.' or ':'", s.code)));
    }
    let name = s.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("name: 1 to 100 characters".into()));
    }
    check_text("name", name).map_err(invalid)?;
    match (s.role, s.dept_code.as_deref()) {
        (StaffRole::Worker, None) => return Err(invalid("a worker needs dept_code, their department".into())),
        (_, Some(d)) if !(known.department)(d) => return Err(StaffError::UnknownDepartment(d.into())),
        _ => {}
    }
    if let Some(c) = s.community_code.as_deref()
        && !(known.community)(c)
    {
        return Err(StaffError::UnknownCommunity(c.into()));
    }
    if s.grids.len() > MAX_GRIDS {
        return Err(StaffError::TooMuch(format!("{} grids; at most {MAX_GRIDS} a member", s.grids.len())));
    }
    if let Some(g) = s.grids.iter().find(|g| !(known.grid)(g)) {
        return Err(StaffError::UnknownGrid(g.to_string()));
    }
    Ok(())
}

/// Checks a registration against the city and builds the member's record.
pub fn register(req: &NewStaff, index: &CityIndex) -> Result<Staff, StaffError> {
    let invalid = |m: String| StaffError::Invalid(m);
    let role = StaffRole::parse(&req.role).ok_or_else(|| StaffError::UnknownRole(req.role.clone()))?;
    let mut grids: Vec<Str> = req.grids.iter().flatten().map(|g| Str::from(g.trim())).collect();
    grids.dedup();
    let mut staff = Staff {
        code: req.code.as_str().into(),
        name: req.name.trim().into(),
        role,
        dept_code: req.dept_code.as_deref().map(Into::into),
        community_code: req.community.as_deref().map(Into::into),
        grids: grids.into(),
        geom: geo::Point::new(0.0, 0.0),
        last_seen: None,
        on_duty: false,
        grid_code: None,
    };
    Known::of_index(index, |k| check(&staff, k))?;
    staff.geom = match (req.lon, req.lat) {
        (Some(lon), Some(lat)) => {
            let crs: Crs = req
                .crs
                .as_deref()
                .unwrap_or("wgs84")
                .parse()
                .map_err(|e: crate::geo::CrsError| invalid(e.to_string()))?;
            crate::geo::check_lon_lat(lon, lat).map_err(|e| invalid(e.to_string()))?;
            let (x, y) = crs.to_cgcs2000(lon, lat).map_err(|e| invalid(e.to_string()))?;
            crate::grids::grid_code_at(index, x, y).ok_or(StaffError::OutsideCity(lon, lat))?;
            geo::Point::new(x, y)
        }
        (None, None) => home(&staff, index).ok_or_else(|| {
            invalid("give the grids or community the member patrols, or a starting point (lon, lat)".into())
        })?,
        _ => return Err(invalid("lon and lat go together".into())),
    };
    if index.staff.read().get(&staff.code).is_some() {
        return Err(StaffError::Exists(staff.code.to_string()));
    }
    Ok(staff)
}

/// An inner point of the member's first assigned grid.
fn home(s: &Staff, index: &CityIndex) -> Option<geo::Point<f64>> {
    use geo::InteriorPoint;
    let first = assigned_grids(s, index).into_iter().next()?;
    index.grids.read().get(&first)?.geom.interior_point()
}

/// The unit grids a member patrols: their community's and those named, in code order.
pub fn assigned_grids(s: &Staff, index: &CityIndex) -> BTreeSet<Str> {
    let mut out: BTreeSet<Str> = s.grids.iter().cloned().collect();
    if let Some(c) = &s.community_code {
        out.extend(grids_of_community(index, c));
    }
    out
}

/// The codes of a community's grids (a grid code begins with its community's).
fn grids_of_community(index: &CityIndex, community: &str) -> Vec<Str> {
    let communities = index.communities.read();
    let Some(c) = communities.get(community) else { return Vec::new() };
    let grids = index.grids.read();
    let mut out: Vec<Str> = grids
        .intersecting(&geo::Geometry::MultiPolygon(c.geom.clone()))
        .into_iter()
        .filter(|g| g.community_code == community)
        .map(|g| g.code.clone())
        .collect();
    out.sort();
    out
}

pub use crate::model::tenths;

/// A member as the API and the feed show them: their properties, position and assigned grids.
pub fn to_json(s: &Staff) -> Value {
    let mut v = Value::Object(s.properties());
    v["lon"] = json!(s.geom.x());
    v["lat"] = json!(s.geom.y());
    v["grids"] = json!(s.grids.as_ref());
    v
}

/// Stores a newly registered member with its change (`staff.registered`), then applies it.
/// Returns the sequence number.
pub async fn commit_register(live: &Live, staff: &Staff) -> Result<i64, StoreError> {
    let row = ChangeRow {
        bbox: vec![bbox_of(&staff.envelope())],
        ..ChangeRow::record(
            Collection::Staff,
            staff.code.as_str(),
            Op::Upsert,
            Some("staff.registered"),
            Some(to_json(staff)),
        )
    };
    let in_flight = live.in_flight();
    let seqs = crate::store::insert(&**live.store(), std::slice::from_ref(staff), vec![row.clone()]).await?;
    live.commit(vec![Change::committed(seqs[0], row, vec![Item::Staff(staff.clone())])], in_flight).await?;
    Ok(seqs[0])
}

/// Most members `nearest` returns.
pub const MAX_NEAREST: usize = 100;

/// The `k` members nearest a point (CGCS2000), nearest first, with their distance in metres;
/// only those on duty when `on_duty`, only those who patrol when `patrolling`.
pub fn nearest(index: &CityIndex, lon: f64, lat: f64, k: usize, on_duty: bool, patrolling: bool) -> Vec<(Staff, f64)> {
    let staff = index.staff.read();
    staff
        .nearest_where(lon, lat, k.min(MAX_NEAREST), |s| (!on_duty || s.on_duty) && (!patrolling || s.role.patrols()))
        .into_iter()
        .map(|(s, d)| (s.clone(), d))
        .collect()
}

/// A member's track as a GeoJSON Feature: a LineString through the positions (a Point for a
/// single one, no geometry for none) with the time of each vertex and the distance walked.
pub fn track_feature(s: &Staff, track: &[Position], crs: &Crs) -> Result<Value, crate::geo::CrsError> {
    let coords: Vec<[f64; 2]> =
        track.iter().map(|p| crs.from_cgcs2000(p.lon, p.lat).map(|(x, y)| [x, y])).collect::<Result<_, _>>()?;
    let geometry = match coords.len() {
        0 => Value::Null,
        1 => json!({"type": "Point", "coordinates": coords[0]}),
        _ => json!({"type": "LineString", "coordinates": coords}),
    };
    let distance: f64 =
        track.windows(2).map(|w| crate::geo::haversine_m((w[0].lon, w[0].lat), (w[1].lon, w[1].lat))).sum();
    Ok(json!({
        "type": "Feature",
        "id": s.code,
        "geometry": geometry,
        "properties": {
            "code": s.code, "name": s.name, "role": s.role,
            "from": track.first().map(|p| rfc3339_ms(p.at)), "to": track.last().map(|p| rfc3339_ms(p.at)),
            "points": track.len(),
            "distance_m": tenths(distance),
            "times": track.iter().map(|p| rfc3339_ms(p.at)).collect::<Vec<_>>(),
            "grids": track.iter().map(|p| p.grid_code.clone()).collect::<Vec<_>>(),
        },
    }))
}
