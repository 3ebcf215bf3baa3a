//! Decision support (决策建议): counts per aggregation unit, Getis-Ord Gi*, local and global
//! Moran's I, kernel density, emerging hotspots, rankings, the peak-time profile and box-select
//! statistics (一框统计), all computed from the live index. The statistics themselves are pure
//! functions in [`stats`]; the units and their neighbours in [`units`].

pub mod boxstats;
pub mod density;
pub mod emerging;
pub mod memo;
pub mod overlay;
pub mod ranking;
pub mod stats;
pub mod units;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

use crate::index::{CityIndex, Record};
use crate::model::{Alarm, CaseScope, Str};
use stats::{GiStar, GlobalMoran, LocalMoran};
use units::{UnitKind, Units};

/// What can be wrong with an analysis request.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("unknown unit {0:?}: use grid, community, street, district or h3:<0-15>")]
    UnknownUnit(String),
    #[error("H3 resolution {0:?} is not 0 to 15")]
    H3Resolution(String),
    #[error("H3 resolution {res} covers the city with about {cells} cells, more than {max} at once: use a coarser resolution", max = units::MAX_H3_CELLS)]
    TooManyCells { res: u8, cells: usize },
    #[error("unknown layer {0:?}: use cases, components or alarms")]
    UnknownLayer(String),
    #[error("unknown method {0:?}: use count, gi_star or local_moran")]
    UnknownMethod(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the date range is empty: from {from} is after to {to}")]
    EmptyRange { from: String, to: String },
    #[error("invalid geometry: {0}")]
    Geometry(String),
    #[error("the polygon covers {area_km2:.1} km², more than the city's {city_km2:.1} km² extent")]
    TooLarge { area_km2: f64, city_km2: f64 },
    #[error("the density grid would have {cells} cells, more than {max}: use a larger cell_m or a smaller area", max = density::MAX_CELLS)]
    TooManyDensityCells { cells: usize },
    #[error("the space-time cube would have {bins} bins, more than {max}: use a longer step, a shorter range or a coarser unit", max = emerging::MAX_BINS)]
    TooManyBins { bins: usize },
    /// The estimated work or answer is beyond the server's limit for one request.
    #[error("{what} would be about {estimate:.3e}, more than the limit of {limit:.3e}: {hint}")]
    TooCostly { what: &'static str, estimate: f64, limit: f64, hint: &'static str },
    /// The client went away and the work stopped.
    #[error("the request was abandoned")]
    Cancelled,
}

/// The record layers analyses count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Cases,
    Components,
    Alarms,
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, AnalysisError> {
        match s {
            "cases" => Ok(Source::Cases),
            "components" => Ok(Source::Components),
            "alarms" => Ok(Source::Alarms),
            _ => Err(AnalysisError::UnknownLayer(s.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cases => "cases",
            Source::Components => "components",
            Source::Alarms => "alarms",
        }
    }
}

/// The filters every analysis takes. `class` is a class code prefix (`01` a major class, `0110`
/// one minor class; for alarms the sensor kind); `status` and `source` match exactly (for
/// alarms `raised` or `cleared`, and `level`); the time range is `[from, to)` on the report
/// time (cases), the survey date (components) or the raise time (alarms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub class: Option<String>,
    pub status: Option<String>,
    pub source: Option<String>,
    pub level: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The caller's cases (a department's, an area's); alarms of its area.
    pub scope: CaseScope,
}

impl Filter {
    fn keeps(&self, it: &Item<'_>) -> bool {
        let in_scope = match it.dept {
            Some(dept) => self.scope.sees_parts(dept, it.grid),
            // Alarms (the only items with a level) are their sensor's area's.
            None => it.level.is_none() || self.scope.in_area(it.grid),
        };
        in_scope
            && self.class.as_deref().is_none_or(|c| it.class.starts_with(c))
            && self.status.as_deref().is_none_or(|s| it.status == s)
            && self.source.as_deref().is_none_or(|s| it.source == s)
            && self.level.as_deref().is_none_or(|l| it.level == Some(l))
            && self.from.is_none_or(|f| it.at.is_some_and(|t| t >= f))
            && self.to.is_none_or(|e| it.at.is_some_and(|t| t < e))
    }
}

