//! Staff positions into tracks: each batch (an HTTP request, a run of MQTT messages) is checked
//! position by position, stored with the patrol tallies it adds to and one change naming each
//! member's latest position, in one transaction; the change moves the members on the live layer
//! of every replica and puts them on duty. A sweep takes members off duty after the duty
//! timeout (5 minutes by default) without a position, through the log too.
//!
//! The tallies (distance walked, time on duty, grids visited per city day) are added up here,
//! position after position in time order: the gap to the member's previous position counts
//! (distance and time) when it is shorter than the duty timeout, so a phone switched off for
//! lunch walks no straight line across the city.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::events::{self, Live, bbox_of};
use crate::geo::Crs;
use crate::index::Record;
use crate::metrics::Metrics;
use crate::model::{Collection, PatrolDay, PatrolVisit, Position, StampError, Str, city_tz, device_time};
use crate::store::log::{ChangeRow, Op};
use crate::store::{Store, StoreError};

pub use crate::model::Transport;

/// `[staff]` of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A member without a position for this long goes off duty (and a longer gap is not walked).
    pub duty_timeout_s: i64,
    /// How far ahead of the server's clock a position may be stamped (phone clocks drift).
    pub future_slack_s: i64,
    /// At most one `staff.moved` per member this often.
    pub moved_every_s: i64,
    /// A field task (verify, check) not done within this many minutes goes to the next nearest
    /// supervisor on duty.
    pub reassign_after_min: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { duty_timeout_s: 300, future_slack_s: 60, moved_every_s: 5, reassign_after_min: 30 }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if !(10..=86_400).contains(&self.duty_timeout_s) {
            return Err("staff.duty_timeout_s: 10 to 86400".into());
        }
        if !(0..=3_600).contains(&self.future_slack_s) || !(0..=3_600).contains(&self.moved_every_s) {
            return Err("staff.future_slack_s and staff.moved_every_s: 0 to 3600".into());
        }
        if !(1..=10_080).contains(&self.reassign_after_min) {
            return Err("staff.reassign_after_min: 1 to 10080".into());
        }
        Ok(())
    }

    pub fn reassign_after(&self) -> Duration {
        Duration::minutes(self.reassign_after_min)
    }

    fn duty_timeout(&self) -> Duration {
        Duration::seconds(self.duty_timeout_s)
    }
}

/// Why a position was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Not a JSON object of the position's shape.
    Malformed,
    UnknownStaff,
    /// Longitude or latitude missing, not finite, out of range, or a bad `crs`.
    BadCoordinates,
    /// A time that is not RFC 3339 or epoch milliseconds, or before 2000.
    BadTime,
    /// A time further ahead than the allowed clock drift.
    Future,
    /// A member this token may not post for (a phone posts its own member's only).
    NotYours,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::UnknownStaff => "unknown_staff",
            Reject::BadCoordinates => "bad_coordinates",
            Reject::BadTime => "bad_time",
            Reject::Future => "future",
            Reject::NotYours => "not_yours",
        }
    }
}

/// A rejected position: why, and what exactly.
pub type Rejection = crate::model::Refused<Reject>;

pub use crate::model::refuse as reject;

