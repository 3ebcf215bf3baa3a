//! HTTP: axum routes per area, the shared state, request extractors, and the one
//! error-to-status mapping in [`error`].

pub mod analysis;
pub mod auth;
pub mod cases;
pub mod error;
pub mod events;
pub mod export;
pub mod features;
pub mod health;
pub mod limits;
pub mod linkage;
pub mod locate;
pub mod media;
pub mod ogc_tiles;
pub mod open311;
pub mod openapi;
pub mod params;
pub mod replica;
pub mod sensors;
pub mod staff;
pub mod tiles;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::events::Live;
use crate::index::CityIndex;
use crate::store::Store;

/// The header a write answers with: its change's sequence number in the log.
pub const SEQ_HEADER: axum::http::HeaderName = axum::http::HeaderName::from_static("onemap-seq");

/// Everything a request handler may touch, behind one reference count: extractors clone the
/// state for every request, and one atomic shared by all cores costs less than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// The same index as `live.index`, for the many handlers that only read.
    pub index: Arc<CityIndex>,
    /// Where committed changes go: index, tile cache, live feed.
    pub live: Arc<Live>,
    pub metrics: Arc<health::Metrics>,
    pub auth: Arc<auth::Tokens>,
    /// Filing standard, working calendar and dispatch time limit.
    pub deadlines: Arc<crate::cases::Deadlines>,
    /// Weights and grades of the evaluation score.
    pub scoring: crate::cases::evaluation::Scoring,
    /// The built big-screen page served at `/map/` (see [`web`]).
    pub web_dir: Arc<std::path::PathBuf>,
    /// Sensor readings in, alarms out.
    pub sensors: Arc<crate::sensors::ingest::Ingest>,
    /// Staff positions into tracks and patrol tallies.
    pub staff: Arc<crate::staff::positions::Positions>,
    /// Case photos: the media store and its rules.
    pub media: Arc<crate::media::Photos>,
    /// Plans, incidents and their outside calls (一键联动).
    pub linkage: Arc<crate::linkage::Linkage>,
    /// Analysis units, the latest hotspot result and recent density grids.
    pub analysis: Arc<crate::analysis::Analysis>,
    /// Exports running at once: each holds a blocking thread and a temporary file.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// How long the change log keeps changes (pruned by `serve`).
    pub log_retention: chrono::Duration,
    /// A replica that only serves reads (`serve --read-only`): writes get 405.
    pub read_only: bool,
    /// Anonymous clients may read (`serve --public-read`, the demo); otherwise every read needs a
    /// token.
    pub public_read: bool,
    /// Per-client buckets on the expensive routes.
    pub rate_limits: limits::Shared,
}

impl AppState {
    /// State over an index loaded from the store when its change log stood at `head`, with a tile
    /// cache of `tile_cache_mb` megabytes (0: none).
    pub fn new(store: Arc<dyn Store>, index: CityIndex, tile_cache_mb: usize, head: i64) -> Self {
        let index = Arc::new(index);
        let live = Arc::new(Live::new(index.clone(), store.clone(), tile_cache_mb, head));
        let metrics = Arc::new(health::Metrics::default());
        let sensors = Arc::new(crate::sensors::ingest::Ingest::new(store.clone(), live.clone(), metrics.clone()));
        live.add_follower(sensors.clone());
        let staff = Arc::new(crate::staff::positions::Positions::new(store.clone(), live.clone(), metrics.clone()));
        let tokens = Arc::new(auth::Tokens::new(store.clone()));
        live.add_follower(Arc::new(auth::ForgetRevoked(tokens.clone())));
        let linkage = crate::linkage::Linkage::new(live.clone(), sensors.clone());
        let analysis: Arc<crate::analysis::Analysis> = Default::default();
        live.add_follower(Arc::new(analysis::PublishedOverlays(analysis.clone())));
        AppState(Arc::new(Shared {
            auth: tokens,
            deadlines: Arc::new(crate::cases::Deadlines::default()),
            scoring: Default::default(),
            store,
            live,
            index,
            metrics,
            web_dir: Arc::new(crate::config::DEFAULT_WEB_DIR.into()),
            sensors,
            staff,
            media: Arc::new(crate::media::Photos::in_memory()),
            linkage,
            analysis,
            exports: Arc::new(tokio::sync::Semaphore::new(export::CONCURRENT)),
            log_retention: chrono::Duration::days(crate::config::DEFAULT_LOG_RETENTION_DAYS),
            read_only: false,
            public_read: false,
            rate_limits: Default::default(),
        }))
    }

