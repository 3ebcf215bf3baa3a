//! Exports, read back with GDAL as a planner's tools would: every format on both stores, the
//! same count, the attributes (Chinese intact in Shapefile and DXF), every vertex within 1 cm
//! after reprojection there and back; filters as in the features API; bad parameters refused.

mod common;

use std::collections::HashMap;

use common::files::{Feat, max_offset_m, read_all, reproject};
use common::*;
use geo::Geometry;
use onemap::index::Record;

/// The Gauss-Krüger zones of the demo city (88.9°E: zone 30, central meridian 90°E), without
/// and with the zone prefix.
const GK: u32 = 4539;
const GK_PREFIXED: u32 = 4518;

/// Each format with the CRS it is exported in here, so every CRS kind is crossed too.
const CASES: &[(&str, &str)] = &[
    ("gpkg", "EPSG:4539"),
    ("shp", "EPSG:4518"),
    ("geojson", "EPSG:3857"),
    ("fgb", "cgcs2000"),
    ("csv", "gcj02"),
    ("kml", "wgs84"),
    ("dxf", "EPSG:4539"),
];

/// The geometry of a file feature back in storage coordinates.
fn to_storage(g: &Geometry<f64>, crs: &str) -> Geometry<f64> {
    use geo::MapCoords;
    match crs {
        "gcj02" => g.map_coords(|c| {
            let (x, y) = onemap::geo::china::gcj02_to_wgs84(c.x, c.y);
            geo::coord! { x: x, y: y }
        }),
        "cgcs2000" | "wgs84" => g.clone(),
        epsg => reproject(g, epsg.trim_start_matches("EPSG:").parse().unwrap(), 4490),
    }
}

/// The property a (possibly shortened) Shapefile field holds, from the zip's fields.csv.
fn shapefile_names(zip_path: &str) -> HashMap<String, String> {
    let text = std::process::Command::new("unzip").args(["-p", zip_path, "fields.csv"]).output().unwrap();
    assert!(text.status.success(), "fields.csv in the zip");
    String::from_utf8(text.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (s, p) = l.split_once(',').unwrap();
            (s.to_string(), p.to_string())
        })
        .collect()
}

