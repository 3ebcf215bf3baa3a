//! Readings ingest: a batch of readings (from HTTP or MQTT) is checked reading by reading, the
//! good ones are committed to the store, then the alarm rules run over the new ones and their
//! changes become stored alarms, cases and live-feed events. A bad reading is rejected and
//! counted; it never fails the others or stops the loop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rules::{self, Change, Level, Thresholds};
use super::{SensorError, kind, thresholds_of};
use crate::cases::Deadlines;
use crate::events::{self, Follower, Item, Live, bbox_of};
use crate::index::Record;
use crate::metrics::Metrics;
use crate::model::{Alarm, Case, CaseScope, CaseStep, Collection, Milestones, Reading, Sensor, SensorLive};
use crate::store::log::{ChangeRow, Op, readings_change};
use crate::store::{AlarmSaved, Store, StoreError};

/// How readings and alarms behave (`[sensors]` in the config file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A sensor with no reading for this long is flagged stale.
    pub stale_after_min: i64,
    /// How far ahead of the server's clock a reading's time may be (device clocks drift).
    pub future_slack_s: i64,
    /// At most one `sensor.reading` event per sensor this often, so browsers keep up.
    pub feed_every_ms: u64,
    /// A new value re-renders a sensor's tiles at most this often (a level change at once).
    pub tiles_every_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { stale_after_min: 30, future_slack_s: 30, feed_every_ms: 1000, tiles_every_s: 10 }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.stale_after_min < 1 || self.future_slack_s < 0 {
            return Err("sensors: stale_after_min must be at least 1 and future_slack_s not negative".into());
        }
        Ok(())
    }
}

pub use crate::model::Transport;

/// Why a reading was rejected; the `reason` label of the rejection counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Not a JSON object of the reading's shape.
    Malformed,
    UnknownSensor,
    /// A value that is not a number (a string, null, ...).
    NotANumber,
    /// NaN, an infinity, or a number beyond the double range.
    NotFinite,
    /// A time further ahead than the allowed clock drift.
    Future,
    /// A time that is not RFC 3339 or epoch milliseconds, or before 2000.
    BadTime,
    /// A value outside the sensor kind's plausible range (`data/sensor_kinds.csv`).
    Implausible,
    /// A sensor the posting device token is not for (`token create --sensors PREFIX`).
    NotYours,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Malformed,
        Reject::UnknownSensor,
        Reject::NotANumber,
        Reject::NotFinite,
        Reject::Future,
        Reject::BadTime,
        Reject::Implausible,
        Reject::NotYours,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::UnknownSensor => "unknown_sensor",
            Reject::NotANumber => "not_a_number",
            Reject::NotFinite => "not_finite",
            Reject::Future => "future",
            Reject::BadTime => "bad_time",
            Reject::Implausible => "implausible",
            Reject::NotYours => "not_yours",
        }
    }
}

/// A rejected reading: why, and what exactly.
pub type Rejection = crate::model::Refused<Reject>;

pub use crate::model::refuse as reject;

/// Parses one reading, `{"sensor", "at", "value"}`, from its JSON text. `topic_sensor` is the
/// sensor named by an MQTT topic, which then needs no `sensor` field. A missing `at` is the
/// time of arrival (devices without a clock).
pub fn parse_reading(
    json: &str,
    topic_sensor: Option<&str>,
    now: DateTime<Utc>,
    future_slack: Duration,
) -> Result<Reading, Rejection> {
    let v: Value = serde_json::from_str(json).map_err(|e| {
        // serde_json refuses numbers beyond f64 (1e999) while parsing.
        if e.to_string().contains("number out of range") {
            reject(Reject::NotFinite, "a number beyond the double range")
        } else {
            reject(Reject::Malformed, format!("not JSON: {e}"))
        }
    })?;
    let obj = v.as_object().ok_or_else(|| reject(Reject::Malformed, "a reading is a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !["sensor", "at", "value"].contains(&k.as_str())) {
        return Err(reject(Reject::Malformed, format!("unknown field {k:?}; a reading has sensor, at, value")));
    }
    let sensor = match (obj.get("sensor"), topic_sensor) {
        (Some(Value::String(s)), None) => s.as_str(),
        (Some(Value::String(s)), Some(t)) if s == t => t,
        (Some(_), Some(t)) => return Err(reject(Reject::Malformed, format!("sensor differs from the topic's {t:?}"))),
        (None, Some(t)) => t,
        _ => return Err(reject(Reject::Malformed, "sensor must be a string")),
    };
    let value = match obj.get("value") {
        Some(Value::Number(n)) => {
            n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| reject(Reject::NotFinite, n.to_string()))?
        }
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok_and(|v| !v.is_finite()) => {
            return Err(reject(Reject::NotFinite, format!("{s:?}")));
        }
        Some(other) => return Err(reject(Reject::NotANumber, format!("value {other} is not a number"))),
        None => return Err(reject(Reject::NotANumber, "value is missing")),
    };
    let at = crate::model::device_time(obj.get("at"), now, future_slack).map_err(|e| match e {
        crate::model::StampError::Bad(m) => reject(Reject::BadTime, m),
        crate::model::StampError::Future(m) => reject(Reject::Future, m),
    })?;
    Ok(Reading { sensor: sensor.into(), at, value })
}