    /// The parts, for the builder methods below (the state is not shared yet when they run;
    /// were it shared, the caller would get a copy of its own).
    fn parts_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Serves reads only.
    pub fn read_only(mut self) -> Self {
        self.parts_mut().read_only = true;
        self
    }

    /// The per-client rate limits of the expensive routes.
    pub fn with_rate_limits(mut self, quotas: crate::config::RateQuotas) -> Self {
        self.parts_mut().rate_limits = Arc::new(limits::RateLimits::new(quotas));
        self
    }

    /// What one analysis request may cost.
    pub fn with_cost_limits(self, limits: crate::analysis::CostLimits) -> Self {
        *self.analysis.limits.write() = limits;
        self
    }

    /// Lets anonymous clients read.
    pub fn with_public_read(mut self) -> Self {
        self.parts_mut().public_read = true;
        self
    }

    /// How long the change log keeps changes.
    pub fn with_log_retention(mut self, retention: chrono::Duration) -> Self {
        self.parts_mut().log_retention = retention;
        self
    }

    /// The configured time limits and evaluation scoring.
    pub fn with_rules(
        mut self,
        deadlines: crate::cases::Deadlines,
        scoring: crate::cases::evaluation::Scoring,
    ) -> Self {
        self.parts_mut().deadlines = Arc::new(deadlines);
        self.parts_mut().scoring = scoring;
        self.sensors.configure(self.deadlines.clone(), self.sensors.settings());
        self
    }

    /// The configured sensor ingest settings.
    pub fn with_sensor_settings(self, settings: crate::sensors::ingest::Settings) -> Self {
        self.sensors.configure(self.deadlines.clone(), settings);
        self
    }

    /// Photos kept in `photos` (a directory or a bucket) under the `[media]` rules.
    pub fn with_media(mut self, photos: crate::media::Photos, settings: crate::media::Settings) -> Self {
        photos.configure(settings);
        self.parts_mut().media = Arc::new(photos);
        self
    }

    /// The configured linkage settings (`[linkage]`).
    pub fn with_linkage_settings(self, settings: crate::linkage::Settings) -> Self {
        self.linkage.configure(settings);
        self
    }

    /// The configured staff position settings (`[staff]`).
    pub fn with_staff_settings(self, settings: crate::staff::positions::Settings) -> Self {
        self.staff.configure(settings);
        self
    }
}

/// A write's `201 Created`: the new resource at `location`, its change's `Onemap-Seq`.
pub fn created(location: String, seq: i64, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let headers = [(axum::http::header::LOCATION, location), (SEQ_HEADER, seq.to_string())];
    (axum::http::StatusCode::CREATED, headers, axum::Json(body)).into_response()
}

/// A write's `200 OK`: the changed resource, its change's `Onemap-Seq`.
pub fn written(seq: i64, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(SEQ_HEADER, seq.to_string())], axum::Json(body)).into_response()
}

/// The 400 of a batch (readings, positions) in which every item was rejected, naming the first
/// few: `(index, reason, detail)`.
pub fn all_rejected<'a>(
    kind: &'static str,
    what: &str,
    rejected: impl ExactSizeIterator<Item = (usize, &'a str, &'a str)>,
) -> error::ApiError {
    let n = rejected.len();
    let first: Vec<String> = rejected.take(5).map(|(i, reason, detail)| format!("#{i}: {reason} ({detail})")).collect();
    error::ApiError::bad_request(kind, format!("all {n} {what} were rejected: {}", first.join("; ")))
}

/// Largest upload body, whatever `[media] max_bytes` allows (200 MiB) plus the multipart framing:
/// the configured limit is checked as the file part streams in.
pub const MAX_UPLOAD_BYTES: usize = 201 * 1024 * 1024;

