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
use crate::model::{Case, CaseStep, MediaStep};
use crate::store::{self, schema::Val};
use bytes::Bytes;

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
    #[serde(default)]
    pub media_url: Option<String>,
}

/// A posted request's fields, and its photo when it came as multipart with a `media` part.
async fn read_post(st: &AppState, req: axum::extract::Request) -> ApiResult<(PostRequest, Option<Bytes>)> {
    use axum::extract::FromRequest;
    let kind = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let malformed = |e: String| ApiError::bad_request("malformed-request", e);
    if kind.starts_with("multipart/form-data") {
        let mut parts = axum::extract::Multipart::from_request(req, st).await.map_err(|e| malformed(e.body_text()))?;
        let (mut fields, mut media) = (Vec::new(), None);
        while let Some(mut field) = parts.next_field().await.map_err(super::media::multipart_error)? {
            let name = field.name().unwrap_or("").to_string();
            if name == "media" {
                media = Some(super::media::read_part(&mut field, st.media.settings().max_bytes).await?);
            } else {
                fields.push((name, field.text().await.map_err(super::media::multipart_error)?));
            }
        }
        // The text parts are the same fields as a form-encoded post.
        let form = serde_urlencoded::to_string(&fields).map_err(|e| malformed(e.to_string()))?;
        return Ok((serde_urlencoded::from_str(&form).map_err(|e| malformed(e.to_string()))?, media));
    }
    // Only a photo may be big: a form or JSON post keeps the API's usual limit.
    let bytes = axum::body::to_bytes(req.into_body(), super::MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("a form or JSON request is at most {} bytes", super::MAX_BODY_BYTES),
        )
    })?;
    let body = if kind.starts_with("application/json") {
        serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?
    } else {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| malformed(e.to_string()))?
    };
    Ok((body, None))
}

/// `POST /open311/v2/requests.json`: needs the `api_key` of a `public` (or admin) token. Form
/// fields, JSON, or multipart with the photo as `media` (GeoReport's extension for uploads).
pub async fn post_request(State(st): State<AppState>, req: axum::extract::Request) -> ApiResult<Response> {
    let (body, media) = read_post(&st, req).await?;
    if body.media_url.is_some() {
        // Fetching a URL a client names would let it make this server call anywhere (SSRF);
        // the photo itself is welcome.
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "media-url-refused",
            "Unprocessable request",
            "media_url is not fetched: post the photo itself as the multipart part `media`",
        ));
    }
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
    // The photo is checked before anything is stored, so a bad one leaves no case behind; stored
    // after the case, which it needs (a failure then leaves the case without its photo, reported).
    if let Some(m) = &media {
        let max = st.media.settings().max_bytes;
        if m.len() > max {
            return Err(crate::media::MediaError::TooLarge { bytes: m.len(), max }.into());
        }
        crate::media::photo::sniff(m).ok_or(crate::media::MediaError::Unsupported)?;
    }
    let (case, _) = report(&st, &who, &new).await?;
    if let Some(m) = media {
        st.media.attach(&st.live, &case, MediaStep::Report, m, (&who.actor, who.role.as_str())).await?;
    }
    Ok(axum::Json(json!([{"service_request_id": case.id.to_string(), "service_notice": "已受理，感谢您的上报", "account_id": null}]))
        .into_response())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where a request's first report photo is served to whoever may read the request.
async fn media_url(st: &AppState, base: &str, c: &Case) -> ApiResult<Option<String>> {
    let photos = st.media.of_case(&*st.store, c.id).await?;
    Ok(photos
        .iter()
        .find(|m| m.step == MediaStep::Report)
        .or(photos.first())
        .map(|m| format!("{base}/open311/v2/requests/{}/media/{}", c.id, m.id)))
}

/// This server as its clients reach it (GeoReport's `media_url` is absolute).
fn base_url(headers: &axum::http::HeaderMap) -> String {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let scheme = h("x-forwarded-proto").filter(|p| *p == "https").unwrap_or("http");
    h("host").map(|host| format!("{scheme}://{host}")).unwrap_or_default()
}

/// A case as an Open311 service request.
fn as_request(st: &AppState, c: &Case, steps: &[CaseStep], media_url: Option<String>) -> Value {
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
        "media_url": media_url,
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

pub async fn get_requests(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: axum::http::HeaderMap,
    p: Params,
) -> ApiResult<Response> {
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
    let base = base_url(&headers);
    let mut urls = Vec::with_capacity(picked.len());
    for c in &picked {
        urls.push(media_url(&st, &base, c).await?);
    }
    let list: Vec<Value> = picked.iter().zip(urls).map(|(c, url)| as_request(&st, c, &[], url)).collect();
    Ok(axum::Json(list).into_response())
}

/// `GET /open311/v2/requests/{id}.json`: one request with its status notes.
pub async fn get_request(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: axum::http::HeaderMap,
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
    let url = media_url(&st, &base_url(&headers), &case).await?;
    Ok(axum::Json(json!([as_request(&st, &case, &steps, url)])).into_response())
}

/// `GET /open311/v2/requests/{id}/media/{mid}`: a photo of a request, to whoever may read the
/// request (its reporting key, staff in scope, anyone under `--public-read`).
pub async fn get_media(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams((id, mid)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    let readable = readable(&st, &who).await?;
    let unknown = || ApiError::not_found("unknown-request", format!("no service request {id:?}"));
    let case =
        st.index.cases.read().get(&id).filter(|c| c.source == "public" && readable(c)).cloned().ok_or_else(unknown)?;
    let m = super::media::photo_of(&st, &case, &mid).await?;
    super::media::serve_object(&st, &m.object, &m.content_type).await
}
