//! Open311 GeoReport v2 at `/open311/v2/`: the public's way in (随手拍 apps, 12345 portals).
//! Services are the city's event classes; a posted request becomes a case with source `public`,
//! reported through the same intake as `POST /api/v1/cases`; requests report `open` or `closed`
//! with the latest workflow note.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, scope_of};
use super::cases::{history, report};
use super::error::{ApiError, ApiResult};
use super::params::{Params, PathParams};
use crate::auth::{AuthError, Role};
use crate::cases::intake::NewCase;
use crate::cases::is_open;
use crate::model::{Case, CaseStep};
use crate::store::{self, schema::Val};

/// `GET /open311/v2/services.json`.
pub async fn services(State(st): State<AppState>) -> Response {
    let dict = st.index.dict.read();
    let list: Vec<Value> = dict
        .event_classes
        .iter()
        .map(|c| {
            json!({"service_code": c.code, "service_name": c.name, "description": c.name, "metadata": false,
                "type": "realtime", "keywords": "", "group": c.major})
        })
        .collect();
    axum::Json(list).into_response()
}

/// The fields of a posted request (form-encoded as the spec says, or JSON).
#[derive(Debug, Deserialize)]
pub struct PostRequest {
    pub api_key: Option<String>,
    pub service_code: String,
    pub lat: f64,
    pub long: f64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub address_string: Option<String>,
}

/// `POST /open311/v2/requests.json`: needs the `api_key` of a `public` (or admin) token.
pub async fn post_request(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body: PostRequest = if is_json {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("malformed-request", e.to_string()))?
    } else {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::bad_request("malformed-request", e.to_string()))?
    };
    let key = body.api_key.as_deref().ok_or(AuthError::Missing)?;
    let who = st.auth.check(key).await?;
    who.require(&[Role::Public], "post Open311 requests")?;
    if !st.index.dict.read().event_classes.iter().any(|c| c.code == body.service_code) {
        return Err(ApiError::bad_request("unknown-service", format!("no service {:?}", body.service_code)));
    }
    for (field, text) in [("description", &body.description), ("address_string", &body.address_string)] {
        if let Some(t) = text {
            crate::model::check_text(field, t).map_err(|e| ApiError::bad_request("invalid-request", e))?;
        }
    }
    let description = match (body.description.as_deref().map(str::trim), body.address_string.as_deref()) {
        (Some(d), Some(a)) if !d.is_empty() => format!("{d}（{a}）"),
        (Some(d), None) if !d.is_empty() => d.to_string(),
        (_, Some(a)) => format!("市民上报：{a}"),
        _ => "市民上报".to_string(),
    };
    let new = NewCase {
        class_code: body.service_code,
        lon: body.long,
        lat: body.lat,
        crs: Some("wgs84".into()),
        description,
        source: "public".into(),
        component_code: None,
        urgency: None,
    };
    let (case, _) = report(&st, &who, &new).await?;
    Ok(axum::Json(json!([{"service_request_id": case.id.to_string(), "service_notice": "已受理，感谢您的上报", "account_id": null}]))
        .into_response())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A case as an Open311 service request.
fn as_request(st: &AppState, c: &Case, steps: &[CaseStep]) -> Value {
    let service_name =
        st.index.dict.read().event_classes.iter().find(|e| e.code == c.class_code).map(|e| e.name.to_string());
    let last = steps.last();
    let notes = steps
        .iter()
        .filter_map(|s| s.note.as_deref())
        .next_back()
        .map(String::from)
        .unwrap_or_else(|| c.status.to_string());
    json!({
        "service_request_id": c.id.to_string(),
        "status": if is_open(c) { "open" } else { "closed" },
        "status_notes": notes,
        "service_name": service_name,
        "service_code": c.class_code,
        "description": c.description,
        "requested_datetime": time(c.reported_at),
        "updated_datetime": last.map(|s| time(s.at)).unwrap_or_else(|| time(c.reported_at)),
        "lat": c.geom.y(),
        "long": c.geom.x(),
    })
}

