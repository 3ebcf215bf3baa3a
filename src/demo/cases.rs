//! Two years of cases before the demo's "now", with the rhythms a command centre sees:
//! hotspots around markets, stations and the monastery, fewer reports on Sundays and at
//! night, peaks mid-morning and mid-afternoon, more in summer.

use chrono::{DateTime, Datelike, Utc, Weekday};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::World;
use super::assets::{anchor, in_block};
use super::dict::EventProfile;
use super::planar::P;
use crate::auth::Role;
use crate::cases::workflow;
use crate::model::{Action, Case, CaseStep, Component, ComponentClass, EventClass, Milestones, Status, Str};

const DAYS: i64 = 730;

/// Relative report rate by local hour: quiet at night, peaks 9-11 h and 15-17 h.
const HOURLY: [f64; 24] = [
    0.08, 0.05, 0.04, 0.04, 0.05, 0.10, 0.25, 0.55, 1.10, 2.00, 2.20, 1.90, 1.00, 0.90, 1.30, 1.90, 2.10, 1.80, 0.90,
    0.60, 0.45, 0.35, 0.22, 0.12,
];

/// Share of cases that are about a component (the rest are events).
const COMPONENT_SHARE: f64 = 0.3;
/// Share of event cases drawn from the hotspots rather than spread over the city.
const HOTSPOT_SHARE: f64 = 0.55;
/// Share of dispatched cases still open for want of money or an owner, however old.
const STUCK_SHARE: f64 = 0.005;

/// Hotspot kinds and how they skew the event mix (event class, factor).
const HOTSPOT_KINDS: [(&str, &[(&str, f64)]); 5] = [
    ("market", &[("0406", 3.0), ("0405", 3.0), ("0110", 1.5), ("0112", 1.5)]),
    ("station", &[("0409", 3.0), ("0410", 3.0), ("0201", 2.0)]),
    ("monastery", &[("0406", 2.0), ("0409", 2.0), ("0110", 1.5)]),
    ("building_site", &[("0302", 4.0), ("0136", 3.0), ("0112", 2.0)]),
    ("school", &[("0410", 2.0), ("0406", 1.5)]),
];

const SOURCES: [(&str, f64); 4] = [("supervisor", 0.50), ("public", 0.20), ("hotline", 0.18), ("video", 0.12)];

const ASKS: [&str; 4] = ["请尽快处理。", "请及时处置。", "影响市容，请处理。", "群众反映强烈，请核实处理。"];

struct Hotspot {
    centre: P,
    sigma_m: f64,
    weight: f64,
    kind: usize,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

fn sample(cum: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u = rng.random_range(0.0..cum[cum.len() - 1]);
    cum.partition_point(|&c| c <= u).min(cum.len() - 1)
}

/// Report times in ascending order, as Unix seconds, none at or after the world's end.
fn report_times(world: &World, n: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
    // The grid starts at a local (UTC+8) midnight, so bin d * 24 + h is local hour h of day d.
    let start = world.midnight - DAYS * 86_400;
    let mut weights = Vec::with_capacity(DAYS as usize * 24);
    for d in 0..DAYS {
        let date = world.date_before(DAYS - d);
        // Summer peak in mid-July: more vending, more litter, more rain on the roads.
        let season = 1.0 + 0.35 * (std::f64::consts::TAU * (date.ordinal() as f64 - 196.0) / 365.0).cos();
        let week = match date.weekday() {
            Weekday::Sun => 0.6,
            Weekday::Sat => 0.85,
            _ => 1.0,
        };
        // Reporting grows as the public app spreads.
        let trend = 1.0 + 0.2 * d as f64 / DAYS as f64;
        for h in HOURLY {
            weights.push(season * week * trend * h);
        }
    }
    let cum = cumulative(weights.into_iter());
    let mut t: Vec<i64> = (0..n).map(|_| start + sample(&cum, rng) as i64 * 3600 + rng.random_range(0..3600)).collect();
    t.retain(|&x| x < world.end);
    t.sort_unstable();
    t
}

fn problem_of(class_code: &str) -> &'static [&'static str] {
    match class_code {
        "0113" => &["损坏", "漏水"],
        "0118" => &["不亮", "灯杆倾斜", "灯罩破损"],
        "0209" => &["倾斜", "污损", "被遮挡"],
        "0305" => &["满溢", "破损", "缺失"],
        "0401" | "0402" => &["倒伏", "枯死", "缺株"],
        "0405" => &["黄土裸露", "被踩踏", "垃圾堆积"],
        c if c < "0113" => &["破损", "缺失", "松动", "下沉"],
        _ => &["破损", "损坏", "污损"],
    }
}

