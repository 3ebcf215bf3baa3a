//! Cases over HTTP: report a case, read one with its history, list the latest, and the big
//! screen's counters.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, out_of_scope, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, PathParams};
use crate::auth::{Principal, Role};
use crate::cases::evaluation::{self, By};
use crate::cases::intake::{self, NewCase, take_in};
use crate::cases::{self, Light, is_open};
use crate::cases::{routing, workflow};
use crate::index::Record;
use crate::model::{Action, Case, CaseStep, Status};
use crate::store::{self, schema::Val};

/// Roles that may report a case.
pub(crate) const REPORTERS: &[Role] = &[Role::Supervisor, Role::Acceptor, Role::ShiftLeader, Role::Dispatcher];

/// `POST /api/v1/cases`: validated, committed, then applied to the index and announced.
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<NewCase>,
) -> ApiResult<Response> {
    who.require(REPORTERS, "report cases")?;
    let (case, seq) = report(&st, &who, &req).await?;
    Ok(super::created(format!("/api/v1/cases/{}", case.id), seq, cases::to_json(&case)))
}

/// Takes in a report: validated, committed with its first history step, then applied to the
/// index and announced as `case.created`. Shared by the API and the Open311 intake. Returns the
/// case and its change's sequence number.
pub async fn report(st: &AppState, who: &crate::auth::Principal, req: &NewCase) -> ApiResult<(Case, i64)> {
    let (case, first) = take_in(req, &st.index, &st.deadlines, who, Utc::now())?;
    Ok(cases::commit_new(&st.live, case, &first).await?)
}

/// The body of `POST /api/v1/cases/{id}/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub action: String,
    pub expected_version: i32,
    #[serde(default)]
    pub note: Option<String>,
    /// `dispatch`: the department (default: the owner-first suggestion).
    #[serde(default)]
    pub dept_code: Option<String>,
    /// `request_postpone` and `approve_postpone`: extra hours asked for or granted.
    #[serde(default)]
    pub hours: Option<f64>,
}

/// Longest postponement one request may ask for: a month.
const MAX_POSTPONE_HOURS: f64 = 720.0;
/// Shortest: half an hour (a postponement of a nanosecond is a typing error).
const MIN_POSTPONE_HOURS: f64 = 0.5;
/// Postponements one case may be granted (延期次数); beyond, it is handled or returned.
const MAX_POSTPONEMENTS: usize = 3;

/// The hours the pending postponement request asked for, from the history (its step's note
/// starts with them, as `act` writes it), and the postponements granted so far.
fn postponements(steps: &[CaseStep]) -> (Option<f64>, usize) {
    let granted = steps.iter().filter(|s| s.action == Action::ApprovePostpone.as_str()).count();
    let asked = steps
        .iter()
        .rev()
        .find(|s| s.action == Action::RequestPostpone.as_str())
        .and_then(|s| s.note.as_deref()?.split_once(" h")?.0.parse::<f64>().ok());
    (asked, granted)
}

