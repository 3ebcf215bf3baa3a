//! Evaluation (综合评价) on both stores: a small scenario of cases whose counts, rates, scores,
//! grades and ranks are worked out by hand below, by department, unit grid, community, street
//! and district; the milestones the workflow API writes feed the same counts; bad parameters get
//! problems.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, create};
use onemap::model::{Case, Milestones, Str};
use serde_json::{Value, json};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Tuesday 3 November 2026, 09:00 in Beijing.
fn t0() -> DateTime<Utc> {
    t("2026-11-03T01:00:00Z")
}

fn h(hours: i64) -> DateTime<Utc> {
    t0() + Duration::hours(hours)
}

/// One scenario case: everything not given is unset.
struct Spec {
    id: i64,
    source: &'static str,
    status: &'static str,
    grid: Str,
    dept: Option<Str>,
    reported: DateTime<Utc>,
    deadline: DateTime<Utc>,
    filed: Option<DateTime<Utc>>,
    dispatch_due: Option<DateTime<Utc>>,
    dispatched: Option<DateTime<Utc>>,
    handled: Option<DateTime<Utc>>,
    voided: Option<DateTime<Utc>>,
    closed: Option<DateTime<Utc>>,
    reworks: i32,
}

impl Spec {
    fn new(id: i64, source: &'static str, status: &'static str, grid: &Str, dept: Option<&Str>) -> Spec {
        Spec {
            id,
            source,
            status,
            grid: grid.clone(),
            dept: dept.cloned(),
            reported: t0(),
            deadline: h(24),
            filed: None,
            dispatch_due: None,
            dispatched: None,
            handled: None,
            voided: None,
            closed: None,
            reworks: 0,
        }
    }

    /// Filed an hour after the report, due for dispatch an hour after that.
    fn filed(mut self) -> Self {
        self.filed = Some(self.reported + Duration::hours(1));
        self.dispatch_due = Some(self.reported + Duration::hours(2));
        self
    }

    fn case(&self, at: geo::Point<f64>) -> Case {
        Case {
            id: self.id,
            class_code: "0110".into(),
            kind: "event".into(),
            component_code: None,
            description: format!("评价场景 {}", self.id),
            source: self.source.into(),
            status: onemap::model::Status::parse(self.status).expect("a status"),
            urgency: "normal".into(),
            grid_code: Some(self.grid.clone()),
            reported_at: self.reported,
            closed_at: self.closed,
            deadline_at: Some(self.deadline),
            dept_code: self.dept.clone(),
            version: 1,
            geom: at,
            milestones: Milestones {
                filed_at: self.filed,
                dispatch_due_at: self.dispatch_due,
                dispatched_at: self.dispatched,
                handled_at: self.handled,
                voided_at: self.voided,
                warn_at: None,
                reworks: self.reworks,
            },
            light: None,
            assignee: None,
            assigned_at: None,
        }
    }
}

/// The counts a row must show, in the API's names and column order.
const COUNTS: &[&str] = onemap::cases::evaluation::Counts::NAMES;

fn check_row(row: &Value, counts: [i64; 15], rates: &[(&str, f64)], score: f64, grade: &str, rank: i64) {
    for (name, want) in COUNTS.iter().zip(counts) {
        assert_eq!(row[name], want, "{name} in {row}");
    }
    for (name, want) in rates {
        let got = row[name].as_f64().unwrap_or_else(|| panic!("{name} in {row}"));
        assert!((got - want).abs() < 1e-9, "{name}: {got} != {want} in {row}");
    }
    assert!((row["score"].as_f64().unwrap() - score).abs() < 1e-9, "score {} != {score}", row["score"]);
    assert_eq!(row["grade"], grade);
    assert_eq!(row["rank"], rank);
}

