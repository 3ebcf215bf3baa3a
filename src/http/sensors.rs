//! Sensors over HTTP: register a sensor, post readings in batches, read a sensor's history
//! (downsampled for long ranges), list and acknowledge alarms.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, PathParams};
use crate::auth::Role;
use crate::sensors::ingest::{MAX_ALARMS, Reject, Transport, parse_reading, reject, secs};
use crate::sensors::{self, NewSensor, SensorError};

/// Most readings one request may carry.
pub const MAX_READINGS: usize = 100_000;
/// Most points a history returns before it is summarised into time buckets.
pub const DEFAULT_POINTS: usize = 2_000;
pub const MAX_POINTS: usize = 20_000;

use crate::sensors::to_json as sensor_json;

/// `POST /api/v1/sensors`: registers a sensor (admin).
pub async fn register(
    State(st): State<AppState>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<NewSensor>,
) -> ApiResult<Response> {
    who.require(&[Role::Admin], "register sensors")?;
    let sensor = sensors::register(&req, &st.index)?;
    let seq = sensors::commit_register(&st.live, &sensor).await.map_err(|e| {
        // Two registrations of one code racing: the store's key decides.
        if st.index.sensors.read().get(&sensor.code).is_some() {
            SensorError::Exists(sensor.code.to_string()).into()
        } else {
            ApiError::from(e)
        }
    })?;
    Ok(super::created(format!("/api/v1/sensors/{}", sensor.code), seq, sensor_json(&sensor)))
}

/// `GET /api/v1/sensors/{code}`.
pub async fn get_sensor(State(st): State<AppState>, PathParams(code): PathParams<String>) -> ApiResult<Response> {
    let s = st.index.sensors.read().get(&code).cloned().ok_or(SensorError::UnknownSensor(code))?;
    Ok(axum::Json(sensor_json(&s)).into_response())
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    readings: Vec<&'a RawValue>,
}

/// `POST /api/v1/sensors/readings` `{"readings":[{"sensor","at","value"}...]}`: each reading is
/// checked on its own, so the good ones land whatever is wrong with the others; the answer says
/// what became of each. A batch in which every reading was rejected is a 400.
pub async fn post_readings(State(st): State<AppState>, Caller(who): Caller, body: Bytes) -> ApiResult<Response> {
    who.require(&[Role::Admin, Role::Device], "post sensor readings")?;
    // Each reading is kept as raw JSON text here and parsed on its own below, so that one
    // unparseable number (1e999) rejects that reading rather than the batch.
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed-json", format!("expected {{\"readings\": [...]}}: {e}")))?;
    if batch.readings.len() > MAX_READINGS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-readings",
            "Payload too large",
            format!("{} readings; at most {MAX_READINGS} a request", batch.readings.len()),
        ));
    }
    let now = Utc::now();
    let slack = st.sensors.future_slack();
    // A device token for some sensors posts theirs only.
    let parsed = batch
        .readings
        .iter()
        .map(|r| {
            parse_reading(r.get(), None, now, slack).and_then(|r| {
                if who.may_feed(&r.sensor) {
                    Ok(r)
                } else {
                    Err(reject(Reject::NotYours, format!("this token may not post readings of {:?}", r.sensor)))
                }
            })
        })
        .collect();
    let report = st.sensors.ingest(parsed, Transport::Http).await?;
    if report.accepted == 0 && report.duplicates == 0 && !report.rejected.is_empty() {
        let list = report.rejected.iter().map(|(i, r)| (*i, r.reason.as_str(), r.detail.as_str()));
        return Err(super::all_rejected("invalid-readings", "readings", list));
    }
    Ok(axum::Json(report.to_json()).into_response())
}

/// A time parameter: RFC 3339, or a date meaning its midnight in the city's time zone.
pub(super) fn time_param(st: &AppState, p: &Params, k: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(v) = p.get(k) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| st.deadlines.calendar.offset().from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single())
        .map(|t| Some(t.with_timezone(&Utc)))
        .ok_or_else(|| {
            ApiError::bad_request("invalid-parameter", format!("{k}={v:?} is not an RFC 3339 time or a date"))
        })
}

