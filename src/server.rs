//! Start-up and shutdown: open the store, seed the demo city when asked, build the live index,
//! serve until SIGINT or SIGTERM, then drain in-flight requests and close the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
        // Its history ends now: today's counters, deadlines and lights are alive on any day.
        seed(&*store, &DemoParams::shigatse().ending_now()).await?;
    }
    start_on(store, tile_cache_mb).await
}

/// Starts a replica that only serves reads, following the log of a store another process
/// writes (`serve --read-only`).
pub async fn start_read_only(location: &str, tile_cache_mb: usize) -> Result<AppState, StoreError> {
    Ok(start_on(store::open_with(location, true).await?, tile_cache_mb).await?.read_only())
}

async fn start_on(store: Arc<dyn Store>, tile_cache_mb: usize) -> Result<AppState, StoreError> {
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
    state.staff.restore(chrono::Utc::now()).await?;
    tokio::spawn(follow(state.live.clone()));
    Ok(state)
}

/// How often a server reads the change log even when nothing announced a change (a missed
/// notification, a store that cannot announce).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Applies the changes other processes commit (`onemap import`, other replicas on the same
/// store), until shutdown: woken by the store's announcements, by a reader waiting for a change,
/// or every [`FOLLOW_EVERY`]. The log is the truth; an announcement is only a hint.
pub async fn follow(live: Arc<Live>) {
    let closed = live.feed.closed();
    tokio::pin!(closed);
    let mut announced = live.store().announcements();
    loop {
        let hinted = tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(FOLLOW_EVERY) => None,
            _ = live.nudged() => None,
            seq = next_announcement(&mut announced) => Some(seq),
        };
        if let Some(seq) = hinted
            && live.applied_soon(seq).await
        {
            continue;
        }
        if let Err(e) = live.catch_up(None).await {
            // Retried on the next round: nothing is marked applied that was not.
            tracing::warn!(error = %e, "following the change log failed");
        }
    }
}

/// The next sequence number the store announces; never, for a store that does not.
async fn next_announcement(rx: &mut Option<tokio::sync::watch::Receiver<i64>>) -> i64 {
    if let Some(r) = rx
        && r.changed().await.is_ok()
    {
        return *r.borrow_and_update();
    }
    std::future::pending().await
}

