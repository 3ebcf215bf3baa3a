//! Field tasks to the nearest supervisor (派单到人): a public report waiting for verification
//! (核实) and a handled case waiting for its check (核查) go to the nearest supervisor on duty
//! whose beat holds the case's grid, else to the nearest one on duty; a task not done within the
//! reassignment timeout goes to the next nearest. An assignment is a step of the case's history
//! (`assign`, by the system, announced as `case.assigned`), written like any workflow step, so it
//! reaches every replica and survives restarts; every workflow step clears it.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::events::Live;
use crate::index::CityIndex;
use crate::model::{Case, CaseStep, Staff, Status, Str};
use crate::store::StoreError;

/// A case's field task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// 核实: a public report, accepted, to be verified on the spot.
    Verify,
    /// 核查: a handled case, to be checked on the spot.
    Check,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Verify => "verify",
            Task::Check => "check",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Task::Verify => "核实",
            Task::Check => "核查",
        }
    }
}

/// The field task a case waits for, if any.
pub fn task_of(case: &Case) -> Option<Task> {
    match case.status {
        Status::Accepted if case.source == "public" => Some(Task::Verify),
        Status::Handled => Some(Task::Check),
        _ => None,
    }
}

/// Whether the case's task needs (re)assigning at `now`: nobody has it, or its supervisor has
/// had it longer than `after`.
fn due(case: &Case, now: DateTime<Utc>, after: Duration) -> bool {
    task_of(case).is_some() && case.assigned_at.is_none_or(|t| now - t >= after)
}

/// The supervisors on duty who patrol, with their beats: who a sweep can send, gathered once
/// per sweep (a beat of a community is an R-tree query; the cases waiting can be thousands).
pub struct Roster(Vec<(Staff, BTreeSet<Str>)>);

