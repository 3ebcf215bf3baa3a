//! Who is calling: the [`access`] middleware checks the bearer token of every request once (the
//! `Authorization` header, or `?access_token=` where a browser cannot set headers: EventSource),
//! closes reads to anonymous callers unless the server runs with `--public-read`, and leaves the
//! [`Caller`] in the request for the handlers.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

pub use crate::auth::Tokens;
use crate::auth::{AuthError, Principal, Role};
use crate::model::CaseScope;

use super::AppState;
use super::error::ApiError;

/// The authenticated caller.
#[derive(Clone)]
pub struct Caller(pub Principal);

/// The cases an optional caller sees: an anonymous reader (only under `--public-read`) sees what
/// the public map shows, which is every case.
pub fn scope_of(who: &Option<Caller>) -> CaseScope {
    who.as_ref().map(|c| c.0.case_scope()).unwrap_or_default()
}

/// The 403 for a caller reaching beyond its scope (`doing` names what it tried).
pub fn out_of_scope(who: Option<&Principal>, doing: String) -> ApiError {
    let role = who.map_or("anonymous", |p| p.role.as_str());
    AuthError::Forbidden { role, action: doing }.into()
}

/// Paths that reveal nothing of the city: liveness and readiness, metrics, the page's own files,
/// styles and fonts, and the API's self-description (a client reads them before it logs in).
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics" | "/" | "/api" | "/conformance" | "/map" | "/fonts")
        || ["/map/", "/styles/", "/fonts/"].iter().any(|p| path.starts_with(p))
}

/// The token a request carries, if any; a malformed `Authorization` header is a 401, not
/// anonymous.
fn token_of(req: &Request) -> Result<Option<String>, AuthError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        return Ok(Some(token.to_string()));
    }
    let query = req.uri().query().unwrap_or("");
    Ok(serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "access_token").map(|(_, v)| v)))
}

/// Checks the caller's token once per request, and refuses anonymous reads of the city unless
/// the server is public. Writes without a token pass on: their handlers ask for a [`Caller`]
/// (or, for Open311, an `api_key`) and answer 401 themselves.
/// POST routes that only read (their question is too big for a query string): a read like any
/// other, so anonymous callers need `--public-read`, whatever their body holds.
const QUERY_POSTS: &[&str] = &["/api/v1/locate", "/api/v1/analysis/stats"];

pub async fn access(State(st): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let path = req.uri().path();
    let reading = matches!(*req.method(), Method::GET | Method::HEAD)
        || (*req.method() == Method::POST && QUERY_POSTS.contains(&path));
    match token_of(&req)? {
        Some(token) => {
            let who = st.auth.check(&token).await?;
            // A reporting key and a device read nothing beyond what they are for.
            let narrow = match who.role {
                Role::Public => !path.starts_with("/open311/"),
                Role::Device => true,
                _ => false,
            };
            if reading && narrow && !is_open(path) {
                let action = format!("read {path}");
                return Err(AuthError::Forbidden { role: who.role.as_str(), action }.into());
            }
            req.extensions_mut().insert(Caller(who));
        }
        None if reading && !st.public_read && !is_open(path) => return Err(AuthError::Missing.into()),
        None => {}
    }
    Ok(next.run(req).await)
}

/// `Option<Caller>` is `None` for an anonymous request (a read under `--public-read`, or a write
/// its handler then refuses).
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Option<Self>, ApiError> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(parts.extensions.get::<Caller>().cloned().ok_or(AuthError::Missing)?)
    }
}

/// Forgets revoked tokens as their revocation arrives through the change log, from this server,
/// another replica or `onemap token revoke`.
pub struct ForgetRevoked(pub std::sync::Arc<Tokens>);

impl crate::events::Follower for ForgetRevoked {
    fn applied(&self, change: &crate::events::Change) {
        if change.row.collection == crate::model::Collection::Tokens
            && let Some(hash) = &change.row.key
        {
            self.0.forget(hash);
        }
    }
}