/// One countable record, borrowed from the index.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub lon: f64,
    pub lat: f64,
    pub grid: Option<&'a str>,
    pub at: Option<DateTime<Utc>>,
    pub class: &'a str,
    pub status: &'a str,
    pub source: &'a str,
    pub level: Option<&'a str>,
    /// For a case, the department it is dispatched to (the scope checks it); `None` otherwise.
    pub dept: Option<Option<&'a str>>,
}

/// A case as a countable item.
fn case_item(c: &crate::model::Case) -> Item<'_> {
    Item {
        lon: c.geom.x(),
        lat: c.geom.y(),
        grid: c.grid_code.as_deref(),
        at: Some(c.reported_at),
        class: &c.class_code,
        status: c.status.as_str(),
        source: &c.source,
        level: None,
        dept: Some(c.dept_code.as_deref()),
    }
}

/// A component as a countable item (at its envelope's centre, dated by its survey).
fn component_item(c: &crate::model::Component) -> Item<'_> {
    let [lon, lat] = rstar::Envelope::center(&c.envelope());
    Item {
        lon,
        lat,
        grid: c.grid_code.as_deref(),
        at: c.survey_date.map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
        class: &c.class_code,
        status: &c.status,
        source: &c.source,
        level: None,
        dept: None,
    }
}

/// The records of a layer that pass `filter`, handed to `f` one by one under the layer's read
/// lock (alarms, which the index does not hold, come from `alarms` with their sensor's place).
pub fn for_each(index: &CityIndex, source: Source, alarms: &[Alarm], filter: &Filter, mut f: impl FnMut(&Item<'_>)) {
    let mut emit = |it: Item<'_>| {
        if filter.keeps(&it) {
            f(&it)
        }
    };
    match source {
        Source::Cases => index.cases.read().iter().for_each(|c| emit(case_item(c))),
        Source::Components => index.components.read().iter().for_each(|c| emit(component_item(c))),
        Source::Alarms => {
            let sensors = index.sensors.read();
            for a in alarms {
                let Some(s) = sensors.get(&a.sensor_code) else { continue };
                emit(Item {
                    lon: s.geom.x(),
                    lat: s.geom.y(),
                    grid: s.grid_code.as_deref(),
                    at: Some(a.raised_at),
                    class: &s.kind,
                    status: if a.cleared_at.is_some() { "cleared" } else { "raised" },
                    source: "sensor",
                    level: Some(a.peak_level.as_str()),
                    dept: None,
                });
            }
        }
    }
}

/// The unit and time of every record that passes the filter, and how many fell in no unit.
/// A record assigned to a unit: the unit's position and the record's time.
pub type Assigned = (u32, Option<DateTime<Utc>>);

/// Administrative units go by the record's grid; H3 cells by its point, found in bulk.
pub fn assign(
    index: &CityIndex,
    units: &Units,
    source: Source,
    alarms: &[Alarm],
    filter: &Filter,
) -> (Vec<Assigned>, usize) {
    let mut out = Vec::new();
    let mut outside = 0;
    if matches!(units.kind, UnitKind::H3(_)) {
        let mut points = Vec::new();
        let mut times = Vec::new();
        for_each(index, source, alarms, filter, |it| {
            points.push((it.lon, it.lat));
            times.push(it.at);
        });
        for (u, t) in units.h3_units_of(&points).into_iter().zip(times) {
            match u {
                Some(u) => out.push((u, t)),
                None => outside += 1,
            }
        }
    } else {
        for_each(index, source, alarms, filter, |it| match units.unit_of(it.grid, it.lon, it.lat) {
            Some(u) => out.push((u as u32, it.at)),
            None => outside += 1,
        });
    }
    (out, outside)
}

/// Counts per unit of the records that pass the filter, and how many fell in no unit.
pub fn count(index: &CityIndex, units: &Units, source: Source, alarms: &[Alarm], filter: &Filter) -> (Vec<f64>, usize) {
    let (mut counts, mut outside) = (vec![0.0; units.len()], 0);
    match (units.kind, source) {
        (UnitKind::H3(_), _) => {
            let assigned;
            (assigned, outside) = assign(index, units, source, alarms, filter);
            for (u, _) in assigned {
                counts[u as usize] += 1.0;
            }
        }
        // Counted as they are met (a list of a million assignments cost more than the counting),
        // cases and components on every core.
        (_, Source::Cases) => return count_layer(&index.cases.read(), case_item, units, filter),
        (_, Source::Components) => return count_layer(&index.components.read(), component_item, units, filter),
        (_, Source::Alarms) => {
            for_each(index, source, alarms, filter, |it| tally(units, it, &mut counts, &mut outside))
        }
    }
    (counts, outside)
}