impl Roster {
    pub fn on_duty(index: &CityIndex) -> Roster {
        let members: Vec<Staff> =
            index.staff.read().iter().filter(|s| s.on_duty && s.role.patrols()).cloned().collect();
        Roster(
            members
                .into_iter()
                .map(|s| {
                    let beat = super::assigned_grids(&s, index);
                    (s, beat)
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The supervisor for `case`: the nearest whose beat holds its grid, else the nearest;
    /// never `except` (the one a reassignment takes it from). With the distance in metres.
    pub fn choose(&self, case: &Case, except: Option<&str>) -> Option<(&Staff, f64)> {
        let (x, y) = (case.geom.x(), case.geom.y());
        let grid = case.grid_code.as_deref();
        let mut best: Option<(&Staff, f64)> = None;
        let mut best_responsible: Option<(&Staff, f64)> = None;
        for (s, beat) in self.0.iter().filter(|(s, _)| except != Some(s.code.as_str())) {
            let d = crate::geo::haversine_m((s.geom.x(), s.geom.y()), (x, y));
            let closer = |b: &Option<(&Staff, f64)>| b.is_none_or(|(bs, bd)| (d, &s.code) < (bd, &bs.code));
            if closer(&best) {
                best = Some((s, d));
            }
            if grid.is_some_and(|g| beat.contains(g)) && closer(&best_responsible) {
                best_responsible = Some((s, d));
            }
        }
        best_responsible.or(best)
    }
}

/// Assigns every case due for it (see [`due`]) at `now`, through the case's history; a task
/// reassigned goes to someone else when anyone else is on duty. Returns how many were assigned.
pub async fn assign(live: &Live, now: DateTime<Utc>, reassign_after: Duration) -> Result<usize, StoreError> {
    let index = live.index.clone();
    let pending: Vec<Case> = {
        let index = index.clone();
        tokio::task::spawn_blocking(move || {
            index.cases.read().iter().filter(|c| due(c, now, reassign_after)).cloned().collect()
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    };
    if pending.is_empty() {
        return Ok(0);
    }
    let roster = {
        let index = index.clone();
        tokio::task::spawn_blocking(move || Roster::on_duty(&index))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    };
    if roster.is_empty() {
        // Nobody on duty (at night): the tasks wait.
        return Ok(0);
    }
    let mut n = 0;
    for case in pending {
        let Some(task) = task_of(&case) else { continue };
        let Some((member, distance)) = roster.choose(&case, case.assignee.as_deref()) else { continue };
        let mut new = case.clone();
        new.version += 1;
        new.assignee = Some(member.code.clone());
        new.assigned_at = Some(now);
        let note = match &case.assignee {
            Some(was) => {
                format!("{}任务改派 {was} → {} {}（{distance:.0} 米）", task.label(), member.name, member.code)
            }
            None => format!("{}任务派给 {} {}（{distance:.0} 米）", task.label(), member.name, member.code),
        };
        let step = CaseStep {
            case_id: case.id,
            seq: new.version,
            action: Str::from("assign"),
            actor: Str::from("系统派单"),
            role: Str::from("system"),
            dept_code: None,
            status_from: Some(case.status),
            status_to: case.status,
            at: now,
            note: Some(note),
        };
        // Another step first (the task was done meanwhile): nothing to do, the next round sees it.
        if crate::cases::commit_step_as(live, &new, case.version, &step, "case.assigned").await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// Assigns tasks every `every` (on the replica holding the singleton lease).
pub async fn run(live: Arc<Live>, reassign_after: Duration, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match assign(&live, Utc::now(), reassign_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(assigned = n, "field tasks assigned"),
            Err(e) => tracing::warn!(error = %e, "assigning field tasks failed"),
        }
    }
}

/// The open tasks of member `code`, oldest assignment first.
pub fn of(index: &CityIndex, code: &str) -> Vec<(Case, Task)> {
    let mut out: Vec<(Case, Task)> = index
        .cases
        .read()
        .iter()
        .filter(|c| c.assignee.as_deref() == Some(code))
        .filter_map(|c| task_of(c).map(|t| (c.clone(), t)))
        .collect();
    out.sort_by_key(|(c, _)| (c.assigned_at, c.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StaffRole;

    fn member(code: &str, lon: f64, beat: &[&str]) -> (Staff, BTreeSet<Str>) {
        let s = Staff {
            code: code.into(),
            name: code.into(),
            role: StaffRole::Supervisor,
            dept_code: None,
            community_code: None,
            grids: beat.iter().map(|g| Str::from(*g)).collect::<Vec<_>>().into(),
            geom: geo::Point::new(lon, 29.0),
            last_seen: None,
            on_duty: true,
            grid_code: None,
        };
        let beat = s.grids.iter().cloned().collect();
        (s, beat)
    }

    #[test]
    fn the_responsible_supervisor_goes_before_a_nearer_one_and_reassignment_skips_the_holder() {
        let mut case = crate::cases::sample(1, "handled", Utc::now(), 24);
        case.geom = geo::Point::new(88.0, 29.0);
        case.grid_code = Some("G1".into());
        assert_eq!(task_of(&case), Some(Task::Check));
        let roster =
            Roster(vec![member("NEAR", 88.001, &["G2"]), member("MINE", 88.01, &["G1"]), member("FAR", 88.1, &[])]);
        let (s, d) = roster.choose(&case, None).unwrap();
        assert_eq!(s.code, "MINE", "the grid's own supervisor, though farther");
        assert!((d - crate::geo::haversine_m((88.01, 29.0), (88.0, 29.0))).abs() < 1e-6);
        assert_eq!(roster.choose(&case, Some("MINE")).unwrap().0.code, "NEAR", "else the nearest");
        case.grid_code = Some("G9".into());
        assert_eq!(roster.choose(&case, None).unwrap().0.code, "NEAR");
        assert!(Roster(Vec::new()).choose(&case, None).is_none());
        case.status = Status::Accepted;
        assert_eq!(task_of(&case), None, "only a public report is verified on the spot");
        case.source = "public".into();
        assert_eq!(task_of(&case), Some(Task::Verify));
    }
}
