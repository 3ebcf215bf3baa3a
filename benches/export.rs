//! Exports and imports at city scale: one million components from the live index to a
//! GeoPackage and to a FlatGeobuf (aim: under 15 s each), and 65,000 unit grids imported from
//! a Shapefile with every check (geometry, codes, parents, overlaps, gaps) into a GeoPackage
//! store (aim: under 20 s).
//!
//! Run: `cargo bench --bench export` (or `scripts/bench export`)

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use onemap::demo::{DemoParams, generate};
use onemap::export::import::{ImportOptions, run};
use onemap::export::{ExportRequest, export_index};
use onemap::index::CityIndex;
use onemap::index::query::Params;
use onemap::model::City;

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = DemoParams::chongqing();
    p.components = 1_000_000;
    p.cases = 0;
    p.sensors = 0;
    let city = generate(&p);
    eprintln!("{} grids, {} components", city.grids.len(), city.components.len());

    // The admin layers and dictionaries alone: the store grids are imported into.
    let admin = City {
        districts: city.districts.clone(),
        streets: city.streets.clone(),
        communities: city.communities.clone(),
        departments: city.departments.clone(),
        component_classes: city.component_classes.clone(),
        event_classes: city.event_classes.clone(),
        ..Default::default()
    };
    let template = dir.path().join("admin.gpkg");
    rt.block_on(async {
        let store = onemap::store::open(template.to_str().unwrap()).await.unwrap();
        store.write_city(&admin, &|_, _| {}).await.unwrap();
        store.close().await;
    });
    let index = CityIndex::from_city(city);
    let shapefile = dir.path().join("grids.zip");
    // The delivery as a survey institute makes it: in the city's own Gauss-Krüger zone.
    let lon = index.grids.read().bbox().map(|b| (b[0] + b[2]) / 2.0).unwrap();
    let zone = format!("EPSG:{}", onemap::geo::gauss_kruger::GaussKruger::for_lon(lon).epsg().unwrap());
    let req =
        ExportRequest::parse(onemap::model::Collection::Grids, &params(&[("format", "shp"), ("crs", &zone)])).unwrap();
    export_index(&index, onemap::model::Collection::Grids, &req, &shapefile).unwrap();

    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    for format in ["gpkg", "fgb"] {
        let req = ExportRequest::parse(onemap::model::Collection::Components, &params(&[("format", format)])).unwrap();
        let out = dir.path().join(format!("components.{format}"));
        g.bench_function(format!("1M components to {format}"), |b| {
            b.iter(|| {
                let _ = std::fs::remove_file(&out);
                assert_eq!(export_index(&index, onemap::model::Collection::Components, &req, &out).unwrap(), 1_000_000);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("import");
    g.sample_size(10);
    let mut n = 0;
    g.bench_function("65k grids from a Shapefile, validated", |b| {
        b.to_async(&rt).iter_batched(
            || {
                n += 1;
                let store = dir.path().join(format!("target-{n}.gpkg"));
                std::fs::copy(&template, &store).unwrap();
                store.display().to_string()
            },
            |store| import_grids(store, &shapefile),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

async fn import_grids(location: String, file: &Path) {
    let store = onemap::store::open(&location).await.unwrap();
    let r =
        run(&*store, onemap::model::Collection::Grids, file, &ImportOptions::default(), &|_, _, _| {}).await.unwrap();
    assert!(
        r.rejected.is_empty() && r.accepted > 60_000,
        "{}",
        r.render().lines().take(5).collect::<Vec<_>>().join("\n")
    );
    store.close().await;
    let _ = std::fs::remove_file(&location);
}

criterion_group!(benches, bench);
criterion_main!(benches);
