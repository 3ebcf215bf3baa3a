//! Emerging hotspots, after ArcGIS's Emerging Hot Spot Analysis: a space-time cube of counts
//! per unit and time step, Gi* of every bin with its spatial neighbours (and itself) in the same
//! step and the step before, the Mann-Kendall trend of each unit's z series, and the categories
//! (new, consecutive, intensifying, persistent, diminishing, sporadic, oscillating, historical,
//! hot and cold) from the bins at 90% confidence.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc};

use super::AnalysisError;
use super::stats::{self, GiStar, MannKendall, Neighbours};

/// The most bins (units × steps) one cube may hold.
pub const MAX_BINS: usize = 10_000_000;

/// The confidence a trend must reach to count as intensifying or diminishing: 90%, the same as
/// the hot and cold bins.
pub const TREND_P: f64 = 0.10;

/// The length of a time step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Day,
    Week,
    Month,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Day, Step::Week, Step::Month];

    pub fn parse(s: &str) -> Result<Step, AnalysisError> {
        match s {
            "day" => Ok(Step::Day),
            "week" => Ok(Step::Week),
            "month" => Ok(Step::Month),
            _ => Err(AnalysisError::Invalid(format!("step={s:?}: use day, week or month"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Day => "day",
            Step::Week => "week",
            Step::Month => "month",
        }
    }

    /// The start of the step holding city day `d`: the day, its week's Monday, its month's first.
    fn align(self, d: NaiveDate) -> NaiveDate {
        match self {
            Step::Day => d,
            Step::Week => d - Duration::days(d.weekday().num_days_from_monday() as i64),
            Step::Month => d.with_day(1).expect("every month has a first"),
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Step::Day => d + Duration::days(1),
            Step::Week => d + Duration::days(7),
            Step::Month => d.checked_add_months(chrono::Months::new(1)).expect("dates are bounded to 2999"),
        }
    }
}

/// The time steps of a cube: their start instants (city midnights), and the instant the last
/// one ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    pub step: Step,
    pub starts: Vec<DateTime<Utc>>,
    pub end: DateTime<Utc>,
}

impl Steps {
    /// The steps covering city days `from` to `to` inclusive, the first aligned to its step.
    pub fn new(step: Step, from: NaiveDate, to: NaiveDate, city: FixedOffset) -> Steps {
        let midnight = |d| crate::cases::calendar::midnight(d, city);
        let mut d = step.align(from);
        let mut starts = Vec::new();
        while d <= to {
            starts.push(midnight(d));
            d = step.next(d);
        }
        Steps { step, starts, end: midnight(d) }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The step an instant falls in.
    pub fn index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        if t >= self.end || self.starts.first().is_none_or(|s| t < *s) {
            return None;
        }
        Some(self.starts.partition_point(|s| *s <= t) - 1)
    }
}

/// Gi* of every bin of a cube laid out unit-major (`x[unit * steps + t]`): the neighbourhood of
/// (i, t) is i and its spatial neighbours, at t and t − 1; the mean and variance are the whole
/// cube's. Returned in the same layout.
pub fn space_time_gi_star(x: &[f64], steps: usize, w: &Neighbours) -> Vec<GiStar> {
    let units = w.len();
    assert_eq!(x.len(), units * steps, "one value per bin");
    let m = stats::GiMoments::of(x);
    let mut out = Vec::with_capacity(x.len());
    for i in 0..units {
        let nb = w.of(i);
        for t in 0..steps {
            let window = if t == 0 { 0..1 } else { t - 1..t + 1 };
            let wi = ((nb.len() + 1) * window.len()) as f64;
            let mut sum = 0.0;
            for s in window {
                sum += x[i * steps + s] + nb.iter().map(|&j| x[j as usize * steps + s]).sum::<f64>();
            }
            out.push(m.gi_star(sum, wi));
        }
    }
    out
}

/// The emerging hot or cold spot category of a unit from its bins (oldest first) and the trend
/// of its z series; `None` for no pattern.
pub fn category(bins: &[i8], trend: Option<&MannKendall>) -> Option<&'static str> {
    side(bins, trend, 1, HOT).or_else(|| side(bins, trend, -1, COLD))
}

const HOT: [&str; 8] = [
    "new_hot_spot",
    "consecutive_hot_spot",
    "intensifying_hot_spot",
    "persistent_hot_spot",
    "diminishing_hot_spot",
    "sporadic_hot_spot",
    "oscillating_hot_spot",
    "historical_hot_spot",
];
const COLD: [&str; 8] = [
    "new_cold_spot",
    "consecutive_cold_spot",
    "intensifying_cold_spot",
    "persistent_cold_spot",
    "diminishing_cold_spot",
    "sporadic_cold_spot",
    "oscillating_cold_spot",
    "historical_cold_spot",
];

