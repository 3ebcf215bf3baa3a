//! Cases (案件): deadlines and the green/yellow/red light, the clock lights are read against, and
//! the rules for taking in a new report. The workflow state machine, dispatch routing and
//! evaluation grow here.

pub mod calendar;
pub mod intake;
pub mod routing;
pub mod workflow;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::events::Live;
use crate::index::Record;
use crate::model::Case;

/// A case as the API and the live feed show it: its properties (light included) and its
/// position in CGCS2000.
pub fn to_json(case: &Case) -> Value {
    let mut m = case.properties();
    m.insert("lon".into(), json!(case.geom.x()));
    m.insert("lat".into(), json!(case.geom.y()));
    Value::Object(m)
}

/// The deadline light of a case (亮灯): green under 80% of its time limit, yellow from 80% to
/// 100%, red past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Light {
    Green,
    Yellow,
    Red,
}

impl Light {
    pub fn as_str(self) -> &'static str {
        match self {
            Light::Green => "green",
            Light::Yellow => "yellow",
            Light::Red => "red",
        }
    }
}

/// Statuses in which a case no longer runs against its deadline: the workflow's final ones.
pub const FINISHED: &[&str] = workflow::TERMINAL;

pub fn is_open(case: &Case) -> bool {
    !FINISHED.contains(&case.status.as_str())
}

/// The light of `case` at `now`: measured from the report to the deadline, at the close for a
/// closed case (so a case closed late stays red), none without a deadline or once voided or
/// rejected.
pub fn light(case: &Case, now: DateTime<Utc>) -> Option<Light> {
    let deadline = case.deadline_at?;
    let end = match case.status.as_str() {
        "closed" => case.closed_at.unwrap_or(now),
        "voided" | "rejected" => return None,
        _ => now,
    };
    let limit = (deadline - case.reported_at).num_seconds().max(1) as f64;
    let used = (end - case.reported_at).num_seconds() as f64 / limit;
    Some(if used < 0.8 {
        Light::Green
    } else if used < 1.0 {
        Light::Yellow
    } else {
        Light::Red
    })
}

/// How long cases may take: the filing standard counted on the working calendar.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    pub calendar: calendar::WorkCalendar,
    pub standard: calendar::FilingStandard,
}

impl Deadlines {
    /// The deadline of a case of `class_code` and `urgency` reported at `at`; classes the
    /// standard does not know (it has `*` rows for both urgencies) get three working days.
    pub fn due(&self, class_code: &str, urgency: &str, at: DateTime<Utc>) -> DateTime<Utc> {
        self.standard
            .deadline(&self.calendar, class_code, urgency, at)
            .unwrap_or_else(|| self.calendar.add_work_hours(at, 3.0 * self.calendar.day_hours()))
    }
}

/// The instant every light is read at. Lights change with time alone, so a tile or page that
/// read them at "now" would silently disagree with a cached tile rendered a minute earlier.
/// Instead all readers use this clock, and only the light sweeper moves it, after which it
/// announces every case whose light changed, the same way as any other change.
static LIGHT_CLOCK: AtomicI64 = AtomicI64::new(i64::MIN);

/// The current light clock (the wall clock until the sweeper first sets it).
pub fn light_clock() -> DateTime<Utc> {
    match LIGHT_CLOCK.load(Ordering::Acquire) {
        i64::MIN => {
            let now = Utc::now();
            // Only the first reader sets it, so every later reader agrees with it.
            let _ = LIGHT_CLOCK.compare_exchange(i64::MIN, now.timestamp_millis(), Ordering::AcqRel, Ordering::Acquire);
            light_clock()
        }
        ms => DateTime::from_timestamp_millis(ms).expect("clock in range"),
    }
}

/// Moves the light clock to `now` (never backwards) and returns the previous reading.
pub fn advance_light_clock(now: DateTime<Utc>) -> DateTime<Utc> {
    let before = light_clock();
    LIGHT_CLOCK.fetch_max(now.timestamp_millis(), Ordering::AcqRel);
    before
}

/// How often the light sweeper moves the light clock.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Moves the light clock every `every` and announces the cases whose light changed.
pub async fn sweep_lights(live: Arc<Live>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let live = live.clone();
        // A million open cases take a few tens of milliseconds: off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || sweep_once(&live, Utc::now())).await {
            tracing::error!(error = %e, "light sweep failed");
        }
    }
}

/// Moves the light clock to `now`; every open case whose light differs between the old and the
/// new reading has its tiles dropped and goes out as `case.updated`. Returns how many changed.
pub fn sweep_once(live: &Live, now: DateTime<Utc>) -> usize {
    let before = light_clock();
    let changed: Vec<Case> =
        live.index.cases.read().iter().filter(|c| is_open(c) && light(c, before) != light(c, now)).cloned().collect();
    advance_light_clock(now);
    let envelopes: Vec<_> = changed.iter().map(Record::envelope).collect();
    live.touched::<Case>(&envelopes);
    for c in &changed {
        live.feed.publish("case.updated", &to_json(c));
    }
    changed.len()
}

/// A case for unit tests: an event case reported at `reported_at` with a deadline `limit_h`
/// hours later.
#[cfg(test)]
pub(crate) fn sample(id: i64, status: &str, reported_at: DateTime<Utc>, limit_h: i64) -> Case {
    Case {
        id,
        class_code: "0110".into(),
        kind: "event".into(),
        component_code: None,
        description: String::new(),
        source: "supervisor".into(),
        status: status.into(),
        urgency: "normal".into(),
        grid_code: None,
        reported_at,
        closed_at: (status == "closed").then_some(reported_at),
        deadline_at: Some(reported_at + chrono::Duration::hours(limit_h)),
        dept_code: None,
        version: 1,
        geom: geo::Point::new(0.0, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn case(status: &str, hours_ago: i64, limit_h: i64) -> (Case, DateTime<Utc>) {
        let now = DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z").unwrap().with_timezone(&Utc);
        (sample(1, status, now - Duration::hours(hours_ago), limit_h), now)
    }

    #[test]
    fn light_turns_yellow_at_80_percent_and_red_at_the_deadline() {
        for (ago, want) in
            [(0, Light::Green), (7, Light::Green), (8, Light::Yellow), (9, Light::Yellow), (10, Light::Red)]
        {
            let (c, now) = case("dispatched", ago, 10);
            assert_eq!(light(&c, now), Some(want), "{ago} h of 10");
        }
    }

    #[test]
    fn closed_cases_keep_the_light_of_their_close_and_voided_have_none() {
        let (mut c, now) = case("closed", 100, 10);
        c.closed_at = Some(c.reported_at + Duration::hours(5));
        assert_eq!(light(&c, now), Some(Light::Green));
        c.closed_at = Some(c.reported_at + Duration::hours(11));
        assert_eq!(light(&c, now), Some(Light::Red));
        c.status = "voided".into();
        assert_eq!(light(&c, now), None);
        c.status = "filed".into();
        c.deadline_at = None;
        assert_eq!(light(&c, now), None);
    }

    #[test]
    fn the_light_clock_never_goes_back() {
        let t = light_clock();
        advance_light_clock(t - Duration::hours(1));
        assert!(light_clock() >= t);
    }
}
