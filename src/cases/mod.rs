//! Cases (案件): deadlines and the green/yellow/red light, the clock lights are read against, and
//! the rules for taking in a new report. The workflow state machine, dispatch routing and
//! evaluation grow here.

pub mod calendar;
pub mod evaluation;
pub mod intake;
pub mod routing;
pub mod workflow;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::events::{Change, Item, Live, bbox_of, moved};
use crate::index::Record;
use crate::model::{Action, Case, CaseStep, Collection, Status, Str};
use crate::store::StoreError;
use crate::store::log::{ChangeRow, Op};

/// A case as the API and the live feed show it: its properties (light included) and its
/// position in CGCS2000.
pub fn to_json(case: &Case) -> Value {
    crate::events::case_json(case)
}

pub use crate::model::{Light, light};

/// Stores a new case with its first step and its change (`case.created`), then applies the
/// change to the live view: the one path every report takes, from the API, Open311 and sensor
/// alarms. Returns the case as stored and the change's sequence number.
pub async fn commit_new(live: &Live, mut case: Case, first: &CaseStep) -> Result<(Case, i64), StoreError> {
    case.light = live.light_of(&case);
    let row = ChangeRow {
        bbox: vec![bbox_of(&case.envelope())],
        ..ChangeRow::record(Collection::Cases, "0", Op::Upsert, Some("case.created"), Some(to_json(&case)))
    };
    let in_flight = live.in_flight();
    let (id, seq) = live.store().create_case(&case, first, row.clone()).await?;
    case.id = id;
    live.commit(vec![Change::committed(seq, row.with_id(id), vec![Item::Case(case.clone())])], in_flight).await?;
    Ok((case, seq))
}

/// Stores one step of a case at `expected_version` with its change (`case.updated`), then
/// applies the change. None, with nothing changed, when another step got there first; else the
/// change's sequence number.
pub async fn commit_step(
    live: &Live,
    new: &Case,
    expected_version: i32,
    step: &CaseStep,
) -> Result<Option<i64>, StoreError> {
    commit_step_as(live, new, expected_version, step, "case.updated").await
}

/// [`commit_step`] announced as `event` (`case.assigned` for a field task's assignment).
pub async fn commit_step_as(
    live: &Live,
    new: &Case,
    expected_version: i32,
    step: &CaseStep,
    event: &str,
) -> Result<Option<i64>, StoreError> {
    let mut new = new.clone();
    new.light = live.light_of(&new);
    let (old, old_dept) = live
        .index
        .cases
        .read()
        .get(&new.id.to_string())
        .map(|c| (Some(c.envelope()), c.dept_code.clone()))
        .unwrap_or_default();
    let mut data = to_json(&new);
    // The department the case leaves (a return, a re-dispatch): its screens redraw the case's
    // tiles too (see `http::events::visible`).
    if old_dept.is_some() && old_dept != new.dept_code {
        data["previous_dept_code"] = serde_json::json!(old_dept);
    }
    let row = ChangeRow {
        bbox: moved(old.as_ref(), Some(&new.envelope())),
        ..ChangeRow::record(Collection::Cases, new.id.to_string(), Op::Upsert, Some(event), Some(data))
    };
    let in_flight = live.in_flight();
    let Some(seq) = live.store().update_case(&new, expected_version, step, row.clone()).await? else {
        return Ok(None);
    };
    live.commit(vec![Change::committed(seq, row, vec![Item::Case(new)])], in_flight).await?;
    Ok(Some(seq))
}

pub fn is_open(case: &Case) -> bool {
    !case.status.is_finished()
}

/// Working hours a filed case has to be dispatched in (派遣时限), unless configured.
pub const DISPATCH_HOURS: f64 = 1.0;

/// How long cases may take: the filing standard counted on the working calendar.
#[derive(Debug, Clone)]
pub struct Deadlines {
    pub calendar: calendar::WorkCalendar,
    pub standard: calendar::FilingStandard,
    /// Working hours from filing to dispatch.
    pub dispatch_hours: f64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { calendar: Default::default(), standard: Default::default(), dispatch_hours: DISPATCH_HOURS }
    }
}

impl Deadlines {
    /// When the light of a case reported at `reported` and due at `deadline` turns yellow: after
    /// 80% of the working time between them.
    pub fn warn_at(&self, reported: DateTime<Utc>, deadline: DateTime<Utc>) -> DateTime<Utc> {
        let hours = self.calendar.work_hours_between(reported, deadline);
        self.calendar.add_work_hours(reported, 0.8 * hours).min(deadline)
    }

    /// The deadline of a case of `class_code` and `urgency` reported at `at`; classes the
    /// standard does not know (it has `*` rows for both urgencies) get three working days.
    pub fn due(&self, class_code: &str, urgency: &str, at: DateTime<Utc>) -> DateTime<Utc> {
        self.standard
            .deadline(&self.calendar, class_code, urgency, at)
            .unwrap_or_else(|| self.calendar.add_work_hours(at, 3.0 * self.calendar.day_hours()))
    }
}