/// `POST /api/v1/cases/{id}/actions`: one workflow step. The workflow decides (403, 422), the
/// store applies it only at `expected_version` (409 otherwise), then the index, tiles and feed
/// follow.
pub async fn act(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<ActionRequest>,
) -> ApiResult<Response> {
    let case = case_of(&st, &id)?;
    confine(&who, &case, "act on")?;
    let action = workflow::action(&req.action)?;
    // A role that may never act is refused (403) whatever the version; otherwise the version
    // comes first: a step raced by another answers 409 (reload and retry), not 422 for a status
    // the client never saw.
    let next = workflow::transition(case.status, action, who.role);
    if req.expected_version != case.version && !matches!(next, Err(workflow::WorkflowError::Forbidden { .. })) {
        return Err(stale(case.version, req.expected_version));
    }
    let next = next?;
    let note = req.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > intake::MAX_DESCRIPTION) {
        return Err(ApiError::bad_request(
            "invalid-action",
            format!("note longer than {} characters", intake::MAX_DESCRIPTION),
        ));
    }
    if let Some(n) = note {
        crate::model::check_text("note", n).map_err(|e| ApiError::bad_request("invalid-action", e))?;
    }
    if st.media.settings().required_for(action).is_some() {
        // A photo of this step taken since the case's last step (a rework needs a new one).
        let since = history(&st, case.id).await?.last().map_or(case.reported_at, |s| s.at);
        st.media.check_required(&*st.store, case.id, action, since).await?;
    }
    let now = Utc::now();
    let hours = match action {
        Action::RequestPostpone | Action::ApprovePostpone => {
            let (asked, granted) = postponements(&history(&st, case.id).await?);
            // Approval defaults to what was asked.
            let h = req.hours.or(if action == Action::ApprovePostpone { asked } else { None });
            let h = h.filter(|h| h.is_finite() && (MIN_POSTPONE_HOURS..=MAX_POSTPONE_HOURS).contains(h)).ok_or_else(
                || {
                    ApiError::bad_request(
                        "invalid-action",
                        format!(
                            "{} needs working hours between {MIN_POSTPONE_HOURS} and {MAX_POSTPONE_HOURS}",
                            req.action
                        ),
                    )
                },
            )?;
            let refuse = |why: String| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "postponement-refused", "Unprocessable request", why)
            };
            if action == Action::RequestPostpone && granted >= MAX_POSTPONEMENTS {
                return Err(refuse(format!("case {} was postponed {granted} times, the most allowed", case.id)));
            }
            if action == Action::ApprovePostpone
                && let Some(a) = asked.filter(|a| h > *a)
            {
                return Err(refuse(format!("{h} h is more than the {a} h asked for")));
            }
            Some(h)
        }
        _ => None,
    };
    let dept = match action {
        Action::Dispatch => {
            let dept = match &req.dept_code {
                Some(d) => d.as_str().into(),
                None => suggestion(&st, &case).map(|s| s.0).ok_or_else(|| {
                    ApiError::bad_request("invalid-action", "no department could be suggested: give dept_code")
                })?,
            };
            if !st.index.dict.read().departments.contains_key(&dept) {
                return Err(ApiError::bad_request("unknown-department", format!("no department {dept:?}")));
            }
            Some(dept)
        }
        _ => None,
    };
    let mut new = case.clone();
    cases::apply(&mut new, action, next, now, dept, hours, &st.deadlines);
    let step_note = match (action, hours) {
        (Action::RequestPostpone | Action::ApprovePostpone, Some(h)) => {
            Some(format!("{h} h{}", note.map(|n| format!(": {n}")).unwrap_or_default()))
        }
        _ => note.map(String::from),
    };
    let step = CaseStep {
        case_id: case.id,
        seq: new.version,
        action: action.as_str().into(),
        actor: who.actor.clone(),
        role: who.role.as_str().into(),
        dept_code: who
            .dept_code
            .clone()
            .or_else(|| (action == Action::Dispatch).then(|| new.dept_code.clone()).flatten()),
        status_from: Some(case.status),
        status_to: next,
        at: now,
        note: step_note,
    };
    let Some(seq) = cases::commit_step(&st.live, &new, req.expected_version, &step).await? else {
        let current = st.index.cases.read().get(&id).map(|c| c.version).unwrap_or(case.version);
        return Err(stale(current, req.expected_version));
    };
    let new = st.index.cases.read().get(&id).cloned().unwrap_or(new);
    let mut body = cases::to_json(&new);
    if next == Status::Filed
        && let Some((code, basis)) = suggestion(&st, &new)
    {
        body["suggested_dept"] = json!({"code": code, "basis": basis.as_str()});
    }
    Ok(super::written(seq, body))
}

fn stale(current: i32, expected: i32) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "version-conflict",
        "Conflict",
        format!("the case is at version {current}, not {expected}: reload it and try again"),
    )
}