/// The plausible range of `sensor`'s kind when `value` lies outside it.
fn implausible(sensor: &Sensor, value: f64) -> Option<(f64, f64)> {
    let (lo, hi) = kind(&sensor.kind)?.range;
    (!(lo..=hi).contains(&value)).then_some((lo, hi))
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Stored now.
    pub accepted: usize,
    /// Already stored (the same sensor and time): dropped.
    pub duplicates: usize,
    /// Stored, but older than the sensor's latest reading, so the rules did not use them.
    pub out_of_order: usize,
    /// By position in the batch.
    pub rejected: Vec<(usize, Rejection)>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "accepted": self.accepted, "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "rejected": self.rejected.iter().map(|(i, r)| json!({"index": i, "reason": r.reason.as_str(), "detail": r.detail})).collect::<Vec<_>>(),
        })
    }
}

/// One sensor as the rules see it.
struct Tracker {
    sensor: Sensor,
    thresholds: Thresholds,
    rule: rules::State,
    /// The alarm raised now, if any.
    alarm: Option<Alarm>,
}

impl Tracker {
    fn new(sensor: Sensor) -> Tracker {
        Tracker { thresholds: thresholds_of(&sensor), sensor, rule: rules::State::default(), alarm: None }
    }

    fn live(&self) -> &SensorLive {
        &self.sensor.live
    }
}

/// The ingest engine: the rule state of every sensor, behind one lock that the rule step and
/// the alarm writes hold (alarm changes are rare; the readings insert runs outside it).
pub struct Ingest {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    /// Set once the configuration is read (see [`Ingest::configure`]).
    deadlines: parking_lot::RwLock<Arc<Deadlines>>,
    settings: parking_lot::RwLock<Settings>,
    trackers: tokio::sync::Mutex<HashMap<crate::model::Str, Tracker>>,
    /// Sensors the live view has indexed since the trackers last looked (registered here, by
    /// another process or by an import), taken in before the next use of the trackers.
    inbox: parking_lot::Mutex<Vec<Sensor>>,
    /// Alarms logged since the trackers last looked, by this process or another replica, so
    /// each tracker goes on with the sensor's one active alarm whoever raised it.
    alarm_inbox: parking_lot::Mutex<Vec<Alarm>>,
}

/// The engine hears of every sensor the live view indexes, whoever committed it.
impl Follower for Ingest {
    fn applied(&self, change: &events::Change) {
        if change.row.collection == Collection::Alarms {
            if let Some(a) = change.row.data.as_ref().and_then(alarm_from_json) {
                self.alarm_inbox.lock().push(a);
            }
            return;
        }
        if change.row.collection != Collection::Sensors {
            return;
        }
        let new = change.new.iter().filter_map(|i| if let Item::Sensor(s) = i { Some(s.clone()) } else { None });
        self.inbox.lock().extend(new);
    }
}

/// Most alarms `GET /api/v1/alarms` returns.
pub const MAX_ALARMS: i64 = 10_000;

