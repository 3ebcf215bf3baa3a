//! Tests of the generated city as a whole: determinism, counts, the tiling, codes, and that
//! every feature sits in the grid it names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use ::geo::{Area, BooleanOps, BoundingRect, Contains, Geometry, Intersects, MultiPolygon, Polygon, Validation};
use chrono::{Datelike, Timelike, Weekday};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use super::*;
use crate::model::{City, Shape};

fn small() -> &'static City {
    static C: OnceLock<City> = OnceLock::new();
    C.get_or_init(|| generate(&DemoParams::scaled(0.1)))
}

fn full() -> &'static City {
    static C: OnceLock<City> = OnceLock::new();
    C.get_or_init(|| generate(&DemoParams::shigatse()))
}

fn assert_same(a: &City, b: &City) {
    assert!(a.districts == b.districts);
    assert!(a.streets == b.streets);
    assert!(a.communities == b.communities);
    assert!(a.grids == b.grids);
    assert!(a.departments == b.departments);
    assert!(a.responsibilities == b.responsibilities);
    assert!(a.component_classes == b.component_classes);
    assert!(a.event_classes == b.event_classes);
    assert!(a.components == b.components);
    assert!(a.cases == b.cases);
    assert!(a.sensors == b.sensors);
}

#[test]
fn same_params_same_city() {
    let p = DemoParams::scaled(0.05);
    let a = generate(&p);
    let b = generate(&p);
    assert_same(&a, &b);
    // Bit-level too: PartialEq on f64 would forgive -0.0 vs 0.0.
    assert_eq!(format!("{:?}", a.grids), format!("{:?}", b.grids));
    let c = generate(&DemoParams { seed: 7, ..p });
    assert!(c.grids != a.grids);
}

#[test]
fn shigatse_counts() {
    let c = full();
    assert_eq!(c.districts.len(), 4);
    assert_eq!(c.streets.len(), 9);
    assert_eq!(c.communities.len(), 43);
    assert!((6_000..=7_000).contains(&c.grids.len()), "{} grids", c.grids.len());
    assert_eq!(c.components.len(), 150_000);
    assert_eq!(c.cases.len(), 50_000);
    assert_eq!(c.sensors.len(), 250);
    assert_eq!(c.departments.len(), 90);
    let names: Vec<&str> = c.districts.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["桑珠孜区", "南木林县", "江孜县", "定日县"]);
    let codes: Vec<&str> = c.districts.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["540202", "540221", "540222", "540223"]);
}

#[test]
fn scaled_counts() {
    let p = DemoParams::scaled(0.1);
    let c = small();
    assert_eq!(c.grids.len(), p.grids);
    assert_eq!(c.communities.len(), p.communities);
    assert_eq!(c.streets.len(), p.streets);
    assert_eq!(c.districts.len(), p.districts);
    assert_eq!(c.components.len(), p.components);
    assert_eq!(c.cases.len(), p.cases);
    assert_eq!(c.sensors.len(), p.sensors);
    let tiny = generate(&DemoParams::scaled(0.001));
    assert!(!tiny.grids.is_empty() && !tiny.districts.is_empty() && tiny.components.len() == 150);
}

#[test]
fn city_sits_at_shigatse() {
    let c = small();
    let mut all = MultiPolygon(vec![]);
    for d in &c.districts {
        all.0.extend(d.geom.0.iter().cloned());
    }
    let r = all.bounding_rect().unwrap();
    let centre = r.center();
    assert!((centre.x - 88.88).abs() < 0.03 && (centre.y - 29.27).abs() < 0.03, "{centre:?}");
}

fn planar_m2(g: &impl Area<f64>) -> f64 {
    let f = LocalFrame::shigatse();
    g.unsigned_area() * f.m_per_deg_lon * f.m_per_deg_lat
}