/// The categories of one side: `sign` 1 for hot spots, −1 for cold ones, with their names.
fn side(bins: &[i8], trend: Option<&MannKendall>, sign: i8, names: [&'static str; 8]) -> Option<&'static str> {
    let t = bins.len();
    let last = *bins.last()?;
    let is = |b: i8| b * sign > 0;
    let count = bins.iter().filter(|&&b| is(b)).count();
    let mostly = count as f64 >= 0.9 * t as f64;
    if !is(last) {
        return mostly.then_some(names[7]);
    }
    if count == 1 {
        return Some(names[0]);
    }
    if mostly {
        // Intensifying: the clustering grows more intense (z moves away from 0 on this side).
        let significant = trend.filter(|mk| mk.p < TREND_P && mk.z != 0.0);
        return Some(match significant {
            Some(mk) if (mk.z > 0.0) == (sign > 0) => names[2],
            Some(_) => names[4],
            None => names[3],
        });
    }
    let run = bins.iter().rev().take_while(|&&b| is(b)).count();
    if run >= 2 && run == count {
        return Some(names[1]);
    }
    if bins[..t - 1].iter().any(|&b| b * sign < 0) {
        return Some(names[6]);
    }
    Some(names[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(z: f64, p: f64) -> MannKendall {
        MannKendall { s: 0.0, var_s: 1.0, z, p, tau: 0.0 }
    }

    #[test]
    fn the_esri_categories() {
        let flat = mk(0.0, 1.0);
        let c = |bins: &[i8], t: &MannKendall| category(bins, Some(t));
        assert_eq!(c(&[0, 0, 0, 0, 2], &flat), Some("new_hot_spot"));
        assert_eq!(c(&[0, 0, 0, 1, 3], &flat), Some("consecutive_hot_spot"));
        assert_eq!(c(&[1, 2, 2, 3, 3, 3, 3, 3, 3, 3], &mk(3.0, 0.001)), Some("intensifying_hot_spot"));
        assert_eq!(c(&[3, 3, 3, 3, 3, 3, 3, 3, 2, 1], &mk(-3.0, 0.001)), Some("diminishing_hot_spot"));
        assert_eq!(c(&[2, 2, 2, 2, 2, 2, 2, 2, 2, 2], &flat), Some("persistent_hot_spot"));
        assert_eq!(c(&[1, 0, 2, 0, 0, 1], &flat), Some("sporadic_hot_spot"));
        assert_eq!(c(&[1, 0, -2, 0, 0, 1], &flat), Some("oscillating_hot_spot"));
        assert_eq!(c(&[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0], &flat), Some("historical_hot_spot"));
        assert_eq!(c(&[0, 0, -1, -1], &flat), Some("consecutive_cold_spot"));
        assert_eq!(c(&[-3; 10], &mk(-2.0, 0.04)), Some("intensifying_cold_spot"));
        assert_eq!(c(&[1, 0, 1, 0], &flat), None);
        assert_eq!(c(&[0, 0, 0], &flat), None);
        assert_eq!(category(&[], None), None);
    }

    #[test]
    fn steps_are_aligned_city_periods() {
        let city = crate::model::city_tz();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let months = Steps::new(Step::Month, d("2026-01-15"), d("2026-03-02"), city);
        assert_eq!(months.len(), 3);
        // 2026-01-01 00:00 Beijing is 2025-12-31 16:00 UTC.
        assert_eq!(months.starts[0].to_rfc3339(), "2025-12-31T16:00:00+00:00");
        let weeks = Steps::new(Step::Week, d("2026-11-04"), d("2026-11-17"), city);
        // Monday 2 November to Sunday 22 November.
        assert_eq!(weeks.len(), 3);
        assert_eq!(weeks.index_of(weeks.starts[1] + Duration::hours(1)), Some(1));
        assert_eq!(weeks.index_of(weeks.end), None);
        assert_eq!(weeks.index_of(weeks.starts[0] - Duration::seconds(1)), None);
    }

    #[test]
    fn space_time_gi_uses_the_step_before() {
        // Two units, neighbours of each other, three steps; a burst in unit 0 at step 1.
        let w = Neighbours::from_lists(vec![vec![1], vec![0]]);
        let x = [0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        let g = space_time_gi_star(&x, 3, &w);
        // (0, 2) sees step 1, (0, 0) does not.
        assert!(g[2].z.unwrap() > g[0].z.unwrap());
        assert_eq!(g[2].z, g[5].z, "both units see the same neighbourhood");
    }
}
