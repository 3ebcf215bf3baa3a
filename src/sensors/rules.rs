//! Alarm rules (告警规则) as pure functions: a reading and a sensor's rule state in, the new state
//! and the alarm change (raised, escalated, de-escalated, cleared) out. The national four colours
//! run blue < yellow < orange < red in severity. Hysteresis keeps a level while the value stays
//! within `hysteresis` of its threshold, and a new level takes effect only after it has held for
//! `min_duration_s`, so a noisy series does not flap.

use chrono::{DateTime, Duration, Utc};

pub use crate::model::Level;

pub use crate::model::{Direction, Thresholds};

/// What a sensor's rule remembers between readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct State {
    /// The alarm level raised now, if any.
    pub level: Option<Level>,
    /// A different level the readings have called for since this instant, not yet held long
    /// enough to take effect.
    pub pending: Option<(Option<Level>, DateTime<Utc>)>,
    /// The time of the latest reading applied.
    pub last_at: Option<DateTime<Utc>>,
}

/// An alarm change a reading brings about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised(Level),
    Escalated { from: Level, to: Level },
    DeEscalated { from: Level, to: Level },
    Cleared(Level),
}

/// Applies one reading. A reading older than the latest one applied changes nothing (out of
/// order readings are stored, but the rule has moved on); the caller counts them.
pub fn step(th: &Thresholds, state: State, at: DateTime<Utc>, value: f64) -> (State, Option<Change>) {
    if state.last_at.is_some_and(|last| at < last) || !value.is_finite() {
        return (state, None);
    }
    let target = th.target(state.level, value);
    let mut next = State { last_at: Some(at), ..state };
    if target == state.level {
        next.pending = None;
        return (next, None);
    }
    let since = match state.pending {
        Some((pending, since)) if pending == target => since,
        _ => at,
    };
    if at - since < Duration::seconds(th.min_duration_s) {
        next.pending = Some((target, since));
        return (next, None);
    }
    next.level = target;
    next.pending = None;
    let change = match (state.level, target) {
        (None, Some(to)) => Change::Raised(to),
        (Some(from), None) => Change::Cleared(from),
        (Some(from), Some(to)) if to > from => Change::Escalated { from, to },
        (Some(from), Some(to)) => Change::DeEscalated { from, to },
        (None, None) => unreachable!("target differs from the current level"),
    };
    (next, Some(change))
}

/// The rule state to resume from at start-up: the level of the alarm still raised and the
/// latest stored reading. When that reading called for another level, its alarm change may have
/// been lost with the process (the reading commits before its alarm is written), so that level
/// is left pending since the reading: the next reading that still calls for it takes effect (if
/// the minimum duration has passed) rather than the change being forgotten.
pub fn resume(th: &Thresholds, level: Option<Level>, last: Option<(DateTime<Utc>, f64)>) -> State {
    let Some((at, value)) = last else { return State { level, ..State::default() } };
    let target = th.target(level, value);
    State { level, pending: (target != level).then_some((target, at)), last_at: Some(at) }
}

