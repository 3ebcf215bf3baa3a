//! The change log: a client reconnecting with an old `Last-Event-ID` is replayed 100,000 events
//! from the store's log, on a GeoPackage and on PostGIS: paging through the log in process, and
//! the whole `GET /api/v1/events` stream through the router.
//!
//! `cargo bench --bench changelog` (PostGIS through `ONEMAP_TEST_PG`, as the tests).

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use onemap::demo::{DemoParams, generate};
use onemap::model::Collection;
use onemap::store::log::{ChangeRow, Op};
use sqlx::Connection;
use tower::ServiceExt;

const EVENTS: usize = 100_000;

async fn pg_location() -> String {
    let admin =
        std::env::var("ONEMAP_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for the bench");
    sqlx::query("DROP DATABASE IF EXISTS onemap_bench_log WITH (FORCE)").execute(&mut conn).await.unwrap();
    sqlx::query("CREATE DATABASE onemap_bench_log").execute(&mut conn).await.unwrap();
    format!("{}/onemap_bench_log", admin.rsplit_once('/').unwrap().0)
}

/// A store holding a small city and 100,000 logged case changes, each announcing the case as
/// the feed does (about 700 bytes of JSON), and the server state over it.
async fn seeded(location: &str) -> onemap::AppState {
    let city = generate(&DemoParams::scaled(0.05));
    let store = onemap::store::open(location).await.unwrap();
    store.write_city(&city, &|_, _| {}).await.unwrap();
    let bodies: Vec<serde_json::Value> = city.cases.iter().take(500).map(onemap::cases::to_json).collect();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(2_000) {
        let rows = chunk
            .iter()
            .map(|&i| {
                let body = &bodies[i % bodies.len()];
                let id = body["id"].to_string();
                ChangeRow::record(Collection::Cases, id, Op::Upsert, Some("case.updated"), Some(body.clone()))
            })
            .collect();
        store.append_changes(rows).await.unwrap();
    }
    store.close().await;
    onemap::server::start(location, false, 0).await.unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gpkg = std::env::temp_dir().join(format!("onemap-bench-log-{}.gpkg", std::process::id()));
    let _ = std::fs::remove_file(&gpkg);
    let locations = [("gpkg", gpkg.display().to_string()), ("postgis", rt.block_on(pg_location()))];
    let mut group = c.benchmark_group("replay_100k_events");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for (label, location) in locations {
        let st = rt.block_on(seeded(&location));
        group.bench_function(format!("{label}/log_pages"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut pages = st.live.replay(0).await.unwrap().expect("all retained");
                let mut n = 0;
                loop {
                    let page = pages.next_page().await.unwrap();
                    if page.is_empty() {
                        break;
                    }
                    n += page.len();
                }
                assert_eq!(n, EVENTS);
            })
        });
        let app = onemap::app(st.clone().with_public_read());
        group.bench_function(format!("{label}/sse_over_http"), |b| {
            b.to_async(&rt).iter(|| async {
                let req = Request::get("/api/v1/events").header("last-event-id", "0").body(Body::empty()).unwrap();
                let mut body = app.clone().oneshot(req).await.unwrap().into_body();
                let (mut ids, mut carry) = (0usize, String::new());
                while ids < EVENTS {
                    let frame = body.frame().await.expect("the stream stays open").unwrap();
                    let Ok(bytes) = frame.into_data() else { continue };
                    carry.push_str(&String::from_utf8_lossy(&bytes));
                    let cut = carry.rfind('\n').map_or(0, |i| i + 1);
                    ids += carry[..cut].lines().filter(|l| l.starts_with("id:")).count();
                    carry.drain(..cut);
                }
            })
        });
        st.live.feed.close();
        rt.block_on(st.store.close());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