/// Parses one position, `{"staff", "at"?, "lon", "lat", "crs"?}`, from JSON (`topic_staff`: the
/// member an MQTT topic names, who then needs no `staff` field), into CGCS2000 (the grid is
/// located at ingest).
pub fn parse_position(
    v: &Value,
    topic_staff: Option<&str>,
    now: DateTime<Utc>,
    future_slack: Duration,
) -> Result<Position, Rejection> {
    let obj = v.as_object().ok_or_else(|| reject(Reject::Malformed, "a position is a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !["staff", "at", "lon", "lat", "crs", "accuracy_m"].contains(&k.as_str())) {
        return Err(reject(Reject::Malformed, format!("unknown field {k:?}; a position has staff, at, lon, lat, crs")));
    }
    let staff = match (obj.get("staff"), topic_staff) {
        (Some(Value::String(s)), None) => s.as_str(),
        (Some(Value::String(s)), Some(t)) if s == t => t,
        (Some(_), Some(t)) => return Err(reject(Reject::Malformed, format!("staff differs from the topic's {t:?}"))),
        (None, Some(t)) => t,
        _ => return Err(reject(Reject::Malformed, "staff must be a string")),
    };
    let coord = |k: &str| {
        obj.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| reject(Reject::BadCoordinates, format!("{k} must be a number")))
    };
    let (lon, lat) = (coord("lon")?, coord("lat")?);
    crate::geo::check_lon_lat(lon, lat).map_err(|e| reject(Reject::BadCoordinates, e.to_string()))?;
    let crs: Crs = match obj.get("crs") {
        None | Some(Value::Null) => Crs::Wgs84,
        Some(Value::String(s)) => {
            s.parse().map_err(|e: crate::geo::CrsError| reject(Reject::BadCoordinates, e.to_string()))?
        }
        Some(other) => return Err(reject(Reject::BadCoordinates, format!("crs {other} is not a name"))),
    };
    let (lon, lat) = crs.to_cgcs2000(lon, lat).map_err(|e| reject(Reject::BadCoordinates, e.to_string()))?;
    let at = device_time(obj.get("at"), now, future_slack).map_err(|e| match e {
        StampError::Bad(m) => reject(Reject::BadTime, m),
        StampError::Future(m) => reject(Reject::Future, m),
    })?;
    Ok(Position { staff: staff.into(), at, lon, lat, grid_code: None })
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Stored now (out-of-order ones included).
    pub accepted: usize,
    /// The same member and time as one already taken: dropped.
    pub duplicates: usize,
    /// Stored in the track, but older than where the member was already seen, so they neither
    /// moved them nor counted in the patrol tallies.
    pub out_of_order: usize,
    /// By position in the batch.
    pub rejected: Vec<(usize, Rejection)>,
    /// The change's sequence number.
    pub seq: Option<i64>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "accepted": self.accepted, "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "rejected": self.rejected.iter().map(|(i, r)| json!({"index": i, "reason": r.reason.as_str(), "detail": r.detail})).collect::<Vec<_>>(),
        })
    }
}

/// Where a member was last counted: the previous point of their patrol.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    at: DateTime<Utc>,
    lon: f64,
    lat: f64,
}

/// A city day (the tallies are kept per day on the city's clock).
pub fn city_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&city_tz()).date_naive()
}

/// What one batch adds to the tallies, and the positions it moves the members to.
#[derive(Debug, Default)]
struct Tally {
    days: HashMap<(NaiveDate, Str), PatrolDay>,
    visits: HashMap<(NaiveDate, Str, Str), PatrolVisit>,
    latest: HashMap<Str, Position>,
}

impl Tally {
    /// Counts an in-order position `p` after `prev` (the member's previous one, if any).
    fn add(&mut self, p: &Position, prev: Option<Step>, timeout: Duration) {
        let day = city_day(p.at);
        let ms = p.at.timestamp_millis();
        let (mut distance, mut duty) = (0.0, 0.0);
        if let Some(prev) = prev
            && p.at - prev.at <= timeout
        {
            distance = crate::geo::haversine_m((prev.lon, prev.lat), (p.lon, p.lat));
            duty = (p.at - prev.at).num_milliseconds() as f64 / 1000.0;
        }
        let d = self.days.entry((day, p.staff.clone())).or_insert_with(|| PatrolDay {
            day,
            staff: p.staff.clone(),
            positions: 0,
            distance_m: 0.0,
            duty_s: 0.0,
            first_ms: ms,
            last_ms: ms,
        });
        d.positions += 1;
        d.distance_m += distance;
        d.duty_s += duty;
        d.first_ms = d.first_ms.min(ms);
        d.last_ms = d.last_ms.max(ms);
        if let Some(grid) = &p.grid_code {
            let v = self.visits.entry((day, p.staff.clone(), grid.clone())).or_insert_with(|| PatrolVisit {
                day,
                staff: p.staff.clone(),
                grid: grid.clone(),
                positions: 0,
                first_ms: ms,
                last_ms: ms,
            });
            v.positions += 1;
            v.first_ms = v.first_ms.min(ms);
            v.last_ms = v.last_ms.max(ms);
        }
        self.latest.insert(p.staff.clone(), p.clone());
    }
}

