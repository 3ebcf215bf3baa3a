//! Imports of a city's own data: a whole exported city back into empty stores of both kinds,
//! deliberately broken files (invalid polygons, mixed geometry types, wrong encodings, missing
//! CRS, overlapping grids, gaps, duplicate codes, unknown classes) whose report names each
//! problem while nothing is written, and a running server following an import at once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::files::{max_offset_m, write_layer};
use common::*;
use geo::{Geometry, MapCoords};
use onemap::export::import::{ImportOptions, Report, run};
use onemap::export::read::ReadOptions;
use onemap::index::Record;
use onemap::model::*;
use onemap::store::schema::Filter;
use onemap::store::{Store, select};

const BIN: &str = env!("CARGO_BIN_EXE_onemap");

/// The administrative layers and dictionaries of `city`, without grids or anything on them.
fn admin_only(city: &City) -> City {
    City {
        districts: city.districts.clone(),
        streets: city.streets.clone(),
        communities: city.communities.clone(),
        departments: city.departments.clone(),
        responsibilities: city.responsibilities.clone(),
        component_classes: city.component_classes.clone(),
        event_classes: city.event_classes.clone(),
        ..Default::default()
    }
}

async fn open_with(location: &str, city: &City) -> std::sync::Arc<dyn Store> {
    let store = onemap::store::open(location).await.unwrap();
    store.write_city(city, &|_, _| {}).await.unwrap();
    store
}

async fn import(store: &dyn Store, collection: &'static str, path: &Path, opts: &ImportOptions) -> Report {
    let c = onemap::model::Collection::feature(collection).expect("a collection");
    run(store, c, path, opts, &|_, _, _| {}).await.unwrap_or_else(|e| panic!("import {collection}: {e}"))
}

fn reasons(r: &Report) -> Vec<String> {
    r.rejected.iter().map(|x| format!("{}: {}", x.feature, x.reason)).collect()
}

