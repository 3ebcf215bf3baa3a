//! Field tasks to the nearest supervisor (派单到人): a public report waiting for verification
//! (核实) and a handled case waiting for its check (核查) go to the nearest supervisor on duty
//! whose beat holds the case's grid, else to the nearest one on duty; a task not done within the
//! reassignment timeout goes to the next nearest. An assignment is a step of the case's history
//! (`assign`, by the system, announced as `case.assigned`), written like any workflow step, so it
//! reaches every replica and survives restarts; every workflow step clears it.

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

/// The supervisor for `case`: the nearest on duty whose beat holds its grid, else the nearest
/// on duty who patrols; never `except` (the one a reassignment takes it from). With the
/// distance in metres.
pub fn choose(index: &CityIndex, case: &Case, except: Option<&str>) -> Option<(Staff, f64)> {
    const LOOK: usize = 50;
    let (x, y) = (case.geom.x(), case.geom.y());
    let near = super::nearest(index, x, y, LOOK, true, true);
    let near: Vec<(Staff, f64)> = near.into_iter().filter(|(s, _)| except != Some(s.code.as_str())).collect();
    let grid = case.grid_code.as_deref();
    let responsible =
        near.iter().find(|(s, _)| grid.is_some_and(|g| super::assigned_grids(s, index).contains(g))).cloned();
    responsible.or_else(|| near.into_iter().next())
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
    let mut n = 0;
    for case in pending {
        let Some(task) = task_of(&case) else { continue };
        let Some((member, distance)) = choose(&index, &case, case.assignee.as_deref()) else { continue };
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