/// A sensor is stale when its latest reading is older than `after` at `now`, or it never sent one.
pub fn is_stale(last_at: Option<DateTime<Utc>>, now: DateTime<Utc>, after: Duration) -> bool {
    last_at.is_none_or(|t| now - t > after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    /// A drain level sensor in metres: blue 0.2, yellow 0.3, orange 0.4, red 0.5.
    fn drain(hysteresis: f64, min_duration_s: i64) -> Thresholds {
        Thresholds {
            direction: Direction::Above,
            blue: Some(0.2),
            yellow: Some(0.3),
            orange: Some(0.4),
            red: Some(0.5),
            hysteresis,
            min_duration_s,
        }
    }

    fn run(th: &Thresholds, series: &[(i64, f64)]) -> (State, Vec<(i64, Change)>) {
        let mut state = State::default();
        let mut changes = vec![];
        for &(s, v) in series {
            let (next, change) = step(th, state, t(s), v);
            state = next;
            if let Some(c) = change {
                changes.push((s, c));
            }
        }
        (state, changes)
    }

    #[test]
    fn hysteresis_stops_a_noisy_series_from_flapping() {
        // Noise of ±0.02 around the yellow threshold, once it has been crossed.
        let series: Vec<(i64, f64)> =
            (0..200).map(|i| (i * 10, 0.305 + if i % 2 == 0 { 0.02 } else { -0.02 })).collect();
        let (_, without) = run(&drain(0.0, 0), &series);
        assert!(without.len() > 100, "without hysteresis it flaps: {} changes", without.len());
        let (state, with) = run(&drain(0.05, 0), &series);
        assert_eq!(with, vec![(0, Change::Raised(Level::Yellow))]);
        assert_eq!(state.level, Some(Level::Yellow));
        // Clearly below: yellow goes to blue, then clears once under blue's threshold minus 0.05.
        let (state, changes) = run(&drain(0.05, 0), &[(0, 0.32), (10, 0.2), (20, 0.16), (30, 0.14)]);
        assert_eq!(
            changes,
            vec![
                (0, Change::Raised(Level::Yellow)),
                (10, Change::DeEscalated { from: Level::Yellow, to: Level::Blue }),
                (30, Change::Cleared(Level::Blue))
            ]
        );
        assert_eq!(state.level, None);
    }

    #[test]
    fn a_level_takes_effect_only_after_its_minimum_duration() {
        let th = drain(0.0, 60);
        // A 50 s spike raises nothing.
        let (state, changes) = run(&th, &[(0, 0.1), (10, 0.6), (60, 0.6), (70, 0.1)]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(state.level, None);
        // Held for 60 s, it does; the level is the one that held, from when it started.
        let (_, changes) = run(&th, &[(0, 0.35), (30, 0.35), (60, 0.35), (90, 0.1), (120, 0.1), (150, 0.1)]);
        assert_eq!(changes, vec![(60, Change::Raised(Level::Yellow)), (150, Change::Cleared(Level::Yellow))]);
        // A pending level that changes restarts the clock.
        let (_, changes) = run(&th, &[(0, 0.35), (40, 0.45), (90, 0.45), (100, 0.45)]);
        assert_eq!(changes, vec![(100, Change::Raised(Level::Orange))]);
    }

    #[test]
    fn escalation_runs_blue_to_red_and_back() {
        let series = [(0, 0.25), (10, 0.35), (20, 0.45), (30, 0.55), (40, 0.45), (50, 0.35), (60, 0.25), (70, 0.1)];
        let (state, changes) = run(&drain(0.02, 0), &series);
        use Level::*;
        assert_eq!(
            changes,
            vec![
                (0, Change::Raised(Blue)),
                (10, Change::Escalated { from: Blue, to: Yellow }),
                (20, Change::Escalated { from: Yellow, to: Orange }),
                (30, Change::Escalated { from: Orange, to: Red }),
                (40, Change::DeEscalated { from: Red, to: Orange }),
                (50, Change::DeEscalated { from: Orange, to: Yellow }),
                (60, Change::DeEscalated { from: Yellow, to: Blue }),
                (70, Change::Cleared(Blue)),
            ]
        );
        assert_eq!(state.level, None);
        // A jump straight to red is one raise, at red.
        let (_, changes) = run(&drain(0.02, 0), &[(0, 0.9)]);
        assert_eq!(changes, vec![(0, Change::Raised(Red))]);
    }

    #[test]
    fn low_values_alarm_when_the_direction_is_below() {
        // Water-main pressure in MPa: red below 0.1.
        let th = Thresholds { direction: Direction::Below, yellow: Some(0.2), red: Some(0.1), ..Default::default() };
        assert!(th.check().is_ok());
        assert_eq!(th.level_of(0.3), None);
        assert_eq!(th.level_of(0.15), Some(Level::Yellow));
        assert_eq!(th.level_of(0.05), Some(Level::Red));
        assert!(Thresholds { red: Some(0.3), ..th }.check().is_err(), "red above yellow for a low alarm");
        assert!(drain(-0.1, 0).check().is_err());
        assert!(Thresholds { blue: Some(f64::NAN), ..drain(0.0, 0) }.check().is_err());
        assert!(Thresholds { red: Some(0.25), ..drain(0.0, 0) }.check().is_err(), "red below orange");
    }

    #[test]
    fn old_and_non_finite_readings_change_nothing() {
        let th = drain(0.0, 0);
        let (state, _) = run(&th, &[(100, 0.35)]);
        assert_eq!(step(&th, state, t(50), 0.9), (state, None));
        assert_eq!(step(&th, state, t(150), f64::NAN), (state, None));
        assert_eq!(step(&th, state, t(150), f64::INFINITY), (state, None));
    }

    #[test]
    fn stale_sensors_are_those_silent_too_long() {
        let after = Duration::minutes(15);
        assert!(is_stale(None, t(0), after));
        assert!(!is_stale(Some(t(0)), t(900), after));
        assert!(is_stale(Some(t(0)), t(901), after));
    }

    #[test]
    fn a_change_lost_with_the_process_is_taken_up_by_the_next_reading() {
        let th = Thresholds { blue: Some(1.0), yellow: Some(2.0), min_duration_s: 60, ..Thresholds::default() };
        let t0 = DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").unwrap().with_timezone(&Utc);
        // Stored: 2.5 at t0, but no alarm (the process died before writing it).
        let state = resume(&th, None, Some((t0, 2.5)));
        assert_eq!((state.level, state.pending, state.last_at), (None, Some((Some(Level::Yellow), t0)), Some(t0)));
        let (_, change) = step(&th, state, t0 + Duration::seconds(60), 2.4);
        assert_eq!(change, Some(Change::Raised(Level::Yellow)));
        // An alarm that was written resumes as it was, with nothing pending.
        let state = resume(&th, Some(Level::Yellow), Some((t0, 2.5)));
        assert_eq!((state.level, state.pending), (Some(Level::Yellow), None));
        let (_, change) = step(&th, state, t0 + Duration::seconds(60), 2.4);
        assert_eq!(change, None);
        // A sensor that never read resumes empty.
        assert_eq!(resume(&th, None, None), State::default());
    }
}