/// The bucket width that brings `span` down to at most `points` buckets, rounded up to a
/// width people read easily (1 s, 5 s, 1 min, 15 min, 1 h, 1 day ...).
pub fn bucket_for(span: Duration, points: usize) -> i64 {
    const NICE: [i64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400];
    let need = (span.num_seconds() as f64 / points as f64).ceil().max(1.0) as i64;
    NICE.iter().copied().find(|&b| b >= need).unwrap_or_else(|| (need + 86_399) / 86_400 * 86_400)
}

/// `GET /api/v1/sensors/{code}/readings?from=&to=&max_points=`: the readings in `[from, to)`
/// (default: the last 24 hours), every one while there are at most `max_points` (default
/// 2,000), otherwise the mean, minimum and maximum per time bucket.
pub async fn get_readings(
    State(st): State<AppState>,
    PathParams(code): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
    p.only(&["from", "to", "max_points"])?;
    if st.index.sensors.read().get(&code).is_none() {
        return Err(SensorError::UnknownSensor(code).into());
    }
    let to = time_param(&st, &p, "to")?.unwrap_or_else(Utc::now);
    let from = time_param(&st, &p, "from")?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::bad_request("invalid-parameter", format!("from {from} is not before to {to}")));
    }
    let points = p.usize("max_points")?.unwrap_or(DEFAULT_POINTS);
    if !(1..=MAX_POINTS).contains(&points) {
        return Err(ApiError::bad_request("invalid-parameter", format!("max_points must be 1 to {MAX_POINTS}")));
    }
    let n = st.store.count_readings(&code, from, to).await?;
    let bucket = (n as usize > points).then(|| bucket_for(to - from, points));
    let rows = st.store.readings(&code, from, to, bucket).await?;
    let readings: Vec<Value> = rows
        .iter()
        .map(|r| match bucket {
            None => json!({"at": secs(r.at), "value": r.value}),
            Some(_) => json!({"at": secs(r.at), "value": r.value, "min": r.min, "max": r.max, "n": r.n}),
        })
        .collect();
    Ok(axum::Json(json!({
        "sensor": code, "from": secs(from), "to": secs(to), "count": n, "bucket_s": bucket, "readings": readings,
    }))
    .into_response())
}

/// `GET /api/v1/alarms?active=true|false&limit=`: raised alarms (the default), or the latest of
/// all, newest first.
pub async fn alarms(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    p.only(&["active", "limit"])?;
    let active = p.bool("active", true)?;
    let limit = p.usize("limit")?.unwrap_or(1000);
    if limit == 0 || limit as i64 > MAX_ALARMS {
        return Err(ApiError::bad_request("invalid-parameter", format!("limit must be 1 to {MAX_ALARMS}")));
    }
    let list = st.sensors.alarms(active, limit as i64, &scope_of(&who)).await?;
    Ok(axum::Json(json!({"alarms": list})).into_response())
}

/// Roles that watch the command center and may acknowledge alarms.
const WATCHERS: &[Role] = &[Role::Admin, Role::Acceptor, Role::ShiftLeader, Role::Dispatcher];

/// `POST /api/v1/alarms/{id}/ack`.
pub async fn ack(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    who.require(WATCHERS, "acknowledge alarms")?;
    let id: i64 = id.parse().map_err(|_| SensorError::UnknownAlarm(id.clone()))?;
    let body = st.sensors.ack(id, &who.actor, &who.case_scope()).await?;
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round_and_keep_under_the_point_budget() {
        assert_eq!(bucket_for(Duration::hours(24), 2000), 60);
        assert_eq!(bucket_for(Duration::days(365), 2000), 21_600);
        assert_eq!(bucket_for(Duration::seconds(10), 2000), 1);
        for days in [1, 7, 30, 365, 3650] {
            let span = Duration::days(days);
            let b = bucket_for(span, 1000);
            assert!(span.num_seconds() / b <= 1000, "{days} days in {b} s buckets");
        }
    }
}