/// The case `id` as the index holds it (404 when there is none).
pub(crate) fn case_of(st: &AppState, id: &str) -> ApiResult<Case> {
    st.index.cases.read().get(id).cloned().ok_or_else(|| ApiError::not_found("unknown-case", format!("no case {id:?}")))
}

/// The owner-first suggestion for a case.
fn suggestion(st: &AppState, case: &Case) -> Option<(crate::model::Str, routing::Basis)> {
    let component = case.component_code.as_ref().and_then(|c| st.index.components.read().get(c).cloned());
    routing::suggest(&st.index.dict.read(), case, component.as_ref())
}

/// A caller sees and acts on the cases in its scope only: a department those dispatched to it,
/// a district or street command centre those in its area.
pub(crate) fn confine(who: &Principal, case: &Case, doing: &str) -> ApiResult<()> {
    if !who.case_scope().sees(case) {
        let why =
            if who.role == Role::Department { "which is not dispatched to it" } else { "which is outside its scope" };
        return Err(out_of_scope(Some(who), format!("{doing} case {}, {why}", case.id)));
    }
    Ok(())
}

/// A case's history in step order.
pub(crate) async fn history(st: &AppState, case_id: i64) -> ApiResult<Vec<CaseStep>> {
    let mut steps: Vec<CaseStep> = store::find(&*st.store, "case_id", Val::Int(case_id)).await?;
    steps.sort_by_key(|s| s.seq);
    Ok(steps)
}

/// `GET /api/v1/cases/{id}`: the case with its deadline, light and whole history.
pub async fn get_case(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let unknown = || ApiError::not_found("unknown-case", format!("no case {id:?}"));
    let case_id: i64 = id.parse().map_err(|_| unknown())?;
    let case = st.index.cases.read().get(&id).cloned().ok_or_else(unknown)?;
    if let Some(Caller(who)) = &who {
        confine(who, &case, "see")?;
    }
    // An anonymous reader (`--public-read`) sees the steps, not who took them or what they noted
    // (a reporter's words, a phone number in a note).
    let anonymous = who.is_none();
    let steps = history(&st, case_id).await?;
    let mut body = cases::to_json(&case);
    body["deadline"] = body["deadline_at"].clone();
    // Until it is dispatched, a case shows where owner-first routing would send it.
    if matches!(case.status, Status::Reported | Status::Accepted | Status::Verified | Status::Filed)
        && let Some((code, basis)) = suggestion(&st, &case)
    {
        body["suggested_dept"] = json!({"code": code, "basis": basis.as_str()});
    }
    body["history"] = steps
        .iter()
        .map(|s| {
            json!({"seq": s.seq, "action": s.action, "actor": if anonymous { None } else { Some(&s.actor) }, "role": s.role, "dept": s.dept_code,
                "from": s.status_from, "to": s.status_to, "at": s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "note": if anonymous { None } else { s.note.as_deref() }})
        })
        .collect();
    body["media"] = json!(super::media::listed(&st, &case, anonymous).await?);
    Ok(axum::Json(body).into_response())
}

/// Most cases a list returns.
const MAX_LIST: usize = 1000;

