//! `/health` for load balancers and `/metrics` in Prometheus text format.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;

use super::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabels {
    pub layer: String,
}

/// The server's metrics, registered once at start-up.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub features: Family<LayerLabels, Gauge>,
    tile_cache_bytes: Gauge,
    tile_cache_hits: Counter,
    tile_cache_misses: Counter,
    feed_subscribers: Gauge,
    readings: Family<ReadingLabels, Counter>,
    readings_rejected: Family<RejectLabels, Counter>,
    alarms: Family<LevelLabels, Counter>,
    /// Alarm changes the store could not take (the readings themselves were committed).
    pub alarm_errors: Counter,
    /// MQTT connections made (the first and every reconnect) and lost.
    pub mqtt_connects: Counter,
    pub mqtt_disconnects: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadingLabels {
    pub transport: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub transport: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabels {
    pub level: &'static str,
}

impl Metrics {
    /// Sensor readings by transport (`http`, `mqtt`) and outcome (`accepted`, `duplicate`,
    /// `out_of_order`).
    pub fn reading(&self, transport: &'static str, outcome: &'static str) -> Counter {
        self.readings.get_or_create(&ReadingLabels { transport, outcome }).clone()
    }

    /// Rejected sensor readings by transport and reason.
    pub fn rejected(&self, transport: &'static str, reason: &'static str) -> Counter {
        self.readings_rejected.get_or_create(&RejectLabels { transport, reason }).clone()
    }

    /// Alarms raised (or escalated) to a level.
    pub fn alarm(&self, level: &'static str) -> Counter {
        self.alarms.get_or_create(&LevelLabels { level }).clone()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("onemap");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 14))
        });
        let features = Family::<LayerLabels, Gauge>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        registry.register("layer_features", "Features in each live index layer", features.clone());
        let (tile_cache_bytes, feed_subscribers) = (Gauge::default(), Gauge::default());
        let (tile_cache_hits, tile_cache_misses) = (Counter::default(), Counter::default());
        registry.register("tile_cache_bytes", "Bytes held by the tile cache", tile_cache_bytes.clone());
        registry.register("tile_cache_hits", "Tiles served from the cache", tile_cache_hits.clone());
        registry.register("tile_cache_misses", "Tiles rendered on request", tile_cache_misses.clone());
        registry.register("feed_subscribers", "Open live-feed (SSE) connections", feed_subscribers.clone());
        let (readings, readings_rejected, alarms) = (Family::default(), Family::default(), Family::default());
        let (alarm_errors, mqtt_connects, mqtt_disconnects) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register("sensor_readings", "Sensor readings taken in, by transport and outcome", readings.clone());
        registry.register(
            "sensor_readings_rejected",
            "Sensor readings rejected, by transport and reason",
            readings_rejected.clone(),
        );
        registry.register("alarms_raised", "Alarms raised or escalated, by level", alarms.clone());
        registry.register("alarm_store_errors", "Alarm changes the store failed to take", alarm_errors.clone());
        registry.register("mqtt_connects", "MQTT broker connections made", mqtt_connects.clone());
        registry.register("mqtt_disconnects", "MQTT broker connections lost", mqtt_disconnects.clone());
        Metrics {
            registry,
            readings,
            readings_rejected,
            alarms,
            alarm_errors,
            mqtt_connects,
            mqtt_disconnects,
            requests,
            latency,
            features,
            tile_cache_bytes,
            tile_cache_hits,
            tile_cache_misses,
            feed_subscribers,
        }
    }
}

/// Counts and times every request by its route pattern (not its raw path, which would explode
/// the label space with tile coordinates and ids).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
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
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &st.metrics.registry) {
        return super::error::ApiError::internal(e).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
