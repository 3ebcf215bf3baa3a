//! What a client of several replicas behind a balancer needs: reading its own writes
//! (`Onemap-Min-Seq`), a read-only replica refusing writes, and `/ready` for the balancer's
//! health check.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// The request header (and `min_seq` query parameter) naming the change a read must reflect.
pub const MIN_SEQ_HEADER: &str = "onemap-min-seq";
/// How long a read waits for this replica to apply that change before answering 503.
pub const MIN_SEQ_WAIT: Duration = Duration::from_secs(2);
/// A replica further behind the log than this is not ready (the balancer sends no one to it).
pub const MAX_LAG: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// How long `/ready` waits for the store.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The change a request asks to see: the `Onemap-Min-Seq` header or the `min_seq` parameter.
fn min_seq(req: &Request) -> Result<Option<i64>, ApiError> {
    let from_header = req.headers().get(MIN_SEQ_HEADER).map(|v| v.to_str().unwrap_or("").to_string());
    let from_query = req.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "min_seq").then_some(v))
    });
    let Some(raw) = from_header.or(from_query) else { return Ok(None) };
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid-min-seq",
            format!("Onemap-Min-Seq / min_seq {raw:?}: a sequence number from an Onemap-Seq header"),
        )),
    }
}

/// Holds a request that asks for a change this replica has not applied yet until it has (at
/// most [`MIN_SEQ_WAIT`], else 503 with `Retry-After`), refuses writes on a read-only replica,
/// and gives every successful write an `Onemap-Seq`.
pub async fn consistency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.read_only && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let mut resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only",
            "Method not allowed",
            "this replica only serves reads (serve --read-only); send writes to the writer",
        )
        .into_response();
        resp.headers_mut().insert(axum::http::header::ALLOW, axum::http::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match min_seq(&req) {
        Err(e) => return e.into_response(),
        Ok(Some(seq)) if !st.live.wait_applied(seq, MIN_SEQ_WAIT).await => {
            return ApiError::unavailable(
                "replica-behind",
                format!("this replica has applied the change log to {}, not yet to {seq}; retry", st.live.applied()),
            )
            .into_response();
        }
        Ok(_) => {}
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut resp = next.run(req).await;
    // Every successful write says what to wait for: its own change where the handler knows it,
    // else what this process had applied when it answered (its change is at or below that: a
    // committer applies its change before answering), a bound that is never too low.
    if write && resp.status().is_success() && !resp.headers().contains_key(super::SEQ_HEADER) {
        resp.headers_mut().insert(super::SEQ_HEADER, st.live.applied().into());
    }
    resp
}

/// `/ready`: 200 when this replica can serve: the store answers and it is at most [`MAX_LAG`]
/// behind the change log; 503 otherwise, the body saying which. (`/health` stays a liveness
/// check that never touches the store.)
pub async fn ready(State(st): State<AppState>) -> Response {
    let applied = st.live.applied();
    let leader = *st.store.leadership().borrow();
    let lag = tokio::time::timeout(PING_TIMEOUT, st.live.lag()).await;
    let unreachable = |st: &AppState, detail: String| {
        let body = json!({"status": "store_unreachable", "store": "unreachable", "detail": detail,
            "applied": applied, "leader": leader, "read_only": st.read_only});
        (StatusCode::SERVICE_UNAVAILABLE, body)
    };
    let (status, body) = match lag {
        Ok(Ok((head, lag))) => {
            let ok = lag <= MAX_LAG;
            let body = json!({
                "status": if ok { "ready" } else { "lagging" },
                "store": "ok", "applied": applied, "head": head, "lag_ms": lag.num_milliseconds(),
                "leader": leader, "read_only": st.read_only,
            });
            (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
        }
        Ok(Err(e)) => unreachable(&st, e.to_string()),
        Err(_) => unreachable(&st, format!("no answer within {} s", PING_TIMEOUT.as_secs())),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    }
    resp
}
