//! Start-up and shutdown: open the store, seed the demo city when asked, build the live index,
//! serve until SIGINT or SIGTERM, then drain in-flight requests and close the store.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::demo::{DemoParams, generate};
use crate::events::Live;
use crate::http::{AppState, app};
use crate::index::CityIndex;
use crate::store::{self, Store, StoreError};

/// Opens the store, seeds it with the demo city if `demo` and it is empty, and loads the index.
pub async fn start(location: &str, demo: bool, tile_cache_mb: usize) -> Result<AppState, StoreError> {
    let store = store::open(location).await?;
    if demo && store.is_empty().await? {
        seed(&*store, &DemoParams::shigatse()).await?;
    }
    // The log's head before the load: every change after it is applied again by the follower
    // (re-applying one the load already saw changes nothing), so none falls in between.
    let (_, head) = store.log_bounds().await?;
    let t = Instant::now();
    let city = store.load_city(&|table, n| tracing::debug!(table, n, "loading")).await?;
    let index = tokio::task::spawn_blocking(move || CityIndex::from_city(city))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    tracing::info!(store = store.kind(), elapsed_ms = t.elapsed().as_millis() as u64, head, layers = ?index.counts(), "index loaded");
    let state = AppState::new(store, index, tile_cache_mb, head);
    state.sensors.restore(chrono::Utc::now()).await?;
    tokio::spawn(follow(state.live.clone()));
    Ok(state)
}

/// How often a server reads the change log for what other processes (`onemap import`, other
/// servers on the same store) committed.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Applies the changes other processes commit, until shutdown: the store is all they share.
pub async fn follow(live: Arc<Live>) {
    let closed = live.feed.closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        if let Err(e) = live.catch_up(None).await {
            // Retried on the next round: nothing is marked applied that was not.
            tracing::warn!(error = %e, "following the change log failed");
        }
    }
}

/// Forgets changes older than `retention` once an hour; a follower further behind reloads the
/// city.
pub async fn prune_log(store: Arc<dyn Store>, retention: chrono::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store.prune_changes(chrono::Utc::now() - retention).await {
            Ok(n) => tracing::debug!(pruned = n, "change log pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning the change log failed"),
        }
    }
}

/// Generates a demo city and writes it in one transaction.
/// The store a benchmark runs against: `ONEMAP_BENCH_STORE` when set (the Chongqing-scale city
/// `scripts/bench` writes), otherwise a fresh temporary GeoPackage seeded with the Shigatse demo.
pub async fn bench_store(name: &str) -> Result<String, StoreError> {
    if let Ok(location) = std::env::var("ONEMAP_BENCH_STORE") {
        return Ok(location);
    }
    let path = std::env::temp_dir().join(format!("onemap-bench-{name}-{}.gpkg", std::process::id()));
    let path = path.display().to_string();
    let store = crate::store::open(&path).await?;
    seed(&*store, &DemoParams::shigatse()).await?;
    store.close().await;
    Ok(path)
}

pub async fn seed(store: &dyn Store, params: &DemoParams) -> Result<(), StoreError> {
    let t = Instant::now();
    let p = params.clone();
    let city = tokio::task::spawn_blocking(move || generate(&p))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    tracing::info!(
        grids = city.grids.len(),
        components = city.components.len(),
        cases = city.cases.len(),
        elapsed_ms = t.elapsed().as_millis() as u64,
        "demo city generated"
    );
    let t = Instant::now();
    store.write_city(&city, &|_, _| {}).await?;
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, "demo city written");
    Ok(())
}

/// Serves until a shutdown signal, then lets in-flight requests finish.
pub async fn serve(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    let store: Arc<dyn Store> = state.store.clone();
    let live = state.live.clone();
    let sweeper = tokio::spawn(crate::cases::sweep_lights(live.clone(), crate::cases::SWEEP_EVERY));
    let stale = tokio::spawn(crate::sensors::ingest::sweep_stale(state.sensors.clone(), crate::cases::SWEEP_EVERY));
    let prune = tokio::spawn(prune_log(store.clone(), state.log_retention));
    // The unit grids and their neighbour graph, built in the background so the first hotspot
    // analysis does not wait for them (about 0.7 s at Chongqing scale).
    let (analysis, index) = (state.analysis.clone(), state.index.clone());
    tokio::task::spawn_blocking(move || {
        if let Ok(units) = analysis.units(&index, crate::analysis::units::UnitKind::Grid) {
            tracing::debug!(grids = units.neighbours().len(), "analysis units ready");
        }
    });
    // Live-feed streams never end by themselves; closing the feed ends them so the graceful
    // shutdown does not wait for browsers forever.
    let shutdown = async move {
        shutdown_signal().await;
        live.feed.close();
    };
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await?;
    sweeper.abort();
    stale.abort();
    prune.abort();
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}
