//! Evaluation (综合评价): the counts and rates of the national evaluation per department,
//! district, street, community or unit grid over a period, and the composite score, grade and
//! rank cities publish monthly and quarterly.
//!
//! The store counts (one SQL scan of `cases` over the workflow milestones the cases carry, see
//! [`counts_sql`]); this module turns counts into rates, scores, grades and ranks, which need
//! every unit's counts at once (the filed-count score is relative to the busiest unit).
//!
//! The period's cases are those reported in it, in the city's days. Everything is counted as of
//! the end of the period (or now, for a period still running), so a report on a past month
//! does not change when cases move on later:
//! - due to dispatch: filed, not voided, and dispatched or past the dispatch time limit;
//! - due to handle: dispatched, and handled or past the deadline;
//! - due to close: filed, not voided, and closed or past the deadline;
//! - on time: the milestone at or before its time limit (dispatch limit, deadline);
//! - reworked: handled cases whose check failed at least once (返工).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use crate::store::evaluation::{By, Counts, Dialect, Period, counts_sql};

/// Weights of the composite score (综合指标), from the `[evaluation.weights]` table of the
/// config file. National practice is 10/20/30/40; cities adjust them, so they are not fixed.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Public-report rate score (监督举报率): fewer public reports means the patrols find the
    /// problems first.
    pub public_report: f64,
    /// Filed-count score (立案数): relative to the unit with the most filed cases.
    pub filed_count: f64,
    pub closure: f64,
    pub ontime_closure: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { public_report: 10.0, filed_count: 20.0, closure: 30.0, ontime_closure: 40.0 }
    }
}

/// Lowest scores of grades A to D (E below), from `[evaluation.grades]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grades {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
}

impl Default for Grades {
    fn default() -> Self {
        Grades { a: 90.0, b: 75.0, c: 60.0, d: 40.0 }
    }
}

impl Grades {
    pub fn grade(&self, score: f64) -> &'static str {
        match score {
            s if s >= self.a => "A",
            s if s >= self.b => "B",
            s if s >= self.c => "C",
            s if s >= self.d => "D",
            _ => "E",
        }
    }
}

/// The `[evaluation]` table of the config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    pub weights: Weights,
    pub grades: Grades,
}

impl Scoring {
    /// Rejects weights that cannot make a score.
    pub fn check(&self) -> Result<(), String> {
        let w = self.weights;
        let all = [w.public_report, w.filed_count, w.closure, w.ontime_closure];
        if all.iter().any(|x| !x.is_finite() || *x < 0.0) || all.iter().sum::<f64>() <= 0.0 {
            return Err("evaluation weights must be non-negative and not all zero".into());
        }
        let g = self.grades;
        if !(g.a >= g.b && g.b >= g.c && g.c >= g.d) {
            return Err("evaluation grades must fall from a to d".into());
        }
        Ok(())
    }
}