/// Checks one exported file against the records it should hold.
fn check_file<T: Record>(path: &str, format: &str, crs: &str, expected: &HashMap<String, &T>) {
    let (feats, srs) = read_all(path);
    let (shapes, labels): (Vec<&Feat>, Vec<&Feat>) = if format == "dxf" {
        feats.iter().partition(|f| !f.fields["Layer"].ends_with("注记"))
    } else {
        (feats.iter().collect(), Vec::new())
    };
    assert_eq!(shapes.len(), expected.len(), "{format} {crs}: feature count of {}", T::COLLECTION);
    for (layer, code) in &srs {
        let want = match crs {
            "cgcs2000" => 4490,
            "wgs84" | "gcj02" => 4326,
            e => e.trim_start_matches("EPSG:").parse().unwrap(),
        };
        // DXF and CSV carry no CRS (the file name says it); every other format names it.
        if !matches!(format, "dxf" | "csv") {
            assert_eq!(*code, Some(want), "{format}: CRS of layer {layer}");
        }
    }
    let names = if format == "shp" { shapefile_names(path) } else { HashMap::new() };
    let prop = |f: &Feat, p: &str| -> Option<String> {
        let field = names.iter().find(|(_, v)| v.as_str() == p).map(|(k, _)| k.clone()).unwrap_or(p.to_string());
        // KML keeps the name in its own Name element.
        f.fields
            .get(&field)
            .or_else(|| f.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(&field)).map(|(_, v)| v))
            .cloned()
    };
    let key_prop = if T::PROPERTIES.contains(&"code") { "code" } else { "id" };
    let mut worst: f64 = 0.0;
    let mut seen = std::collections::HashSet::new();
    for (i, f) in shapes.iter().enumerate() {
        // DXF has no attributes: its features come in the export's order, each followed by its
        // label, which names it.
        let key = if format == "dxf" {
            labels[i].fields["Text"].split(' ').next().unwrap().to_string()
        } else {
            prop(f, key_prop).unwrap_or_else(|| panic!("{format}: no {key_prop} in {:?}", f.fields))
        };
        let r = expected.get(&key).unwrap_or_else(|| panic!("{format}: unexpected {key}"));
        assert!(seen.insert(key.clone()), "{format}: {key} twice");
        if format == "dxf" {
            let label = &labels[i].fields["Text"];
            if let Some(onemap::index::PropValue::Str(n)) = r.prop("name") {
                assert_eq!(label, &format!("{key} {n}"), "DXF label in Chinese");
            }
        } else {
            for p in T::PROPERTIES {
                let want = match r.prop(p) {
                    Some(onemap::index::PropValue::Str(s)) => Some(s.to_string()),
                    Some(onemap::index::PropValue::Owned(s)) => Some(s),
                    _ => None,
                };
                let Some(want) = want else { continue };
                let got = prop(f, p);
                // Times come back as RFC 3339 (text) or GDAL's date-time; compare the instant.
                // Dates may come back as midnight date-times (FlatGeobuf has no date type).
                let same = match &got {
                    Some(g) if p.ends_with("_at") => {
                        chrono::DateTime::parse_from_rfc3339(g).ok() == chrono::DateTime::parse_from_rfc3339(&want).ok()
                    }
                    Some(g) if p.ends_with("_date") => g.get(..10) == Some(want.as_str()),
                    Some(g) => *g == want,
                    None => false,
                };
                assert!(same, "{format}: {} {key}.{p}: wrote {want:?}, read {got:?}", T::COLLECTION);
            }
        }
        let g = to_storage(f.geom.as_ref().expect("geometry"), crs);
        worst = worst.max(max_offset_m(&g, &r.geometry()));
    }
    assert!(worst <= 0.01, "{format} {crs}: a vertex moved {worst} m after the round trip");
}

async fn export_to_file(app: &axum::Router, uri: &str, dir: &std::path::Path, name: &str) -> String {
    let r = get(app, uri).await;
    assert_eq!(r.status, 200, "{uri}: {}", String::from_utf8_lossy(&r.body[..r.body.len().min(500)]));
    let path = dir.join(name);
    std::fs::write(&path, &r.body).unwrap();
    path.display().to_string()
}