impl Ingest {
    pub fn new(store: Arc<dyn Store>, live: Arc<Live>, metrics: Arc<Metrics>) -> Ingest {
        let trackers = live
            .index
            .sensors
            .read()
            .iter()
            .map(|s| (s.code.clone(), Tracker::new(s.clone())))
            .collect::<HashMap<_, _>>();
        Ingest {
            store,
            live,
            metrics,
            deadlines: Default::default(),
            settings: Default::default(),
            trackers: tokio::sync::Mutex::new(trackers),
            inbox: Default::default(),
            alarm_inbox: Default::default(),
        }
    }

    /// The trackers, with the sensors indexed since the last look taken in: a new one starts
    /// afresh, a changed one keeps its rule state and alarm under its new thresholds.
    async fn trackers(&self) -> tokio::sync::MutexGuard<'_, HashMap<crate::model::Str, Tracker>> {
        let mut trackers = self.trackers.lock().await;
        for sensor in std::mem::take(&mut *self.inbox.lock()) {
            match trackers.get_mut(&sensor.code) {
                Some(t) => {
                    t.thresholds = thresholds_of(&sensor);
                    t.sensor = sensor;
                }
                None => {
                    trackers.insert(sensor.code.clone(), Tracker::new(sensor));
                }
            }
        }
        // In log order, so the last word on each alarm wins; ids only grow, so a late word on
        // an alarm that was replaced does not bring it back.
        for a in std::mem::take(&mut *self.alarm_inbox.lock()) {
            if let Some(t) = trackers.get_mut(&a.sensor_code)
                && t.alarm.as_ref().is_none_or(|mine| a.id >= mine.id)
            {
                t.alarm = a.cleared_at.is_none().then_some(a);
            }
        }
        trackers
    }

    /// The time limits of the cases alarms open, and the ingest settings.
    pub fn configure(&self, deadlines: Arc<Deadlines>, settings: Settings) {
        *self.deadlines.write() = deadlines;
        *self.settings.write() = settings;
        self.live.set_pacing(events::Pacing {
            feed_every_ms: settings.feed_every_ms as i64,
            draw_every_ms: settings.tiles_every_s as i64 * 1000,
            ..self.live.pacing()
        });
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn settings(&self) -> Settings {
        *self.settings.read()
    }

    /// Restores what the sensors last showed from the store: each one's latest reading and the
    /// alarms still raised (so a restart neither re-raises them nor forgets them).
    pub async fn restore(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let latest = self.store.latest_readings().await?;
        let active = self.store.alarms(true, i64::MAX).await?;
        let mut trackers = self.trackers().await;
        for r in latest {
            if let Some(t) = trackers.get_mut(&r.sensor) {
                let mut live = t.live().0.lock();
                live.at = Some(r.at);
                live.value = Some(r.value);
            }
        }
        for a in active {
            if let Some(t) = trackers.get_mut(&a.sensor_code) {
                t.live().0.lock().level = Some(a.level);
                t.alarm = Some(a);
            }
        }
        for t in trackers.values_mut() {
            let live = t.sensor.live.clone();
            let mut live = live.0.lock();
            t.rule = rules::resume(&t.thresholds, t.alarm.as_ref().map(|a| a.level), live.at.zip(live.value));
            live.stale = rules::is_stale(live.at, now, self.stale_after());
        }
        Ok(())
    }

    fn stale_after(&self) -> Duration {
        Duration::minutes(self.settings().stale_after_min)
    }

    pub fn future_slack(&self) -> Duration {
        Duration::seconds(self.settings().future_slack_s)
    }

    /// Ingests a batch of parsed (or rejected) readings; see the module doc. Errors only when
    /// the store cannot take the readings, in which case none of them counts as taken.
    pub async fn ingest(
        &self,
        batch: Vec<Result<Reading, Rejection>>,
        transport: Transport,
    ) -> Result<Report, StoreError> {
        let mut report = Report::default();
        let mut good: Vec<Reading> = Vec::with_capacity(batch.len());
        let mut dup_in_batch = 0;
        {
            let trackers = self.trackers().await;
            let mut seen: HashSet<(&str, DateTime<Utc>)> = HashSet::with_capacity(batch.len());
            for (i, r) in batch.iter().enumerate() {
                match r {
                    Err(rej) => report.rejected.push((i, rej.clone())),
                    Ok(r) if !trackers.contains_key(&r.sensor) => {
                        report.rejected.push((i, reject(Reject::UnknownSensor, format!("no sensor {:?}", r.sensor))))
                    }
                    Ok(r) if let Some((lo, hi)) = implausible(&trackers[&r.sensor].sensor, r.value) => report
                        .rejected
                        .push((i, reject(Reject::Implausible, format!("value {} outside {lo} to {hi}", r.value)))),
                    Ok(r) if !seen.insert((r.sensor.as_str(), r.at)) => dup_in_batch += 1,
                    Ok(r) => good.push(r.clone()),
                }
            }
        }
        let in_flight = self.live.in_flight();
        let (new, seq) = self.store.insert_readings(&good).await?;
        // The same change the store logged, applied in its turn (before any alarm it causes).
        let logged = seq.zip(readings_change(&good, &new));
        if let Some((seq, row)) = &logged {
            self.live.deposit(vec![events::Change::committed(*seq, row.clone(), Vec::new())]);
        }
        drop(in_flight);
        let stored = good.len();
        let mut fresh: Vec<Reading> = good.into_iter().zip(new).filter(|(_, n)| *n).map(|(r, _)| r).collect();
        report.accepted = fresh.len();
        report.duplicates = dup_in_batch + (stored - report.accepted);
        fresh.sort_by_key(|r| r.at);
        report.out_of_order = self.apply(fresh).await;
        if let Some((seq, _)) = logged {
            self.live.catch_up(Some(seq)).await?;
        }
        self.count(&report, transport);
        Ok(report)
    }

    fn count(&self, report: &Report, transport: Transport) {
        let t = transport.as_str();
        self.metrics.reading(t, "accepted").inc_by(report.accepted as u64);
        self.metrics.reading(t, "duplicate").inc_by(report.duplicates as u64);
        self.metrics.reading(t, "out_of_order").inc_by(report.out_of_order as u64);
        for (_, r) in &report.rejected {
            self.metrics.rejected(t, r.reason.as_str()).inc();
        }
    }

    /// Runs the rules over committed readings in time order; returns how many were too old for
    /// them. The live value and level move here at once; the feed and the tiles follow the
    /// readings change and the alarm changes.
    async fn apply(&self, readings: Vec<Reading>) -> usize {
        let mut trackers = self.trackers().await;
        let mut out_of_order = 0;
        // A reading stamped ahead of the clock (within the slack) counts as taken now: a device
        // clock running early must not make the next real readings look older than it and go
        // unruled (a red sensor raising no alarm). Clamping keeps the batch's order.
        let now = Utc::now();
        for r in readings {
            let Some(t) = trackers.get_mut(&r.sensor) else { continue };
            let at = r.at.min(now);
            let (state, change) = rules::step(&t.thresholds, t.rule, at, r.value);
            if state.last_at != Some(at) {
                out_of_order += 1;
                continue;
            }
            t.rule = state;
            {
                // Never back in time: a newer reading another replica took in may have been
                // applied from the log since this batch was committed.
                let mut live = t.live().0.lock();
                if live.at.is_none_or(|a| a <= r.at) {
                    live.at = Some(r.at);
                    live.value = Some(r.value);
                }
                live.level = state.level;
            }
            if let Some(change) = change
                && let Err(e) = self.on_change(t, change, &r).await
            {
                tracing::error!(sensor = %r.sensor, error = %e, "storing an alarm change failed");
                self.metrics.alarm_errors.inc();
            }
        }
        out_of_order
    }

    /// Stores an alarm with its change (announced as `event` with the alarm as the API shows it,
    /// `extra` added; redrawing the sensor when its level moved) and applies the change. Returns
    /// the alarm's id, or the sensor's active alarm that another replica raised meanwhile.
    async fn log_alarm(
        &self,
        a: &Alarm,
        sensor: &Sensor,
        event: Option<&str>,
        extra: &[(&str, Value)],
        redraw: bool,
    ) -> Result<Result<i64, Alarm>, StoreError> {
        let mut data = alarm_json(a, Some(sensor));
        for (k, v) in extra {
            data[*k] = v.clone();
        }
        let mut row = ChangeRow::record(Collection::Alarms, a.id.to_string(), Op::Upsert, event, Some(data));
        if redraw {
            row.bbox = vec![bbox_of(&sensor.envelope())];
        }
        let in_flight = self.live.in_flight();
        match self.store.save_alarm(a, row.clone()).await? {
            AlarmSaved::Saved { id, seq } => {
                self.live.commit(vec![events::Change::committed(seq, row.with_id(id), Vec::new())], in_flight).await?;
                Ok(Ok(id))
            }
            AlarmSaved::Active(other) => Ok(Err(other)),
        }
    }

    /// Stores a change of a stored alarm (an update never meets another active alarm).
    async fn update_alarm(
        &self,
        a: &Alarm,
        sensor: &Sensor,
        event: Option<&str>,
        extra: &[(&str, Value)],
        redraw: bool,
    ) -> Result<(), StoreError> {
        debug_assert!(a.id != 0, "an update of a stored alarm");
        self.log_alarm(a, sensor, event, extra, redraw).await.map(drop)
    }

    /// Turns one rule change into the stored alarm, its case and the feed events.
    async fn on_change(&self, t: &mut Tracker, change: Change, r: &Reading) -> Result<(), StoreError> {
        let sensor = t.sensor.clone();
        match change {
            Change::Raised(level) => {
                let mut a = Alarm {
                    id: 0,
                    sensor_code: sensor.code.clone(),
                    level,
                    peak_level: level,
                    raised_at: r.at,
                    value: r.value,
                    updated_at: r.at,
                    last_value: r.value,
                    cleared_at: None,
                    acked_at: None,
                    acked_by: None,
                    case_id: None,
                };
                // Announced once it carries its case, when it opens one.
                let opens_case = level >= Level::Yellow;
                a.id = match self.log_alarm(&a, &sensor, (!opens_case).then_some("alarm.raised"), &[], true).await? {
                    Ok(id) => id,
                    Err(other) => {
                        // Another replica's rules raised it first (they saw other readings of
                        // this sensor): go on with that one, which opens its own case.
                        t.alarm = Some(other);
                        return Ok(());
                    }
                };
                self.metrics.alarm(level.as_str()).inc();
                if opens_case {
                    a.case_id = Some(self.open_case(&sensor, &a).await?);
                    self.update_alarm(&a, &sensor, Some("alarm.raised"), &[], false).await?;
                }
                t.alarm = Some(a);
            }
            Change::Escalated { from, to } | Change::DeEscalated { from, to } => {
                let Some(mut a) = t.alarm.take() else { return Ok(()) };
                a.level = to;
                a.peak_level = a.peak_level.max(to);
                a.updated_at = r.at;
                a.last_value = r.value;
                let (verb, action) =
                    if to > from { ("升级", "alarm_escalated") } else { ("降级", "alarm_deescalated") };
                let note =
                    format!("告警{verb}: {} → {}, {} {}", from.label(), to.label(), fmt_value(r.value), unit(&sensor));
                match a.case_id {
                    None if to >= Level::Yellow => a.case_id = Some(self.open_case(&sensor, &a).await?),
                    Some(case) => self.note_case(case, action, &sensor, note).await?,
                    None => {}
                }
                // A more severe level is raised again on the same alarm; a milder one updates it.
                let from_level = ("from", json!(from.as_str()));
                if to > from {
                    self.metrics.alarm(to.as_str()).inc();
                    let extra = [from_level, ("escalated_from", json!(from.as_str()))];
                    self.update_alarm(&a, &sensor, Some("alarm.raised"), &extra, true).await?;
                } else {
                    self.update_alarm(&a, &sensor, Some("alarm.updated"), &[from_level], true).await?;
                }
                t.alarm = Some(a);
            }
            Change::Cleared(from) => {
                let Some(mut a) = t.alarm.take() else { return Ok(()) };
                a.cleared_at = Some(r.at);
                a.updated_at = r.at;
                a.last_value = r.value;
                if let Some(case) = a.case_id {
                    let note = format!("告警解除: {} 已恢复, {} {}", from.label(), fmt_value(r.value), unit(&sensor));
                    self.note_case(case, "alarm_cleared", &sensor, note).await?;
                }
                self.update_alarm(&a, &sensor, Some("alarm.cleared"), &[], true).await?;
            }
        }
        Ok(())
    }

    /// Opens the case of an alarm (source `sensor`), committed, indexed and announced.
    async fn open_case(&self, sensor: &Sensor, alarm: &Alarm) -> Result<i64, StoreError> {
        let component = sensor.component_code.as_ref().and_then(|c| self.live.index.components.read().get(c).cloned());
        let deadlines = self.deadlines.read().clone();
        let (case, first) = alarm_case(sensor, component.as_ref(), alarm, &deadlines, Utc::now());
        let (case, _) = crate::cases::commit_new(&self.live, case, &first).await?;
        Ok(case.id)
    }

    /// Notes an alarm change on its case as a history step that keeps the status (escalation
    /// and clearing go on the one case instead of opening new ones). A case already finished
    /// is left alone; a concurrent workflow step is retried over.
    async fn note_case(&self, id: i64, action: &str, sensor: &Sensor, note: String) -> Result<(), StoreError> {
        for _ in 0..5 {
            let Some(case) = self.live.index.cases.read().get(&id.to_string()).cloned() else { return Ok(()) };
            if case.status.is_finished() {
                return Ok(());
            }
            let mut new = case.clone();
            new.version += 1;
            let step = CaseStep {
                case_id: id,
                seq: new.version,
                action: action.into(),
                actor: format!("sensor:{}", sensor.code).into(),
                role: "device".into(),
                dept_code: None,
                status_from: Some(case.status),
                status_to: case.status,
                at: Utc::now(),
                note: Some(note.clone()),
            };
            if crate::cases::commit_step(&self.live, &new, case.version, &step).await?.is_some() {
                return Ok(());
            }
        }
        tracing::warn!(case = id, action, "the case kept changing: alarm note not added");
        Ok(())
    }

    /// Marks sensors stale or fresh as time passes, through the log (a touch of the sensors
    /// that changed): their tiles are redrawn and `sensor.stale` goes out for each. Returns how
    /// many changed.
    pub async fn sweep_stale(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let trackers = self.trackers().await;
        let mut changed = Vec::new();
        let mut areas = Vec::new();
        for t in trackers.values() {
            let live = t.live().get();
            let stale = rules::is_stale(live.at, now, self.stale_after());
            if stale != live.stale {
                changed.push(json!([t.sensor.code, stale, live.at.map(|a| a.timestamp_millis())]));
                areas.push(bbox_of(&t.sensor.envelope()));
            }
        }
        drop(trackers);
        if changed.is_empty() {
            return Ok(0);
        }
        let n = changed.len();
        self.live.touch_logged(Collection::Sensors, json!({ "stale": changed }), areas).await?;
        Ok(n)
    }

    /// Alarms as `GET /api/v1/alarms` lists them: the raised ones from memory, or the latest
    /// `limit` of all from the store.
    /// The alarms `scope` may see: those of sensors in its area, naming their case only when
    /// that case is in scope too.
    pub async fn alarms(&self, active: bool, limit: i64, scope: &CaseScope) -> Result<Vec<Value>, StoreError> {
        let mut list = if active {
            let trackers = self.trackers().await;
            let mut list: Vec<Alarm> = trackers.values().filter_map(|t| t.alarm.clone()).collect();
            list.sort_by_key(|a| std::cmp::Reverse((a.raised_at, a.id)));
            list
        } else {
            self.store.alarms(false, limit).await?
        };
        {
            let sensors = self.live.index.sensors.read();
            list.retain(|a| scope.in_area(sensors.get(&a.sensor_code).and_then(|s| s.grid_code.as_deref())));
        }
        list.truncate(limit as usize);
        {
            let cases = self.live.index.cases.read();
            for a in list.iter_mut() {
                if a.case_id.is_some_and(|id| cases.get(&id.to_string()).is_none_or(|c| !scope.sees(c))) {
                    a.case_id = None;
                }
            }
        }
        let index = self.live.index.sensors.read();
        Ok(list.iter().map(|a| alarm_json(a, index.get(&a.sensor_code))).collect())
    }

    /// Acknowledges a raised alarm (an operator has seen it); acknowledging again changes
    /// nothing. Announced as `alarm.acked`.
    pub async fn ack(&self, id: i64, by: &str, scope: &CaseScope) -> Result<Value, AckError> {
        let mut trackers = self.trackers().await;
        let t = trackers
            .values_mut()
            .find(|t| t.alarm.as_ref().is_some_and(|a| a.id == id) && scope.in_area(t.sensor.grid_code.as_deref()))
            .ok_or_else(|| AckError::Sensor(SensorError::UnknownAlarm(id.to_string())))?;
        let a = t.alarm.as_mut().expect("found by its alarm");
        if a.acked_at.is_none() {
            let mut acked = a.clone();
            acked.acked_at = Some(Utc::now());
            acked.acked_by = Some(by.into());
            self.update_alarm(&acked, &t.sensor, Some("alarm.acked"), &[], false).await?;
            *a = acked;
        }
        Ok(alarm_json(a, Some(&t.sensor)))
    }
}

