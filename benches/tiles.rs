//! Vector tiles: uncached rendering (MVT plus gzip, what a cache miss costs) of components,
//! cases and grids at z10, z12, z14 and z16 at the city's busiest spot, and a cached tile
//! served through the whole router.
//!
//! Run: `cargo bench --bench tiles` (the Shigatse demo city, generated in-process), or with
//! `ONEMAP_BENCH_STORE=var/bench/chongqing.gpkg` for the Chongqing-scale city that
//! `scripts/bench` writes.

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use onemap::geo::tile::{TileCoord, tiles_covering};
use onemap::index::Record;
use onemap::tiles::cache::Rendered;
use onemap::tiles::{TileLayer, render};
use tower::ServiceExt;

fn state(rt: &tokio::runtime::Runtime) -> onemap::AppState {
    rt.block_on(async {
        let location = onemap::server::bench_store("tiles").await.expect("bench store");
        onemap::server::start(&location, false, 256).await.expect("start")
    })
}

/// The centre of the busiest grid-sized area: the mean position of a sample of components.
fn busy_point(st: &onemap::AppState) -> [f64; 2] {
    let comps = st.index.components.read();
    let (mut x, mut y, mut n) = (0.0, 0.0, 0.0);
    for c in comps.iter().step_by(97) {
        let e = c.envelope();
        x += e.lower()[0];
        y += e.lower()[1];
        n += 1.0;
    }
    [x / n, y / n]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let st = state(&rt);
    let p = busy_point(&st);
    let mut g = c.benchmark_group("tile_render_uncached");
    g.sample_size(20);
    for layer in ["components", "cases", "grids"] {
        let tl = [TileLayer::find(layer).unwrap()];
        for z in [10u8, 12, 14, 16] {
            let t: TileCoord = tiles_covering([p[0], p[1], p[0], p[1]], z).next().unwrap();
            g.bench_function(format!("{layer}/z{z}"), |b| {
                b.iter(|| Rendered::new(render(&st.index, black_box(t), &tl, &[vec![]])))
            });
        }
    }
    g.finish();

    // A cache hit through the router: routing, metrics, cache lookup and the pre-gzipped body.
    let app = onemap::app(st.clone().with_public_read());
    let t = tiles_covering([p[0], p[1], p[0], p[1]], 14).next().unwrap();
    let uri = format!("/tiles/components/{}/{}/{}", t.z, t.x, t.y);
    let request = || Request::get(&uri).header("accept-encoding", "gzip").body(Body::empty()).unwrap();
    rt.block_on(async { app.clone().oneshot(request()).await.unwrap() });
    c.bench_function("tile_cached_via_router/components_z14", |b| {
        b.to_async(&rt).iter(|| async { app.clone().oneshot(request()).await.unwrap().status() })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