fn all<T: Record + Clone>(items: &[T]) -> HashMap<String, &T> {
    items.iter().map(|r| (r.key().to_string(), r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_on_both_stores() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    for (label, state) in both_stores("export_rt", city).await {
        let app = onemap::app(state.with_public_read());
        for (format, crs) in CASES {
            let ext = if *format == "shp" { "zip" } else { format };
            // Grids (polygons, areas), components (points, lines and polygons: the Shapefile
            // splits them by kind), cases (times and Chinese text).
            let path = export_to_file(
                &app,
                &format!("/api/v1/export/grids?format={format}&crs={crs}"),
                dir.path(),
                &format!("{label}-grids.{ext}"),
            )
            .await;
            check_file(&path, format, crs, &all(&city.grids));
            let sample: Vec<_> = city
                .components
                .iter()
                .filter(|c| c.grid_code.as_deref() == city.grids.first().map(|g| g.code.as_str()))
                .cloned()
                .collect();
            let first_grid = &city.grids[0].code;
            let path = export_to_file(
                &app,
                &format!("/api/v1/export/components?format={format}&crs={crs}&grid_code={first_grid}"),
                dir.path(),
                &format!("{label}-components.{ext}"),
            )
            .await;
            assert!(!sample.is_empty());
            check_file(&path, format, crs, &all(&sample));
            let path = export_to_file(
                &app,
                &format!("/api/v1/export/cases?format={format}&crs={crs}&status=dispatched"),
                dir.path(),
                &format!("{label}-cases.{ext}"),
            )
            .await;
            let dispatched: Vec<_> =
                city.cases.iter().filter(|c| c.status == onemap::model::Status::Dispatched).cloned().collect();
            check_file(&path, format, crs, &all(&dispatched));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_take_the_features_filters_and_say_what_they_are() {
    let city = small_city();
    let state = seeded_state(&fresh_gpkg("export-filters"), city).await;
    let app = onemap::app(state.with_public_read());
    let g = &city.grids[city.grids.len() / 2];
    let e = g.envelope();
    let bbox = format!("{},{},{},{}", e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1]);
    let items = get(&app, &format!("/collections/components/items?bbox={bbox}&status=完好&limit=1")).await.json();
    let matched = items["numberMatched"].as_u64().unwrap();
    assert!(matched > 0);
    let r = get(&app, &format!("/api/v1/export/components?format=geojson&bbox={bbox}&status={}", enc("完好"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-feature-count"].to_str().unwrap(), matched.to_string());
    assert_eq!(r.content_type(), "application/geo+json");
    let v = r.json();
    assert_eq!(v["features"].as_array().unwrap().len() as u64, matched);
    // A download names itself, and compact formats are not compressed again.
    let r = get(&app, "/api/v1/export/grids?format=shp&crs=EPSG:4539").await;
    assert_eq!(r.content_type(), "application/zip");
    assert_eq!(r.headers["content-disposition"].to_str().unwrap(), "attachment; filename=\"grids-epsg4539.zip\"");
    assert_eq!(&r.body[..2], b"PK");
    // The date range filters cases on their report time.
    let from = city.cases.iter().map(|c| c.reported_at).max().unwrap() - chrono::Duration::days(30);
    let want = city.cases.iter().filter(|c| c.reported_at >= from).count();
    let r = get(&app, &format!("/api/v1/export/cases?format=csv&datetime={}/..", enc(&from.to_rfc3339()))).await;
    assert_eq!(r.headers["x-feature-count"].to_str().unwrap(), want.to_string());
    assert!(r.body.starts_with("\u{feff}WKT,id".as_bytes()), "CSV with a BOM for Excel, WKT first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_export_requests_are_4xx_problems() {
    let state = seeded_state(&fresh_gpkg("export-bad"), small_city()).await;
    let app = onemap::app(state.with_public_read());
    for (uri, status) in [
        ("/api/v1/export/grids?format=xls", 400),
        ("/api/v1/export/grids?crs=EPSG:2385", 400),
        ("/api/v1/export/grids?crs=EPSG:nope", 400),
        ("/api/v1/export/grids?format=kml&crs=EPSG:4539", 400),
        ("/api/v1/export/grids?bbox=1,2,3", 400),
        ("/api/v1/export/grids?colour=red", 400),
        ("/api/v1/export/grids?within=POLYGON((0 0,1 1,1 0,0 1,0 0))", 400),
        ("/api/v1/export/components?near=88.9,29.3&k=5", 400),
        ("/api/v1/export/parcels?format=gpkg", 404),
    ] {
        let uri = uri.replace(' ', "%20");
        get(&app, &uri).await.problem(status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_from_the_store_in_the_format_of_the_extension() {
    let city = small_city();
    let path = fresh_gpkg("export-cli");
    let store = onemap::store::open(&path).await.unwrap();
    store.write_city(city, &|_, _| {}).await.unwrap();
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let community = &city.communities[0].code;
    let out = dir.path().join("grids.shp");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["export", "grids", out.to_str().unwrap(), "--store", &path, "--crs", "EPSG:4539"])
        .args(["--filter", &format!("community_code={community}")])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let want: Vec<_> = city.grids.iter().filter(|g| g.community_code == community).cloned().collect();
    assert!(String::from_utf8_lossy(&run.stdout).contains(&format!("exported {} grids", want.len())));
    let (feats, srs) = read_all(out.to_str().unwrap());
    assert_eq!(feats.len(), want.len());
    assert_eq!(srs["grids"], Some(GK as i32));
    // Chinese names survive the dBASE table, declared UTF-8 in the .cpg.
    assert_eq!(std::fs::read_to_string(dir.path().join("grids.cpg")).unwrap().trim(), "UTF-8");
    let by_code = all(&want);
    for f in &feats {
        assert_eq!(f.fields["name"], by_code[&f.fields["code"]].name.as_str());
    }
    // A zone-prefixed Gauss-Krüger export puts the zone (30) in front of the eastings.
    let out = dir.path().join("grids.fgb");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["export", "grids", out.to_str().unwrap(), "--store", &path, "--crs", &format!("EPSG:{GK_PREFIXED}")])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (feats, _) = read_all(out.to_str().unwrap());
    use geo::CoordsIter;
    let x = feats[0].geom.as_ref().unwrap().coords_iter().next().unwrap().x;
    assert!((30_000_000.0..31_000_000.0).contains(&x), "easting {x}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["export", "grids", dir.path().join("g.xyz").to_str().unwrap(), "--store", &path])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geopackage_export_carries_a_spatial_index_that_gdal_uses_and_edits_keep() {
    use gdal::vector::LayerAccess;
    use geo::Intersects;
    let city = small_city();
    let state = seeded_state(&fresh_gpkg("export-rtree"), city).await;
    let app = onemap::app(state.with_public_read());
    let dir = tempfile::tempdir().unwrap();
    let path = export_to_file(&app, "/api/v1/export/components?format=gpkg", dir.path(), "components.gpkg").await;
    // The index is SQLite's own R-tree, sound by SQLite's check, one entry per feature.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn.query_row("SELECT rtreecheck('rtree_components_geom')", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let indexed: i64 = conn.query_row("SELECT count(*) FROM rtree_components_geom", [], |r| r.get(0)).unwrap();
    assert_eq!(indexed as usize, city.components.len());
    drop(conn);
    // GDAL sees the index and answers a window from it as a scan of the geometries would.
    let (feats, _) = read_all(&path);
    let g = &city.grids[city.grids.len() / 3];
    let e = g.envelope();
    let (lo, hi) = (e.lower(), e.upper());
    let window = geo::Rect::new((lo[0], lo[1]), (hi[0], hi[1]));
    let want = feats.iter().filter(|f| f.geom.as_ref().unwrap().intersects(&window)).count();
    assert!(want > 0);
    let count_in_window = |ds: &gdal::Dataset| {
        let mut layer = ds.layer_by_name("components").unwrap();
        layer.set_spatial_filter_rect(lo[0], lo[1], hi[0], hi[1]);
        layer.features().count()
    };
    let ds = gdal::Dataset::open_ex(
        &path,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE | gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .unwrap();
    let has = ds
        .execute_sql("SELECT HasSpatialIndex('components', 'geom')", None, gdal::vector::sql::Dialect::DEFAULT)
        .unwrap()
        .unwrap()
        .features()
        .next()
        .unwrap()
        .field_as_integer(0)
        .unwrap();
    assert_eq!(has, Some(1), "GDAL recognises the spatial index");
    assert_eq!(count_in_window(&ds), want);
    // A planner's edit in QGIS (through GDAL) goes through the index's triggers.
    {
        let layer = ds.layer_by_name("components").unwrap();
        let mut f = gdal::vector::Feature::new(layer.defn()).unwrap();
        let (cx, cy) = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
        f.set_geometry(gdal::vector::Geometry::from_wkt(&format!("POINT ({cx} {cy})")).unwrap()).unwrap();
        f.create(&layer).unwrap();
    }
    assert_eq!(count_in_window(&ds), want + 1);
    ds.close().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn.query_row("SELECT rtreecheck('rtree_components_geom')", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