/// Adds an item to the counts of its administrative unit, or to those outside every unit.
fn tally(units: &Units, it: &Item<'_>, counts: &mut [f64], outside: &mut usize) {
    match units.unit_of(it.grid, it.lon, it.lat) {
        Some(u) => counts[u] += 1.0,
        None => *outside += 1,
    }
}

/// [`count`] over a layer of the index by administrative units, in parallel: each piece of the
/// layer with counts of its own, added up at the end.
fn count_layer<T: Record>(
    layer: &crate::index::Layer<T>,
    item: fn(&T) -> Item<'_>,
    units: &Units,
    filter: &Filter,
) -> (Vec<f64>, usize) {
    use rayon::prelude::*;
    let zero = || (vec![0.0; units.len()], 0usize);
    layer
        .par_iter()
        .fold(zero, |(mut counts, mut outside), r| {
            let it = item(r);
            if filter.keeps(&it) {
                tally(units, &it, &mut counts, &mut outside);
            }
            (counts, outside)
        })
        .reduce(zero, |(mut a, n), (b, m)| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            (a, n + m)
        })
}

/// The statistic a hotspot analysis computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Count,
    GiStar,
    LocalMoran,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Count, Method::GiStar, Method::LocalMoran];

    pub fn parse(s: &str) -> Result<Method, AnalysisError> {
        match s {
            "count" => Ok(Method::Count),
            "gi_star" => Ok(Method::GiStar),
            "local_moran" => Ok(Method::LocalMoran),
            _ => Err(AnalysisError::UnknownMethod(s.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Count => "count",
            Method::GiStar => "gi_star",
            Method::LocalMoran => "local_moran",
        }
    }
}

/// One hotspot analysis: the units, their counts and the statistic.
pub struct Hotspots {
    pub units: Arc<Units>,
    pub source: Source,
    pub method: Method,
    pub counts: Vec<f64>,
    pub outside: usize,
    pub gi: Option<Vec<GiStar>>,
    /// Benjamini-Hochberg q-values when the false-discovery-rate correction was asked for.
    pub q: Option<Vec<Option<f64>>>,
    pub bins: Option<Vec<i8>>,
    pub local: Option<Vec<LocalMoran>>,
    pub global: Option<GlobalMoran>,
    pub computed_at: DateTime<Utc>,
}

/// Runs `method` over `counts` on `units`.
pub fn hotspots(
    units: Arc<Units>,
    source: Source,
    method: Method,
    counts: Vec<f64>,
    outside: usize,
    fdr: bool,
) -> Hotspots {
    let (mut gi, mut q, mut bins, mut local, mut global) = (None, None, None, None, None);
    match method {
        Method::Count => {}
        Method::GiStar => {
            let g = stats::gi_star(&counts, units.neighbours());
            if fdr {
                let qs = stats::fdr_bh(&g.iter().map(|g| g.p).collect::<Vec<_>>());
                bins = Some(
                    g.iter().zip(&qs).map(|(g, q)| g.z.zip(*q).map_or(0, |(z, q)| stats::bin_of_p(z, q))).collect(),
                );
                q = Some(qs);
            } else {
                bins = Some(g.iter().map(|g| g.z.map_or(0, stats::bin_of_z)).collect());
            }
            gi = Some(g);
        }
        Method::LocalMoran => {
            local = stats::local_moran(&counts, units.neighbours());
            global = stats::global_moran(&counts, units.neighbours());
        }
    }
    Hotspots { units, source, method, counts, outside, gi, q, bins, local, global, computed_at: Utc::now() }
}

/// How long a hotspot result answers identical requests: a minute behind the newest cases is
/// still current for an analysis.
const HOTSPOTS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What analyses keep between requests: units per kind (rebuilt when the hierarchy changes),
/// the published Gi* result (drawn by the `hotspots` tile layer), and recent results by their
/// parameters, each computed once however many ask at the same time.
pub struct Analysis {
    units: RwLock<HashMap<UnitKind, (u64, Arc<Units>)>>,
    /// Builds of one kind at a time, so ten concurrent first requests build the graph once.
    building: Mutex<()>,
    /// The published overlay: the parameters it was run with and its result.
    pub latest: RwLock<Option<(String, Arc<Hotspots>)>>,
    /// The overlay parameters the change log last published (from any replica): the tile layer
    /// computes them when `latest` is of other parameters.
    pub published: RwLock<Option<String>>,
    pub hotspots: memo::Memo<String, Hotspots>,
    pub density: memo::Memo<density::Params, density::Grid>,
    /// Emerging hotspot answers by their parameters (the answer itself: its shape is part of
    /// the key).
    pub emerging: memo::Memo<String, String>,
    /// What one request may cost (`[cost_limits]` of the config file).
    pub limits: RwLock<CostLimits>,
}

/// What one analysis or export request may cost: estimated before the work, refused beyond (422).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostLimits {
    /// Kernel evaluations of one density grid (points × cells within the bandwidth).
    pub density_work: f64,
    /// Bytes of one hotspot answer, estimated from its units' geometry.
    pub answer_bytes: f64,
    /// Features one export may write (a Chongqing-scale city's ten million components fit).
    pub export_features: usize,
    /// Tiles one offline package over HTTP may hold (the command line allows 2,000,000).
    pub package_tiles: u64,
}

