//! GDAL reads what onemap writes and serves: `ogrinfo` on the GeoPackage store, and on the OGC API
//! Features endpoint of a real listening server (the OAPIF driver that QGIS uses too).

mod common;

use std::process::Command;

use common::*;

fn ogrinfo(args: &[&str]) -> String {
    let out = Command::new("ogrinfo").args(args).output().expect("ogrinfo is installed by scripts/test (gdal-bin)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ogrinfo {args:?} failed:\n{text}");
    text
}

/// GDAL reports what it does not like as warnings and errors on stderr; there must be none.
fn assert_clean(text: &str) {
    for bad in ["Warning", "ERROR"] {
        assert!(!text.contains(bad), "ogrinfo complained:\n{}", &text[..text.len().min(4000)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ogrinfo_reads_the_geopackage_and_the_oapif_endpoint() {
    let city = small_city();
    let path = fresh_gpkg("ogr");
    let state = seeded_state(&path, city).await;

    // The store file itself: a valid GeoPackage listing every spatial layer in EPSG:4490.
    let listing = ogrinfo(&["-ro", &path]);
    assert_clean(&listing);
    for layer in ["districts", "streets", "communities", "grids", "components", "cases", "sensors"] {
        // Mixed-geometry layers (components) are listed without a type in parentheses.
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(": {layer}")) || l.contains(&format!(": {layer} ("))),
            "layer {layer} missing:\n{listing}"
        );
    }
    let grids = ogrinfo(&["-ro", "-so", &path, "grids"]);
    assert!(grids.contains(&format!("Feature Count: {}", city.grids.len())), "{grids}");
    assert!(grids.contains("4490") || grids.contains("China Geodetic Coordinate System 2000"), "{grids}");
    let districts = ogrinfo(&["-ro", "-al", "-q", &path, "districts"]);
    assert_clean(&districts);
    for (layer, n) in
        [("components", city.components.len()), ("cases", city.cases.len()), ("sensors", city.sensors.len())]
    {
        let summary = ogrinfo(&["-ro", "-so", &path, layer]);
        assert_clean(&summary);
        assert!(summary.contains(&format!("Feature Count: {n}")), "{summary}");
    }
    assert!(districts.contains("桑珠孜区"), "Chinese names survive: {districts}");
    let cases = ogrinfo(&["-ro", "-so", &path, "cases"]);
    assert!(cases.contains("reported_at: DateTime"), "{cases}");

    // The HTTP API through GDAL's OAPIF driver, against a real listener: every collection read
    // in full (following `next` links page by page), with counts equal to the city's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, onemap::app(state.with_public_read())).await });
    let url = format!("OAPIF:http://{addr}/");
    let expected = [
        ("districts", city.districts.len()),
        ("streets", city.streets.len()),
        ("communities", city.communities.len()),
        ("grids", city.grids.len()),
        ("components", city.components.len()),
        ("cases", city.cases.len()),
        ("sensors", city.sensors.len()),
    ];
    let outputs = tokio::task::spawn_blocking(move || {
        let layers = ogrinfo(&["-ro", &url]);
        let reads: Vec<(String, usize, String)> = expected
            .iter()
            .map(|(layer, n)| {
                (layer.to_string(), *n, ogrinfo(&["-ro", "-al", "-q", "-oo", "PAGE_SIZE=1000", &url, layer]))
            })
            .collect();
        (layers, reads)
    })
    .await
    .unwrap();
    let (layers, reads) = outputs;
    assert_clean(&layers);
    for (layer, n, text) in &reads {
        assert!(layers.contains(layer.as_str()), "OAPIF layer {layer} missing:\n{layers}");
        assert_clean(text);
        assert_eq!(text.matches(&format!("OGRFeature({layer})")).count(), *n, "{layer} features over OAPIF");
    }
    assert!(reads[0].2.contains("桑珠孜区"), "Chinese names survive OAPIF");
    server.abort();
}
