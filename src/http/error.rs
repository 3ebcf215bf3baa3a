//! The ONE place where every module's error becomes an HTTP status: RFC 9457
//! `application/problem+json` with a stable machine-readable `type`. 5xx details go to the log,
//! never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::analysis::AnalysisError;
use crate::auth::AuthError;
use crate::cases::intake::IntakeError;
use crate::cases::workflow::WorkflowError;
use crate::export::ExportError;
use crate::geo::{CrsError, TileError};
use crate::grids::GridError;
use crate::linkage::LinkageError;
use crate::media::MediaError;
use crate::sensors::SensorError;
use crate::sensors::ingest::AckError;
use crate::staff::StaffError;
use crate::store::StoreError;

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable slug, reported as the problem `type` `/problems/<slug>`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, kind, title, detail: detail.into() }
    }
    /// Malformed input: a parameter that does not parse or is out of range.
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, "Bad request", detail)
    }
    /// The caller is known but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn not_found(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, "Not found", detail)
    }
    /// Try again in a moment (answered with `Retry-After`).
    pub fn unavailable(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, kind, "Service unavailable", detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        // Logged in full here; the client only learns that it was our fault.
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::UnknownFormat(_) => ApiError::bad_request("invalid-format", e.to_string()),
            ExportError::Crs(_) => ApiError::bad_request("invalid-crs", e.to_string()),
            ExportError::Param(_) => ApiError::bad_request("invalid-parameter", e.to_string()),
            ExportError::Query(q) => q.into(),
            ExportError::Busy => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "Too many requests", e.to_string())
            }
            ExportError::TooMany { .. } | ExportError::TooManyTiles { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cost-limit", "Unprocessable request", e.to_string())
            }
            ExportError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::index::query::QueryError> for ApiError {
    fn from(e: crate::index::query::QueryError) -> Self {
        ApiError::bad_request(e.kind, e.detail)
    }
}

/// A CRS problem is a query problem wherever it arises (one mapping of its kinds).
impl From<CrsError> for ApiError {
    fn from(e: CrsError) -> Self {
        crate::index::query::QueryError::from(e).into()
    }
}

impl From<TileError> for ApiError {
    fn from(e: TileError) -> Self {
        ApiError::bad_request("invalid-tile", e.to_string())
    }
}

impl From<GridError> for ApiError {
    fn from(e: GridError) -> Self {
        ApiError::bad_request("invalid-grid-code", e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired(_) | AuthError::Revoked => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", e.to_string())
            }
            AuthError::Forbidden { .. } => ApiError::forbidden(e.to_string()),
            AuthError::UnknownRole(_)
            | AuthError::BadDepartment(_)
            | AuthError::BadScope(_)
            | AuthError::UnknownToken(_) => ApiError::bad_request("invalid-token-request", e.to_string()),
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::UnknownAction(_) => ApiError::bad_request("unknown-action", e.to_string()),
            WorkflowError::Forbidden { .. } => ApiError::forbidden(e.to_string()),
            WorkflowError::Illegal { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "illegal-transition",
                "Illegal transition",
                e.to_string(),
            ),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        let kind = match e {
            IntakeError::Invalid(_) => "invalid-case",
            IntakeError::UnknownClass(_) => "unknown-class",
            IntakeError::UnknownComponent(_) => "unknown-component",
            IntakeError::ClassMismatch { .. } => "class-mismatch",
            // As for locate: a point in no unit grid is "not found".
            IntakeError::OutsideCity(..) => return ApiError::not_found("outside-city", e.to_string()),
        };
        ApiError::bad_request(kind, e.to_string())
    }
}

impl From<SensorError> for ApiError {
    fn from(e: SensorError) -> Self {
        let kind = match e {
            SensorError::Invalid(_) => "invalid-sensor",
            SensorError::UnknownKind(..) => "unknown-sensor-kind",
            SensorError::UnknownComponent(_) => "unknown-component",
            SensorError::UnknownSensor(_) => return ApiError::not_found("unknown-sensor", e.to_string()),
            SensorError::UnknownAlarm(_) => return ApiError::not_found("unknown-alarm", e.to_string()),
            SensorError::OutsideCity(..) => return ApiError::not_found("outside-city", e.to_string()),
            SensorError::Exists(_) => {
                return ApiError::new(StatusCode::CONFLICT, "sensor-exists", "Conflict", e.to_string());
            }
        };
        ApiError::bad_request(kind, e.to_string())
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        let kind = match e {
            StaffError::Invalid(_) => "invalid-staff",
            StaffError::UnknownRole(_) => "unknown-staff-role",
            StaffError::UnknownGrid(_) => "unknown-grid",
            StaffError::UnknownCommunity(_) => "unknown-community",
            StaffError::UnknownDepartment(_) => "unknown-department",
            StaffError::OutsideCity(..) => "outside-city",
            StaffError::UnknownStaff(_) => return ApiError::not_found("unknown-staff", e.to_string()),
            StaffError::Exists(_) => {
                return ApiError::new(StatusCode::CONFLICT, "staff-exists", "Conflict", e.to_string());
            }
            StaffError::TooMuch(_) => {
                return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too-costly", "Too costly", e.to_string());
            }
        };
        ApiError::bad_request(kind, e.to_string())
    }
}