/// The positions engine: each member's previous point, behind one lock that a batch holds from
/// its checks to its commit, so two batches of one member never count the same stretch twice.
pub struct Positions {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    settings: parking_lot::RwLock<Settings>,
    steps: tokio::sync::Mutex<HashMap<Str, Step>>,
}

impl Positions {
    pub fn new(store: Arc<dyn Store>, live: Arc<Live>, metrics: Arc<Metrics>) -> Positions {
        Positions { store, live, metrics, settings: Default::default(), steps: Default::default() }
    }

    pub fn configure(&self, settings: Settings) {
        *self.settings.write() = settings;
        self.live.set_pacing(events::Pacing { moved_every_ms: settings.moved_every_s * 1000, ..self.live.pacing() });
    }

    pub fn settings(&self) -> Settings {
        *self.settings.read()
    }

    pub fn future_slack(&self) -> Duration {
        Duration::seconds(self.settings().future_slack_s)
    }

    /// Restores where each member was last seen from the tracks, and whether they are still on
    /// duty at `now` (at start-up).
    pub async fn restore(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let latest = self.store.latest_positions().await?;
        let timeout = self.settings().duty_timeout();
        let mut steps = self.steps.lock().await;
        let mut staff = self.live.index.staff.write();
        for p in latest {
            let Some(mut s) = staff.get(&p.staff).cloned() else { continue };
            s.geom = geo::Point::new(p.lon, p.lat);
            s.last_seen = Some(p.at);
            s.grid_code = p.grid_code.clone();
            s.on_duty = now - p.at <= timeout;
            staff.upsert(s);
            steps.insert(p.staff.clone(), Step { at: p.at, lon: p.lon, lat: p.lat });
        }
        Ok(())
    }

    /// Takes in a batch of parsed (or rejected) positions. Errors only when the store cannot
    /// take them, in which case none of them counts as taken.
    pub async fn ingest(
        &self,
        batch: Vec<Result<Position, Rejection>>,
        transport: Transport,
    ) -> Result<Report, StoreError> {
        let mut report = Report::default();
        let timeout = self.settings().duty_timeout();
        let mut good: Vec<Position> = Vec::with_capacity(batch.len());
        {
            let index = &self.live.index;
            let (staff, grids) = (index.staff.read(), index.grids.read());
            for (i, p) in batch.into_iter().enumerate() {
                match p {
                    Err(r) => report.rejected.push((i, r)),
                    Ok(p) if staff.get(&p.staff).is_none() => report
                        .rejected
                        .push((i, reject(Reject::UnknownStaff, format!("no staff member {:?}", p.staff)))),
                    Ok(mut p) => {
                        p.grid_code = grids.at_point(p.lon, p.lat).map(|g| g.code.clone());
                        good.push(p);
                    }
                }
            }
        }
        // In time order per member; the same member and millisecond twice is one position.
        good.sort_by(|a, b| (&a.staff, a.at).cmp(&(&b.staff, b.at)));
        let before = good.len();
        good.dedup_by(|b, a| a.staff == b.staff && a.at == b.at);
        report.duplicates = before - good.len();

        let mut steps = self.steps.lock().await;
        let mut tally = Tally::default();
        let mut moved: HashMap<Str, Step> = HashMap::new();
        let mut stored: Vec<Position> = Vec::with_capacity(good.len());
        let mut came_on: Vec<Str> = Vec::new();
        {
            let staff = self.live.index.staff.read();
            for p in good {
                // The later of what this process counted and what the log says (another replica
                // may have taken the member's previous position).
                let seen =
                    staff.get(&p.staff).and_then(|s| Some(Step { at: s.last_seen?, lon: s.geom.x(), lat: s.geom.y() }));
                let prev = [moved.get(&p.staff).copied(), steps.get(&p.staff).copied(), seen]
                    .into_iter()
                    .flatten()
                    .max_by_key(|s| s.at);
                match prev {
                    Some(prev) if prev.at == p.at => report.duplicates += 1,
                    Some(prev) if prev.at > p.at => {
                        report.out_of_order += 1;
                        stored.push(p);
                    }
                    _ => {
                        if !moved.contains_key(&p.staff) && staff.get(&p.staff).is_some_and(|s| !s.on_duty) {
                            came_on.push(p.staff.clone());
                        }
                        tally.add(&p, prev, timeout);
                        moved.insert(p.staff.clone(), Step { at: p.at, lon: p.lon, lat: p.lat });
                        stored.push(p);
                    }
                }
            }
        }
        report.accepted = stored.len();
        if !stored.is_empty() {
            let change = positions_change(&tally, &came_on);
            let days: Vec<PatrolDay> = tally.days.into_values().collect();
            let visits: Vec<PatrolVisit> = tally.visits.into_values().collect();
            let in_flight = self.live.in_flight();
            let seq = self.store.insert_positions(&stored, &days, &visits, change.clone()).await?;
            steps.extend(moved);
            drop(steps);
            self.live.commit(vec![events::Change::committed(seq, change, Vec::new())], in_flight).await?;
            report.seq = Some(seq);
        }
        self.count(&report, transport);
        Ok(report)
    }