/// Acknowledging can fail on an unknown alarm or in the store.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error(transparent)]
    Sensor(#[from] SensorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A time as the sensor API writes it: RFC 3339, UTC, milliseconds.
pub(crate) fn secs(t: DateTime<Utc>) -> String {
    crate::model::rfc3339_ms(t)
}

fn fmt_value(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn unit(sensor: &Sensor) -> &str {
    kind(&sensor.kind).map_or("", |k| k.unit.as_str())
}

/// An alarm as the API and the feed show it.
pub fn alarm_json(a: &Alarm, sensor: Option<&Sensor>) -> Value {
    let mut v = json!({
        "id": a.id, "sensor": a.sensor_code, "level": a.level.as_str(), "peak_level": a.peak_level.as_str(),
        "label": a.level.label(), "raised_at": secs(a.raised_at), "value": a.value,
        "updated_at": secs(a.updated_at), "last_value": a.last_value, "cleared_at": a.cleared_at.map(secs),
        "active": a.cleared_at.is_none(), "acked_at": a.acked_at.map(secs), "acked_by": a.acked_by,
        "case_id": a.case_id,
    });
    if let Some(s) = sensor {
        v["grid_code"] = json!(s.grid_code);
        v["kind"] = json!(s.kind);
        v["name"] = json!(s.name);
        v["unit"] = json!(unit(s));
        v["lon"] = json!(s.geom.x());
        v["lat"] = json!(s.geom.y());
        v["grid_code"] = json!(s.grid_code);
        v["component_code"] = json!(s.component_code);
    }
    v
}

/// An alarm back from the change that logged it ([`alarm_json`]), as another replica's engine
/// takes it in; None for data that is not one.
fn alarm_from_json(v: &Value) -> Option<Alarm> {
    let time =
        |k: &str| v[k].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc));
    Some(Alarm {
        id: v["id"].as_i64()?,
        sensor_code: v["sensor"].as_str()?.into(),
        level: Level::parse(v["level"].as_str()?)?,
        peak_level: Level::parse(v["peak_level"].as_str()?)?,
        raised_at: time("raised_at")?,
        value: v["value"].as_f64()?,
        updated_at: time("updated_at")?,
        last_value: v["last_value"].as_f64()?,
        cleared_at: time("cleared_at"),
        acked_at: time("acked_at"),
        acked_by: v["acked_by"].as_str().map(Into::into),
        case_id: v["case_id"].as_i64(),
    })
}

