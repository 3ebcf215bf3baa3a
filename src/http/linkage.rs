//! 一键联动 over HTTP: plans (admin), incidents started with one click, each department's
//! reports on its task, closing, and the resources around an incident.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, PathParams, to_storage};
use crate::auth::{Principal, Role};
use crate::linkage::plans::{self, Plan};
use crate::linkage::{self, Incident, LinkageError, Start, TaskAction};

/// Who may start a plan: the shift leader (值班长) and the dispatcher (派遣员).
const STARTERS: &[Role] = &[Role::ShiftLeader, Role::Dispatcher];

/// `POST /api/v1/plans`: a new plan, or a new version of one (admin).
pub async fn save_plan(
    State(st): State<AppState>,
    Caller(who): Caller,
    JsonBody(plan): JsonBody<Plan>,
) -> ApiResult<Response> {
    who.require(&[Role::Admin], "save plans")?;
    let (stored, seq) = st.linkage.save_plan(plan, &who.actor).await?;
    Ok(super::created(format!("/api/v1/plans/{}", stored.plan.code), seq, stored.to_json()))
}

/// `GET /api/v1/plans`: the latest version of every plan.
pub async fn list_plans(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    p.only(&[])?;
    let list: Vec<_> = plans::latest(&*st.store).await?.iter().map(plans::Stored::to_json).collect();
    Ok(axum::Json(json!({"plans": list})).into_response())
}

/// `GET /api/v1/plans/{code}?version=`: one version (the latest by default), with the list of
/// versions.
pub async fn get_plan(
    State(st): State<AppState>,
    PathParams(code): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
    p.only(&["version"])?;
    let version = p.usize("version")?.map(|v| v as i64);
    let all = plans::versions(&*st.store, &code).await?;
    let found = match version {
        None => all.last(),
        Some(v) => all.iter().find(|s| s.version == v),
    };
    let found =
        found.ok_or_else(|| ApiError::not_found("unknown-plan", format!("no plan {code:?} (version {version:?})")))?;
    let mut body = found.to_json();
    body["versions"] = json!(all.iter().map(|s| s.version).collect::<Vec<_>>());
    Ok(axum::Json(body).into_response())
}

/// The body of `POST /api/v1/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub plan: String,
    pub lon: f64,
    pub lat: f64,
    #[serde(default)]
    pub crs: Option<String>,
    #[serde(default)]
    pub case_id: Option<i64>,
    #[serde(default)]
    pub alarm_id: Option<i64>,
}

/// `POST /api/v1/incidents`: starts a plan at a place (一键启动预案).
pub async fn start(
    State(st): State<AppState>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<StartRequest>,
) -> ApiResult<Response> {
    who.require(STARTERS, "start plans")?;
    let crs = match &req.crs {
        Some(c) => c.parse::<crate::geo::Crs>().map_err(|e| ApiError::bad_request("invalid-crs", e.to_string()))?,
        None => crate::geo::Crs::Wgs84,
    };
    let (lon, lat) = to_storage(&crs, req.lon, req.lat)?;
    let scope = who.case_scope();
    if let Some(id) = req.case_id {
        // A case the caller may not see is no case to it.
        let seen = st.index.cases.read().get(&id.to_string()).is_some_and(|c| scope.sees(c));
        if !seen {
            return Err(LinkageError::InvalidPlace(format!("no case {id}")).into());
        }
    }
    let start = Start {
        plan: req.plan,
        lon,
        lat,
        case_id: req.case_id,
        alarm_id: req.alarm_id,
        by: who.actor.to_string(),
        auto_key: None,
    };
    let (incident, seq) = st.linkage.start(start).await?;
    Ok(super::created(format!("/api/v1/incidents/{}", incident.id), seq, linkage::to_json(&incident)))
}

/// `GET /api/v1/incidents?open=true`: the incidents the caller may see, the latest first.
pub async fn list(State(st): State<AppState>, Caller(who): Caller, p: Params) -> ApiResult<Response> {
    p.only(&["open"])?;
    let scope = who.case_scope();
    let list: Vec<_> = st
        .linkage
        .list(p.bool("open", false)?)
        .await?
        .iter()
        .filter(|i| linkage::visible(i, &scope))
        .map(linkage::to_json)
        .collect();
    Ok(axum::Json(json!({"incidents": list})).into_response())
}

/// Incident `id` if the caller may see it (else 404, as if it did not exist).
async fn visible(st: &AppState, who: &Principal, id: &str) -> ApiResult<Incident> {
    let inc = st.linkage.get(id).await?;
    if !linkage::visible(&inc, &who.case_scope()) {
        return Err(LinkageError::UnknownIncident(id.to_string()).into());
    }
    Ok(inc)
}

/// `GET /api/v1/incidents/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let inc = visible(&st, &who, &id).await?;
    Ok(axum::Json(linkage::to_json(&inc)).into_response())
}

/// `GET /api/v1/incidents/{id}/resources`: cameras, staff on duty and the plan's resource
/// components around the incident, nearest first.
pub async fn resources(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let inc = visible(&st, &who, &id).await?;
    Ok(axum::Json(st.linkage.resources(&inc).await?).into_response())
}

/// The body of a task action or a close.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActRequest {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /api/v1/incidents/{id}/tasks/{dept_code}/actions {action: ack|arrive|done, note?}`: by
/// that department's token (or an administrator).
pub async fn act(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams((id, dept)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<ActRequest>,
) -> ApiResult<Response> {
    let mine =
        who.role == Role::Admin || (who.role == Role::Department && who.dept_code.as_deref() == Some(dept.as_str()));
    if !mine {
        return Err(ApiError::forbidden(format!("only {dept}'s own token reports on its task")));
    }
    let word = req.action.as_deref().ok_or_else(|| ApiError::bad_request("invalid-action", "action is required"))?;
    let action = TaskAction::parse(word).ok_or_else(|| {
        ApiError::bad_request("invalid-action", format!("unknown action {word:?}; one of ack, arrive, done"))
    })?;
    visible(&st, &who, &id).await?;
    let (inc, seq) = st.linkage.act(&id, &dept, action, req.note, &who.actor).await?;
    Ok(super::written(seq, linkage::to_json(&inc)))
}

/// `POST /api/v1/incidents/{id}/close {note?}`: the lead department or a shift leader.
pub async fn close(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<ActRequest>,
) -> ApiResult<Response> {
    who.require(&[Role::ShiftLeader, Role::Department], "close incidents")?;
    if req.action.is_some() {
        return Err(ApiError::bad_request("invalid-action", "close takes only a note"));
    }
    visible(&st, &who, &id).await?;
    let (inc, seq) = st.linkage.close(&id, req.note, &who).await?;
    Ok(super::written(seq, linkage::to_json(&inc)))
}