    fn count(&self, report: &Report, transport: Transport) {
        let t = transport.as_str();
        let m = &self.metrics;
        m.position(t, "accepted").inc_by((report.accepted - report.out_of_order) as u64);
        m.position(t, "out_of_order").inc_by(report.out_of_order as u64);
        m.position(t, "duplicate").inc_by(report.duplicates as u64);
        for (_, r) in &report.rejected {
            m.position(t, r.reason.as_str()).inc();
        }
    }

    /// Takes off duty, through the log, every member on duty whose latest position is older
    /// than the duty timeout at `now`. Returns how many went off.
    pub async fn sweep_duty(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let timeout = self.settings().duty_timeout();
        let (off, areas): (Vec<Value>, Vec<[f64; 4]>) = self
            .live
            .index
            .staff
            .read()
            .iter()
            .filter(|s| s.on_duty && s.last_seen.is_none_or(|t| now - t > timeout))
            .map(|s| (json!([s.code, s.last_seen.map_or(0, |t| t.timestamp_millis())]), bbox_of(&s.envelope())))
            .unzip();
        if off.is_empty() {
            return Ok(0);
        }
        let n = off.len();
        self.live.touch_logged(Collection::Staff, json!({ "off_duty": off }), areas).await?;
        Ok(n)
    }
}

/// The change of a positions batch: each member's latest position as
/// `[code, epoch ms, lon, lat, grid]`, in code order, and who came on duty.
fn positions_change(tally: &Tally, came_on: &[Str]) -> ChangeRow {
    let mut latest: Vec<&Position> = tally.latest.values().collect();
    latest.sort_by(|a, b| a.staff.cmp(&b.staff));
    let positions: Vec<Value> =
        latest.iter().map(|p| json!([p.staff, p.at.timestamp_millis(), p.lon, p.lat, p.grid_code])).collect();
    ChangeRow {
        collection: Collection::Staff,
        key: None,
        op: Op::Positions,
        event: None,
        data: Some(json!({ "positions": positions, "on_duty": came_on })),
        bbox: Vec::new(),
    }
}