/// The workflow a case goes through, as (action, Unix seconds), from its report on. Most close
/// within a day or two; a few are rejected, voided, returned, postponed, reworked or stuck.
/// [`play`] cuts the script at the demo's "now", so recent cases are caught part-way.
fn script(reported: i64, urgent: bool, rng: &mut ChaCha8Rng) -> Vec<(&'static str, i64)> {
    let mut out = Vec::with_capacity(10);
    let mut t = reported;
    let mut step = |action: &'static str, after_s: i64| {
        t += after_s.max(60);
        out.push((action, t));
    };
    let minutes = |rng: &mut ChaCha8Rng, lo: i64, hi: i64| rng.random_range(lo..hi) * 60;
    if rng.random_bool(0.03) {
        step("reject", minutes(rng, 5, 60));
        return out;
    }
    step("accept", minutes(rng, 2, 30));
    if rng.random_bool(0.3) {
        step("verify", minutes(rng, 10, 90));
    }
    step("file", minutes(rng, 2, 40));
    if rng.random_bool(0.02) {
        step("void", minutes(rng, 10, 240));
        return out;
    }
    // Most within the hour; some wait past the dispatch time limit.
    step("dispatch", if rng.random_bool(0.9) { minutes(rng, 3, 50) } else { minutes(rng, 60, 600) });
    if rng.random_bool(STUCK_SHARE) {
        // Open for want of money or an owner, however old.
        if rng.random_bool(0.5) {
            step("hang", minutes(rng, 60, 2880));
        }
        return out;
    }
    if rng.random_bool(0.02) {
        step("return", minutes(rng, 30, 300));
        step("approve_return", minutes(rng, 10, 120));
        step("dispatch", minutes(rng, 5, 60));
    }
    if rng.random_bool(0.03) {
        step("request_postpone", minutes(rng, 120, 1440));
        step("approve_postpone", minutes(rng, 10, 240));
    }
    let median_h = if urgent { 4.0 } else { 30.0 };
    let handling = (median_h * 3600.0 * (0.9 * normal(rng)).exp()).max(1200.0) as i64;
    step("handle", handling);
    for _ in 0..2 {
        if !rng.random_bool(0.06) {
            break;
        }
        step("check_fail", minutes(rng, 30, 240));
        step("handle", handling / 3);
    }
    step("check_pass", minutes(rng, 20, 180));
    step("close", minutes(rng, 5, 120));
    out
}

/// Working hours the demo's dispatchers grant a postponement.
const POSTPONE_HOURS: f64 = 24.0;

/// Plays a case's script up to the demo's "now" through the same [`crate::cases::apply`] the
/// API uses, appending its history (the report first) to `steps`. A case the router found no
/// department for stops before dispatch.
pub(super) fn play(
    case: &mut Case,
    script: &[(&'static str, i64)],
    dept: Option<Str>,
    deadlines: &crate::cases::Deadlines,
    end: i64,
    steps: &mut Vec<CaseStep>,
) {
    let reporter = if matches!(case.source.as_str(), "public" | "hotline") { Role::Public } else { Role::Supervisor };
    let step = |case: &Case, action: &str, role: Role, from: Option<Status>, at: DateTime<Utc>| CaseStep {
        case_id: case.id,
        seq: case.version,
        action: action.into(),
        actor: role.as_str().into(),
        role: role.as_str().into(),
        dept_code: (role == Role::Department || action == "dispatch").then(|| case.dept_code.clone()).flatten(),
        status_from: from,
        status_to: case.status,
        at,
        note: (action == "approve_postpone").then(|| format!("{POSTPONE_HOURS} h")),
    };
    steps.push(step(case, "report", reporter, None, case.reported_at));
    for &(action, ts) in script {
        if ts >= end || (action == "dispatch" && dept.is_none()) {
            break;
        }
        let name = action;
        let action = workflow::action(name).expect("demo scripts name workflow actions");
        let role = workflow::roles(action)[0];
        let to = workflow::transition(case.status, action, role).expect("demo scripts follow the workflow");
        let from = case.status;
        let hours = (action == Action::ApprovePostpone).then_some(POSTPONE_HOURS);
        crate::cases::apply(case, action, to, at(ts), dept.clone(), hours, deadlines);
        steps.push(step(case, name, role, Some(from), at(ts)));
    }
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).expect("timestamp")
}

fn pick<'a>(items: &[&'a str], rng: &mut ChaCha8Rng) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// The class tables cases draw from.
pub(super) struct Catalogue<'a> {
    pub components: &'a [ComponentClass],
    pub events: &'a [EventClass],
    pub event_profile: &'a [EventProfile],
}

