//! Simulated readings for trying onemap out (`serve --simulate-sensors`, which `scripts/run`
//! passes): every sensor reports once a tick, calm most of the time, and now and then one goes
//! through an episode (a downpour filling a drain, a gas leak) that rises to some alarm level and
//! recedes, so the big screen shows a living city. The readings go through the same ingest, rules,
//! alarms and cases as real ones, with `transport="simulated"` in the metrics. Never pass the
//! flag to a server watching a real city.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ingest::{Ingest, Transport};
use super::rules::{Direction, Thresholds};
use crate::model::{Reading, Str};

/// Chance that a calm sensor starts an episode at a tick.
const EPISODE_CHANCE: f64 = 1.0 / 4000.0;

/// The value a sensor with these thresholds reads at `severity`: 0 is calm (well inside the
/// normal range), 0.25 its blue threshold, 0.5 yellow, 0.75 orange, 1 red; linear between them.
pub fn value_at(th: &Thresholds, severity: f64) -> f64 {
    let [b, y, o, r] = [th.blue, th.yellow, th.orange, th.red].map(|t| t.unwrap_or(f64::NAN));
    // Calm sits as far from blue as blue is from yellow, on the safe side.
    let calm = match th.direction {
        Direction::Above => (b - (y - b)).max(b * 0.3),
        Direction::Below => b + (b - y),
    };
    let anchors = [calm, b, y, o, r];
    let s = severity.clamp(0.0, 1.2) * 4.0;
    let i = (s.floor() as usize).min(3);
    anchors[i] + (anchors[i + 1] - anchors[i]) * (s - i as f64)
}

/// An episode: its start, how long it lasts and the severity at its height.
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: DateTime<Utc>,
    length: Duration,
    peak: f64,
}

impl Episode {
    /// Rises to the peak over the first third, holds it over the second, recedes over the last.
    fn severity(&self, now: DateTime<Utc>) -> Option<f64> {
        let f = (now - self.start).num_seconds() as f64 / self.length.num_seconds() as f64;
        match f {
            f if !(0.0..1.0).contains(&f) => None,
            f if f < 1.0 / 3.0 => Some(self.peak * f * 3.0),
            f if f < 2.0 / 3.0 => Some(self.peak),
            f => Some(self.peak * (1.0 - f) * 3.0),
        }
    }
}

/// The simulation: sensors, their thresholds and their running episodes.
pub struct Simulation {
    sensors: Vec<(Str, Thresholds)>,
    episodes: HashMap<Str, Episode>,
    rng: ChaCha8Rng,
}

impl Simulation {
    pub fn new(sensors: Vec<(Str, Thresholds)>, seed: u64) -> Simulation {
        Simulation { sensors, episodes: HashMap::new(), rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// One reading per sensor at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Reading> {
        let mut out = Vec::with_capacity(self.sensors.len());
        for (code, th) in &self.sensors {
            let running = self.episodes.get(code).and_then(|e| e.severity(now));
            let severity = match running {
                Some(s) => s,
                None => {
                    self.episodes.remove(code);
                    if self.rng.random_bool(EPISODE_CHANCE) {
                        // Most episodes stay at blue or yellow; a few reach orange or red.
                        let peak = match self.rng.random_range(0..20) {
                            0..=9 => 0.35,
                            10..=15 => 0.6,
                            16..=18 => 0.85,
                            _ => 1.1,
                        };
                        let length = Duration::minutes(self.rng.random_range(15..45));
                        self.episodes.insert(code.clone(), Episode { start: now, length, peak });
                    }
                    0.0
                }
            };
            // Noise of a twentieth of a level, so calm readings wander without alarming.
            let noise = self.rng.random_range(-0.0125..0.0125);
            let value = value_at(th, (severity + noise).max(0.0));
            out.push(Reading { sensor: code.clone(), at: now, value: (value * 1000.0).round() / 1000.0 });
        }
        out
    }
}

/// Feeds the simulation's readings into `ingest` every `every` until the task is dropped.
pub async fn run(ingest: Arc<Ingest>, mut sim: Simulation, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let readings = sim.tick(Utc::now()).into_iter().map(Ok).collect();
        if let Err(e) = ingest.ingest(readings, Transport::Simulated).await {
            tracing::warn!(error = %e, "storing simulated readings failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::rules::{self, Change, Level};

    #[test]
    fn severities_map_onto_the_thresholds_in_both_directions() {
        for kind in ["water_level", "pressure", "gas_lel"] {
            let th = crate::catalog::kind(kind).unwrap().thresholds;
            assert_eq!(th.level_of(value_at(&th, 0.0)), None, "{kind}: calm");
            assert_eq!(th.level_of(value_at(&th, 0.1)), None, "{kind}: still calm");
            for (s, level) in [(0.3, Level::Blue), (0.6, Level::Yellow), (0.85, Level::Orange), (1.1, Level::Red)] {
                assert_eq!(th.level_of(value_at(&th, s)), Some(level), "{kind} at {s}");
            }
        }
    }

    #[test]
    fn a_simulated_day_raises_alarms_of_every_colour_and_clears_them() {
        let city = crate::demo::generate(&crate::demo::DemoParams::shigatse());
        let sensors: Vec<(Str, Thresholds)> =
            city.sensors.iter().map(|s| (s.code.clone(), crate::sensors::thresholds_of(s))).collect();
        let by_code: HashMap<Str, Thresholds> = sensors.iter().cloned().collect();
        let mut sim = Simulation::new(sensors, 7);
        let mut states: HashMap<Str, rules::State> = HashMap::new();
        let mut raised: Vec<Level> = Vec::new();
        let start = DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").unwrap().with_timezone(&Utc);
        for minute in 0..24 * 60 {
            for r in sim.tick(start + Duration::minutes(minute)) {
                let state = states.entry(r.sensor.clone()).or_default();
                let (next, change) = rules::step(&by_code[&r.sensor], *state, r.at, r.value);
                *state = next;
                match change {
                    Some(Change::Raised(l)) | Some(Change::Escalated { to: l, .. }) => raised.push(l),
                    _ => {}
                }
            }
        }
        for level in Level::ALL {
            assert!(raised.contains(&level), "no {level:?} alarm in a simulated day: {raised:?}");
        }
        let still = states.values().filter(|s| s.level.is_some()).count();
        assert!(still * 20 < states.len(), "most sensors are calm at the end of the day ({still} alarming)");
    }
}
