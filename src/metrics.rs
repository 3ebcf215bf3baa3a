//! The server's Prometheus metrics: requests, layers, the tile cache, the feed, sensor ingest
//! and MQTT. A module of its own, below the engines that count into it and the HTTP handler
//! that serves it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub tile_cache_bytes: Gauge,
    pub tile_cache_hits: Counter,
    pub tile_cache_misses: Counter,
    pub feed_subscribers: Gauge,
    readings: Family<ReadingLabels, Counter>,
    readings_rejected: Family<RejectLabels, Counter>,
    alarms: Family<LevelLabels, Counter>,
    positions: Family<ReadingLabels, Counter>,
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

    /// Staff positions by transport and outcome (`accepted`, `duplicate`, `out_of_order`, or
    /// the reason of a rejection).
    pub fn position(&self, transport: &'static str, outcome: &'static str) -> Counter {
        self.positions.get_or_create(&ReadingLabels { transport, outcome }).clone()
    }

    /// Alarms raised (or escalated) to a level.
    pub fn alarm(&self, level: &'static str) -> Counter {
        self.alarms.get_or_create(&LevelLabels { level }).clone()
    }

    /// Everything registered, in OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
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
        let positions = Family::<ReadingLabels, Counter>::default();
        registry.register("staff_positions", "Staff positions taken in, by transport and outcome", positions.clone());
        registry.register("alarms_raised", "Alarms raised or escalated, by level", alarms.clone());
        registry.register("alarm_store_errors", "Alarm changes the store failed to take", alarm_errors.clone());
        registry.register("mqtt_connects", "MQTT broker connections made", mqtt_connects.clone());
        registry.register("mqtt_disconnects", "MQTT broker connections lost", mqtt_disconnects.clone());
        Metrics {
            registry,
            readings,
            readings_rejected,
            alarms,
            positions,
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