pub(super) fn cases(
    world: &World,
    components: &[Component],
    comp_grid: &[u32],
    cat: &Catalogue,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(Case, Vec<(&'static str, i64)>)> {
    let (cclasses, eclasses, eprof) = (cat.components, cat.events, cat.event_profile);
    let times = report_times(world, n, rng);
    let lat = &world.tiling.lattice;
    let n_hot = (world.tiling.grids.len() / 650).max(3);
    let hotspots: Vec<Hotspot> = (0..n_hot)
        .map(|k| Hotspot {
            centre: lat.cell_centre(lat.cells[rng.random_range(0..lat.cells.len())]),
            sigma_m: rng.random_range(120.0..350.0),
            weight: rng.random_range(0.5..2.0),
            kind: k % HOTSPOT_KINDS.len(),
        })
        .collect();
    let hot_cum = cumulative(hotspots.iter().map(|h| h.weight));
    let base: Vec<f64> = eprof.iter().map(|p| p.weight).collect();
    let background_cum = cumulative(base.iter().copied());
    let kind_cum: Vec<Vec<f64>> = HOTSPOT_KINDS
        .iter()
        .map(|(_, skew)| {
            cumulative(
                eprof.iter().zip(&base).map(|(p, &w)| w * skew.iter().find(|s| s.0 == p.code).map_or(1.0, |s| s.1)),
            )
        })
        .collect();

    let source_cum = cumulative(SOURCES.iter().map(|s| s.1));
    // Demo deadlines follow the default filing standard and calendar.
    let deadlines = crate::cases::Deadlines::default();
    let mut out = Vec::with_capacity(n);
    for (i, &ts) in times.iter().enumerate() {
        let source = SOURCES[sample(&source_cum, rng)].0;
        let (class_code, kind, component_code, urgent, ll, g, what) =
            if !components.is_empty() && rng.random_bool(COMPONENT_SHARE) {
                let ci = rng.random_range(0..components.len());
                let c = &components[ci];
                let a = anchor(&c.geom.to_geometry());
                // Reports land at or within a metre or two of the component.
                let (jx, jy) = (rng.random_range(-1.5..1.5), rng.random_range(-1.5..1.5));
                let moved = [a[0] + jx / world.frame.m_per_deg_lon, a[1] + jy / world.frame.m_per_deg_lat];
                let (ll, g) = match world.index.locate(moved) {
                    Some(g) => (moved, g),
                    None => (a, comp_grid[ci]),
                };
                let problem = pick(problem_of(&c.class_code), rng);
                let urgent = problem == "缺失" || rng.random_bool(0.03);
                let cname = &cclasses.iter().find(|k| k.code == c.class_code).expect("class").name;
                let what = format!("{cname}（{}）{problem}", c.code);
                (c.class_code.clone(), "component", Some(c.code.clone()), urgent, ll, g, what)
            } else {
                let (ll, g, ci) = loop {
                    if rng.random_bool(HOTSPOT_SHARE) {
                        let h = &hotspots[sample(&hot_cum, rng)];
                        let q = [h.centre[0] + h.sigma_m * normal(rng), h.centre[1] + h.sigma_m * normal(rng)];
                        let ll = world.frame.to_lonlat(q);
                        if let Some(g) = world.index.locate(ll) {
                            break (ll, g, sample(&kind_cum[h.kind], rng));
                        }
                    } else if let Some((ll, g)) = in_block(world, rng, 0.45) {
                        break (ll, g, sample(&background_cum, rng));
                    }
                };
                let urgent = rng.random_bool(eprof[ci].urgent_share);
                let verb = pick(&["发现", "有", "出现"], rng);
                let what = format!("{verb}{}", eclasses[ci].name);
                (eclasses[ci].code.clone(), "event", None, urgent, ll, g, what)
            };
        let place = {
            let comm = &world.community_names[world.grid_community(g) as usize];
            match rng.random_range(0..3) {
                0 => format!("{comm}第{:03}网格", world.grid_serial[g as usize]),
                1 => format!("{}{comm}附近", world.street_names[world.grid_street[g as usize] as usize]),
                _ => comm.to_string(),
            }
        };
        let who = if source == "public" || source == "hotline" { "市民反映：" } else { "" };
        let description = format!("{who}{place}{what}，{}", pick(&ASKS, rng));
        let deadline = deadlines.due(&class_code, if urgent { "urgent" } else { "normal" }, at(ts));
        let case = Case {
            id: i as i64 + 1,
            class_code,
            kind: kind.into(),
            component_code,
            description,
            source: source.into(),
            status: Status::Reported,
            urgency: if urgent { "urgent" } else { "normal" }.into(),
            grid_code: Some(world.grid_codes[g as usize].clone()),
            reported_at: at(ts),
            closed_at: None,
            deadline_at: Some(deadline),
            dept_code: None,
            version: 1,
            geom: ::geo::Point::new(ll[0], ll[1]),
            milestones: Milestones { warn_at: Some(deadlines.warn_at(at(ts), deadline)), ..Default::default() },
            light: None,
            assignee: None,
            assigned_at: None,
        };
        out.push((case, script(ts, urgent, rng)));
    }
    out
}
