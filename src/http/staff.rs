//! Field staff over HTTP: the registry, positions in batches, who is nearest a place, a
//! member's track, and patrol coverage.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, PathParams, to_storage};
use super::sensors::time_param;
use crate::auth::Role;
use crate::model::{StaffRole, rfc3339_ms};
use crate::staff::positions::{Reject, Transport, city_day, parse_position, reject};
use crate::staff::{self, NewStaff, StaffError};

/// Most positions one request may carry.
pub const MAX_POSITIONS: usize = 100_000;
/// Most points a track returns: a day at one position every 2 s.
pub const MAX_TRACK_POINTS: i64 = 50_000;
/// The longest span one track request may cover.
pub const MAX_TRACK_DAYS: i64 = 7;

/// `POST /api/v1/staff`: registers a member of the field staff (admin).
pub async fn register(
    State(st): State<AppState>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<NewStaff>,
) -> ApiResult<Response> {
    who.require(&[Role::Admin], "register staff")?;
    let member = staff::register(&req, &st.index)?;
    let seq = staff::commit_register(&st.live, &member).await.map_err(|e| {
        // Two registrations of one code racing: the store's key decides.
        if st.index.staff.read().get(&member.code).is_some() {
            StaffError::Exists(member.code.to_string()).into()
        } else {
            ApiError::from(e)
        }
    })?;
    Ok(super::created(format!("/api/v1/staff/{}", member.code), seq, staff::to_json(&member)))
}

/// `GET /api/v1/staff?on_duty=&role=`: the registry, in code order.
pub async fn list(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    p.only(&["on_duty", "role"])?;
    let on_duty = p.get("on_duty").map(|_| p.bool("on_duty", false)).transpose()?;
    let role =
        p.get("role").map(|r| StaffRole::parse(r).ok_or_else(|| StaffError::UnknownRole(r.to_string()))).transpose()?;
    let mut list: Vec<Value> = st
        .index
        .staff
        .read()
        .iter()
        .filter(|s| on_duty.is_none_or(|d| s.on_duty == d) && role.is_none_or(|r| s.role == r))
        .map(staff::to_json)
        .collect();
    list.sort_by(|a, b| a["code"].as_str().cmp(&b["code"].as_str()));
    let on = list.iter().filter(|s| s["on_duty"] == true).count();
    Ok(axum::Json(json!({"staff": list, "count": list.len(), "on_duty": on})).into_response())
}

/// `GET /api/v1/staff/{code}`.
pub async fn get_staff(State(st): State<AppState>, PathParams(code): PathParams<String>) -> ApiResult<Response> {
    let s = st.index.staff.read().get(&code).cloned().ok_or(StaffError::UnknownStaff(code))?;
    Ok(axum::Json(staff::to_json(&s)).into_response())
}

#[derive(Deserialize)]
struct Batch {
    positions: Vec<Value>,
}

/// `POST /api/v1/staff/positions` `{"positions":[{staff, at?, lon, lat, crs?}]}`: each position
/// is checked on its own; a member's own token posts only theirs. A batch in which every
/// position was rejected is a 400.
pub async fn post_positions(State(st): State<AppState>, Caller(who): Caller, body: Bytes) -> ApiResult<Response> {
    if who.staff.is_none() && !matches!(who.role, Role::Admin | Role::Device) {
        return Err(crate::auth::AuthError::Forbidden {
            role: who.role.as_str(),
            action: "post staff positions (a staff member's own token, a device or an admin may)".into(),
        }
        .into());
    }
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed-json", format!("expected {{\"positions\": [...]}}: {e}")))?;
    if batch.positions.len() > MAX_POSITIONS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-positions",
            "Payload too large",
            format!("{} positions; at most {MAX_POSITIONS} a request", batch.positions.len()),
        ));
    }
    let (now, slack) = (Utc::now(), st.staff.future_slack());
    let parsed = batch
        .positions
        .iter()
        .map(|v| {
            parse_position(v, None, now, slack).and_then(|p| {
                if who.may_place(&p.staff) {
                    Ok(p)
                } else {
                    Err(reject(Reject::NotYours, format!("this token may not post positions of {:?}", p.staff)))
                }
            })
        })
        .collect();
    let report = st.staff.ingest(parsed, Transport::Http).await?;
    if report.accepted == 0 && report.duplicates == 0 && !report.rejected.is_empty() {
        let first: Vec<String> = report
            .rejected
            .iter()
            .take(5)
            .map(|(i, r)| format!("#{i}: {} ({})", r.reason.as_str(), r.detail))
            .collect();
        return Err(ApiError::bad_request(
            "invalid-positions",
            format!("all {} positions were rejected: {}", report.rejected.len(), first.join("; ")),
        ));
    }
    let mut resp = axum::Json(report.to_json()).into_response();
    if let Some(seq) = report.seq {
        resp.headers_mut().insert(super::SEQ_HEADER, seq.into());
    }
    Ok(resp)
}