#[tokio::test]
async fn evaluation_matches_a_hand_worked_scenario_on_both_stores() {
    let city = small_city();
    // Two unit grids in different districts, so each hierarchy level has the same two rows.
    let g1 = &city.grids[0];
    let hierarchy = |g: &onemap::model::Grid| {
        let community = city.communities.iter().find(|c| c.code == g.community_code).unwrap();
        let street = city.streets.iter().find(|s| s.code == community.street_code).unwrap();
        (community.code.clone(), street.code.clone(), street.district_code.clone())
    };
    let g2 = city.grids.iter().find(|g| hierarchy(g).2 != hierarchy(g1).2).expect("two districts");
    let (d1, d2) = (&city.departments[0].code, &city.departments[1].code);
    let (p1, p2) = (g1.geom.interior_point().unwrap(), g2.geom.interior_point().unwrap());

    // The period is 2-15 November 2026 in Beijing, counted as of 16 November 00:00 Beijing.
    let mut specs = vec![
        // 1. D1/G1, supervisor: dispatched, handled and closed on time.
        Spec {
            dispatched: Some(h(1) + Duration::minutes(30)),
            handled: Some(h(5)),
            closed: Some(h(6)),
            ..Spec::new(1, "supervisor", "closed", &g1.code, Some(d1)).filed()
        },
        // 2. D1/G1, public: dispatched late, reworked once, handled and closed after the deadline.
        Spec {
            dispatched: Some(h(3)),
            handled: Some(h(30)),
            closed: Some(h(31)),
            reworks: 1,
            ..Spec::new(2, "public", "closed", &g1.code, Some(d1)).filed()
        },
        // 3. D1/G1, hotline: dispatched on time, never handled, deadline passed.
        Spec {
            dispatched: Some(h(1) + Duration::minutes(30)),
            deadline: h(48),
            ..Spec::new(3, "hotline", "dispatched", &g1.code, Some(d1)).filed()
        },
        // 4. D1/G1: reported on the period's last day, deadline after it: not yet due.
        {
            let mut s = Spec::new(4, "supervisor", "dispatched", &g1.code, Some(d1));
            s.reported = t("2026-11-15T02:00:00Z");
            s.deadline = t("2026-11-17T02:00:00Z");
            let s = s.filed();
            Spec { dispatched: Some(s.reported + Duration::minutes(90)), ..s }
        },
        // 5. D2/G2, supervisor: closed on time.
        Spec {
            dispatched: Some(h(2)),
            handled: Some(h(20)),
            closed: Some(h(21)),
            ..Spec::new(5, "supervisor", "closed", &g2.code, Some(d2)).filed()
        },
        // 6. G2: voided after filing (no department).
        Spec { voided: Some(h(2)), ..Spec::new(6, "supervisor", "voided", &g2.code, None).filed() },
        // 7. G2: rejected, never filed.
        Spec::new(7, "video", "rejected", &g2.code, None),
        // 8. D2/G2, public: handled late on 14 November, closed on 20 November, after the
        //    period: not closed as of its end.
        Spec {
            deadline: t("2026-11-10T01:00:00Z"),
            dispatched: Some(h(1) + Duration::minutes(10)),
            handled: Some(t("2026-11-14T01:00:00Z")),
            closed: Some(t("2026-11-20T01:00:00Z")),
            ..Spec::new(8, "public", "closed", &g2.code, Some(d2)).filed()
        },
        // 10. G2: filed, never dispatched; both time limits passed.
        Spec { deadline: t("2026-11-06T01:00:00Z"), ..Spec::new(10, "supervisor", "filed", &g2.code, None).filed() },
    ];
    // 9. D1/G1: reported just after the period (16 November 01:00 Beijing): not counted.
    let mut late = Spec::new(9, "public", "closed", &g1.code, Some(d1));
    late.reported = t("2026-11-15T17:00:00Z");
    late.closed = Some(late.reported + Duration::hours(1));
    specs.push(late.filed());
    // 11. G1: reported just before the period (1 November 23:59 Beijing): not counted either.
    let mut early = Spec::new(11, "public", "reported", &g1.code, None);
    early.reported = t("2026-11-01T15:59:00Z");
    specs.push(early);

    // Worked by hand from the cases above:
    // D1 = G1 = cases 1-4. Reports 4, two public (2, 3), all valid and filed, none voided; due to
    // dispatch 4, dispatched 4, on time 3 (not 2); due to handle 3 (1 and 2 handled, 3 late;
    // 4 not due), handled 2, on time 1; reworked 1 (2); due to close 3 (1, 2, 3), closed 2, on
    // time 1.
    let d1_counts = [4, 2, 4, 4, 0, 4, 4, 3, 3, 2, 1, 1, 3, 2, 1];
    let d1_rates = [
        ("valid_report_rate", 1.0),
        ("public_report_rate", 0.5),
        ("accurate_filing_rate", 1.0),
        ("ontime_dispatch_rate", 0.75),
        ("accurate_dispatch_rate", 0.75),
        ("handling_rate", 2.0 / 3.0),
        ("ontime_handling_rate", 1.0 / 3.0),
        ("rework_rate", 0.5),
        ("closure_rate", 2.0 / 3.0),
        ("ontime_closure_rate", 1.0 / 3.0),
    ];
    // Score: 10% x (1 - 2/4) + 20% x 4/4 (the most filed) + 30% x 2/3 + 40% x 1/3, in points.
    let d1_score = 0.1 * 50.0 + 0.2 * 100.0 + 0.3 * 200.0 / 3.0 + 0.4 * 100.0 / 3.0;
    // D2 = cases 5 and 8. Reports 2, one public (8); filed 2; dispatched 2, both on time; due to
    // handle 2, handled 2, on time 1 (5); due to close 2 (8 is past its deadline), closed 1 (8
    // closed after the period), on time 1.
    let d2_counts = [2, 1, 2, 2, 0, 2, 2, 2, 2, 2, 1, 0, 2, 1, 1];
    let d2_rates = [("ontime_dispatch_rate", 1.0), ("closure_rate", 0.5), ("rework_rate", 0.0)];
    let d2_score = 0.1 * 50.0 + 0.2 * 50.0 + 0.3 * 50.0 + 0.4 * 50.0;
    // G2 = cases 5-8 and 10. Reports 5, one public (8); valid 4 (not 7); filed 4 (5, 6, 8, 10),
    // voided 1 (6); due to dispatch 3 (5, 8, and 10 past its limit), dispatched 2, on time 2; due
    // to handle 2, handled 2, on time 1; due to close 3 (5, 8, 10), closed 1, on time 1.
    let g2_counts = [5, 1, 4, 4, 1, 3, 2, 2, 2, 2, 1, 0, 3, 1, 1];
    let g2_rates = [
        ("valid_report_rate", 0.8),
        ("accurate_filing_rate", 0.75),
        ("ontime_dispatch_rate", 2.0 / 3.0),
        ("accurate_dispatch_rate", 2.0 / 3.0),
        ("closure_rate", 1.0 / 3.0),
    ];
    let g2_score = 0.1 * 80.0 + 0.2 * 100.0 + 0.3 * 100.0 / 3.0 + 0.4 * 100.0 / 3.0;

    for (label, st) in both_stores("evaluation", city).await {
        let cases: Vec<Case> = specs.iter().map(|s| s.case(if s.grid == g1.code { p1 } else { p2 })).collect();
        // Out of the demo's ids' way.
        let cases: Vec<Case> = cases.into_iter().map(|c| Case { id: c.id + 10_000_000, ..c }).collect();
        onemap::store::insert(&*st.store, &cases, Vec::new()).await.unwrap();
        let app = onemap::app(st.clone().with_public_read());
        let eval = |by: &str| {
            let app = app.clone();
            let uri = format!("/api/v1/evaluation?from=2026-11-02&to=2026-11-15&by={by}");
            async move {
                let r = get(&app, &uri).await;
                assert_eq!(r.status, 200, "{label} {uri}: {}", String::from_utf8_lossy(&r.body));
                r.json()
            }
        };

        let by_dept = eval("dept").await;
        assert_eq!(by_dept["as_of"], "2026-11-15T16:00:00Z", "{label}");
        let rows = by_dept["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{label}: {by_dept}");
        assert_eq!((rows[0]["unit"].as_str().unwrap(), rows[1]["unit"].as_str().unwrap()), (&**d1, &**d2));
        assert_eq!(rows[0]["name"], city.departments[0].name.as_ref());
        check_row(&rows[0], d1_counts, &d1_rates, d1_score, "D", 1);
        check_row(&rows[1], d2_counts, &d2_rates, d2_score, "D", 2);

        // Grids, and each level above them, give the same two rows under their own codes.
        let (h1, h2) = (hierarchy(g1), hierarchy(g2));
        for (by, u1, u2) in [
            ("grid", g1.code.clone(), g2.code.clone()),
            ("community", h1.0.clone(), h2.0.clone()),
            ("street", h1.1.clone(), h2.1.clone()),
            ("district", h1.2.clone(), h2.2.clone()),
        ] {
            let body = eval(by).await;
            let rows = body["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 2, "{label} by {by}: {body}");
            assert_eq!((rows[0]["unit"].as_str().unwrap(), rows[1]["unit"].as_str().unwrap()), (&*u1, &*u2), "{by}");
            assert!(rows[0]["name"].is_string(), "{by} names");
            check_row(&rows[0], d1_counts, &d1_rates, d1_score, "D", 1);
            check_row(&rows[1], g2_counts, &g2_rates, g2_score, "D", 2);
        }

        // Configured weights change the score and the grade.
        let closure_only = onemap::cases::evaluation::Scoring {
            weights: onemap::cases::evaluation::Weights {
                public_report: 0.0,
                filed_count: 0.0,
                closure: 1.0,
                ontime_closure: 0.0,
            },
            ..Default::default()
        };
        let weighted = onemap::app(st.clone().with_rules(Default::default(), closure_only).with_public_read());
        let body = get(&weighted, "/api/v1/evaluation?from=2026-11-02&to=2026-11-15&by=dept").await.json();
        assert!((body["rows"][0]["score"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9, "{body}");
        assert_eq!(body["rows"][0]["grade"], "C");
        assert_eq!(body["weights"]["closure"], 1.0);

        // A period with no cases has no rows.
        let body = get(&app, "/api/v1/evaluation?from=2030-01-01&to=2030-01-31&by=dept").await.json();
        assert_eq!(body["rows"], json!([]), "{label}");
    }
}

#[tokio::test]
async fn the_workflow_api_writes_what_evaluation_counts() {
    let city = small_city();
    for (label, st) in both_stores("evaluation_live", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let admin = create(&*st.store, Role::Admin, None, None).await.unwrap();
        let g = city.grids[5].geom.interior_point().unwrap();
        let dept = city.departments[2].code.to_string();
        let body = json!({"class_code": city.event_classes[0].code, "lon": g.x(), "lat": g.y(), "crs": "cgcs2000",
            "description": "评价联动", "source": "hotline"});
        let r = post_as(&app, "/api/v1/cases", Some(&admin), body.to_string().into_bytes()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let mut case = r.json();
        for action in ["accept", "file", "dispatch", "handle", "check_fail", "handle", "check_pass", "close"] {
            let body = json!({"action": action, "expected_version": case["version"], "dept_code": dept});
            let uri = format!("/api/v1/cases/{}/actions", case["id"]);
            let r = post_as(&app, &uri, Some(&admin), body.to_string().into_bytes()).await;
            assert_eq!(r.status, 200, "{label} {action}: {}", String::from_utf8_lossy(&r.body));
            case = r.json();
        }
        // Today, in Beijing.
        let today = (Utc::now() + Duration::hours(8)).date_naive();
        let body = get(&app, &format!("/api/v1/evaluation?from={today}&to={today}&by=dept")).await.json();
        let rows = body["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{label}: {body}");
        let row = &rows[0];
        assert_eq!(row["unit"], dept);
        // Dispatched within seconds of filing and closed long before the deadline, once reworked.
        let want = [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        for (name, want) in COUNTS.iter().zip(want) {
            assert_eq!(row[name], want, "{label} {name}: {row}");
        }
        assert_eq!(row["rework_rate"], 1.0);
        assert_eq!(row["rank"], 1);
    }
}

#[tokio::test]
async fn bad_evaluation_parameters_are_problems() {
    let city = small_city();
    let st = seeded_state(&fresh_gpkg("evaluation_bad"), city).await;
    let app = onemap::app(st.with_public_read());
    for uri in [
        "/api/v1/evaluation?to=2026-11-30&by=dept",
        "/api/v1/evaluation?from=2026-11-01&by=dept",
        "/api/v1/evaluation?from=2026-11-31&to=2026-12-01",
        "/api/v1/evaluation?from=yesterday&to=2026-12-01",
        "/api/v1/evaluation?from=2026-11-01&to=262142-12-31",
        "/api/v1/evaluation?from=0001-01-01&to=2026-12-01",
        "/api/v1/evaluation?from=2026-12-01&to=2026-11-01",
        "/api/v1/evaluation?from=2026-11-01&to=2026-11-30&by=person",
        "/api/v1/evaluation?from=2026-11-01&to=2026-11-30&by=dept&weights=1",
    ] {
        let p = get(&app, uri).await.problem(400);
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{uri}: {p}");
    }
    // By department is the default.
    let r = get(&app, "/api/v1/evaluation?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["by"], "dept");
}

/// The definitions of `domain.md` applied case by case in plain Rust: the oracle the store's SQL
/// is checked against on the demo city's varied histories.
fn oracle(c: &Case, as_of: DateTime<Utc>) -> [bool; 15] {
    let by = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= as_of);
    let m = &c.milestones;
    let (f, v, d, h, cl) = (by(m.filed_at), by(m.voided_at), by(m.dispatched_at), by(m.handled_at), by(c.closed_at));
    let late = by(c.deadline_at);
    let le = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| matches!((a, b), (Some(a), Some(b)) if a <= b);
    [
        true,
        c.source == "public" || c.source == "hotline",
        !matches!(c.status.as_str(), "reported" | "rejected"),
        f,
        f && v,
        f && !v && (d || by(m.dispatch_due_at)),
        d,
        d && le(m.dispatched_at, m.dispatch_due_at),
        d && (h || late),
        h,
        h && le(m.handled_at, c.deadline_at),
        h && m.reworks > 0,
        f && !v && (cl || late),
        cl,
        cl && le(c.closed_at, c.deadline_at),
    ]
}

#[tokio::test]
async fn store_counts_match_the_definitions_on_the_demo_city() {
    let city = small_city();
    // Six months of the demo's two years, as of their end: every kind of history is in there.
    let start = t("2026-04-30T16:00:00Z");
    let end = t("2026-10-31T16:00:00Z");
    for (label, st) in both_stores("evaluation_oracle", city).await {
        let app = onemap::app(st.clone().with_public_read());
        for (by, key) in [("dept", 0), ("grid", 1)] {
            let mut want: std::collections::BTreeMap<String, [i64; 15]> = Default::default();
            for c in city.cases.iter().filter(|c| c.reported_at >= start && c.reported_at < end) {
                let unit = if key == 0 { c.dept_code.clone() } else { c.grid_code.clone() };
                let Some(unit) = unit else { continue };
                let row = want.entry(unit.to_string()).or_default();
                for (n, hit) in row.iter_mut().zip(oracle(c, end)) {
                    *n += hit as i64;
                }
            }
            assert!(want.len() > 3, "{label}: the period has cases in several units");
            let body = get(&app, &format!("/api/v1/evaluation?from=2026-05-01&to=2026-10-31&by={by}")).await.json();
            let rows = body["rows"].as_array().unwrap();
            assert_eq!(rows.len(), want.len(), "{label} by {by}");
            for row in rows {
                let counts = &want[row["unit"].as_str().unwrap()];
                for (name, n) in COUNTS.iter().zip(counts) {
                    assert_eq!(row[name], *n, "{label} by {by}, {name} of {}", row["unit"]);
                }
            }
            // The demo's histories reach every count somewhere (by grid: a voided case never
            // reaches a department).
            for (i, name) in COUNTS.iter().enumerate().filter(|_| by == "grid") {
                assert!(want.values().any(|r| r[i] > 0), "{label} by {by}: no unit has any {name}");
            }
        }
    }
}