impl From<LinkageError> for ApiError {
    fn from(e: LinkageError) -> Self {
        let e = match e {
            LinkageError::Store(s) => return s.into(),
            e => e,
        };
        let unprocessable =
            |kind| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, kind, "Unprocessable request", e.to_string());
        let conflict = |kind| ApiError::new(StatusCode::CONFLICT, kind, "Conflict", e.to_string());
        match &e {
            LinkageError::InvalidPlan(_) => unprocessable("invalid-plan"),
            LinkageError::UnknownPlan(_) => unprocessable("unknown-plan"),
            LinkageError::InvalidPlace(_) => unprocessable("invalid-place"),
            LinkageError::UnknownIncident(_) => ApiError::not_found("unknown-incident", e.to_string()),
            LinkageError::UnknownTask { .. } => ApiError::not_found("unknown-task", e.to_string()),
            LinkageError::InvalidTransition(_) => conflict("invalid-transition"),
            LinkageError::Closed(_) => conflict("incident-closed"),
            LinkageError::AlreadyOpen(_) => conflict("incident-open"),
            LinkageError::Forbidden(d) => ApiError::forbidden(d.clone()),
            LinkageError::Busy | LinkageError::Store(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "Busy", e.to_string())
            }
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large", e.to_string())
            }
            MediaError::Unsupported => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                e.to_string(),
            ),
            MediaError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-image", "Unprocessable request", e.to_string())
            }
            MediaError::PhotoRequired { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "photo-required",
                "Unprocessable request",
                e.to_string(),
            ),
            MediaError::Missing(_) => ApiError::not_found("unknown-media", e.to_string()),
            MediaError::Store(e) => e.into(),
            // The bucket or the disk: nothing was acknowledged, the client may retry.
            MediaError::Objects(_) => {
                tracing::warn!(error = %e, "the media store failed");
                ApiError::unavailable("media-unavailable", "the media store cannot be reached; retry shortly")
            }
            MediaError::Location(..) => ApiError::internal(e),
        }
    }
}

impl From<AckError> for ApiError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::Sensor(e) => e.into(),
            AckError::Store(e) => e.into(),
        }
    }
}

impl From<AnalysisError> for ApiError {
    fn from(e: AnalysisError) -> Self {
        let kind = match e {
            AnalysisError::UnknownUnit(_) => "unknown-unit",
            AnalysisError::H3Resolution(_) => "invalid-h3-resolution",
            AnalysisError::UnknownLayer(_) => "unknown-layer",
            AnalysisError::UnknownMethod(_) => "unknown-method",
            AnalysisError::Invalid(_) => "invalid-parameter",
            AnalysisError::EmptyRange { .. } => "invalid-date-range",
            AnalysisError::Geometry(_) => "invalid-geometry",
            // Valid requests the server's limits refuse.
            AnalysisError::TooLarge { .. } => "polygon-too-large",
            AnalysisError::TooManyCells { .. } => "too-many-cells",
            AnalysisError::TooManyDensityCells { .. } => "too-many-cells",
            AnalysisError::TooManyBins { .. } => "too-many-bins",
            AnalysisError::TooCostly { .. } => "cost-limit",
            AnalysisError::Cancelled => "cancelled",
        };
        let status = match e {
            AnalysisError::TooLarge { .. }
            | AnalysisError::TooManyCells { .. }
            | AnalysisError::TooManyDensityCells { .. }
            | AnalysisError::TooManyBins { .. }
            | AnalysisError::TooCostly { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // Nobody reads this answer: the client left.
            AnalysisError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let title = if status == StatusCode::BAD_REQUEST { "Bad request" } else { "Unprocessable request" };
        ApiError::new(status, kind, title, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            // Nothing was acknowledged: the client retries, here or on another replica.
            tracing::warn!(error = %e, "the store is unavailable");
            return ApiError::unavailable("store-unavailable", "the store cannot be reached; retry shortly");
        }
        ApiError::internal(e)
    }
}

/// Turns axum's own rejections (bad JSON, wrong content type, body too large) into problems.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "malformed-json",
        };
        let title = if status == StatusCode::PAYLOAD_TOO_LARGE { "Payload too large" } else { "Bad request" };
        // axum reports JSON syntax errors as 400 and shape errors as 422; both are malformed input here.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
        ApiError::new(status, kind, title, r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Most of a plain error body kept as a problem's detail.
const MAX_DETAIL_BYTES: usize = 4096;

/// Turns every error answer that is not a problem yet (the framework's own rejections: a body
/// over the limit, a path that does not parse, a method not routed) into
/// `application/problem+json`, so a client parses every 4xx and 5xx one way.
pub async fn problems(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // Problems pass, and so do deliberate JSON documents (`/ready` says why it is not ready);
    // what is left is the plain text of the framework's own rejections.
    let is_json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/") && (v.ends_with(b"json") || v.windows(5).any(|w| w == b"json;"))
    });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let detail = match axum::body::to_bytes(body, MAX_DETAIL_BYTES).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::NOT_FOUND => "unknown-path",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let mut out = ApiError { status, kind, title, detail }.into_response();
    // Keep what the original said beyond its body (Allow, Retry-After, ...).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