/// Runs the duty sweep every `every` (on the replica holding the singleton lease).
pub async fn sweep_duty(positions: Arc<Positions>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match positions.sweep_duty(Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(off = n, "staff went off duty"),
            Err(e) => tracing::warn!(error = %e, "duty sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T08:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn parse(v: Value) -> Result<Position, Reject> {
        parse_position(&v, None, now(), Duration::seconds(60)).map_err(|r| r.reason)
    }

    #[test]
    fn positions_parse_into_cgcs2000_or_are_rejected_with_a_reason() {
        let p = parse(json!({"staff": "S1", "lon": 88.88, "lat": 29.27, "at": "2026-12-04T07:59:00Z"})).unwrap();
        assert_eq!((p.staff.as_str(), p.lon, p.lat), ("S1", 88.88, 29.27));
        let g = parse(json!({"staff": "S1", "lon": 88.88, "lat": 29.27, "crs": "gcj02"})).unwrap();
        assert!(g.lon != 88.88 && (g.lon - 88.88).abs() < 0.01, "a GCJ-02 position is taken back: {}", g.lon);
        assert_eq!(g.at, now(), "no time: now");
        assert_eq!(parse(json!({"staff": "S1", "lon": 188.0, "lat": 29.0})), Err(Reject::BadCoordinates));
        assert_eq!(parse(json!({"staff": "S1", "lon": "x", "lat": 29.0})), Err(Reject::BadCoordinates));
        assert_eq!(parse(json!({"staff": "S1", "lon": 88.0, "lat": 29.0, "crs": "mars"})), Err(Reject::BadCoordinates));
        assert_eq!(parse(json!({"staff": 7, "lon": 88.0, "lat": 29.0})), Err(Reject::Malformed));
        assert_eq!(parse(json!({"staff": "S1", "lon": 88.0, "lat": 29.0, "speed": 3})), Err(Reject::Malformed));
        assert_eq!(
            parse(json!({"staff": "S1", "lon": 88.0, "lat": 29.0, "at": "2026-12-04T09:00:00Z"})),
            Err(Reject::Future)
        );
        assert_eq!(parse(json!({"staff": "S1", "lon": 88.0, "lat": 29.0, "at": "yesterday"})), Err(Reject::BadTime));
        assert_eq!(parse(json!([1, 2])), Err(Reject::Malformed));
        let topic = parse_position(&json!({"lon": 88.0, "lat": 29.0}), Some("S9"), now(), Duration::zero()).unwrap();
        assert_eq!(topic.staff, "S9");
    }

    fn at(p: &str, s: &str, minute: i64, lon: f64, grid: Option<&str>) -> Position {
        Position {
            staff: p.into(),
            at: now() + Duration::minutes(minute) + Duration::seconds(s.parse().unwrap()),
            lon,
            lat: 29.0,
            grid_code: grid.map(Into::into),
        }
    }

    #[test]
    fn the_tally_walks_short_gaps_only_and_counts_grids_per_city_day() {
        let timeout = Duration::minutes(5);
        let mut t = Tally::default();
        let a = at("S1", "0", 0, 88.0, Some("G1"));
        let b = at("S1", "0", 1, 88.001, Some("G1"));
        let c = at("S1", "0", 30, 88.002, Some("G2"));
        t.add(&a, None, timeout);
        t.add(&b, Some(Step { at: a.at, lon: a.lon, lat: a.lat }), timeout);
        t.add(&c, Some(Step { at: b.at, lon: b.lon, lat: b.lat }), timeout);
        let day = &t.days[&(city_day(a.at), Str::from("S1"))];
        assert_eq!(day.positions, 3);
        assert_eq!(day.duty_s, 60.0, "the 29-minute gap is not duty");
        let expected = crate::geo::haversine_m((88.0, 29.0), (88.001, 29.0));
        assert!((day.distance_m - expected).abs() < 1e-6, "{} vs {expected}", day.distance_m);
        assert_eq!(t.visits.len(), 2);
        assert_eq!(t.visits[&(city_day(a.at), Str::from("S1"), Str::from("G1"))].positions, 2);
        assert_eq!(t.latest["S1"].at, c.at);
        // 08:00 UTC is 16:00 in the city; 16:00 UTC is the next city day.
        assert_eq!(city_day(now()), NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        assert_eq!(city_day(now() + Duration::hours(8)), NaiveDate::from_ymd_opt(2026, 12, 5).unwrap());
        let change = positions_change(&t, &[Str::from("S1")]);
        assert_eq!(change.op, Op::Positions);
        assert_eq!(change.data.as_ref().unwrap()["positions"][0][0], "S1");
        assert_eq!(change.data.as_ref().unwrap()["on_duty"], json!(["S1"]));
    }
}