/// The tiling contract, on any city: grids sum to their community exactly, never overlap,
/// lie inside their community, and every polygon is valid.
fn check_tiling(c: &City) {
    let by_code: BTreeMap<&str, &crate::model::Community> =
        c.communities.iter().map(|x| (x.code.as_str(), x)).collect();
    let mut sum: BTreeMap<&str, f64> = BTreeMap::new();
    for g in &c.grids {
        assert!(g.geom.is_valid(), "grid {} invalid: {:?}", g.code, g.geom.validation_errors());
        assert!(g.geom.exterior().is_closed());
        assert!(g.geom.exterior().0.len() >= 4);
        assert!(::geo::Area::signed_area(&g.geom) > 0.0, "grid {} not counter-clockwise", g.code);
        *sum.entry(g.community_code.as_str()).or_default() += planar_m2(&g.geom);
        let comm = by_code[g.community_code.as_str()];
        assert!(comm.geom.contains(&g.geom), "grid {} not inside its community", g.code);
    }
    for comm in &c.communities {
        assert!(comm.geom.is_valid(), "community {} invalid: {:?}", comm.code, comm.geom.validation_errors());
        let a = planar_m2(&comm.geom);
        let s = sum[comm.code.as_str()];
        assert!((a - s).abs() <= 1e-6 * a, "community {}: {a} vs grids {s}", comm.code);
        // The exact union must agree with geo's own overlay.
        let grids: Vec<&Polygon<f64>> =
            c.grids.iter().filter(|g| g.community_code == comm.code).map(|g| &g.geom).collect();
        let u = ::geo::unary_union(grids.iter().copied());
        assert!((planar_m2(&u) - a).abs() <= 1e-6 * a);
    }
    for s in &c.streets {
        assert!(s.geom.is_valid(), "street {} invalid", s.code);
        let kids: f64 = c.communities.iter().filter(|x| x.street_code == s.code).map(|x| planar_m2(&x.geom)).sum();
        assert!((planar_m2(&s.geom) - kids).abs() <= 1e-6 * kids);
    }
    for d in &c.districts {
        assert!(d.geom.is_valid(), "district {} invalid", d.code);
        let kids: f64 = c.streets.iter().filter(|x| x.district_code == d.code).map(|x| planar_m2(&x.geom)).sum();
        assert!((planar_m2(&d.geom) - kids).abs() <= 1e-6 * kids);
    }
    let tree = RTree::bulk_load(
        c.grids
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let r = g.geom.bounding_rect().unwrap();
                GeomWithData::new(Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]), i)
            })
            .collect(),
    );
    let mut pairs = 0;
    for (i, g) in c.grids.iter().enumerate() {
        let r = g.geom.bounding_rect().unwrap();
        let env = AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
        for o in tree.locate_in_envelope_intersecting(&env) {
            if o.data <= i {
                continue;
            }
            pairs += 1;
            let overlap = planar_m2(&g.geom.intersection(&c.grids[o.data].geom));
            assert!(overlap < 1e-6, "grids {} and {} overlap by {overlap} m2", g.code, c.grids[o.data].code);
        }
    }
    assert!(pairs > c.grids.len(), "neighbour query found too few pairs");
}

#[test]
fn tiling_small() {
    check_tiling(small());
}

#[test]
fn tiling_shigatse() {
    check_tiling(full());
}

#[test]
fn grid_areas_are_unit_grids() {
    let c = full();
    let n = c.grids.len() as f64;
    let mean = c.grids.iter().map(|g| g.area_m2).sum::<f64>() / n;
    assert!((9_000.0..11_000.0).contains(&mean), "mean grid area {mean}");
    let typical = c.grids.iter().filter(|g| (4_000.0..=20_000.0).contains(&g.area_m2)).count() as f64;
    assert!(typical / n > 0.97, "only {typical} of {n} grids of typical size");
    // Geodesic and local planar areas agree: the local frame is honest.
    for g in c.grids.iter().take(200) {
        let p = planar_m2(&g.geom);
        assert!((p - g.area_m2).abs() < 1e-3 * g.area_m2, "{p} vs {}", g.area_m2);
    }
    // Irregular: not all grids are plain quadrilaterals.
    let plain = c.grids.iter().filter(|g| g.geom.exterior().0.len() == 5).count() as f64;
    assert!(plain / n < 0.7);
}

