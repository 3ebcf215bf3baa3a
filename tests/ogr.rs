//! GDAL reads what onemap writes and serves: `ogrinfo` on the GeoPackage store, and on the OGC API
//! Features endpoint of a real listening server (the OAPIF driver that QGIS uses too).

mod common;

use std::process::Command;

use common::*;

fn ogrinfo(args: &[&str]) -> String {
    let out = Command::new("ogrinfo")
        .args(args)
        .output()
        .expect("ogrinfo is installed by scripts/test (gdal-bin)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ogrinfo {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ogrinfo_reads_the_geopackage_and_the_oapif_endpoint() {
    let city = small_city();
    let path = fresh_gpkg("ogr");
    let state = seeded_state(&path, city).await;

    // The store file itself: a valid GeoPackage listing every spatial layer in EPSG:4490.
    let listing = ogrinfo(&["-ro", &path]);
    for layer in [
        "districts",
        "streets",
        "communities",
        "grids",
        "components",
        "cases",
        "sensors",
    ] {
        // Mixed-geometry layers (components) are listed without a type in parentheses.
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(&format!(": {layer}")) || l.contains(&format!(": {layer} ("))),
            "layer {layer} missing:\n{listing}"
        );
    }
    let grids = ogrinfo(&["-ro", "-so", &path, "grids"]);
    assert!(
        grids.contains(&format!("Feature Count: {}", city.grids.len())),
        "{grids}"
    );
    assert!(
        grids.contains("4490") || grids.contains("China Geodetic Coordinate System 2000"),
        "{grids}"
    );
    let districts = ogrinfo(&["-ro", "-al", "-q", &path, "districts"]);
    assert!(
        districts.contains("桑珠孜区"),
        "Chinese names survive: {districts}"
    );
    let cases = ogrinfo(&["-ro", "-so", &path, "cases"]);
    assert!(cases.contains("reported_at: DateTime"), "{cases}");

    // The HTTP API through GDAL's OAPIF driver, against a real listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, onemap::app(state)).await });
    let url = format!("OAPIF:http://{addr}/");
    let n_districts = city.districts.len();
    let n_grids = city.grids.len();
    let (layers, all_districts, grids_summary) = tokio::task::spawn_blocking(move || {
        (
            ogrinfo(&["-ro", &url]),
            ogrinfo(&["-ro", "-al", "-q", &url, "districts"]),
            ogrinfo(&["-ro", "-so", &url, "grids"]),
        )
    })
    .await
    .unwrap();
    for layer in [
        "districts",
        "streets",
        "communities",
        "grids",
        "components",
        "cases",
        "sensors",
    ] {
        assert!(
            layers.contains(layer),
            "OAPIF layer {layer} missing:\n{layers}"
        );
    }
    assert_eq!(
        all_districts.matches("OGRFeature(districts)").count(),
        n_districts,
        "{all_districts}"
    );
    assert!(all_districts.contains("桑珠孜区"));
    assert!(
        grids_summary.contains(&format!("Feature Count: {n_grids}")),
        "{grids_summary}"
    );
    server.abort();
}