/// Runs the job `make` starts while this process holds the store's singleton lease (see
/// [`Store::leadership`]): started when the lease is granted, stopped when it is lost, started
/// again when it comes back. Every job's effects go through the log, so a job that moves to
/// another replica picks up where the log says, not where this process's memory does.
pub fn spawn_singleton<F, Fut>(store: &dyn Store, name: &'static str, make: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut leader = store.leadership();
    tokio::spawn(async move {
        loop {
            if leader.wait_for(|held| *held).await.is_err() {
                return;
            }
            tracing::debug!(job = name, "singleton job started");
            // Stopped with the lease, and with this task when it is aborted at shutdown.
            let job = AbortOnDrop(tokio::spawn(make()));
            let lost = leader.wait_for(|held| !*held).await.is_ok();
            drop(job);
            tracing::debug!(job = name, "singleton job stopped");
            if !lost {
                return;
            }
        }
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
    seed_plans(store, &city.departments).await?;
    crate::demo::simulate::mark(store).await?;
    tracing::info!(elapsed_ms = t.elapsed().as_millis() as u64, "demo city written");
    Ok(())
}

/// The demo city's emergency plans (`data/demo_plans.toml`), their department keys turned into
/// the generated codes.
pub fn demo_plans(departments: &[crate::model::Department]) -> Vec<crate::linkage::plans::Plan> {
    let mut plans = crate::linkage::plans::parse_file(include_str!("../data/demo_plans.toml"), false)
        .expect("data/demo_plans.toml is valid");
    for p in &mut plans {
        for party in std::iter::once(&mut p.lead).chain(p.assist.iter_mut()) {
            if let Some(key) = &party.dept_code {
                let code = crate::demo::dept_by_key(departments, key)
                    .unwrap_or_else(|| panic!("data/demo_plans.toml: unknown department key {key:?}"));
                party.dept_code = Some(code.to_string());
            }
        }
    }
    plans
}

/// Writes the demo city's plans (version 1 each) into a freshly seeded store.
pub async fn seed_plans(store: &dyn Store, departments: &[crate::model::Department]) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let (rows, changes): (Vec<_>, Vec<_>) =
        demo_plans(departments).iter().map(|p| crate::linkage::plans::version_row(p, 1, "demo", now)).unzip();
    store.insert_rows(&crate::store::schema::PLANS, rows, changes).await?;
    Ok(())
}

/// Serves until a shutdown signal, then lets in-flight requests finish.
pub async fn serve(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    // The handlers are registered now, before the first connection is accepted: registered
    // lazily, a SIGTERM arriving right after the first answer would kill the process by default.
    let signal = shutdown_signal();
    let store: Arc<dyn Store> = state.store.clone();
    let live = state.live.clone();
    // The periodic jobs run on one replica only: the holder of the store's singleton lease.
    let (sweep_live, ingest, retention) = (live.clone(), state.sensors.clone(), state.log_retention);
    let sweeper = spawn_singleton(&*store, "light sweep", move || {
        crate::cases::sweep_lights(sweep_live.clone(), crate::cases::SWEEP_EVERY)
    });
    let stale = spawn_singleton(&*store, "stale-sensor sweep", move || {
        crate::sensors::ingest::sweep_stale(ingest.clone(), crate::cases::SWEEP_EVERY)
    });
    let duty = state.staff.clone();
    let duty_sweep = spawn_singleton(&*store, "duty sweep", move || {
        crate::staff::positions::sweep_duty(duty.clone(), crate::cases::SWEEP_EVERY)
    });
    let (task_live, reassign) = (live.clone(), state.staff.settings().reassign_after());
    let tasks = spawn_singleton(&*store, "task assignment", move || {
        crate::staff::tasks::run(task_live.clone(), reassign, TASKS_EVERY)
    });
    let (photos, photo_store) = (state.media.clone(), store.clone());
    let photo_sweep = spawn_singleton(&*store, "photo sweep", move || {
        crate::media::run_sweeps(photos.clone(), photo_store.clone(), crate::media::SWEEP_EVERY)
    });
    let linkage = state.linkage.clone();
    let linkage_jobs = spawn_singleton(&*store, "linkage", move || linkage.clone().run());
    let prune_store = store.clone();
    let prune = spawn_singleton(&*store, "change-log pruning", move || prune_log(prune_store.clone(), retention));
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
        signal.await;
        live.feed.close();
    };
    serve_connections(listener, app(state), shutdown).await;
    sweeper.abort();
    stale.abort();
    duty_sweep.abort();
    tasks.abort();
    photo_sweep.abort();
    linkage_jobs.abort();
    prune.abort();
    store.close().await;
    Ok(())
}

/// How long a client may take to send a request's headers: a connection that trickles them
/// (slowloris) is closed rather than held open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often field tasks are assigned (and overdue ones reassigned).
const TASKS_EVERY: Duration = Duration::from_secs(5);

/// How long a graceful shutdown waits for answers under way.
const DRAIN: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` and serves each with hyper, as `axum::serve` does, plus
/// what it cannot set: a header read timeout, no Nagle (a live-feed event or a small answer goes
/// out at once instead of waiting for the client's delayed acknowledgement, tens of
/// milliseconds), and the peer's address for per-client rate limits.
async fn serve_connections(listener: TcpListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("answers still under way after {} s; stopping anyway", DRAIN.as_secs());
    }
}

/// Registers the SIGINT and SIGTERM handlers at once (not when first polled) and returns the
/// future that ends when either arrives.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(int.take()) => {}, _ = wait(term.take()) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: draining in-flight requests");
    }
}

/// The simulator's client: requests through `router`, exactly as they come over the network.
pub fn router_client(router: axum::Router) -> crate::demo::simulate::Client {
    Arc::new(move |req| {
        use tower::ServiceExt;
        let router = router.clone();
        Box::pin(async move { router.oneshot(req).await.unwrap_or_else(|never| match never {}) })
    })
}