impl Default for CostLimits {
    fn default() -> Self {
        CostLimits {
            density_work: density::MAX_WORK,
            answer_bytes: 128e6,
            export_features: 20_000_000,
            package_tiles: 200_000,
        }
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            units: Default::default(),
            building: Default::default(),
            latest: Default::default(),
            published: Default::default(),
            hotspots: memo::Memo::new(HOTSPOTS_TTL, 16),
            density: memo::Memo::new(std::time::Duration::from_secs(density::TILE_TTL_S as u64), 4),
            emerging: memo::Memo::new(HOTSPOTS_TTL, 8),
            limits: Default::default(),
        }
    }
}

impl Analysis {
    /// The units of `kind` for the index's current hierarchy, built on first use.
    pub fn units(&self, index: &CityIndex, kind: UnitKind) -> Result<Arc<Units>, AnalysisError> {
        let generation = index.location_cache.read().generation;
        let cached = |m: &HashMap<UnitKind, (u64, Arc<Units>)>| {
            m.get(&kind).filter(|(g, _)| *g == generation).map(|(_, u)| u.clone())
        };
        if let Some(u) = cached(&self.units.read()) {
            return Ok(u);
        }
        let _one = self.building.lock();
        if let Some(u) = cached(&self.units.read()) {
            return Ok(u);
        }
        let built = Arc::new(Units::build(index, kind)?);
        let mut m = self.units.write();
        // H3 covers of several resolutions add up: keep the few most recent.
        m.retain(|_, (g, _)| *g == generation);
        if m.len() > 8 {
            m.clear();
        }
        m.insert(kind, (generation, built.clone()));
        Ok(built)
    }
}

/// Whether some class of the layer's dictionary starts with `prefix` (event or component classes
/// for cases, component classes for components, sensor kinds for alarms).
pub fn class_known(index: &CityIndex, source: Source, prefix: &str) -> bool {
    let dict = index.dict.read();
    let components = || dict.component_classes.iter().any(|c| c.code.starts_with(prefix));
    match source {
        Source::Cases => dict.event_classes.iter().any(|c| c.code.starts_with(prefix)) || components(),
        Source::Components => components(),
        Source::Alarms => crate::sensors::KINDS.keys().any(|k| k.starts_with(prefix)),
    }
}

/// A class code name from the dictionaries, for rankings and statistics by class.
pub fn class_name(index: &CityIndex, source: Source, code: &str) -> Option<Str> {
    let dict = index.dict.read();
    match source {
        Source::Components => dict.component_classes.iter().find(|c| c.code == code).map(|c| c.name.clone()),
        Source::Cases => dict
            .event_classes
            .iter()
            .find(|c| c.code == code)
            .map(|c| c.name.clone())
            .or_else(|| dict.component_classes.iter().find(|c| c.code == code).map(|c| c.name.clone())),
        Source::Alarms => crate::catalog::kind(code).map(|k| k.label.clone()),
    }
}
