//! Analyses at Chongqing scale (65,000 unit grids, 10 million components, 1 million cases),
//! in-process on the live index: Gi* by unit grid including the counting, H3 resolution 9
//! counts and Gi*, kernel density of the million cases on a 50 m grid, box-select statistics of
//! a 5 km² polygon, and for reference local Moran, emerging hotspots, a ranking, and whole HTTP
//! answers (JSON of 65,000 polygons included).
//!
//! Run: `cargo bench --bench analysis` (or `scripts/bench analysis`). `ONEMAP_BENCH_SCALE=0.1`
//! (a factor of the Shigatse demo) runs it on a small city instead. The city is generated in
//! memory (about a minute): analyses read the index, not the store.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use onemap::analysis::units::UnitKind;
use onemap::analysis::{self, Analysis, Filter, Method, Source, boxstats, density};
use onemap::demo::{DemoParams, generate};
use onemap::index::CityIndex;

fn city() -> CityIndex {
    let params = match std::env::var("ONEMAP_BENCH_SCALE") {
        Ok(f) => DemoParams::scaled(f.parse().expect("ONEMAP_BENCH_SCALE is a number")),
        Err(_) => DemoParams::chongqing(),
    };
    let t = Instant::now();
    let city = generate(&params);
    eprintln!(
        "city: {} grids, {} components, {} cases, generated in {:.1} s",
        city.grids.len(),
        city.components.len(),
        city.cases.len(),
        t.elapsed().as_secs_f64()
    );
    CityIndex::from_city(city)
}

/// A square of about `km2` square kilometres at the centre of the city's extent.
fn square(index: &CityIndex, km2: f64) -> geo::MultiPolygon<f64> {
    let b = index.grids.read().bbox().unwrap();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let half = km2.sqrt() * 1000.0 / 2.0;
    let (dx, dy) = onemap::geo::metres_to_degrees(half, cy);
    geo::MultiPolygon(vec![geo::Rect::new((cx - dx, cy - dy), (cx + dx, cy + dy)).to_polygon()])
}

fn bench(c: &mut Criterion) {
    let index = Arc::new(city());
    let a = Analysis::default();
    let none = Filter::default();
    for kind in [UnitKind::Grid, UnitKind::H3(h3o::Resolution::Nine)] {
        let t = Instant::now();
        let units = a.units(&index, kind).unwrap();
        let built = t.elapsed();
        let t = Instant::now();
        let w = units.neighbours();
        let links: usize = (0..w.len()).map(|i| w.degree(i)).sum();
        eprintln!(
            "{}: {} units built in {:.0} ms, neighbours ({:.1} per unit) in {:.0} ms (once per hierarchy change)",
            kind.as_str(),
            units.len(),
            built.as_secs_f64() * 1e3,
            links as f64 / units.len() as f64,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let mut g = c.benchmark_group("analysis");
    g.sample_size(10);
    // One hotspot analysis, counting included.
    let run = |kind: UnitKind, filter: &Filter, method: Method, fdr: bool| {
        let units = a.units(&index, kind).unwrap();
        let (counts, outside) = analysis::count(&index, &units, Source::Cases, &[], filter);
        analysis::hotspots(units, Source::Cases, method, counts, outside, fdr)
    };
    let class_01 = Filter { class: Some("01".into()), ..Filter::default() };
    let h3_9 = UnitKind::H3(h3o::Resolution::Nine);
    for (name, kind, filter, method, fdr) in [
        ("gi_star_grid_with_counting", UnitKind::Grid, &none, Method::GiStar, false),
        ("gi_star_grid_fdr_filtered", UnitKind::Grid, &class_01, Method::GiStar, true),
        ("local_moran_grid_with_counting", UnitKind::Grid, &none, Method::LocalMoran, false),
        ("h3_res9_counts_and_gi_star", h3_9, &none, Method::GiStar, false),
    ] {
        g.bench_function(name, |b| b.iter(|| black_box(run(kind, filter, method, fdr))));
    }
    let extent = index.grids.read().bbox().unwrap();
    let mut points = Vec::new();
    analysis::for_each(&index, Source::Cases, &[], &none, |it| points.push((it.lon, it.lat)));
    let grid = density::kernel_density(&points, extent, 50.0, 500.0).unwrap();
    eprintln!("density: {} points on {} x {} cells of 50 m", points.len(), grid.cols, grid.rows);
    g.bench_function("kernel_density_all_cases_50m_bw500", |b| {
        b.iter(|| {
            let mut points = Vec::new();
            analysis::for_each(&index, Source::Cases, &[], &none, |it| points.push((it.lon, it.lat)));
            black_box(density::kernel_density(&points, extent, 50.0, 500.0).unwrap())
        })
    });
    let sel = square(&index, 5.0);
    let s = boxstats::stats(&index, &sel, boxstats::check(&sel, &index).unwrap(), &Default::default());
    eprintln!(
        "box-select 5 km²: {} components, {} cases, {} grids",
        s["components"]["total"], s["cases"]["total"], s["grids"]["count"]
    );
    g.bench_function("box_select_5km2", |b| {
        b.iter(|| black_box(boxstats::stats(&index, &sel, boxstats::check(&sel, &index).unwrap(), &Default::default())))
    });
    g.finish();

    // Whole HTTP answers through the router (JSON, no compression asked for).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let state = rt.block_on(async {
        let path = std::env::temp_dir().join(format!("onemap-bench-analysis-{}.gpkg", std::process::id()));
        let store = onemap::store::open(&path.display().to_string()).await.unwrap();
        let index = Arc::try_unwrap(index).ok().expect("the benches above are done with the index");
        onemap::AppState::new(store, index, 0, 0)
    });
    let app = onemap::app(state.with_public_read());
    let mut g = c.benchmark_group("analysis_http");
    g.sample_size(10);
    for (name, uri) in [
        ("hotspots_grid_gi_star", "/api/v1/analysis/hotspots?unit=grid&method=gi_star"),
        ("hotspots_grid_gi_star_no_geometry", "/api/v1/analysis/hotspots?unit=grid&method=gi_star&geometry=false"),
        ("hotspots_h3_9_gi_star", "/api/v1/analysis/hotspots?unit=h3:9&method=gi_star"),
        ("emerging_grid_12_months", "/api/v1/analysis/emerging?unit=grid&step=month&from=2025-11-01&to=2026-10-31"),
        ("ranking_grid_top10_month", "/api/v1/analysis/ranking?by=grid&top=10&from=2026-10-01&to=2026-10-31"),
    ] {
        let bytes = rt.block_on(request(&app, uri));
        eprintln!("{name}: {bytes} bytes");
        g.bench_function(name, |b| b.iter(|| rt.block_on(request(&app, uri))));
    }
    g.finish();
}

async fn request(app: &axum::Router, uri: &str) -> usize {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{uri}");
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

criterion_group!(benches, bench);
criterion_main!(benches);