/// `GET /api/v1/cases?limit=&{property}=`: the latest cases first.
pub async fn list(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let limit = p.usize("limit")?.unwrap_or(20);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request("invalid-parameter", format!("limit must be 1 to {MAX_LIST}")));
    }
    let mut filters: Vec<(String, String)> =
        p.0.iter().filter(|(k, _)| *k != "limit").map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some((k, _)) = filters.iter().find(|(k, _)| !Case::PROPERTIES.contains(&k.as_str())) {
        return Err(ApiError::bad_request("unknown-property", format!("{k:?} is not a property of cases")));
    }
    // A department's list is its own cases, an area's its area's (added to what was asked: a
    // filter on another department then matches nothing).
    filters.extend(scope_of(&who).filters());
    let index = st.index.clone();
    let body = tokio::task::spawn_blocking(move || {
        let layer = index.cases.read();
        let mut picked: Vec<&Case> = layer.iter().filter(|c| c.matches(&filters)).collect();
        let newest_first = |a: &&Case, b: &&Case| (b.reported_at, b.id).cmp(&(a.reported_at, a.id));
        if picked.len() > limit {
            picked.select_nth_unstable_by(limit - 1, newest_first);
            picked.truncate(limit);
        }
        picked.sort_unstable_by(newest_first);
        json!({"cases": picked.iter().map(|c| cases::to_json(c)).collect::<Vec<Value>>()})
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(axum::Json(body).into_response())
}

/// The big screen's counters: reports counted up to `now`, lights read at `light_at` (the light
/// clock, so the overdue count agrees with the map); "today" and "this month" are in the city's
/// time zone `city`, not UTC.
pub fn summarize<'a>(
    cases: impl Iterator<Item = &'a Case>,
    now: DateTime<Utc>,
    light_at: DateTime<Utc>,
    city: FixedOffset,
) -> Value {
    let local = now.with_timezone(&city);
    let day_start = city
        .with_ymd_and_hms(local.year(), local.month(), local.day(), 0, 0, 0)
        .single()
        .expect("midnight exists in a fixed offset")
        .with_timezone(&Utc);
    let month_start = city
        .with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .single()
        .expect("the first exists in a fixed offset")
        .with_timezone(&Utc);
    let (mut today, mut open, mut overdue, mut due_month, mut closed_month) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for c in cases {
        if c.reported_at >= day_start && c.reported_at <= now {
            today += 1;
        }
        if is_open(c) {
            open += 1;
            if crate::model::light(c, light_at) == Some(Light::Red) {
                overdue += 1;
            }
        }
        // Due to close this month: this month's reports that were not rejected or voided.
        if c.reported_at >= month_start && !matches!(c.status, Status::Voided | Status::Rejected) {
            due_month += 1;
            if c.status == Status::Closed {
                closed_month += 1;
            }
        }
    }
    let rate = if due_month == 0 { Value::Null } else { json!(closed_month as f64 / due_month as f64) };
    json!({"today": today, "open": open, "overdue": overdue, "due_month": due_month,
        "closed_month": closed_month, "closure_rate_month": rate,
        "as_of": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
}

/// `GET /api/v1/cases/summary`: cases today, open, overdue, and this month's closure rate.
pub async fn summary(State(st): State<AppState>, who: Option<Caller>) -> ApiResult<Response> {
    let (index, city, clock) = (st.index.clone(), st.deadlines.calendar.offset(), st.live.clock());
    let scope = scope_of(&who);
    let body = tokio::task::spawn_blocking(move || {
        summarize(index.cases.read().iter().filter(|c| scope.sees(c)), Utc::now(), clock, city)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(axum::Json(body).into_response())
}

/// `GET /api/v1/evaluation?from=YYYY-MM-DD&to=YYYY-MM-DD&by=dept|district|street|community|grid`:
/// the counts and rates of every unit with cases reported in the period, scored, graded and
/// ranked (best first). The store counts; the score needs all units at once, so it is done here.
pub async fn evaluation(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    if let Some(k) = p.0.keys().find(|k| !["from", "to", "by"].contains(&k.as_str())) {
        return Err(ApiError::bad_request("invalid-parameter", format!("unknown parameter {k:?}; use from, to, by")));
    }
    let date = |k: &str| -> ApiResult<NaiveDate> {
        let v = p.required(k)?;
        // Years a city's records can hold; beyond them date arithmetic has no room.
        NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().filter(|d| (1900..=2999).contains(&d.year())).ok_or_else(|| {
            ApiError::bad_request("invalid-parameter", format!("{k} must be a date YYYY-MM-DD (1900-2999), not {v:?}"))
        })
    };
    let (from, to) = (date("from")?, date("to")?);
    if from > to {
        return Err(ApiError::bad_request("invalid-parameter", format!("from {from} is after to {to}")));
    }
    let by = match p.get("by") {
        None => By::Dept,
        Some(b) => By::parse(b).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-parameter",
                format!("by must be dept, district, street, community or grid, not {b:?}"),
            )
        })?,
    };
    // A district or street command centre sees its own area's units (两级指挥); departments
    // serve the whole city, so their figures are not an area's to see.
    let scope = scope_of(&who);
    if scope.area.is_some() && by == By::Dept {
        let action =
            "see the evaluation by department (an area token sees its own districts, streets, communities and grids)";
        return Err(out_of_scope(who.as_ref().map(|c| &c.0), action.into()));
    }
    let period = evaluation::period(from, to, st.deadlines.calendar.offset(), Utc::now());
    let mut units = st.store.evaluation_counts(by, period).await?;
    units.retain(|(unit, _)| scope.covers_unit(unit));
    let rows = evaluation::evaluate(units, &st.scoring);
    let name = |unit: &str| -> Option<String> {
        let i = &st.index;
        match by {
            By::Dept => i.dict.read().departments.get(unit).map(|d| d.name.to_string()),
            By::District => i.districts.read().get(unit).map(|r| r.name.to_string()),
            By::Street => i.streets.read().get(unit).map(|r| r.name.to_string()),
            By::Community => i.communities.read().get(unit).map(|r| r.name.to_string()),
            By::Grid => i.grids.read().get(unit).map(|r| r.name.to_string()),
        }
    };
    let rows: Vec<Value> = rows.iter().map(|r| r.to_json(name(&r.unit).as_deref())).collect();
    let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "from": from, "to": to, "by": by.as_str(), "as_of": secs(period.as_of),
        "weights": st.scoring.weights, "grades": st.scoring.grades, "rows": rows,
    });
    if by == By::Dept {
        // How each department answered joint dispatches (联动响应) opened in the period.
        let incidents = st.linkage.opened_between(period.start, period.end).await?;
        let mut response = crate::linkage::response_figures(&incidents, period.as_of);
        response.retain(|r| scope.dept.as_deref().is_none_or(|d| r["dept_code"] == d));
        body["response"] = json!(response);
    }
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: i64, status: &str, reported: &str, deadline_h: i64) -> Case {
        let reported_at = DateTime::parse_from_rfc3339(reported).unwrap().with_timezone(&Utc);
        cases::sample(id, status, reported_at, deadline_h)
    }

    #[test]
    fn counters_use_beijing_days_and_months() {
        // 2026-11-25 10:00 Beijing.
        let now = DateTime::parse_from_rfc3339("2026-11-25T02:00:00Z").unwrap().with_timezone(&Utc);
        let cases = [
            // 2026-11-25 07:00 Beijing (the previous UTC day): today, open, not yet late.
            case(1, "dispatched", "2026-11-24T23:00:00Z", 72),
            // 2026-11-24 07:30 Beijing: not today, this month, open and overdue.
            case(2, "filed", "2026-11-23T23:30:00Z", 4),
            // This month, closed.
            case(3, "closed", "2026-11-02T00:00:00Z", 72),
            // This month, voided: not due.
            case(4, "voided", "2026-11-03T00:00:00Z", 72),
            // 2026-11-01 07:00 Beijing is this month; 2026-10-31 23:00 Beijing is not.
            case(5, "closed", "2026-10-31T23:00:00Z", 72),
            case(6, "closed", "2026-10-31T15:00:00Z", 72),
        ];
        let beijing = crate::model::city_tz();
        let s = summarize(cases.iter(), now, now, beijing);
        assert_eq!(s["today"], 1);
        assert_eq!(s["open"], 2);
        assert_eq!(s["overdue"], 1);
        assert_eq!(s["due_month"], 4);
        assert_eq!(s["closed_month"], 2);
        assert_eq!(s["closure_rate_month"], 0.5);
    }
}