/// The case an alarm opens: an event case of the class its kind maps to, linked to the sensor's
/// component so dispatch goes to the component's owner first; or, for kinds about the component
/// itself (a tilted cover, a strained bridge), a component case of that component's class.
/// Orange and red are urgent.
pub fn alarm_case(
    sensor: &Sensor,
    component: Option<&crate::model::Component>,
    alarm: &Alarm,
    deadlines: &Deadlines,
    now: DateTime<Utc>,
) -> (Case, CaseStep) {
    let k = kind(&sensor.kind);
    let (class_code, case_kind) = match (k, component) {
        (Some(k), Some(c)) if k.component_case => (c.class_code.clone(), "component"),
        (Some(k), _) => (k.case_class.clone(), "event"),
        (None, _) => ("0501".into(), "event"),
    };
    let urgency = if alarm.level >= Level::Orange { "urgent" } else { "normal" };
    let description = format!(
        "{}({}) {} {} {}，达到{}预警",
        sensor.name,
        sensor.code,
        k.map_or("读数", |k| k.label.as_str()),
        fmt_value(alarm.value),
        unit(sensor),
        alarm.level.label()
    );
    let deadline = deadlines.due(&class_code, urgency, now);
    let case = Case {
        id: 0,
        class_code,
        kind: case_kind.into(),
        component_code: component.map(|c| c.code.clone()),
        description,
        source: "sensor".into(),
        status: crate::model::Status::Reported,
        urgency: urgency.into(),
        grid_code: sensor.grid_code.clone(),
        reported_at: now,
        closed_at: None,
        deadline_at: Some(deadline),
        dept_code: None,
        version: 1,
        geom: sensor.geom,
        milestones: Milestones { warn_at: Some(deadlines.warn_at(now, deadline)), ..Default::default() },
        light: None,
        assignee: None,
        assigned_at: None,
    };
    let step = CaseStep {
        case_id: 0,
        seq: 1,
        action: "report".into(),
        actor: format!("sensor:{}", sensor.code).into(),
        role: "device".into(),
        dept_code: None,
        status_from: None,
        status_to: crate::model::Status::Reported,
        at: now,
        note: Some(format!("告警 {} {}", alarm.id, alarm.level.label())),
    };
    (case, step)
}

