//! Case photos over HTTP: upload (multipart), list, and the bytes of a photo and its thumbnail,
//! each under the case's access rules.

use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::AppState;
use super::auth::Caller;
use super::cases::{REPORTERS, case_of, confine};
use super::error::{ApiError, ApiResult};
use super::params::PathParams;
use crate::auth::{Principal, Role};
use crate::media::MediaError;
use crate::model::{Case, Media, MediaStep, Status};

/// The roles that take photos of `step` (besides admin): whoever reports, the supervisor who
/// verifies and checks, the department that handles.
fn photographers(step: MediaStep) -> &'static [Role] {
    match step {
        MediaStep::Report => REPORTERS,
        MediaStep::Verify | MediaStep::Check => &[Role::Supervisor],
        MediaStep::Handle => &[Role::Department],
    }
}

/// The step a photo is of when the upload does not say: what the caller's role does next to the
/// case.
fn default_step(who: &Principal, case: &Case) -> MediaStep {
    match (who.role, case.status) {
        (Role::Department, _) => MediaStep::Handle,
        (Role::Supervisor | Role::Admin, Status::Accepted) => MediaStep::Verify,
        (Role::Supervisor | Role::Admin, Status::Handled) => MediaStep::Check,
        (Role::Admin, Status::Dispatched) => MediaStep::Handle,
        _ => MediaStep::Report,
    }
}

fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("malformed-request", format!("multipart body: {e}"))
}

/// Reads one file part, refusing it as soon as it passes `max` bytes (nothing more is read).
pub(crate) async fn read_part(field: &mut axum::extract::multipart::Field<'_>, max: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > max {
            return Err(MediaError::TooLarge { bytes: buf.len() + chunk.len(), max }.into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A multipart error as a problem: a body over the route's limit is 413, the rest malformed.
pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large", e.body_text());
    }
    malformed(e.body_text())
}

/// `POST /api/v1/cases/{id}/media`: multipart `file` (JPEG, PNG or WebP) and optional `step`.
pub async fn upload(
    State(st): State<AppState>,
    Caller(who): Caller,
    PathParams(id): PathParams<String>,
    mut parts: Multipart,
) -> ApiResult<Response> {
    let case = case_of(&st, &id)?;
    confine(&who, &case, "add a photo to")?;
    let max = st.media.settings().max_bytes;
    let (mut file, mut step) = (None, None);
    while let Some(mut field) = parts.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => file = Some(read_part(&mut field, max).await?),
            "step" => step = Some(field.text().await.map_err(multipart_error)?),
            other => {
                return Err(ApiError::bad_request(
                    "malformed-request",
                    format!("unknown part {other:?}; send file and optionally step"),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::bad_request("malformed-request", "no `file` part"))?;
    let step = match step.as_deref().map(str::trim) {
        None | Some("") => default_step(&who, &case),
        Some(s) => MediaStep::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid-step", format!("step {s:?} is not one of report, verify, handle, check"))
        })?,
    };
    who.require(photographers(step), &format!("add a {} photo", step.as_str()))?;
    let (media, seq) = st.media.attach(&st.live, &case, step, file, (&who.actor, who.role.as_str())).await?;
    let body = crate::media::to_json(&media, &case, &st.media.settings(), false);
    Ok(super::created(format!("/api/v1/cases/{}/media/{}", case.id, media.id), seq, body))
}

/// The case's photos as the API lists them (in `GET /api/v1/cases/{id}` too).
pub(crate) async fn listed(st: &AppState, case: &Case, anonymous: bool) -> ApiResult<Vec<serde_json::Value>> {
    let settings = st.media.settings();
    let list = st.media.of_case(&*st.store, case.id).await?;
    Ok(list.iter().map(|m| crate::media::to_json(m, case, &settings, anonymous)).collect())
}

/// `GET /api/v1/cases/{id}/media`.
pub async fn list(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let case = case_of(&st, &id)?;
    if let Some(Caller(who)) = &who {
        confine(who, &case, "see")?;
    }
    Ok(axum::Json(json!({"media": listed(&st, &case, who.is_none()).await?})).into_response())
}

/// The photo `mid` of a case the caller may see.
pub(crate) async fn photo_of(st: &AppState, case: &Case, mid: &str) -> ApiResult<Media> {
    let list = st.media.of_case(&*st.store, case.id).await?;
    list.into_iter()
        .find(|m| m.id == mid)
        .ok_or_else(|| ApiError::not_found("unknown-media", format!("case {} has no photo {mid:?}", case.id)))
}

/// The bytes of an object, cached for good by the browser (objects never change) but only
/// privately (a case photo is not for shared caches).
pub(crate) async fn serve_object(st: &AppState, key: &str, content_type: &str) -> ApiResult<Response> {
    let bytes = st.media.read(key).await?;
    let headers = [
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CACHE_CONTROL, "private, max-age=31536000, immutable".into()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
    ];
    Ok((headers, bytes).into_response())
}

async fn serve(st: AppState, who: Option<Caller>, id: String, mid: String, thumbnail: bool) -> ApiResult<Response> {
    let case = case_of(&st, &id)?;
    if let Some(Caller(who)) = &who {
        confine(who, &case, "see")?;
    }
    let m = photo_of(&st, &case, &mid).await?;
    if thumbnail {
        serve_object(&st, &m.thumbnail, "image/jpeg").await
    } else {
        serve_object(&st, &m.object, &m.content_type).await
    }
}

/// `GET /api/v1/cases/{id}/media/{mid}`: the photo as uploaded.
pub async fn original(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams((id, mid)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    serve(st, who, id, mid, false).await
}

/// `GET /api/v1/cases/{id}/media/{mid}/thumbnail`: a JPEG at most 320 px.
pub async fn thumbnail(
    State(st): State<AppState>,
    who: Option<Caller>,
    PathParams((id, mid)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    serve(st, who, id, mid, true).await
}
