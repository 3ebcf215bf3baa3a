//! Evaluation (综合评价): the store's counting query plus scoring and ranking, by department and
//! by unit grid, over the demo city's two years of cases (all 1 million of them at Chongqing
//! scale), over its last year and over its last month.
//!
//! Run: `cargo bench --bench evaluation` (the Shigatse demo city, written to a temporary
//! GeoPackage), or with `ONEMAP_BENCH_STORE=var/bench/chongqing.gpkg` or
//! `ONEMAP_BENCH_STORE=postgres://.../onemap_bench_cq` for the Chongqing-scale city that
//! `scripts/bench` writes. Only the store is opened: evaluation does not need the live index.

use std::hint::black_box;

use chrono::{NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use onemap::cases::evaluation::{By, Scoring, evaluate, period};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let store = rt.block_on(async {
        let location = onemap::server::bench_store("evaluation").await.expect("bench store");
        onemap::store::open(&location).await.expect("open store")
    });
    let kind = store.kind();
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    // The demo's cases run from 1 November 2024 to 31 October 2026.
    let periods = [
        ("two_years", day("2024-11-01"), day("2026-10-31")),
        ("year", day("2025-11-01"), day("2026-10-31")),
        ("month", day("2026-10-01"), day("2026-10-31")),
    ];
    let mut g = c.benchmark_group(format!("evaluation_{kind}"));
    g.sample_size(10);
    for (name, from, to) in periods {
        let p = period(from, to, beijing, Utc::now());
        for by in [By::Dept, By::Grid] {
            let counted = rt.block_on(store.evaluation_counts(by, p)).unwrap();
            let cases: i64 = counted.iter().map(|u| u.1.reports).sum();
            println!("{kind} {name} by {}: {} units, {cases} cases", by.as_str(), counted.len());
            g.bench_function(format!("{name}/{}", by.as_str()), |b| {
                b.iter(|| {
                    let units = rt.block_on(store.evaluation_counts(by, p)).unwrap();
                    black_box(evaluate(units, &Scoring::default()))
                })
            });
        }
    }
    g.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