fn check_codes(c: &City) {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let uniq = |v: Vec<&str>| {
        let n = v.len();
        assert_eq!(v.into_iter().collect::<BTreeSet<_>>().len(), n, "duplicate codes");
    };
    for d in &c.districts {
        assert!(d.code.len() == 6 && digits(&d.code) && d.code.starts_with("54"));
    }
    let districts: BTreeSet<&str> = c.districts.iter().map(|d| d.code.as_str()).collect();
    for s in &c.streets {
        assert!(s.code.len() == 9 && digits(&s.code) && s.code.starts_with(s.district_code.as_str()));
        assert!(districts.contains(s.district_code.as_str()));
        assert!(s.name.ends_with("街道"));
    }
    let streets: BTreeSet<&str> = c.streets.iter().map(|d| d.code.as_str()).collect();
    for m in &c.communities {
        assert!(m.code.len() == 12 && digits(&m.code) && m.code.starts_with(m.street_code.as_str()));
        assert!(streets.contains(m.street_code.as_str()));
        assert!(m.name.ends_with("社区"));
    }
    let comms: BTreeSet<&str> = c.communities.iter().map(|d| d.code.as_str()).collect();
    let width = c.grids[0].code.len();
    assert!(width == 14 || width == 15);
    for g in &c.grids {
        assert_eq!(g.code.len(), width, "one grid code width per city");
        assert!(digits(&g.code) && g.code.starts_with(g.community_code.as_str()));
        assert!(comms.contains(g.community_code.as_str()));
        assert!(g.name.starts_with(by_code_name(c, &g.community_code)) && g.name.ends_with("网格"));
    }
    // Every level is non-empty.
    for d in &c.districts {
        assert!(c.streets.iter().any(|s| s.district_code == d.code));
    }
    for s in &c.streets {
        assert!(c.communities.iter().any(|m| m.street_code == s.code));
    }
    let used: BTreeSet<&str> = c.grids.iter().map(|g| g.community_code.as_str()).collect();
    assert_eq!(used.len(), c.communities.len());
    uniq(c.districts.iter().map(|x| x.code.as_str()).collect());
    uniq(c.streets.iter().map(|x| x.code.as_str()).collect());
    uniq(c.communities.iter().map(|x| x.code.as_str()).collect());
    uniq(c.grids.iter().map(|x| x.code.as_str()).collect());
    uniq(c.components.iter().map(|x| x.code.as_str()).collect());
    uniq(c.sensors.iter().map(|x| x.code.as_str()).collect());
    uniq(c.departments.iter().map(|x| x.code.as_str()).collect());

    let classes: BTreeMap<&str, &crate::model::ComponentClass> =
        c.component_classes.iter().map(|k| (k.code.as_str(), k)).collect();
    for k in &c.components {
        assert!(k.code.len() == 16 && digits(&k.code), "{}", k.code);
        assert!(districts.contains(&k.code[..6]));
        assert_eq!(&k.code[6..10], k.class_code.as_str());
        let class = classes[k.class_code.as_str()];
        assert_eq!(matches!(k.geom.to_geometry(), Geometry::Polygon(_)), class.geom_type == "polygon");
        assert!(k.name.starts_with(class.name.as_str()));
        assert!(["完好", "破损", "丢失", "占用", "废弃"].contains(&k.status.as_str()));
        assert!(k.survey_date.unwrap() <= k.change_date.unwrap());
        assert!(k.change_date.unwrap() < chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert!(k.survey_date.unwrap() >= chrono::NaiveDate::from_ymd_opt(2023, 11, 1).unwrap());
        assert_eq!(k.competent_dept, class.competent_dept);
        assert!(k.owner_dept.is_some() && k.maint_dept.is_some());
    }
    for d in &c.departments {
        assert_eq!(d.code.len(), 18);
        assert!(is_valid_uscc(&d.code), "{} {}", d.name, d.code);
        assert_eq!(org_code_check_char(&d.code[8..16]), Some(d.code.as_bytes()[16] as char));
    }
    let depts: BTreeSet<&str> = c.departments.iter().map(|d| d.code.as_str()).collect();
    for k in &c.components {
        for d in [&k.competent_dept, &k.owner_dept, &k.maint_dept].into_iter().flatten() {
            assert!(depts.contains(d.as_str()));
        }
    }
}

fn by_code_name<'a>(c: &'a City, comm: &str) -> &'a str {
    c.communities.iter().find(|m| m.code == comm).unwrap().name.as_str()
}