/// `GET /api/v1/staff/nearest?lon=&lat=&crs=&k=&on_duty=true&role=`: nearest first, with the
/// distance in metres (positions in `crs`).
pub async fn nearest(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    p.only(&["lon", "lat", "crs", "k", "on_duty", "patrolling"])?;
    let crs = p.crs()?;
    let lon = p.f64("lon")?.ok_or_else(|| ApiError::bad_request("missing-parameter", "lon is required"))?;
    let lat = p.f64("lat")?.ok_or_else(|| ApiError::bad_request("missing-parameter", "lat is required"))?;
    let (x, y) = to_storage(&crs, lon, lat)?;
    let k = p.usize("k")?.unwrap_or(5);
    if !(1..=staff::MAX_NEAREST).contains(&k) {
        return Err(ApiError::bad_request("invalid-parameter", format!("k must be 1 to {}", staff::MAX_NEAREST)));
    }
    let (on_duty, patrolling) = (p.bool("on_duty", true)?, p.bool("patrolling", false)?);
    let found = staff::nearest(&st.index, x, y, k, on_duty, patrolling);
    let list = found
        .iter()
        .map(|(s, d)| {
            let (lon, lat) = crs.from_cgcs2000(s.geom.x(), s.geom.y())?;
            Ok(json!({
                "code": s.code, "name": s.name, "role": s.role, "distance_m": staff::tenths(*d),
                "on_duty": s.on_duty, "last_seen": s.last_seen.map(rfc3339_ms), "grid_code": s.grid_code,
                "lon": lon, "lat": lat,
            }))
        })
        .collect::<Result<Vec<Value>, crate::geo::CrsError>>()?;
    Ok(axum::Json(json!({"staff": list})).into_response())
}

/// `GET /api/v1/staff/{code}/track?from=&to=&crs=`: the member's positions in `[from, to)`
/// (default: today, on the city's clock) as one GeoJSON Feature.
pub async fn track(State(st): State<AppState>, PathParams(code): PathParams<String>, p: Params) -> ApiResult<Response> {
    p.only(&["from", "to", "crs"])?;
    let crs = p.crs()?;
    let member = st.index.staff.read().get(&code).cloned().ok_or(StaffError::UnknownStaff(code.clone()))?;
    let now = Utc::now();
    let today = city_day(now).and_hms_opt(0, 0, 0).expect("midnight");
    let midnight = today.and_local_timezone(crate::model::city_tz()).single().map(|t| t.to_utc()).unwrap_or(now);
    let from = time_param(&st, &p, "from")?.unwrap_or(midnight);
    let to = time_param(&st, &p, "to")?.unwrap_or(now + Duration::seconds(1));
    if from >= to {
        return Err(ApiError::bad_request("invalid-parameter", format!("from {from} is not before to {to}")));
    }
    if to - from > Duration::days(MAX_TRACK_DAYS) {
        return Err(
            StaffError::TooMuch(format!("a track covers at most {MAX_TRACK_DAYS} days; narrow from and to")).into()
        );
    }
    let points = st.store.track(&member.code, from, to, MAX_TRACK_POINTS + 1).await?;
    if points.len() as i64 > MAX_TRACK_POINTS {
        return Err(StaffError::TooMuch(format!(
            "more than {MAX_TRACK_POINTS} positions between {} and {}; narrow from and to",
            rfc3339_ms(from),
            rfc3339_ms(to)
        ))
        .into());
    }
    let feature = staff::track_feature(&member, &points, &crs)?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], axum::Json(feature)).into_response())
}

/// `GET /api/v1/analysis/patrol?date=&by=staff|grid|community`: coverage of one city day
/// (default today), within the caller's area.
pub async fn patrol(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    p.only(&["date", "by"])?;
    let day = match p.get("date") {
        None => city_day(Utc::now()),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request("invalid-parameter", format!("date={d:?} is not a date (YYYY-MM-DD)"))
        })?,
    };
    let by = match p.get("by") {
        None => staff::patrol::By::Staff,
        Some(b) => staff::patrol::By::parse(b).ok_or_else(|| {
            ApiError::bad_request("invalid-parameter", format!("by={b:?}; one of staff, grid, community"))
        })?,
    };
    let (days, visits) = st.store.patrol(day).await?;
    let scope = scope_of(&who);
    let index = st.index.clone();
    let body = tokio::task::spawn_blocking(move || staff::patrol::report(&index, day, by, &days, &visits, &scope))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(body).into_response())
}

/// `GET /api/v1/tasks`: the field tasks (verify, check) assigned to the caller's staff member,
/// oldest first, each a case with its `task` and the distance from where the member was seen;
/// and the open incidents the member was sent to verify (`incidents`).
pub async fn tasks(State(st): State<AppState>, Caller(who): Caller, p: Params) -> ApiResult<Response> {
    p.only(&[])?;
    let Some(code) = who.staff.clone() else {
        return Err(crate::auth::AuthError::Forbidden {
            role: who.role.as_str(),
            action: "list tasks (a staff member's own token, token create --staff, may)".into(),
        }
        .into());
    };
    let member = st.index.staff.read().get(&code).cloned().ok_or_else(|| StaffError::UnknownStaff(code.to_string()))?;
    let list: Vec<Value> = staff::tasks::of(&st.index, &code)
        .into_iter()
        .map(|(case, task)| {
            let mut v = crate::events::case_json(&case);
            v["task"] = json!(task.as_str());
            v["distance_m"] = json!(staff::tenths(crate::geo::haversine_m(
                (member.geom.x(), member.geom.y()),
                (case.geom.x(), case.geom.y())
            )));
            v
        })
        .collect();
    let incidents: Vec<Value> = st
        .linkage
        .list(true)
        .await?
        .iter()
        .filter(|i| i.verifier.as_deref() == Some(code.as_str()))
        .map(crate::linkage::to_json)
        .collect();
    Ok(axum::Json(json!({"staff": code, "tasks": list, "incidents": incidents})).into_response())
}
