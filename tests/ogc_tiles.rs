//! OGC API - Tiles 1.0 on both stores: the tiling scheme, the tilesets of a collection and of the
//! whole dataset with links and the limits of their data, the conformance classes, and tiles
//! addressed by tileMatrix/tileRow/tileCol that are byte for byte the `/tiles/{z}/{x}/{y}` ones;
//! and GDAL's OGCAPI driver (3.12, from pyogrio's wheel in the peers' environment) reading a
//! collection's tileset from a real listener.

mod common;

use common::*;
use geo::InteriorPoint;
use serde_json::Value;

fn rel<'a>(doc: &'a Value, rel: &str) -> Vec<&'a str> {
    doc["links"].as_array().unwrap().iter().filter(|l| l["rel"] == rel).map(|l| l["href"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn collections_and_the_dataset_are_tilesets_of_web_mercator_quad_on_both_stores() {
    let city = small_city();
    let p = city.grids[0].geom.interior_point().unwrap();
    for (label, st) in both_stores("ogc_tiles", city).await {
        let app = onemap::app(st.with_public_read());
        let conf = get(&app, "/conformance").await.json();
        let classes: Vec<&str> = conf["conformsTo"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        for c in ["core", "tileset", "tilesets-list", "geodata-tilesets", "dataset-tilesets", "mvt", "oas30"] {
            let want = format!("http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/{c}");
            assert!(classes.contains(&want.as_str()), "{label}: {c}");
        }
        let landing = get(&app, "/").await.json();
        assert_eq!(rel(&landing, "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector").len(), 1, "{label}");

        // The tiling scheme: 25 matrices, each twice as fine as the one before.
        let list = get(&app, "/tileMatrixSets").await.json();
        assert_eq!(list["tileMatrixSets"][0]["id"], "WebMercatorQuad");
        let tms = get(&app, "/tileMatrixSets/WebMercatorQuad").await.json();
        assert_eq!(tms["crs"], "http://www.opengis.net/def/crs/EPSG/0/3857");
        let m = tms["tileMatrices"].as_array().unwrap();
        assert_eq!(m.len(), 25);
        assert_eq!((m[14]["matrixWidth"].as_u64(), m[14]["tileWidth"].as_u64()), (Some(16384), Some(256)));
        let ratio = m[3]["scaleDenominator"].as_f64().unwrap() / m[4]["scaleDenominator"].as_f64().unwrap();
        assert!((ratio - 2.0).abs() < 1e-12);
        get(&app, "/tileMatrixSets/WorldCRS84Quad").await.problem(404);

        // A collection's tilesets and the tileset's metadata.
        let col = get(&app, "/collections/grids").await.json();
        let tiles_url = rel(&col, "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector")[0].to_string();
        assert!(tiles_url.ends_with("/collections/grids/tiles"), "{label}: {tiles_url}");
        let sets = get(&app, "/collections/grids/tiles").await.json();
        let set = &sets["tilesets"][0];
        assert_eq!(
            (set["dataType"].as_str(), set["crs"].as_str()),
            (Some("vector"), Some("http://www.opengis.net/def/crs/EPSG/0/3857"))
        );
        let meta = get(&app, "/collections/grids/tiles/WebMercatorQuad").await.json();
        assert_eq!(meta["layers"][0]["id"], "grids");
        assert_eq!(meta["layers"][0]["minTileMatrix"], "13", "{label}: grids start at z13");
        assert!(meta["layers"][0]["propertiesSchema"]["properties"]["code"].is_object());
        assert_eq!(rel(&meta, "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme").len(), 1);
        let template = meta["links"].as_array().unwrap().iter().find(|l| l["rel"] == "item").unwrap();
        assert_eq!(template["type"], "application/vnd.mapbox-vector-tile");
        let template = template["href"].as_str().unwrap();
        assert!(template.ends_with("/collections/grids/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}"));
        // The limits hold the tile of a grid's inner point at every zoom.
        let limits = meta["tileMatrixSetLimits"].as_array().unwrap();
        assert_eq!(limits.first().unwrap()["tileMatrix"], "13");
        let z = 16u8;
        let t = onemap::geo::tile::tiles_covering([p.x(), p.y(), p.x(), p.y()], z).next().unwrap();
        let l = limits.iter().find(|l| l["tileMatrix"] == z.to_string().as_str()).unwrap();
        let within = |k: &str, v: u32| {
            l[format!("min{k}")].as_u64().unwrap() <= v as u64 && v as u64 <= l[format!("max{k}")].as_u64().unwrap()
        };
        assert!(within("TileRow", t.y) && within("TileCol", t.x), "{label}: {l} {t:?}");

        // The same tile both ways (row is y, column is x), filters included.
        for (ogc, plain) in [
            (
                format!("/collections/grids/tiles/WebMercatorQuad/{z}/{}/{}", t.y, t.x),
                format!("/tiles/grids/{z}/{}/{}", t.x, t.y),
            ),
            (
                format!("/collections/cases/tiles/WebMercatorQuad/{z}/{}/{}?status=closed", t.y, t.x),
                format!("/tiles/cases/{z}/{}/{}?status=closed", t.x, t.y),
            ),
        ] {
            let (a, b) = (get(&app, &ogc).await, get(&app, &plain).await);
            assert_eq!(a.status, b.status, "{label}: {ogc}");
            assert_eq!(a.body, b.body, "{label}: {ogc} and {plain} differ");
        }
        let grid_tile = get(&app, &format!("/collections/grids/tiles/WebMercatorQuad/{z}/{}/{}", t.y, t.x)).await;
        assert_eq!(grid_tile.status, 200, "{label}: the grid's tile has it");
        // The dataset tile has every collection's layer in it.
        let all = get(&app, &format!("/tiles/WebMercatorQuad/{z}/{}/{}", t.y, t.x)).await;
        assert_eq!(all.status, 200);
        assert!(all.body.len() >= grid_tile.body.len());
        let meta = get(&app, "/tiles/WebMercatorQuad").await.json();
        let ids: Vec<&str> = meta["layers"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), onemap::model::Collection::FEATURES.len(), "{label}: {ids:?}");
        assert!(get(&app, "/tiles").await.json()["tilesets"][0]["links"].is_array());

        // Bad addresses are problems.
        get(&app, "/collections/nope/tiles").await.problem(404);
        get(&app, "/collections/grids/tiles/WorldCRS84Quad").await.problem(404);
        get(&app, &format!("/collections/grids/tiles/WebMercatorQuad/{z}/{}/x", t.y)).await.problem(400);
        get(&app, "/collections/grids/tiles/WebMercatorQuad/3/9/0").await.problem(400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdal_reads_a_collections_vector_tileset() {
    let city = small_city();
    let state = seeded_state(&fresh_gpkg("ogc_tiles_gdal"), city).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, onemap::app(state.with_public_read())).await });
    let out = std::env::temp_dir().join(format!("onemap-ogcapi-{}.json", std::process::id()));
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/peer/ogcapi_tiles.py");
    let (b, o) = (base.clone(), out.clone());
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(peer_python()).arg(&script).args([&b, "grids", "14"]).arg(&o).status()
    })
    .await
    .unwrap()
    .expect("run GDAL");
    server.abort();
    assert!(status.success(), "GDAL's reading failed: {status}");
    let read: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(read["drivers"]["OGCAPI"], "r", "{read}");
    // One layer per tile matrix of the tileset's limits, from z13 where grids start.
    let layers: Vec<&str> = read["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(layers.first(), Some(&"Zoom level 13"), "{read}");
    assert!(layers.contains(&"Zoom level 16"), "{layers:?}");
    assert!(read["layers"][0]["crs"].as_str().unwrap().contains("3857"), "{read}");
    // The fields come from the tileset's layer description; every grid is read back by its code
    // from the z14 tiles (a grid across a tile edge comes once per tile).
    for f in ["code", "name", "community_code", "area_m2"] {
        assert!(read["fields"].as_array().unwrap().iter().any(|x| x == f), "field {f}: {read}");
    }
    let mut codes: Vec<String> = city.grids.iter().map(|g| g.code.to_string()).collect();
    codes.sort();
    let got: Vec<String> = serde_json::from_value(read["codes"].clone()).unwrap();
    assert_eq!(got, codes, "every grid read through GDAL at z14");
    let features = read["features"].as_u64().unwrap();
    assert!(features >= city.grids.len() as u64 && read["with_geometry"] == read["features"], "{read}");
}
