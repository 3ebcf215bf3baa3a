//! In-process locate against a Chongqing-scale grid layer (65,000 unit grids): how many points
//! per second one core resolves to a unit grid through the live R-tree with exact refinement.
//!
//! Run: `cargo bench --bench locate`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geo::BoundingRect;
use onemap::demo::{DemoParams, generate};
use onemap::index::CityIndex;
use rand::{Rng, SeedableRng};

fn city_index() -> (CityIndex, [f64; 4]) {
    // Grids only: components and cases do not take part in locate.
    let mut p = DemoParams::chongqing();
    p.components = 0;
    p.cases = 0;
    p.sensors = 0;
    let city = generate(&p);
    let b = city
        .districts
        .iter()
        .filter_map(|d| d.geom.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
            )
        })
        .expect("a city has districts");
    eprintln!("{} grids", city.grids.len());
    (CityIndex::from_city(city), [b.min().x, b.min().y, b.max().x, b.max().y])
}

fn bench(c: &mut Criterion) {
    let (index, b) = city_index();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let points: Vec<(f64, f64)> =
        (0..100_000).map(|_| (rng.random_range(b[0]..b[2]), rng.random_range(b[1]..b[3]))).collect();
    let hits = points.iter().filter(|&&(x, y)| onemap::grids::grid_code_at(&index, x, y).is_some()).count();
    eprintln!("{hits} of {} random points fall in a grid", points.len());

    let mut g = c.benchmark_group("locate_65k_grids");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.sample_size(20);
    // The hot path: point -> grid under one read lock, as the batch endpoint does.
    g.bench_function("grid_at_point", |bch| {
        bch.iter(|| {
            let grids = index.grids.read();
            let mut n = 0usize;
            for &(x, y) in &points {
                if grids.at_point(black_box(x), black_box(y)).is_some() {
                    n += 1;
                }
            }
            n
        })
    });
    // The full answer a field app gets: grid, parents and responsible departments.
    g.bench_function("locate_with_hierarchy", |bch| {
        bch.iter(|| onemap::grids::locate_many(&index, black_box(&points)).iter().filter(|l| l.is_some()).count())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