#[test]
fn codes_small() {
    check_codes(small());
}

#[test]
fn codes_shigatse() {
    let c = full();
    check_codes(c);
    // 6,453 grids in 43 communities need three-digit serials.
    assert_eq!(c.grids[0].code.len(), 15);
}

#[test]
fn responsibilities_cover_dispatch() {
    let c = full();
    let has = |dept: &str, scope: &str, target: &str, role: &str| {
        c.responsibilities
            .iter()
            .any(|r| r.dept_code == dept && r.scope == scope && r.target == target && r.role == role)
    };
    for s in &c.streets {
        let office =
            c.departments.iter().find(|d| d.kind == "street" && d.region_code.as_ref() == Some(&s.code)).unwrap();
        assert!(office.name.ends_with("街道办事处"));
        assert!(has(&office.code, "territory", &s.code, "street_office"));
    }
    for d in &c.districts {
        let gov =
            c.departments.iter().find(|x| x.kind == "district" && x.region_code.as_ref() == Some(&d.code)).unwrap();
        assert!(has(&gov.code, "territory", &d.code, "district_government"));
    }
    for e in &c.event_classes {
        assert!(has(e.default_dept.as_ref().unwrap(), "event_class", &e.code, "class_default"));
    }
    for k in &c.component_classes {
        assert!(has(k.competent_dept.as_ref().unwrap(), "component_class", &k.code, "competent"));
    }
    for name in ["日喀则市城市管理局", "日喀则市自来水公司", "日喀则市燃气公司", "国网日喀则供电公司"]
    {
        assert!(c.departments.iter().any(|d| d.name == name), "{name}");
    }
    let kinds: BTreeSet<&str> = c.departments.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["city", "district", "enterprise", "street"]));
    // Owners follow the trade: gas covers belong to the gas company.
    let gas = c.departments.iter().find(|d| d.name == "日喀则市燃气公司").unwrap();
    assert!(c.components.iter().filter(|k| k.class_code == "0111").all(|k| k.owner_dept.as_ref() == Some(&gas.code)));
}

fn check_in_grids(c: &City) {
    let grids: BTreeMap<&str, &Polygon<f64>> = c.grids.iter().map(|g| (g.code.as_str(), &g.geom)).collect();
    for k in &c.components {
        let g = grids[k.grid_code.as_ref().unwrap().as_str()];
        match &k.geom.to_geometry() {
            Geometry::Point(p) => assert!(g.contains(p), "component {} outside its grid", k.code),
            Geometry::Polygon(p) => {
                assert!(p.is_valid());
                assert!(g.contains(p), "green space {} not within its grid", k.code);
            }
            _ => panic!("unexpected geometry"),
        }
    }
    for s in &c.cases {
        let g = grids[s.grid_code.as_ref().unwrap().as_str()];
        assert!(g.intersects(&s.geom), "case {} outside its grid", s.id);
    }
    for s in &c.sensors {
        let g = grids[s.grid_code.as_ref().unwrap().as_str()];
        assert!(g.intersects(&s.geom), "sensor {} outside its grid", s.code);
    }
}

#[test]
fn features_in_their_grids_small() {
    check_in_grids(small());
}

#[test]
fn features_in_their_grids_shigatse() {
    check_in_grids(full());
}

