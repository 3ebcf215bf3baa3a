//! Offline tile packages on both stores: `onemap export tiles FILE.mbtiles|FILE.pmtiles` writes the
//! live tiles of an area and a zoom range, each tile byte for byte what `/tiles` serves for the
//! same data, with the metadata MBTiles and PMTiles readers need (GDAL reads the MBTiles, the
//! `pmtiles` crate the PMTiles); `GET /api/v1/export/tiles` does the same within its cost limit
//! and draws a department's own cases only; bad requests write nothing.

mod common;

use std::io::Read;
use std::process::Command;

use common::*;
use gdal::vector::LayerAccess;
use onemap::auth::{Role, TokenSpec};
use onemap::geo::tile::tiles_covering;
use pmtiles::{AsyncPmTilesReader, Compression, TileType};

#[tokio::test]
async fn an_area_exported_as_mbtiles_holds_the_live_tiles_on_both_stores() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    for (label, location) in [("gpkg", fresh_gpkg("offline")), ("postgis", fresh_pg("onemap_t_offline").await)] {
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone().with_public_read());
        let b = st.index.grids.read().bbox().unwrap();
        let bbox = format!("{},{},{},{}", b[0], b[1], (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let file = dir.path().join(format!("{label}.mbtiles"));
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_onemap"))
                .args(["export", "tiles"])
                .args(args)
                .args(["--store", &location])
                .output()
                .unwrap()
        };
        let out = run(&[
            file.to_str().unwrap(),
            "--layers",
            "grids,components,cases",
            "--bbox",
            &bbox,
            "--minzoom",
            "13",
            "--maxzoom",
            "16",
        ]);
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("tiles"), "{label}");

        let db = rusqlite::Connection::open(&file).unwrap();
        let meta = |k: &str| -> String {
            db.query_row("SELECT value FROM metadata WHERE name = ?1", [k], |r| r.get(0)).unwrap()
        };
        assert_eq!((meta("format"), meta("minzoom"), meta("maxzoom")), ("pbf".into(), "13".into(), "16".into()));
        let json: serde_json::Value = serde_json::from_str(&meta("json")).unwrap();
        assert_eq!(json["vector_layers"].as_array().unwrap().len(), 3);
        let tiles: Vec<(u8, u32, u32, Vec<u8>)> = db
            .prepare("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles ORDER BY 1, 2, 3")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let zooms: std::collections::BTreeSet<u8> = tiles.iter().map(|t| t.0).collect();
        assert_eq!(zooms.into_iter().collect::<Vec<_>>(), [13, 14, 15, 16], "{label}");
        // Every packaged tile is the live one (rows are counted from the south in MBTiles).
        for (z, x, row, data) in tiles.iter().step_by(3) {
            let y = (1u32 << z) - 1 - row;
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut raw).unwrap();
            let live = get(&app, &format!("/tiles/grids,components,cases/{z}/{x}/{y}")).await;
            assert_eq!(live.status, 200, "{label}: {z}/{x}/{y}");
            assert_eq!(live.body, raw, "{label}: tile {z}/{x}/{y} differs from the live one");
        }
        // GDAL reads the package: the grids layer has features with their codes.
        let ds = gdal::Dataset::open(&file).unwrap();
        let mut grids = ds.layer_by_name("grids").unwrap();
        let codes: Vec<String> = grids
            .features()
            .filter_map(|f| f.field_index("code").ok().and_then(|i| f.field_as_string(i).ok().flatten()))
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c.len() >= 14),
            "{label}: {:?}",
            &codes[..codes.len().min(3)]
        );

        // Bad requests: refused, no file written.
        let bad = dir.path().join(format!("{label}-bad.mbtiles"));
        for args in [
            vec![bad.to_str().unwrap(), "--layers", "roads"],
            vec![bad.to_str().unwrap(), "--minzoom", "16", "--maxzoom", "12"],
            vec![bad.to_str().unwrap(), "--bbox", "80,20,130,50", "--minzoom", "0", "--maxzoom", "20"],
            vec!["package.zip"],
        ] {
            let out = run(&args);
            assert!(!out.status.success(), "{label}: {args:?} should be refused");
            assert!(!bad.exists(), "{label}: {args:?} wrote a file");
        }
        st.store.close().await;
    }
}

/// What a test checks of a PMTiles header.
struct Header {
    kind: (TileType, Compression),
    zooms: (u8, u8),
    bounds: [f64; 4],
}