/// What a workflow step does to a case: the new status and version, and for some actions the
/// department, the deadline and the milestones. Pure, so the API and the demo generator (which
/// writes two years of histories) change cases in exactly the same way.
///
/// `dept` is the department a `dispatch` sends the case to; `hours` the working hours an
/// `approve_postpone` grants.
pub fn apply(
    case: &mut Case,
    action: Action,
    to: Status,
    at: DateTime<Utc>,
    dept: Option<Str>,
    hours: Option<f64>,
    deadlines: &Deadlines,
) {
    case.status = to;
    case.version += 1;
    // A step ends the field task it answered; the next one is assigned anew.
    case.assignee = None;
    case.assigned_at = None;
    let m = &mut case.milestones;
    match action {
        Action::File => {
            m.filed_at.get_or_insert(at);
            m.dispatch_due_at.get_or_insert_with(|| deadlines.calendar.add_work_hours(at, deadlines.dispatch_hours));
        }
        Action::Void => m.voided_at = Some(at),
        Action::Dispatch => {
            case.dept_code = dept;
            m.dispatched_at.get_or_insert(at);
        }
        // Back to dispatch: the next department is chosen anew.
        Action::ApproveReturn => case.dept_code = None,
        Action::ApprovePostpone => {
            if let (Some(deadline), Some(h)) = (case.deadline_at, hours) {
                let later = deadlines.calendar.add_work_hours(deadline, h);
                case.deadline_at = Some(later);
                m.warn_at = Some(deadlines.warn_at(case.reported_at, later));
            }
        }
        Action::Handle => m.handled_at = Some(at),
        Action::CheckFail => m.reworks += 1,
        Action::Close => case.closed_at = Some(at),
        _ => {}
    }
}

/// How often the light sweeper moves the light clock.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Moves the light clock every `every`, announcing the cases whose light turned (see
/// [`Live::sweep_lights`]).
pub async fn sweep_lights(live: Arc<Live>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = live.sweep_lights(Utc::now()).await {
            tracing::error!(error = %e, "light sweep failed");
        }
    }
}

/// A case for unit tests: an event case reported at `reported_at` with a deadline `limit_h`
/// hours later.
#[cfg(test)]
pub(crate) fn sample(id: i64, status: &str, reported_at: DateTime<Utc>, limit_h: i64) -> Case {
    Case {
        id,
        class_code: "0110".into(),
        kind: "event".into(),
        component_code: None,
        description: String::new(),
        source: "supervisor".into(),
        status: Status::parse(status).expect("a status"),
        urgency: "normal".into(),
        grid_code: None,
        reported_at,
        closed_at: (status == "closed").then_some(reported_at),
        deadline_at: Some(reported_at + chrono::Duration::hours(limit_h)),
        dept_code: None,
        version: 1,
        geom: geo::Point::new(0.0, 0.0),
        milestones: Default::default(),
        light: None,
        assignee: None,
        assigned_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn case(status: &str, hours_ago: i64, limit_h: i64) -> (Case, DateTime<Utc>) {
        let now = DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z").unwrap().with_timezone(&Utc);
        (sample(1, status, now - Duration::hours(hours_ago), limit_h), now)
    }

    #[test]
    fn light_turns_yellow_at_80_percent_and_red_at_the_deadline() {
        for (ago, want) in
            [(0, Light::Green), (7, Light::Green), (8, Light::Yellow), (9, Light::Yellow), (10, Light::Red)]
        {
            let (c, now) = case("dispatched", ago, 10);
            assert_eq!(light(&c, now), Some(want), "{ago} h of 10");
        }
    }

    #[test]
    fn closed_cases_keep_the_light_of_their_close_and_voided_have_none() {
        let (mut c, now) = case("closed", 100, 10);
        c.closed_at = Some(c.reported_at + Duration::hours(5));
        assert_eq!(light(&c, now), Some(Light::Green));
        c.closed_at = Some(c.reported_at + Duration::hours(11));
        assert_eq!(light(&c, now), Some(Light::Red));
        c.status = Status::Voided;
        assert_eq!(light(&c, now), None);
        c.status = Status::Filed;
        c.deadline_at = None;
        assert_eq!(light(&c, now), None);
    }

    #[test]
    fn steps_set_the_milestones_evaluation_counts() {
        let d = Deadlines::default();
        // Tuesday 24 November 2026, 10:00 Beijing.
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z").unwrap().with_timezone(&Utc);
        let mut c = sample(1, "reported", t0, 30);
        let h = |n: i64| t0 + Duration::hours(n);
        let dept: Str = "D".into();
        use Action::*;
        for (n, action) in [Accept, File, Dispatch, Handle, CheckFail, Handle].into_iter().enumerate() {
            let to = workflow::transition(c.status, action, crate::auth::Role::Admin).unwrap();
            apply(&mut c, action, to, h(n as i64), Some(dept.clone()), None, &d);
        }
        let m = &c.milestones;
        assert_eq!((c.status, c.version), (Status::Handled, 7));
        assert_eq!((m.filed_at, m.dispatched_at, m.handled_at, m.reworks), (Some(h(1)), Some(h(2)), Some(h(5)), 1));
        // One working hour after filing at 11:00.
        assert_eq!(m.dispatch_due_at, Some(h(2)));
        assert_eq!(c.dept_code, Some(dept));
        // A granted postponement moves the deadline by working hours and the warning with it.
        let before = c.deadline_at.unwrap();
        apply(&mut c, ApprovePostpone, Status::Dispatched, h(7), None, Some(8.5), &d);
        assert_eq!(c.deadline_at, Some(d.calendar.add_work_hours(before, 8.5)));
        assert_eq!(c.milestones.warn_at, Some(d.warn_at(c.reported_at, c.deadline_at.unwrap())));
        // Yellow after 80% of the working time: 8 of 10 working hours, across the night.
        let warn = d.warn_at(t0, d.calendar.add_work_hours(t0, 10.0));
        assert_eq!(warn, d.calendar.add_work_hours(t0, 8.0));
    }
}