#[test]
fn components_mix_is_realistic() {
    let c = full();
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &c.components {
        *n.entry(k.class_code.as_str()).or_default() += 1;
    }
    assert_eq!(n.len(), c.component_classes.len(), "every class present");
    assert!(n["0402"] > 10_000 && n["0118"] > 10_000 && n["0305"] > 10_000);
    assert!(n["0208"] < 200 && n["0601"] < 200);
    let intact = c.components.iter().filter(|k| k.status == "完好").count() as f64;
    assert!(intact / c.components.len() as f64 > 0.85);
    // Green spaces do not overlap one another.
    let mut greens: BTreeMap<&str, Vec<&Polygon<f64>>> = BTreeMap::new();
    for k in &c.components {
        if let Shape::Other(g) = &k.geom
            && let Geometry::Polygon(p) = &**g
        {
            greens.entry(k.grid_code.as_ref().unwrap().as_str()).or_default().push(p);
        }
    }
    for v in greens.values() {
        for (i, a) in v.iter().enumerate() {
            for b in &v[i + 1..] {
                assert!(planar_m2(&a.intersection(*b)) < 1e-6);
            }
        }
    }
    // Sorted by code: district, class, serial.
    assert!(c.components.windows(2).all(|w| w[0].code < w[1].code));
}

#[test]
fn cases_have_rhythm() {
    let c = full();
    let start = demo_now() - chrono::Duration::days(730);
    let classes: BTreeSet<&str> = c.event_classes.iter().map(|e| e.code.as_str()).collect();
    let comps: BTreeMap<&str, &crate::model::Component> = c.components.iter().map(|k| (k.code.as_str(), k)).collect();
    let mut by_hour = [0usize; 24];
    let mut by_day = [0usize; 7];
    let (mut summer, mut winter, mut closed, mut finished_otherwise, mut reworked) = (0, 0, 0, 0, 0);
    let mut steps = c.case_steps.iter().peekable();
    for (i, s) in c.cases.iter().enumerate() {
        assert_eq!(s.id, i as i64 + 1);
        assert!(s.reported_at >= start && s.reported_at < demo_now());
        // The history: a report, then steps that replay to the status, one version each, in
        // time order, before the demo's now.
        let mut history = vec![];
        while let Some(step) = steps.next_if(|t| t.case_id == s.id) {
            history.push(step);
        }
        assert_eq!(history.len() as i32, s.version, "case {}", s.id);
        assert_eq!(history[0].action, "report");
        assert!(history.iter().enumerate().all(|(k, t)| t.seq == k as i32 + 1));
        assert!(history.windows(2).all(|w| w[0].at <= w[1].at) && history.last().unwrap().at < demo_now());
        let replayed = crate::cases::workflow::replay(history[1..].iter().map(|t| t.action.as_str()));
        assert_eq!(replayed.unwrap(), s.status, "case {}", s.id);
        // Milestones in workflow order.
        let m = &s.milestones;
        let order = [Some(s.reported_at), m.filed_at, m.dispatched_at, m.handled_at, s.closed_at];
        let reached: Vec<_> = order.iter().flatten().collect();
        assert!(reached.windows(2).all(|w| w[0] <= w[1]), "case {}: {order:?}", s.id);
        assert_eq!(m.filed_at.is_some(), history.iter().any(|t| t.action == "file"));
        assert_eq!(m.reworks as usize, history.iter().filter(|t| t.action == "check_fail").count());
        assert!(m.warn_at.unwrap() <= s.deadline_at.unwrap() && m.warn_at.unwrap() > s.reported_at);
        assert!(m.dispatched_at.is_none() || m.dispatch_due_at.is_some());
        if ["dispatched", "handled", "checked", "closed"].contains(&s.status.as_str()) {
            assert!(s.dept_code.is_some(), "case {} is with a department", s.id);
        }
        reworked += (m.reworks > 0) as usize;
        assert!(["supervisor", "public", "hotline", "video"].contains(&s.source.as_str()));
        assert!(["normal", "urgent"].contains(&s.urgency.as_str()));
        assert!(!s.description.is_empty());
        match s.kind.as_str() {
            "event" => {
                assert!(classes.contains(s.class_code.as_str()));
                assert!(s.component_code.is_none());
            }
            "component" => {
                let k = comps[s.component_code.as_ref().unwrap().as_str()];
                assert_eq!(k.class_code, s.class_code);
            }
            other => panic!("kind {other}"),
        }
        if s.status == crate::model::Status::Closed {
            closed += 1;
            let t = s.closed_at.unwrap();
            assert!(t > s.reported_at && t <= demo_now());
        } else {
            assert!(s.closed_at.is_none());
            finished_otherwise += matches!(s.status.as_str(), "rejected" | "voided") as usize;
        }
        let local = s.reported_at + chrono::Duration::hours(8);
        by_hour[local.hour() as usize] += 1;
        by_day[local.weekday().num_days_from_monday() as usize] += 1;
        match local.month() {
            6..=8 => summer += 1,
            12 | 1 | 2 => winter += 1,
            _ => {}
        }
    }
    assert!(steps.next().is_none(), "every step belongs to a case");
    let n = c.cases.len() as f64;
    let closure = closed as f64 / (n - finished_otherwise as f64);
    assert!(closure > 0.97, "closure rate {closure}");
    assert!((0.02..0.08).contains(&(finished_otherwise as f64 / n)), "rejected or voided");
    assert!((0.03..0.1).contains(&(reworked as f64 / n)), "reworked {reworked}");
    assert!(by_hour[10] > 5 * by_hour[3] && by_hour[16] > by_hour[13]);
    let weekday_mean = by_day[..5].iter().sum::<usize>() as f64 / 5.0;
    assert!((by_day[Weekday::Sun.num_days_from_monday() as usize] as f64) < 0.8 * weekday_mean);
    assert!(summer as f64 > 1.2 * winter as f64);
    let component_cases = c.cases.iter().filter(|s| s.kind == "component").count() as f64;
    assert!((0.2..0.4).contains(&(component_cases / n)));
}

