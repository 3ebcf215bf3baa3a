//! `/health` for load balancers and `/metrics` in Prometheus text format.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use serde_json::json;

use super::AppState;
pub use crate::metrics::Metrics;
use crate::metrics::{LayerLabels, RouteLabels};

/// Counts and times every request by its route pattern (not its raw path, which would explode
/// the label space with tile coordinates and ids).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // A client may send any token as a method: only the standard ones become label values.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = RouteLabels { route, method, status: resp.status().as_u16() };
    st.metrics.requests.get_or_create(&labels).inc();
    st.metrics.latency.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
    resp
}

pub async fn health(State(st): State<AppState>) -> Response {
    let layers: serde_json::Map<String, serde_json::Value> =
        st.index.counts().into_iter().map(|(k, n)| (k.to_string(), json!(n))).collect();
    axum::Json(json!({"status": "ok", "store": st.store.kind(), "layers": layers})).into_response()
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    for (layer, n) in st.index.counts() {
        st.metrics.features.get_or_create(&LayerLabels { layer: layer.into() }).set(n as i64);
    }
    // The cache and the feed keep their own atomics; mirror them at scrape time.
    let m = &st.metrics;
    let tiles = &st.live.tiles;
    m.tile_cache_bytes.set(tiles.size() as i64);
    let catch_up = |c: &Counter, now: u64| {
        c.inc_by(now.saturating_sub(c.get()));
    };
    catch_up(&m.tile_cache_hits, tiles.hits.load(std::sync::atomic::Ordering::Relaxed));
    catch_up(&m.tile_cache_misses, tiles.misses.load(std::sync::atomic::Ordering::Relaxed));
    m.feed_subscribers.set(st.live.feed.subscribers() as i64);
    let body = match st.metrics.encode() {
        Ok(b) => b,
        Err(e) => return super::error::ApiError::internal(e).into_response(),
    };
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