async fn export(store: &dyn Store, collection: &str, path: &Path, query: &[(&str, &str)]) {
    let params = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let c = onemap::export::collection(collection).unwrap();
    onemap::export::export_from_store(store, c, &params, path).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_city_imports_back_into_empty_stores() {
    let city = small_city();
    let source = open_with(&fresh_gpkg("import-source"), city).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n);
    // Each layer in another format and CRS, as deliveries come.
    export(&*source, "districts", &file("districts.gpkg"), &[("format", "gpkg")]).await;
    export(&*source, "streets", &file("streets.geojson"), &[("format", "geojson"), ("crs", "EPSG:3857")]).await;
    export(&*source, "communities", &file("communities.fgb"), &[("format", "fgb"), ("crs", "EPSG:4539")]).await;
    export(&*source, "grids", &file("grids.zip"), &[("format", "shp"), ("crs", "EPSG:4539")]).await;
    export(&*source, "components", &file("components.gpkg"), &[("format", "gpkg")]).await;
    export(&*source, "cases", &file("cases.csv"), &[("format", "csv"), ("crs", "gcj02")]).await;
    export(&*source, "sensors", &file("sensors.kml"), &[("format", "kml")]).await;
    source.close().await;
    for (label, location) in [("gpkg", fresh_gpkg("import-target")), ("postgis", fresh_pg("onemap_t_import_rt").await)]
    {
        let store = onemap::store::open(&location).await.unwrap();
        let opts = ImportOptions::default();
        for (collection, name) in [
            ("districts", "districts.gpkg"),
            ("streets", "streets.geojson"),
            ("communities", "communities.fgb"),
            ("grids", "grids.zip"),
            ("components", "components.gpkg"),
        ] {
            let r = import(&*store, collection, &file(name), &opts).await;
            assert!(r.rejected.is_empty(), "{label} {collection}: {:?}", reasons(&r));
            assert!(r.seq.is_some(), "{label} {collection} written");
        }
        // The CSV's WKT carries no CRS: it is GCJ-02, as the command line would say.
        let gcj = ImportOptions {
            read: ReadOptions { crs: Some("gcj02".into()), ..Default::default() },
            ..Default::default()
        };
        let r = import(&*store, "cases", &file("cases.csv"), &gcj).await;
        assert!(r.rejected.is_empty(), "{label} cases: {:?}", reasons(&r));
        let r = import(&*store, "sensors", &file("sensors.kml"), &opts).await;
        assert!(r.rejected.is_empty(), "{label} sensors: {:?}", reasons(&r));

        let back = store.load_city(&|_, _| {}).await.unwrap();
        assert_eq!(back.districts.len(), city.districts.len());
        assert_eq!(back.streets.len(), city.streets.len());
        assert_eq!(back.communities.len(), city.communities.len());
        assert_eq!(back.grids.len(), city.grids.len(), "{label}");
        assert_eq!(back.components.len(), city.components.len(), "{label}");
        assert_eq!(back.cases.len(), city.cases.len(), "{label}");
        assert_eq!(back.sensors.len(), city.sensors.len(), "{label}");
        let grids: HashMap<&str, &Grid> = city.grids.iter().map(|g| (g.code.as_str(), g)).collect();
        for g in &back.grids {
            let original = grids[g.code.as_str()];
            assert_eq!(g.name, original.name, "Chinese names through a Shapefile");
            assert_eq!(g.community_code, original.community_code, "hierarchy rebuilt");
            assert!(max_offset_m(&g.geometry(), &original.geometry()) < 0.01, "{label} {}: within 1 cm", g.code);
            assert!(
                (g.area_m2 - original.area_m2).abs() / original.area_m2 < 0.01,
                "area computed: {} vs {}",
                g.area_m2,
                original.area_m2
            );
        }
        let components: HashMap<&str, &Component> = city.components.iter().map(|c| (c.code.as_str(), c)).collect();
        for c in &back.components {
            let o = components[c.code.as_str()];
            assert_eq!(
                (&c.name, &c.status, &c.owner_dept, &c.grid_code, c.survey_date),
                (&o.name, &o.status, &o.owner_dept, &o.grid_code, o.survey_date)
            );
        }
        // Cases get new ids, keep their content, and start their history with the import.
        let mut wanted: Vec<(String, String, i64)> = city
            .cases
            .iter()
            .map(|c| (c.class_code.to_string(), c.status.to_string(), c.reported_at.timestamp()))
            .collect();
        let mut got: Vec<(String, String, i64)> = back
            .cases
            .iter()
            .map(|c| (c.class_code.to_string(), c.status.to_string(), c.reported_at.timestamp()))
            .collect();
        wanted.sort();
        got.sort();
        assert_eq!(got, wanted, "{label}");
        // Each case against the original with its content (the export writes in the index's
        // spatial order, not the generator's).
        let mut originals: HashMap<(String, i64, String), Vec<Geometry<f64>>> = HashMap::new();
        for c in &city.cases {
            let key = (c.class_code.to_string(), c.reported_at.timestamp(), c.description.to_string());
            originals.entry(key).or_default().push(c.geometry());
        }
        let moved = back
            .cases
            .iter()
            .map(|a| {
                let key = (a.class_code.to_string(), a.reported_at.timestamp(), a.description.to_string());
                let candidates =
                    originals.get(&key).unwrap_or_else(|| panic!("{label}: case {} has no original", a.id));
                candidates.iter().map(|b| max_offset_m(&a.geometry(), b)).fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max);
        assert!(moved < 0.05, "{label}: GCJ-02 undone to {moved} m");
        let steps: Vec<CaseStep> =
            onemap::store::find(&*store, "case_id", onemap::store::schema::Val::Int(back.cases[0].id)).await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].action, "import");
        store.close().await;
    }
}

/// A unit-grid square of `side` degrees at (x, y).
fn square(x: f64, y: f64, side: f64) -> Geometry<f64> {
    geo::Polygon::new(vec![(x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)].into(), vec![]).into()
}