/// Reads a PMTiles file: its header, its metadata and, for every tile of `bbox` at `zooms`, the
/// stored (gzipped) tile or None.
async fn read_pmtiles(
    path: &std::path::Path,
    bbox: [f64; 4],
    zooms: std::ops::RangeInclusive<u8>,
) -> (Header, serde_json::Value, Vec<((u8, u32, u32), Option<Vec<u8>>)>) {
    let r = AsyncPmTilesReader::new_with_path(path).await.expect("a PMTiles archive");
    let meta: serde_json::Value = serde_json::from_str(&r.get_metadata().await.unwrap()).unwrap();
    let mut tiles = Vec::new();
    for z in zooms {
        for t in tiles_covering(bbox, z) {
            let c = pmtiles::TileCoord::new(t.z, t.x, t.y).unwrap();
            tiles.push(((t.z, t.x, t.y), r.get_tile(c).await.unwrap().map(|b| b.to_vec())));
        }
    }
    let h = r.get_header();
    let header = Header {
        kind: (h.tile_type, h.tile_compression),
        zooms: (h.min_zoom, h.max_zoom),
        bounds: [h.min_longitude, h.min_latitude, h.max_longitude, h.max_latitude],
    };
    (header, meta, tiles)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut raw).unwrap();
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_area_exported_as_pmtiles_from_the_cli_and_over_http_holds_the_live_tiles_on_both_stores() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    for (label, location) in [("gpkg", fresh_gpkg("offline_pm")), ("postgis", fresh_pg("onemap_t_offline_pm").await)] {
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone().with_public_read());
        let b = st.index.grids.read().bbox().unwrap();
        let half = [b[0], b[1], (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
        let bbox = format!("{},{},{},{}", half[0], half[1], half[2], half[3]);

        // The command line: every tile of the area, the empty ones left out.
        let file = dir.path().join(format!("{label}.pmtiles"));
        let out = Command::new(env!("CARGO_BIN_EXE_onemap"))
            .args(["export", "tiles", file.to_str().unwrap(), "--layers", "grids,components,cases"])
            .args(["--bbox", &bbox, "--minzoom", "13", "--maxzoom", "16", "--store", &location])
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        let (h, meta, tiles) = read_pmtiles(&file, half, 13..=16).await;
        assert_eq!(h.kind, (TileType::Mvt, Compression::Gzip), "{label}");
        assert_eq!(h.zooms, (13, 16), "{label}");
        assert!(h.bounds.iter().zip(half).all(|(a, b)| (a - b).abs() < 1e-6), "{label}: {:?}", h.bounds);
        let ids: Vec<&str> =
            meta["vector_layers"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["grids", "components", "cases"], "{label}: {meta}");
        // Every tile the command wrote is found where a reader looks for it.
        let stored = tiles.iter().filter(|(_, t)| t.is_some()).count();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stored > 0 && said.starts_with(&format!("{stored} tiles")), "{label}: {stored} found, {said}");
        for ((z, x, y), data) in tiles.iter().step_by(3) {
            let live = get(&app, &format!("/tiles/grids,components,cases/{z}/{x}/{y}")).await;
            match data {
                Some(d) => assert_eq!(live.body, gunzip(d), "{label}: tile {z}/{x}/{y} differs from the live one"),
                None => assert_eq!(live.status, 204, "{label}: {z}/{x}/{y} is missing from the package"),
            }
        }

        // Over HTTP, on a closed server: a department's package draws its own cases only.
        let closed = onemap::app(st.clone());
        let cases: Vec<onemap::model::Case> = st.index.cases.read().iter().cloned().collect();
        let mine = cases.iter().find_map(|c| c.dept_code.clone()).expect("a dispatched case");
        let dept = onemap::auth::create_with(
            &*st.store,
            Role::Department,
            &TokenSpec { dept_code: Some(mine.to_string()), ..Default::default() },
        )
        .await
        .unwrap();
        let viewer = onemap::auth::create_with(&*st.store, Role::Viewer, &TokenSpec::default()).await.unwrap();
        let whole = format!("{},{},{},{}", b[0], b[1], b[2], b[3]);
        let uri = format!("/api/v1/export/tiles?layers=cases&bbox={whole}&minzoom=15&maxzoom=15");
        get(&closed, &uri).await.problem(401);
        let mut sizes = Vec::new();
        for (who, token) in [("department", &dept), ("viewer", &viewer)] {
            let resp = get_as(&closed, &uri, token).await;
            assert_eq!(resp.status, 200, "{label} {who}: {}", String::from_utf8_lossy(&resp.body));
            assert_eq!(resp.headers["content-type"], "application/vnd.pmtiles", "{label}");
            assert!(resp.headers["content-disposition"].to_str().unwrap().contains(".pmtiles"), "{label}");
            let path = dir.path().join(format!("{label}-{who}.pmtiles"));
            std::fs::write(&path, &resp.body).unwrap();
            let (_, _, tiles) = read_pmtiles(&path, b, 15..=15).await;
            let stored: Vec<_> = tiles.iter().filter_map(|(c, t)| t.as_ref().map(|t| (c, t))).collect();
            assert_eq!(resp.headers["x-tile-count"].to_str().unwrap(), stored.len().to_string(), "{label} {who}");
            for ((z, x, y), data) in stored.iter().step_by(2) {
                let live = get_as(&closed, &format!("/tiles/cases/{z}/{x}/{y}"), token).await;
                assert_eq!(live.body, gunzip(data), "{label} {who}: {z}/{x}/{y} is not the caller's live tile");
            }
            sizes.push(stored.iter().map(|(_, t)| t.len()).sum::<usize>());
        }
        assert!(sizes[0] < sizes[1], "{label}: the department's package {sizes:?} holds other departments' cases");

        // MBTiles over HTTP too.
        let resp = get_as(
            &closed,
            &format!("/api/v1/export/tiles?format=mbtiles&layers=grids&bbox={bbox}&minzoom=14&maxzoom=14"),
            &viewer,
        )
        .await;
        assert_eq!(resp.status, 200, "{label}");
        let path = dir.path().join(format!("{label}-http.mbtiles"));
        std::fs::write(&path, &resp.body).unwrap();
        let n: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM tiles", [], |r| r.get(0))
            .unwrap();
        assert!(n > 0 && resp.headers["x-tile-count"].to_str().unwrap() == n.to_string(), "{label}: {n}");

        // Bad requests are refused with a problem; the cost limit is counted before rendering.
        for (q, status) in [
            ("format=zip", 400),
            ("layers=roads", 400),
            ("maxzoom=abc", 400),
            ("minzoom=16&maxzoom=12", 400),
            ("bbox=1,2,3", 400),
            ("crs=wgs84", 400),
            ("bbox=80,20,130,50&minzoom=0&maxzoom=16", 422),
        ] {
            get_as(&closed, &format!("/api/v1/export/tiles?{q}"), &viewer).await.problem(status);
        }
        st.store.close().await;
    }
}
