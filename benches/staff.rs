//! Field staff at city scale: 5,000 members in a Chongqing-scale city (65,000 unit grids).
//! - nearest: the 5 nearest members on duty to a random point (what a task assignment asks);
//! - patrol: the coverage report of one day of 5,000 members at one position every 10 s (about
//!   2,900 positions and 60 grids each over an eight-hour shift, as the positions batches
//!   leave the tallies), read from a GeoPackage store and built per member, grid and community.
//!
//! Run: `cargo bench --bench staff`

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use onemap::demo::{DemoParams, generate};
use onemap::index::CityIndex;
use onemap::model::{CaseScope, PatrolDay, PatrolVisit, Staff, StaffRole};
use onemap::staff::patrol::{By, report};
use rand::{Rng, SeedableRng};

const STAFF: usize = 5_000;

/// The city's grids and 5,000 members spread over them, each given the 13 grids nearest their
/// start (a supervisor's beat), on duty.
fn city() -> CityIndex {
    let mut p = DemoParams::chongqing();
    p.components = 0;
    p.cases = 0;
    p.sensors = 0;
    let mut city = generate(&p);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let grids: Vec<(onemap::model::Str, geo::Point<f64>)> = city
        .grids
        .iter()
        .map(|g| {
            use geo::InteriorPoint;
            (g.code.clone(), g.geom.interior_point().expect("a grid has an inner point"))
        })
        .collect();
    city.staff = (0..STAFF)
        .map(|i| {
            let k = rng.random_range(0..grids.len() - 13);
            Staff {
                code: format!("B-{i:05}").into(),
                name: format!("监督员{i}").into(),
                role: StaffRole::Supervisor,
                dept_code: None,
                community_code: None,
                grids: grids[k..k + 13].iter().map(|g| g.0.clone()).collect::<Vec<_>>().into(),
                geom: grids[k].1,
                last_seen: Some(chrono::Utc::now()),
                on_duty: true,
                grid_code: Some(grids[k].0.clone()),
            }
        })
        .collect();
    eprintln!("{} grids, {} staff", city.grids.len(), city.staff.len());
    CityIndex::from_city(city)
}

/// A day's tallies: each member walked 2,880 positions over 60 grids, their own 13 and others.
fn tallies(index: &CityIndex, day: NaiveDate) -> (Vec<PatrolDay>, Vec<PatrolVisit>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let codes: Vec<onemap::model::Str> = index.grids.read().iter().map(|g| g.code.clone()).collect();
    let start = day.and_hms_opt(1, 0, 0).unwrap().and_utc().timestamp_millis();
    let (mut days, mut visits) = (Vec::new(), Vec::new());
    for s in index.staff.read().iter() {
        days.push(PatrolDay {
            day,
            staff: s.code.clone(),
            positions: 2_880,
            distance_m: rng.random_range(6_000.0..14_000.0),
            duty_s: 28_790.0,
            first_ms: start,
            last_ms: start + 28_790_000,
        });
        for k in 0..60 {
            let grid = if k < 13 { s.grids[k].clone() } else { codes[rng.random_range(0..codes.len())].clone() };
            visits.push(PatrolVisit {
                day,
                staff: s.code.clone(),
                grid,
                positions: 48,
                first_ms: start,
                last_ms: start + 1,
            });
        }
    }
    (days, visits)
}

fn bench(c: &mut Criterion) {
    let index = city();
    let b = index.grids.read().bbox().expect("grids");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let points: Vec<(f64, f64)> =
        (0..1_000).map(|_| (rng.random_range(b[0]..b[2]), rng.random_range(b[1]..b[3]))).collect();
    let mut g = c.benchmark_group("staff_5000");
    let mut i = 0;
    g.bench_function("nearest_5_on_duty", |bch| {
        bch.iter(|| {
            let (x, y) = points[i % points.len()];
            i += 1;
            onemap::staff::nearest(&index, black_box(x), black_box(y), 5, true, true)
        })
    });

    // The tallies in a GeoPackage store, read back as the endpoint does.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    let (days, visits) = tallies(&index, day);
    let path = std::env::temp_dir().join(format!("onemap-bench-staff-{}.gpkg", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = rt.block_on(async {
        let store = onemap::store::open(&path.display().to_string()).await.unwrap();
        let change = onemap::store::log::ChangeRow {
            collection: onemap::model::Collection::Staff,
            key: None,
            op: onemap::store::log::Op::Positions,
            event: None,
            data: Some(serde_json::json!({"positions": []})),
            bbox: Vec::new(),
        };
        store.insert_positions(&[], &days, &visits, change).await.unwrap();
        store
    });
    eprintln!("{} member-days, {} grid visits stored", days.len(), visits.len());
    g.sample_size(10);
    g.bench_function("patrol_read_tallies", |bch| bch.iter(|| rt.block_on(store.patrol(day)).unwrap()));
    let scope = CaseScope::all();
    for by in By::ALL {
        g.bench_function(format!("patrol_report_by_{}", by.as_str()), |bch| {
            bch.iter(|| report(&index, day, by, black_box(&days), black_box(&visits), &scope))
        });
    }
    g.finish();
    rt.block_on(store.close());
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