/// Most requests one `GET requests.json` returns.
const MAX_REQUESTS: usize = 1000;

/// `GET /open311/v2/requests.json?service_request_id=&service_code=&start_date=&end_date=&status=`:
/// the newest first; without dates, the last 90 days.
/// The requests a caller may read: a public key its own (the cases whose first step it recorded),
/// staff those in their scope, anonymous readers (`--public-read`) every public request.
async fn readable(st: &AppState, who: &Option<Caller>) -> ApiResult<Box<dyn Fn(&Case) -> bool + Send + Sync>> {
    match who {
        Some(Caller(p)) if p.role == Role::Public => {
            let steps: Vec<CaseStep> = store::find(&*st.store, "actor", Val::Text(Some(p.actor.clone()))).await?;
            let own: std::collections::HashSet<i64> =
                steps.into_iter().filter(|s| s.seq == 1).map(|s| s.case_id).collect();
            Ok(Box::new(move |c: &Case| own.contains(&c.id)))
        }
        _ => {
            let scope = scope_of(who);
            Ok(Box::new(move |c: &Case| scope.sees(c)))
        }
    }
}

pub async fn get_requests(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let readable = readable(&st, &who).await?;
    let date = |k: &str| -> ApiResult<Option<DateTime<Utc>>> {
        p.get(k)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| ApiError::bad_request("invalid-parameter", format!("{k}={v:?}: {e}")))
            })
            .transpose()
    };
    let end = date("end_date")?.unwrap_or_else(Utc::now);
    let start = date("start_date")?.unwrap_or(end - chrono::Duration::days(90));
    if start > end {
        return Err(ApiError::bad_request("invalid-parameter", "start_date is after end_date"));
    }
    let status = p.get("status");
    if status.is_some_and(|s| s != "open" && s != "closed") {
        return Err(ApiError::bad_request("invalid-parameter", "status is open or closed"));
    }
    let ids: Option<Vec<i64>> = p
        .get("service_request_id")
        .map(|v| v.split(',').map(|i| i.trim().parse::<i64>()).collect::<Result<_, _>>())
        .transpose()
        .map_err(|_| {
            ApiError::bad_request("invalid-parameter", "service_request_id is a comma-separated list of ids")
        })?;
    let codes: Option<Vec<&str>> = p.get("service_code").map(|v| v.split(',').collect());
    let mut picked: Vec<Case> = st
        .index
        .cases
        .read()
        .iter()
        .filter(|c| c.source == "public" && readable(c))
        .filter(|c| ids.as_ref().map_or(c.reported_at >= start && c.reported_at <= end, |ids| ids.contains(&c.id)))
        .filter(|c| codes.as_ref().is_none_or(|cs| cs.contains(&c.class_code.as_str())))
        .filter(|c| status.is_none_or(|s| (s == "open") == is_open(c)))
        .cloned()
        .collect();
    picked.sort_by_key(|c| std::cmp::Reverse((c.reported_at, c.id)));
    picked.truncate(MAX_REQUESTS);
    let list: Vec<Value> = picked.iter().map(|c| as_request(&st, c, &[])).collect();
    Ok(axum::Json(list).into_response())
}

/// `GET /open311/v2/requests/{id}.json`: one request with its status notes.
pub async fn get_request(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams(file): PathParams<String>,
) -> ApiResult<Response> {
    let readable = readable(&st, &who).await?;
    let unknown = || ApiError::not_found("unknown-request", format!("no service request {file:?}"));
    let id = file.strip_suffix(".json").unwrap_or(&file);
    let case_id: i64 = id.parse().map_err(|_| unknown())?;
    // Only what the public reported is public.
    let case =
        st.index.cases.read().get(id).filter(|c| c.source == "public" && readable(c)).cloned().ok_or_else(unknown)?;
    let steps = history(&st, case_id).await?;
    Ok(axum::Json(json!([as_request(&st, &case, &steps)])).into_response())
}