fn row(code: &str, name: &str) -> Vec<Option<String>> {
    vec![Some(code.to_string()), Some(name.to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_grids_are_named_one_by_one_and_nothing_is_written() {
    let city = small_city();
    let c0 = &city.communities[0];
    let mine: Vec<&Grid> = city.grids.iter().filter(|g| g.community_code == c0.code).collect();
    assert!(mine.len() > 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grids.geojson");
    let new_code = |s: &str| format!("{}{s}", c0.code);
    let g1 = mine[1].geometry();
    let shifted = g1.map_coords(|c| geo::coord! { x: c.x + 0.0002, y: c.y });
    let (x, y) = {
        use geo::InteriorPoint;
        let p = mine[3].geom.interior_point().unwrap();
        (p.x(), p.y())
    };
    let bowtie: Geometry<f64> = geo::Polygon::new(
        vec![(x, y), (x + 0.0005, y + 0.0005), (x + 0.0005, y), (x, y + 0.0005), (x, y)].into(),
        vec![],
    )
    .into();
    // Every grid of the community but the third (a gap), then the broken ones.
    let mut features: Vec<(Vec<Option<String>>, Geometry<f64>)> =
        mine.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, g)| (row(&g.code, &g.name), g.geometry())).collect();
    features.push((row(&new_code("901"), "自相交"), bowtie));
    features.push((row(&new_code("902"), "点"), geo::Point::new(x, y).into()));
    features.push((row(&mine[0].code, "重复"), mine[0].geometry()));
    features.push((row("12AB", "坏编码"), square(x + 1.0, y + 1.0, 0.001)));
    features.push((row("999999999999001", "无社区"), square(x + 1.0, y + 1.0, 0.001)));
    features.push((row(&new_code("903"), "重叠"), shifted));
    write_layer(path.to_str().unwrap(), "GeoJSON", Some(4326), &[], &["code", "name"], &features);

    for location in [fresh_gpkg("import-broken"), fresh_pg("onemap_t_import_broken").await] {
        let store = open_with(&location, &admin_only(city)).await;
        store.close().await;
        let out =
            Command::new(BIN).args(["import", "grids", path.to_str().unwrap(), "--store", &location]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "rejections fail the command:\n{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was imported"));
        let line = |needle: &str, reason: &str| {
            assert!(
                stdout.lines().any(|l| l.starts_with("rejected") && l.contains(needle) && l.contains(reason)),
                "no rejection of {needle} for {reason:?} in:\n{stdout}"
            );
        };
        line(&new_code("901"), "invalid geometry");
        line(&new_code("902"), "wrong geometry type Point");
        line(&mine[0].code, "appears earlier in the file");
        line("12AB", "bad code");
        line("999999999999001", "unknown community 999999999999");
        line(&new_code("903"), "overlaps unit grid");
        line("(community)", &format!("community {}", c0.code));
        line("(community)", "gap");
        let store = onemap::store::open(&location).await.unwrap();
        assert!(select::<Grid>(&*store, Filter::All).await.unwrap().is_empty(), "nothing half-imported");
        assert_eq!(store.log_bounds().await.unwrap(), (0, 0), "nothing logged");
        store.close().await;

        // With --skip-invalid the good grids go in and the report still names the rest.
        let out = Command::new(BIN)
            .args(["import", "grids", path.to_str().unwrap(), "--store", &location, "--skip-invalid"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("overlaps unit grid"), "{stdout}");
        let store = onemap::store::open(&location).await.unwrap();
        let stored = select::<Grid>(&*store, Filter::All).await.unwrap();
        assert_eq!(stored.len(), mine.len() - 1, "the community's grids but the missing one");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapefile_encodings_are_detected_declared_or_refused() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    let shp = dir.path().join("grids.shp");
    let features: Vec<_> = city.grids.iter().map(|g| (row(&g.code, &g.name), g.geometry())).collect();
    // GBK text, as survey institutes deliver it, and then no .cpg to say so.
    write_layer(shp.to_str().unwrap(), "ESRI Shapefile", Some(4490), &["ENCODING=CP936"], &["code", "name"], &features);
    let dbf = std::fs::read(dir.path().join("grids.dbf")).unwrap();
    assert!(!dbf.windows(3).any(|w| w == "网".as_bytes()), "the DBF really holds GBK, not UTF-8");
    let _ = std::fs::remove_file(dir.path().join("grids.cpg"));
    let location = fresh_gpkg("import-encoding");
    let store = open_with(&location, &admin_only(city)).await;

    // A .cpg that lies (UTF-8 for GBK bytes): every name is refused and nothing written.
    std::fs::write(dir.path().join("grids.cpg"), "UTF-8").unwrap();
    let r = import(&*store, "grids", &shp, &ImportOptions::default()).await;
    assert_eq!(r.rejected.len(), city.grids.len(), "{:?}", &reasons(&r)[..3]);
    assert!(r.rejected[0].reason.contains("encoding"), "{:?}", r.rejected[0]);
    assert!(r.seq.is_none());
    // --encoding overrides the .cpg.
    let gbk = ImportOptions {
        read: ReadOptions { encoding: Some("GBK".into()), ..Default::default() },
        ..Default::default()
    };
    let dry = import(&*store, "grids", &shp, &ImportOptions { skip_invalid: false, ..gbk.clone() }).await;
    assert!(dry.rejected.is_empty(), "{:?}", reasons(&dry));
    assert_eq!(select::<Grid>(&*store, Filter::All).await.unwrap().len(), city.grids.len());

    // No .cpg at all: detected as GBK, with a warning.
    let location = fresh_gpkg("import-encoding-2");
    let store = open_with(&location, &admin_only(city)).await;
    std::fs::remove_file(dir.path().join("grids.cpg")).unwrap();
    let r = import(&*store, "grids", &shp, &ImportOptions::default()).await;
    assert!(r.rejected.is_empty(), "{:?}", reasons(&r));
    assert!(r.warnings.iter().any(|w| w.contains("GBK")), "{:?}", r.warnings);
    let names: HashMap<String, String> = select::<Grid>(&*store, Filter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.code.to_string(), g.name.to_string()))
        .collect();
    for g in &city.grids {
        assert_eq!(names[g.code.as_str()], g.name.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_crs_is_placed_by_its_coordinates_or_refused() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    let features = |epsg: u32| -> Vec<_> {
        city.grids
            .iter()
            .map(|g| (row(&g.code, &g.name), common::files::reproject(&g.geometry(), 4490, epsg)))
            .collect()
    };
    let write = |name: &str, epsg: u32| {
        let p = dir.path().join(name);
        write_layer(p.to_str().unwrap(), "ESRI Shapefile", Some(epsg), &[], &["code", "name"], &features(epsg));
        std::fs::remove_file(p.with_extension("prj")).unwrap();
        p
    };
    let plain = write("gk.shp", 4539);
    let prefixed = write("gk_zone.shp", 4518);
    let lonlat = write("lonlat.shp", 4490);

    let location = fresh_gpkg("import-crs");
    let store = open_with(&location, &admin_only(city)).await;
    // Gauss-Krüger metres without a zone: cannot be placed.
    let err = run(&*store, onemap::model::Collection::Grids, &plain, &ImportOptions::default(), &|_, _, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("declares no CRS") && err.to_string().contains("--crs"), "{err}");
    assert!(select::<Grid>(&*store, Filter::All).await.unwrap().is_empty());
    // The same with --crs.
    let given = ImportOptions {
        read: ReadOptions { crs: Some("EPSG:4539".into()), ..Default::default() },
        ..Default::default()
    };
    let r = import(&*store, "grids", &plain, &given).await;
    assert!(r.rejected.is_empty() && r.seq.is_some(), "{:?}", reasons(&r));
    let stored = select::<Grid>(&*store, Filter::All).await.unwrap();
    let by_code: HashMap<&str, &Grid> = city.grids.iter().map(|g| (g.code.as_str(), g)).collect();
    for g in &stored {
        assert!(max_offset_m(&g.geometry(), &by_code[g.code.as_str()].geometry()) < 0.01);
    }
    // Zone-prefixed eastings name their zone; lon/lat in China is CGCS2000.
    for (file, crs) in [(&prefixed, "4518"), (&lonlat, "4490")] {
        let store = open_with(&fresh_gpkg("import-crs-2"), &admin_only(city)).await;
        let r = import(&*store, "grids", file, &ImportOptions::default()).await;
        assert!(r.rejected.is_empty(), "{:?}", reasons(&r));
        assert!(r.crs.contains(crs), "{}", r.crs);
        let stored = select::<Grid>(&*store, Filter::All).await.unwrap();
        assert!(max_offset_m(&stored[0].geometry(), &by_code[stored[0].code.as_str()].geometry()) < 0.01);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_from_a_gcj02_csv_with_standard_field_names() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    let location = fresh_gpkg("import-csv");
    let mut base = admin_only(city);
    base.grids = city.grids.clone();
    let store = open_with(&location, &base).await;
    let points: Vec<&Component> =
        city.components.iter().filter(|c| matches!(c.geom, Shape::Point(_))).take(50).collect();
    let mut csv = String::from("ObjID,ObjName,ObjState,BGID,ORDate,lon,lat\n");
    for c in &points {
        let Shape::Point(p) = c.geom else { unreachable!() };
        let (x, y) = onemap::geo::china::wgs84_to_gcj02(p.x(), p.y());
        let date = c.survey_date.map(|d| d.format("%Y/%m/%d").to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{},{date},{x},{y}\n",
            c.code,
            c.name,
            c.status,
            c.grid_code.as_deref().unwrap_or("")
        ));
    }
    let (x, y) = (points[0].geometry().coords_iter_first().0, points[0].geometry().coords_iter_first().1);
    csv.push_str(&format!("5402029999000001,未知部件,完好,,,{x},{y}\n"));
    csv.push_str(&format!("5402020101999999,坏状态,broken,,,{x},{y}\n"));
    let path = dir.path().join("components.csv");
    std::fs::write(&path, csv).unwrap();
    let gcj =
        ImportOptions { read: ReadOptions { crs: Some("gcj02".into()), ..Default::default() }, ..Default::default() };
    let r = import(&*store, "components", &path, &gcj).await;
    let why = reasons(&r);
    assert_eq!(r.rejected.len(), 2, "{why:?}");
    assert!(
        why.iter().any(|w| w.contains("5402029999000001") && w.contains("unknown component class 9999")),
        "{why:?}"
    );
    assert!(why.iter().any(|w| w.contains("5402020101999999") && w.contains("status \"broken\"")), "{why:?}");
    assert!(select::<Component>(&*store, Filter::All).await.unwrap().is_empty(), "all or nothing");
    let r = import(&*store, "components", &path, &ImportOptions { skip_invalid: true, ..gcj }).await;
    assert_eq!(r.accepted, points.len());
    let stored: HashMap<String, Component> =
        select::<Component>(&*store, Filter::All).await.unwrap().into_iter().map(|c| (c.code.to_string(), c)).collect();
    for c in &points {
        let s = &stored[c.code.as_str()];
        assert!(max_offset_m(&s.geometry(), &c.geometry()) < 0.05, "GCJ-02 offset undone");
        assert_eq!(
            (&s.name, &s.status, &s.grid_code, s.survey_date),
            (&c.name, &c.status, &c.grid_code, c.survey_date)
        );
        assert_eq!(s.class_code, c.class_code, "class from the code");
    }
}

trait FirstCoord {
    fn coords_iter_first(&self) -> (f64, f64);
}
impl FirstCoord for Geometry<f64> {
    fn coords_iter_first(&self) -> (f64, f64) {
        use geo::CoordsIter;
        let c = self.coords_iter().next().unwrap();
        (c.x, c.y)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_follows_an_import() {
    let city = small_city();
    // The city without the components of its first grid: those arrive by import.
    let grid = &city.grids[0];
    let mut base = city.clone();
    let (arriving, kept): (Vec<Component>, Vec<Component>) =
        city.components.iter().cloned().partition(|c| c.grid_code.as_deref() == Some(grid.code.as_str()));
    base.components = kept;
    assert!(!arriving.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arriving.geojson");
    let fields = ["code", "class_code", "name", "status"];
    let features: Vec<_> = arriving
        .iter()
        .map(|c| {
            (
                vec![
                    Some(c.code.to_string()),
                    Some(c.class_code.to_string()),
                    Some(c.name.to_string()),
                    Some(c.status.to_string()),
                ],
                c.geometry(),
            )
        })
        .collect();
    write_layer(file.to_str().unwrap(), "GeoJSON", Some(4326), &[], &fields, &features);
    for location in [fresh_gpkg("import-live"), fresh_pg("onemap_t_import_live").await] {
        let state = seeded_state(&location, &base).await;
        let app = onemap::app(state.clone().with_public_read());
        let mut events = EventStream::open(&app).await;
        let before = state.index.components.read().len();
        let out = Command::new(BIN)
            .args(["import", "components", file.to_str().unwrap(), "--store", &location])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let e = events.wait_for("tiles.invalidated", |d| d["layer"] == "components").await;
        let bbox: Vec<f64> = e["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let ge = grid.envelope();
        assert!(bbox[0] <= ge.upper()[0] && bbox[2] >= ge.lower()[0], "the invalidated area covers the grid: {bbox:?}");
        assert_eq!(state.index.components.read().len(), before + arriving.len());
        let r = get(&app, &format!("/collections/components/items/{}", arriving[0].code)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["properties"]["grid_code"], grid.code.as_str(), "placed in its grid by geometry");
        state.live.feed.close();
        state.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grids_drawn_in_cad_import_by_their_labels() {
    let city = small_city();
    let source = open_with(&fresh_gpkg("import-dxf-source"), city).await;
    let dir = tempfile::tempdir().unwrap();
    let dxf = dir.path().join("grids.dxf");
    export(&*source, "grids", &dxf, &[("format", "dxf"), ("crs", "EPSG:4539")]).await;
    let store = open_with(&fresh_gpkg("import-dxf"), &admin_only(city)).await;
    // A drawing has no CRS: the planner says which zone it is in.
    let opts = ImportOptions {
        read: ReadOptions { crs: Some("EPSG:4539".into()), ..Default::default() },
        ..Default::default()
    };
    let r = import(&*store, "grids", &dxf, &opts).await;
    assert!(r.rejected.is_empty(), "{:?}", reasons(&r));
    let stored = select::<Grid>(&*store, Filter::All).await.unwrap();
    assert_eq!(stored.len(), city.grids.len());
    let by_code: HashMap<&str, &Grid> = city.grids.iter().map(|g| (g.code.as_str(), g)).collect();
    for g in &stored {
        let o = by_code[g.code.as_str()];
        assert_eq!(g.name, o.name, "the label's Chinese name");
        assert!(max_offset_m(&g.geometry(), &o.geometry()) < 0.01);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hierarchy_by_code_and_by_geometry_are_compared() {
    let city = small_city();
    let (a, b) = (&city.communities[0], &city.communities[1]);
    // A grid lying in community b whose code says community a.
    let g = city.grids.iter().find(|g| g.community_code == b.code).unwrap();
    let code = format!("{}950", a.code);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.geojson");
    write_layer(
        path.to_str().unwrap(),
        "GeoJSON",
        Some(4326),
        &[],
        &["code", "name"],
        &[(row(&code, "错位网格"), g.geometry())],
    );
    // By code the grid belongs to a, which it lies outside of: refused. By geometry it belongs to b.
    for (hierarchy, want) in
        [(onemap::export::import::Hierarchy::Code, None), (onemap::export::import::Hierarchy::Geometry, Some(&b.code))]
    {
        let store = open_with(&fresh_gpkg("import-hierarchy"), &admin_only(city)).await;
        // One grid leaves its communities' gaps: reported, and skipped past with --skip-invalid.
        let opts = ImportOptions { hierarchy, skip_invalid: true, ..Default::default() };
        let r = import(&*store, "grids", &path, &opts).await;
        assert!(
            r.rejected.iter().all(|x| x.reason.contains("gap") || x.reason.contains("outside")),
            "{:?}",
            reasons(&r)
        );
        let outside = r.rejected.iter().any(|x| x.reason.contains(&format!("outside its community {}", a.code)));
        assert_eq!(outside, want.is_none(), "{hierarchy:?} {:?}", reasons(&r));
        let warning = format!("{code}: community by code is {}, by geometry {}", a.code, b.code);
        assert!(r.warnings.contains(&warning), "{:?}", r.warnings);
        let stored = select::<Grid>(&*store, Filter::All).await.unwrap();
        assert_eq!(stored.first().map(|g| &g.community_code), want, "{hierarchy:?} {:?}", reasons(&r));
    }
}

/// Field staff from a CSV of points: role, community and beat (grids separated by `;` or `,`)
/// checked against the city, all or nothing unless `--skip-invalid`.
#[tokio::test]
async fn staff_import_from_a_csv_checks_roles_communities_and_grids() {
    use geo::InteriorPoint;
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&fresh_gpkg("import-staff"), &{
        let mut base = admin_only(city);
        base.grids = city.grids.clone();
        base
    })
    .await;
    let (g1, g2) = (&city.grids[0], &city.grids[1]);
    let p = g1.geom.interior_point().unwrap();
    let community = &city.communities[0].code;
    let mut csv = String::from("code,name,role,dept_code,community_code,grids,lon,lat\n");
    csv.push_str(&format!("IMP-1,张三,supervisor,,{community},,{},{}\n", p.x(), p.y()));
    csv.push_str(&format!("IMP-2,李四,collector,,,\"{};{}\",{},{}\n", g1.code, g2.code, p.x(), p.y()));
    csv.push_str(&format!("IMP-3,王五,boss,,,{},{},{}\n", g1.code, p.x(), p.y()));
    csv.push_str(&format!("IMP-4,赵六,supervisor,,,999999999999999,{},{}\n", p.x(), p.y()));
    csv.push_str(&format!("IMP-5,钱七,worker,,,{},{},{}\n", g1.code, p.x(), p.y()));
    let path = dir.path().join("staff.csv");
    std::fs::write(&path, csv).unwrap();
    let opts = ImportOptions {
        read: ReadOptions { crs: Some("cgcs2000".into()), ..Default::default() },
        ..Default::default()
    };
    let r = import(&*store, "staff", &path, &opts).await;
    let why = reasons(&r);
    assert_eq!(r.rejected.len(), 3, "{why:?}");
    assert!(why.iter().any(|w| w.contains("IMP-3") && w.contains("unknown staff role")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("IMP-4") && w.contains("unknown unit grid")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("IMP-5") && w.contains("dept_code")), "{why:?}");
    assert!(select::<Staff>(&*store, Filter::All).await.unwrap().is_empty(), "all or nothing");
    let r = import(&*store, "staff", &path, &ImportOptions { skip_invalid: true, ..opts }).await;
    assert_eq!(r.accepted, 2);
    let stored: HashMap<String, Staff> =
        select::<Staff>(&*store, Filter::All).await.unwrap().into_iter().map(|s| (s.code.to_string(), s)).collect();
    assert_eq!(stored["IMP-1"].community_code.as_deref(), Some(community.as_str()));
    assert_eq!(stored["IMP-2"].grids.as_ref(), [g1.code.clone(), g2.code.clone()]);
    assert_eq!(stored["IMP-2"].role, StaffRole::Collector);
    assert!((stored["IMP-1"].geom.x() - p.x()).abs() < 1e-9);
}

/// Cameras (视频监控) from a CSV of points: a direction in degrees (0-360) if given, the unit
/// grid located from the point; then exported back with the same fields.
#[tokio::test]
async fn camera_import_checks_directions_and_locates_grids() {
    use geo::InteriorPoint;
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&fresh_gpkg("import-cameras"), &{
        let mut base = admin_only(city);
        base.grids = city.grids.clone();
        base
    })
    .await;
    let g = &city.grids[3];
    let p = g.geom.interior_point().unwrap();
    let mut csv = String::from("code,name,stream_url,direction,lon,lat\n");
    csv.push_str(&format!("CAM-1,隧道口,rtsp://video.local/cam1,135,{},{}\n", p.x(), p.y()));
    csv.push_str(&format!("CAM-2,路口,,,{},{}\n", p.x(), p.y()));
    csv.push_str(&format!("CAM-3,坏方向,,400,{},{}\n", p.x(), p.y()));
    let path = dir.path().join("cameras.csv");
    std::fs::write(&path, csv).unwrap();
    let opts = ImportOptions {
        read: ReadOptions { crs: Some("cgcs2000".into()), ..Default::default() },
        skip_invalid: true,
        ..Default::default()
    };
    let r = import(&*store, "cameras", &path, &opts).await;
    let why = reasons(&r);
    assert_eq!((r.accepted, r.rejected.len()), (2, 1), "{why:?}");
    assert!(why.iter().any(|w| w.contains("CAM-3") && w.contains("direction")), "{why:?}");
    let stored: HashMap<String, onemap::model::Camera> = select::<onemap::model::Camera>(&*store, Filter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.code.to_string(), c))
        .collect();
    assert_eq!(stored["CAM-1"].direction, Some(135.0));
    assert_eq!(stored["CAM-1"].stream_url.as_deref(), Some("rtsp://video.local/cam1"));
    assert_eq!(stored["CAM-2"].direction, None, "no direction stays none");
    assert_eq!(stored["CAM-1"].grid_code.as_deref(), Some(g.code.as_str()));
    let out = dir.path().join("cameras.geojson");
    export(&*store, "cameras", &out, &[("format", "geojson")]).await;
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("CAM-1") && text.contains("rtsp://video.local/cam1") && text.contains("135"), "{text}");
}