/// One unit's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub unit: String,
    pub counts: Counts,
    pub score: Option<f64>,
    pub grade: Option<&'static str>,
    pub rank: Option<usize>,
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Counts {
    /// The rates of `domain.md`, by their API names; `None` where nothing was due.
    pub fn rates(&self) -> [(&'static str, Option<f64>); 10] {
        let c = self;
        [
            ("valid_report_rate", ratio(c.valid_reports, c.reports)),
            ("public_report_rate", ratio(c.public_reports, c.reports)),
            ("accurate_filing_rate", ratio(c.filed - c.voided, c.filed)),
            ("ontime_dispatch_rate", ratio(c.dispatched_on_time, c.due_to_dispatch)),
            ("accurate_dispatch_rate", ratio(c.dispatched - c.reworked, c.due_to_dispatch)),
            ("handling_rate", ratio(c.handled, c.due_to_handle)),
            ("ontime_handling_rate", ratio(c.handled_on_time, c.due_to_handle)),
            ("rework_rate", ratio(c.reworked, c.handled)),
            ("closure_rate", ratio(c.closed, c.due_to_close)),
            ("ontime_closure_rate", ratio(c.closed_on_time, c.due_to_close)),
        ]
    }
}

/// Scores, grades and ranks every unit. The score is the weighted mean of the four part scores
/// (each 0-100) that apply: a unit with nothing due to close is scored on the others, one with
/// no reports is not scored. Ranks run
/// from 1 by score, ties sharing a rank; units without a score come last, unranked.
pub fn evaluate(units: Vec<(String, Counts)>, scoring: &Scoring) -> Vec<Evaluated> {
    let most_filed = units.iter().map(|u| u.1.filed).max().unwrap_or(0);
    let w = scoring.weights;
    let mut out: Vec<Evaluated> = units
        .into_iter()
        .map(|(unit, c)| {
            let parts = [
                (w.public_report, ratio(c.reports - c.public_reports, c.reports)),
                (w.filed_count, ratio(c.filed, most_filed)),
                (w.closure, ratio(c.closed, c.due_to_close)),
                (w.ontime_closure, ratio(c.closed_on_time, c.due_to_close)),
            ];
            let (sum, weight) = parts
                .iter()
                .filter_map(|(w, r)| r.map(|r| (w * r * 100.0, *w)))
                .fold((0.0, 0.0), |(s, t), (x, w)| (s + x, t + w));
            let score = (weight > 0.0 && c.reports > 0).then(|| sum / weight);
            Evaluated { unit, counts: c, score, grade: score.map(|s| scoring.grades.grade(s)), rank: None }
        })
        .collect();
    out.sort_by(|a, b| {
        let key = |e: &Evaluated| e.score.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then_with(|| a.unit.cmp(&b.unit))
    });
    for i in 0..out.len() {
        if out[i].score.is_some() {
            out[i].rank =
                Some(if i > 0 && out[i - 1].score == out[i].score { out[i - 1].rank.unwrap() } else { i + 1 });
        }
    }
    out
}

impl Evaluated {
    /// The row the API returns: unit and name, every count, every rate, score, grade and rank.
    pub fn to_json(&self, name: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("unit".into(), json!(self.unit));
        m.insert("name".into(), json!(name));
        if let Value::Object(counts) = json!(self.counts) {
            m.extend(counts);
        }
        for (k, v) in self.counts.rates() {
            m.insert(k.into(), json!(v));
        }
        m.insert("score".into(), json!(self.score));
        m.insert("grade".into(), json!(self.grade));
        m.insert("rank".into(), json!(self.rank));
        Value::Object(m)
    }
}

/// The period of whole local days `from` to `to` in the city's time zone `city`, counted as of
/// its end, or `now` while it runs.
pub fn period(from: NaiveDate, to: NaiveDate, city: chrono::FixedOffset, now: DateTime<Utc>) -> Period {
    let midnight = |d| crate::cases::calendar::midnight(d, city);
    let (start, end) = (midnight(from), midnight(to + chrono::Duration::days(1)));
    Period { start, end, as_of: end.min(now) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(reports: i64, public: i64, filed: i64, due_close: i64, closed: i64, ontime: i64) -> Counts {
        Counts {
            reports,
            public_reports: public,
            filed,
            due_to_close: due_close,
            closed,
            closed_on_time: ontime,
            ..Counts::default()
        }
    }

    #[test]
    fn scores_weigh_the_four_parts_and_rank_with_ties() {
        let units = vec![
            // public 1 - 2/10 = 0.8; filed 8/8; closure 6/8; on time 4/8.
            ("a".to_string(), counts(10, 2, 8, 8, 6, 4)),
            // The same numbers: the same score and rank.
            ("b".to_string(), counts(10, 2, 8, 8, 6, 4)),
            // public 1; filed 4/8; closure 4/4; on time 4/4.
            ("c".to_string(), counts(5, 0, 4, 4, 4, 4)),
            // Nothing reported: no score, no rank.
            ("d".to_string(), Counts::default()),
        ];
        let out = evaluate(units, &Scoring::default());
        let score_ab = 0.1 * 80.0 + 0.2 * 100.0 + 0.3 * 75.0 + 0.4 * 50.0;
        let score_c = 0.1 * 100.0 + 0.2 * 50.0 + 0.3 * 100.0 + 0.4 * 100.0;
        let got: Vec<(&str, Option<usize>, Option<&str>)> =
            out.iter().map(|e| (e.unit.as_str(), e.rank, e.grade)).collect();
        assert_eq!(
            got,
            [("c", Some(1), Some("A")), ("a", Some(2), Some("C")), ("b", Some(2), Some("C")), ("d", None, None)]
        );
        assert!((out[0].score.unwrap() - score_c).abs() < 1e-9);
        assert!((out[1].score.unwrap() - score_ab).abs() < 1e-9, "{:?} vs {score_ab}", out[1].score);
        // A unit with nothing due to close is scored on the parts that apply.
        let out = evaluate(vec![("e".into(), counts(4, 1, 2, 0, 0, 0))], &Scoring::default());
        assert!((out[0].score.unwrap() - (0.1 * 75.0 + 0.2 * 100.0) / 0.3).abs() < 1e-9);
    }

    #[test]
    fn grades_and_weights_come_from_config() {
        let s: Scoring = toml::from_str(
            "[weights]\nclosure = 100\npublic_report = 0\nfiled_count = 0\nontime_closure = 0\n[grades]\na = 95",
        )
        .unwrap();
        assert!(s.check().is_ok());
        let out = evaluate(vec![("x".into(), counts(10, 10, 10, 10, 9, 0))], &s);
        assert_eq!(out[0].score, Some(90.0));
        assert_eq!(out[0].grade, Some("B"));
        assert!(Scoring { weights: Weights { closure: -1.0, ..Weights::default() }, ..s }.check().is_err());
        assert!(toml::from_str::<Scoring>("[weights]\nclosures = 1").is_err());
        let g = Grades::default();
        assert_eq!([95.0, 90.0, 75.0, 74.9, 60.0, 40.0, 39.9].map(|s| g.grade(s)), ["A", "A", "B", "C", "C", "D", "E"]);
    }

    #[test]
    fn periods_are_whole_local_days_counted_as_of_their_end() {
        let bj = crate::model::city_tz();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let now = t("2026-11-25T02:00:00Z");
        let p = period(d("2026-10-01"), d("2026-10-31"), bj, now);
        let (start, end) = (t("2026-09-30T16:00:00Z"), t("2026-10-31T16:00:00Z"));
        assert_eq!(p, Period { start, end, as_of: end });
        let p = period(d("2026-11-01"), d("2026-11-30"), bj, now);
        assert_eq!((p.end, p.as_of), (t("2026-11-30T16:00:00Z"), now));
    }

    #[test]
    fn the_query_groups_by_the_unit_with_its_joins() {
        assert!(counts_sql(By::Dept, Dialect::Postgres).contains("c.dept_code AS unit"));
        assert!(counts_sql(By::Grid, Dialect::Sqlite).contains("coalesce(+c.filed_at <= $3, false) AS f"));
        let q = counts_sql(By::District, Dialect::Postgres);
        assert!(
            q.contains("c.grid_code AS unit") && q.contains("JOIN streets s") && q.contains("GROUP BY s.district_code")
        );
        assert_eq!(q.matches("count(*) FILTER").count(), Counts::LEN);
        assert_eq!(q.matches("CAST(sum(").count(), Counts::LEN);
        assert_eq!(By::parse("street"), Some(By::Street));
        assert_eq!(By::parse("person"), None);
    }
}
