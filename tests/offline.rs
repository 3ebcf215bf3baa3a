//! Offline tile packages on both stores: `onemap export tiles FILE.mbtiles` writes the live tiles
//! of an area and a zoom range, each tile byte for byte what `/tiles` serves for the same data,
//! with the metadata MBTiles readers need, and GDAL reads it back; bad requests write nothing.

mod common;

use std::io::Read;
use std::process::Command;

use common::*;
use gdal::vector::LayerAccess;

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
            vec!["package.pmtiles"],
        ] {
            let out = run(&args);
            assert!(!out.status.success(), "{label}: {args:?} should be refused");
            assert!(!bad.exists(), "{label}: {args:?} wrote a file");
        }
        st.store.close().await;
    }
}
