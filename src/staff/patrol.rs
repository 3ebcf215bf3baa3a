//! Patrol coverage (巡查覆盖率) of one city day, from the tallies the positions batches added to:
//! per member (grids assigned and visited, the coverage rate, distance walked, minutes on
//! duty), per unit grid (patrolled or not, by whom) or per community.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::tenths;
use crate::index::CityIndex;
use crate::model::{CaseScope, PatrolDay, PatrolVisit, Str, rfc3339_ms};

/// What the rows are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Staff,
    Grid,
    Community,
}

impl By {
    pub const ALL: [By; 3] = [By::Staff, By::Grid, By::Community];

    pub fn as_str(self) -> &'static str {
        match self {
            By::Staff => "staff",
            By::Grid => "grid",
            By::Community => "community",
        }
    }

    pub fn parse(s: &str) -> Option<By> {
        By::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// A share rounded to four places; none of nothing.
fn rate(part: usize, whole: usize) -> Value {
    if whole == 0 { Value::Null } else { json!(((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0) }
}

fn time(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis).map(rfc3339_ms).map_or(Value::Null, Value::String)
}

/// The coverage report of `day` by `by`, within the caller's area: `{date, by, rows, summary}`.
pub fn report(
    index: &CityIndex,
    day: NaiveDate,
    by: By,
    days: &[PatrolDay],
    visits: &[PatrolVisit],
    scope: &CaseScope,
) -> Value {
    // Who patrols what (members by code, in code order).
    let members: Vec<crate::model::Staff> = {
        let mut m: Vec<_> = index.staff.read().iter().cloned().collect();
        m.sort_by(|a, b| a.code.cmp(&b.code));
        m
    };
    let assigned: BTreeMap<Str, Vec<Str>> =
        members.iter().map(|s| (s.code.clone(), super::assigned_grids(s, index).into_iter().collect())).collect();
    // The members of the caller's area: by their community, else their first grid.
    let in_scope: HashSet<&str> = members
        .iter()
        .filter(|s| {
            let place = s.community_code.as_deref().or(assigned[&s.code].first().map(|g| g.as_str()));
            scope.area.is_none() || place.is_some_and(|c| scope.covers_unit(c))
        })
        .map(|s| s.code.as_str())
        .collect();
    let day_of: HashMap<&str, &PatrolDay> = days.iter().map(|d| (d.staff.as_str(), d)).collect();
    let mut visited_by: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut grid_visits: HashMap<&str, Vec<&PatrolVisit>> = HashMap::new();
    for v in visits {
        visited_by.entry(v.staff.as_str()).or_default().insert(v.grid.as_str());
        grid_visits.entry(v.grid.as_str()).or_default().push(v);
    }
    let mut rows = Vec::new();
    let (mut total_assigned, mut total_visited) = (0usize, 0usize);
    match by {
        By::Staff => {
            for s in members.iter().filter(|s| in_scope.contains(s.code.as_str())) {
                let mine = &assigned[&s.code];
                let seen = visited_by.get(s.code.as_str());
                let covered = mine.iter().filter(|g| seen.is_some_and(|v| v.contains(g.as_str()))).count();
                let others = seen.map_or(0, |v| v.len()) - covered;
                let d = day_of.get(s.code.as_str());
                total_assigned += mine.len();
                total_visited += covered;
                rows.push(json!({
                    "staff": s.code, "name": s.name, "role": s.role, "community_code": s.community_code,
                    "grids_assigned": mine.len(), "grids_visited": covered, "other_grids_visited": others,
                    "coverage_rate": rate(covered, mine.len()),
                    "distance_m": tenths(d.map_or(0.0, |d| d.distance_m)),
                    "duty_minutes": tenths(d.map_or(0.0, |d| d.duty_s / 60.0)),
                    "positions": d.map_or(0, |d| d.positions),
                    "first_at": time(d.map(|d| d.first_ms)), "last_at": time(d.map(|d| d.last_ms)),
                }));
            }
        }
        By::Grid => {
            let mut patrolled_by: HashMap<&str, usize> = HashMap::new();
            for grids in assigned.values() {
                for g in grids {
                    *patrolled_by.entry(g.as_str()).or_default() += 1;
                }
            }
            let grids = index.grids.read();
            let mut list: Vec<&crate::model::Grid> = grids.iter().filter(|g| scope.covers_unit(&g.code)).collect();
            list.sort_by(|a, b| a.code.cmp(&b.code));
            for g in list {
                let vs = grid_visits.get(g.code.as_str()).map_or(&[][..], |v| v.as_slice());
                let visited = !vs.is_empty();
                let staff = patrolled_by.get(g.code.as_str()).copied().unwrap_or(0);
                if staff > 0 {
                    total_assigned += 1;
                    total_visited += visited as usize;
                }
                rows.push(json!({
                    "grid_code": g.code, "name": g.name, "community_code": g.community_code,
                    "staff_assigned": staff, "visited": visited,
                    "visitors": vs.iter().map(|v| v.staff.as_str()).collect::<HashSet<_>>().len(),
                    "positions": vs.iter().map(|v| v.positions).sum::<i64>(),
                    "first_at": time(vs.iter().map(|v| v.first_ms).min()),
                    "last_at": time(vs.iter().map(|v| v.last_ms).max()),
                }));
            }
        }
        By::Community => {
            let grids = index.grids.read();
            let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for g in grids.iter().filter(|g| scope.covers_unit(&g.code)) {
                let e = per.entry(g.community_code.as_str()).or_default();
                e.0 += 1;
                e.1 += grid_visits.contains_key(g.code.as_str()) as usize;
            }
            let communities = index.communities.read();
            for (code, (n, seen)) in per {
                let staff: Vec<&crate::model::Staff> =
                    members.iter().filter(|s| s.community_code.as_deref() == Some(code)).collect();
                let ds: Vec<&&PatrolDay> = staff.iter().filter_map(|s| day_of.get(s.code.as_str())).collect();
                total_assigned += n;
                total_visited += seen;
                rows.push(json!({
                    "community_code": code, "name": communities.get(code).map(|c| c.name.as_str()),
                    "grids": n, "grids_visited": seen, "coverage_rate": rate(seen, n),
                    "staff": staff.len(), "staff_on_patrol": ds.len(),
                    "distance_m": tenths(ds.iter().map(|d| d.distance_m).sum()),
                    "duty_minutes": tenths(ds.iter().map(|d| d.duty_s / 60.0).sum()),
                }));
            }
        }
    }
    let active: Vec<&PatrolDay> = days.iter().filter(|d| in_scope.contains(d.staff.as_str())).collect();
    json!({
        "date": day.to_string(),
        "by": by.as_str(),
        "rows": rows,
        "summary": {
            "grids_assigned": total_assigned, "grids_visited": total_visited,
            "coverage_rate": rate(total_visited, total_assigned),
            "staff": in_scope.len(), "staff_on_patrol": active.len(),
            "distance_m": tenths(active.iter().map(|d| d.distance_m).sum()),
            "duty_minutes": tenths(active.iter().map(|d| d.duty_s / 60.0).sum()),
        },
    })
}