/// Runs the stale sweep every `every` until the task is dropped.
pub async fn sweep_stale(ingest: Arc<Ingest>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = ingest.sweep_stale(Utc::now()).await {
            tracing::error!(error = %e, "stale sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn parse(json: &str) -> Result<Reading, Reject> {
        parse_reading(json, None, now(), Duration::minutes(5)).map_err(|r| r.reason)
    }

    #[test]
    fn readings_parse_or_are_rejected_with_a_reason() {
        let r = parse(r#"{"sensor":"S1","at":"2026-11-25T11:59:00Z","value":1.5}"#).unwrap();
        assert_eq!((r.sensor.as_str(), r.value), ("S1", 1.5));
        assert_eq!(parse(r#"{"sensor":"S1","value":2}"#).unwrap().at, now(), "no time: arrival");
        assert_eq!(parse(r#"{"sensor":"S1","at":1764072000000,"value":2}"#).unwrap().at.timestamp(), 1_764_072_000);
        for (json, why) in [
            (r#"{"sensor":"S1","value":"high"}"#, Reject::NotANumber),
            (r#"{"sensor":"S1","value":null}"#, Reject::NotANumber),
            (r#"{"sensor":"S1"}"#, Reject::NotANumber),
            (r#"{"sensor":"S1","value":"NaN"}"#, Reject::NotFinite),
            (r#"{"sensor":"S1","value":"-Infinity"}"#, Reject::NotFinite),
            (r#"{"sensor":"S1","value":1e999}"#, Reject::NotFinite),
            (r#"{"sensor":"S1","value":1,"at":"2026-11-25T13:00:00Z"}"#, Reject::Future),
            (r#"{"sensor":"S1","value":1,"at":"yesterday"}"#, Reject::BadTime),
            (r#"{"sensor":"S1","value":1,"at":"1970-01-01T00:00:00Z"}"#, Reject::BadTime),
            (r#"{"sensor":5,"value":1}"#, Reject::Malformed),
            (r#"{"sensor":"S1","value":1,"extra":2}"#, Reject::Malformed),
            (r#"[1,2]"#, Reject::Malformed),
            (r#"{"sensor":"S1","value":NaN}"#, Reject::Malformed),
        ] {
            assert_eq!(parse(json).unwrap_err(), why, "{json}");
        }
    }

    #[test]
    fn a_topic_names_the_sensor() {
        let r = parse_reading(r#"{"value":3}"#, Some("S9"), now(), Duration::zero()).unwrap();
        assert_eq!(r.sensor.as_str(), "S9");
        let other = parse_reading(r#"{"sensor":"S1","value":3}"#, Some("S9"), now(), Duration::zero());
        assert_eq!(other.unwrap_err().reason, Reject::Malformed);
    }
}