/// Largest request body: a 100,000-point locate batch is about 4 MB of JSON.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The whole HTTP surface, shared by `main`, the tests and the benches.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(replica::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/locate", get(locate::get_locate).post(locate::post_locate))
        .route("/", get(features::landing))
        .route("/api", get(openapi::openapi))
        .route("/conformance", get(features::conformance))
        .route("/collections", get(features::collections))
        .route("/collections/{id}", get(features::collection))
        .route("/collections/{id}/items", get(features::items))
        .route("/collections/{id}/items/{fid}", get(features::item))
        .route("/tileMatrixSets", get(ogc_tiles::tile_matrix_sets))
        .route("/tileMatrixSets/{id}", get(ogc_tiles::tile_matrix_set))
        .route("/collections/{id}/tiles", get(ogc_tiles::collection_tilesets))
        .route("/collections/{id}/tiles/{tms}", get(ogc_tiles::collection_tileset))
        .route("/collections/{id}/tiles/{tms}/{z}/{row}/{col}", get(ogc_tiles::collection_tile))
        .route("/tiles", get(ogc_tiles::dataset_tilesets))
        .route("/tiles/WebMercatorQuad", get(ogc_tiles::dataset_tileset))
        .route("/tiles/WebMercatorQuad/{z}/{row}/{col}", get(ogc_tiles::dataset_tile))
        .route("/tiles/{layers}", get(tiles::tilejson))
        .route("/tiles/{layers}/{z}/{x}/{y}", get(tiles::tile))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/cases", get(cases::list).post(cases::create))
        .route("/api/v1/cases/summary", get(cases::summary))
        .route("/api/v1/cases/{id}", get(cases::get_case))
        .route("/api/v1/cases/{id}/actions", axum::routing::post(cases::act))
        .route(
            "/api/v1/cases/{id}/media",
            get(media::list).post(media::upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/api/v1/cases/{id}/media/{mid}", get(media::original))
        .route("/api/v1/cases/{id}/media/{mid}/thumbnail", get(media::thumbnail))
        .route("/api/v1/evaluation", get(cases::evaluation))
        .route("/api/v1/sensors", axum::routing::post(sensors::register))
        .route("/api/v1/sensors/readings", axum::routing::post(sensors::post_readings))
        .route("/api/v1/sensors/{code}", get(sensors::get_sensor))
        .route("/api/v1/sensors/{code}/readings", get(sensors::get_readings))
        .route("/api/v1/staff", get(staff::list).post(staff::register))
        .route("/api/v1/staff/positions", axum::routing::post(staff::post_positions))
        .route("/api/v1/staff/nearest", get(staff::nearest))
        .route("/api/v1/staff/{code}", get(staff::get_staff))
        .route("/api/v1/staff/{code}/track", get(staff::track))
        .route("/api/v1/analysis/patrol", get(staff::patrol))
        .route("/api/v1/tasks", get(staff::tasks))
        .route("/api/v1/alarms", get(sensors::alarms))
        .route("/api/v1/alarms/{id}/ack", axum::routing::post(sensors::ack))
        .route("/api/v1/plans", get(linkage::list_plans).post(linkage::save_plan))
        .route("/api/v1/plans/{code}", get(linkage::get_plan))
        .route("/api/v1/incidents", get(linkage::list).post(linkage::start))
        .route("/api/v1/incidents/{id}", get(linkage::get))
        .route("/api/v1/incidents/{id}/resources", get(linkage::resources))
        .route("/api/v1/incidents/{id}/tasks/{dept}/actions", axum::routing::post(linkage::act))
        .route("/api/v1/incidents/{id}/close", axum::routing::post(linkage::close))
        .route("/api/v1/analysis/hotspots", get(analysis::hotspots).post(analysis::publish_hotspots))
        .route("/api/v1/analysis/density", get(analysis::density))
        .route("/api/v1/analysis/emerging", get(analysis::emerging))
        .route("/api/v1/analysis/ranking", get(analysis::ranking))
        .route("/api/v1/analysis/peaks", get(analysis::peaks))
        .route("/api/v1/analysis/stats", axum::routing::post(analysis::box_stats))
        .route("/api/v1/export/tiles", get(export::export_tiles))
        .route("/api/v1/export/{collection}", get(export::export))
        .route("/open311/v2/services.json", get(open311::services))
        .route(
            "/open311/v2/requests.json",
            get(open311::get_requests).post(open311::post_request).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/open311/v2/requests/{id}/media/{mid}", get(open311::get_media))
        .route("/open311/v2/requests/{file}", get(open311::get_request))
        .merge(web::routes())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), replica::consistency))
        // Inside `access`, so a rate limit counts against the caller's token.
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::rate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::access))
        .layer(axum::middleware::from_fn_with_state(state.clone(), health::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::problems))
        // Fastest gzip: big JSON answers shrink several-fold for little CPU.
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
        .with_state(state)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn fallback(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found("unknown-path", format!("no route for {}", uri.path()))
}