#[test]
fn sensors_are_mounted_sensibly() {
    let c = full();
    let comps: BTreeMap<&str, &crate::model::Component> = c.components.iter().map(|k| (k.code.as_str(), k)).collect();
    let kinds: BTreeSet<&str> = c.sensors.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds.len(), 10);
    for s in &c.sensors {
        assert!(s.thresholds.is_none());
        assert!(s.code.starts_with("SEN-"));
        let k = comps[s.component_code.as_ref().expect("shigatse has every mount class").as_str()];
        let ok: &[&str] = match s.kind.as_str() {
            "gas_lel" => &["0111"],
            "water_level" => &["0103", "0104"],
            "strain" | "displacement" => &["0205", "0208"],
            _ => &[],
        };
        assert!(ok.is_empty() || ok.contains(&k.class_code.as_str()), "{} on {}", s.kind, k.class_code);
    }
}

#[test]
fn demo_now_is_beijing_midnight() {
    assert_eq!(demo_now().to_rfc3339(), "2026-10-31T16:00:00+00:00");
}

#[test]
fn a_city_seeded_now_has_its_history_end_now() {
    // Three days and twenty hours after the fixed end: evening, city time.
    let end = DEMO_NOW + 3 * 86_400 + 20 * 3600;
    assert_eq!(local_midnight_at_or_after(end), DEMO_NOW + 4 * 86_400);
    assert_eq!(local_midnight_at_or_after(DEMO_NOW), DEMO_NOW, "a midnight is its own");
    let p = DemoParams { end, ..DemoParams::scaled(0.2) };
    let c = generate(&p);
    let end_t = DateTime::from_timestamp(end, 0).unwrap();
    assert!(c.cases.iter().all(|k| k.reported_at < end_t), "nothing reported after the end");
    assert!(c.case_steps.iter().all(|s| s.at < end_t), "no step after the end");
    let today = c.cases.iter().filter(|k| k.reported_at >= end_t - chrono::Duration::hours(20)).count();
    assert!(today > 0, "the last day has reports up to the end");
    let open = c.cases.iter().filter(|k| !k.status.is_finished()).count();
    let overdue =
        c.cases.iter().filter(|k| !k.status.is_finished() && k.deadline_at.is_some_and(|d| d < end_t)).count();
    assert!(open > 0 && overdue < open, "{overdue} of {open} open cases overdue at the end");
    let fixed = generate(&DemoParams::scaled(0.05));
    assert!(fixed.cases.iter().all(|k| k.reported_at < demo_now()), "the default end is unchanged");
}
