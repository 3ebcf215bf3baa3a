//! MapLibre Tiles on both stores: `?f=mlt` and `Accept: application/vnd.maplibre-tile` answer MLT
//! (with `Vary: Accept`), which `@maplibre/mlt` (the decoder MapLibre GL JS uses, from npm)
//! decodes into exactly the features, properties and geometry of the MVT of the same tile; MLT
//! tiles are cached apart from MVT ones and dropped by the same invalidation; TileJSON says
//! `"encoding": "mlt"`; an unknown `f` is a 400.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use geo::InteriorPoint;
use geozero::mvt::{Message, Tile, tile};
use onemap::auth::{Role, create};
use onemap::geo::tile::tiles_covering;
use serde_json::{Value, json};

/// One feature in the shape `web/tests/mlt_decode.mjs` prints.
fn canonical(id: Option<String>, kind: &str, props: BTreeMap<String, String>, coords: Vec<[i64; 2]>) -> Value {
    json!({"id": id, "kind": kind, "props": props, "coords": coords})
}

/// A tile's MVT layers in that shape, each layer's features sorted (MLT may reorder them).
fn mvt_layers(body: &[u8]) -> Vec<(String, Vec<String>)> {
    let t = Tile::decode(body).expect("an MVT");
    t.layers
        .iter()
        .map(|l| {
            let mut features: Vec<String> = l
                .features
                .iter()
                .map(|f| {
                    let props: BTreeMap<String, String> = f
                        .tags
                        .chunks(2)
                        .map(|kv| (l.keys[kv[0] as usize].clone(), value_string(&l.values[kv[1] as usize])))
                        .collect();
                    let kind = match f.r#type() {
                        tile::GeomType::Point => "point",
                        tile::GeomType::Linestring => "line",
                        _ => "polygon",
                    };
                    canonical(f.id.map(|i| i.to_string()), kind, props, vertices(&f.geometry)).to_string()
                })
                .collect();
            features.sort();
            (l.name.clone(), features)
        })
        .collect()
}

fn value_string(v: &tile::Value) -> String {
    if let Some(s) = &v.string_value {
        s.clone()
    } else if let Some(d) = v.double_value {
        // As JavaScript prints a number.
        if d.fract() == 0.0 && d.abs() < 1e15 { format!("{}", d as i64) } else { d.to_string() }
    } else if let Some(f) = v.float_value {
        f.to_string()
    } else if let Some(i) = v.int_value.or(v.sint_value) {
        i.to_string()
    } else if let Some(u) = v.uint_value {
        u.to_string()
    } else {
        v.bool_value.map(|b| b.to_string()).unwrap_or_default()
    }
}

/// The vertices of MVT geometry commands, in order (a ClosePath adds none).
fn vertices(cmds: &[u32]) -> Vec<[i64; 2]> {
    let (mut out, mut x, mut y, mut i) = (Vec::new(), 0i64, 0i64, 0);
    let zz = |v: u32| ((v >> 1) as i64) ^ -((v & 1) as i64);
    while i < cmds.len() {
        let (id, count) = (cmds[i] & 7, (cmds[i] >> 3) as usize);
        i += 1;
        if id == 7 {
            continue;
        }
        for _ in 0..count {
            x += zz(cmds[i]);
            y += zz(cmds[i + 1]);
            i += 2;
            out.push([x, y]);
        }
    }
    out
}

/// The same tiles decoded by `@maplibre/mlt` (in Node.js, from web/node_modules).
fn mlt_layers(files: &[std::path::PathBuf]) -> Vec<Vec<(String, Vec<String>)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/tests/mlt_decode.mjs");
    let out = Command::new("node").arg(script).args(files).output().expect("run node (scripts/test installs it)");
    assert!(out.status.success(), "mlt_decode.mjs: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let layers: Vec<Value> = serde_json::from_str(line).unwrap();
            layers
                .iter()
                .map(|l| {
                    let mut features: Vec<String> = l["features"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            let props: BTreeMap<String, String> = serde_json::from_value(f["props"].clone()).unwrap();
                            let coords: Vec<[i64; 2]> = serde_json::from_value(f["coords"].clone()).unwrap();
                            let id = f["id"].as_str().map(str::to_string);
                            canonical(id, f["kind"].as_str().unwrap(), props, coords).to_string()
                        })
                        .collect();
                    features.sort();
                    (l["name"].as_str().unwrap().to_string(), features)
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlt_tiles_decode_to_the_features_of_the_mvt_on_both_stores() {
    let city = small_city();
    let dir = tempfile::tempdir().unwrap();
    for (label, st) in both_stores("mlt", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let b = st.index.grids.read().bbox().unwrap();
        let centre = [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
        let layers = "grids,components,cases,sensors";

        // Tiles around the centre at z12-z16 (counts at the low zooms, every feature at 16).
        let mut files = Vec::new();
        let mut expected = Vec::new();
        let mut sizes = (0usize, 0usize);
        for z in 12..=16u8 {
            let d = 0.004 * f64::from(1u32 << (16 - z));
            for t in tiles_covering([centre[0] - d, centre[1] - d, centre[0] + d, centre[1] + d], z).take(6) {
                let uri = format!("/tiles/{layers}/{}/{}/{}", t.z, t.x, t.y);
                let mvt = get(&app, &uri).await;
                let mlt = get(&app, &format!("{uri}?f=mlt")).await;
                assert_eq!(mvt.status, mlt.status, "{label} {uri}");
                if mvt.status == 204 {
                    continue;
                }
                assert_eq!(mlt.headers["content-type"], "application/vnd.maplibre-tile", "{label}");
                assert!(mlt.headers["vary"].to_str().unwrap().contains("accept"), "{label}");
                assert_ne!(mlt.body, mvt.body, "{label}: {uri} came as MVT");
                // The Accept header asks for the same tile, from the cache MLT has its own place in.
                let accepted = get_with(&app, &uri, &[("accept", "application/vnd.maplibre-tile")]).await;
                assert_eq!(
                    (accepted.body.as_slice(), accepted.headers["x-tile-cache"].to_str().unwrap()),
                    (mlt.body.as_slice(), "hit")
                );
                assert_eq!(get(&app, &uri).await.body, mvt.body, "{label}: the MVT of {uri} changed");
                sizes = (sizes.0 + mvt.body.len(), sizes.1 + mlt.body.len());
                let f = dir.path().join(format!("{label}-{}-{}-{}.mlt", t.z, t.x, t.y));
                std::fs::write(&f, &mlt.body).unwrap();
                files.push(f);
                expected.push((uri, mvt_layers(&mvt.body)));
            }
        }
        assert!(files.len() >= 10, "{label}: {} non-empty tiles", files.len());
        let decoded = mlt_layers(&files);
        assert_eq!(decoded.len(), expected.len());
        let mut features = 0;
        for ((uri, want), got) in expected.iter().zip(&decoded) {
            let names = |l: &[(String, Vec<String>)]| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(got), names(want), "{label} {uri}: layers");
            for ((name, w), (_, g)) in want.iter().zip(got) {
                assert_eq!(g.len(), w.len(), "{label} {uri} {name}: feature count");
                for (a, e) in g.iter().zip(w) {
                    assert_eq!(a, e, "{label} {uri} {name}: a feature differs");
                }
                features += w.len();
            }
        }
        assert!(features > 100, "{label}: only {features} features compared");
        eprintln!("{label}: {} tiles, MVT {} B, MLT {} B", files.len(), sizes.0, sizes.1);

        // TileJSON for MLT.
        let tj = get(&app, &format!("/tiles/{layers}?f=mlt")).await.json();
        assert_eq!(tj["encoding"], "mlt", "{label}");
        assert!(tj["tiles"][0].as_str().unwrap().ends_with("{z}/{x}/{y}?f=mlt"), "{label}: {tj}");
        assert!(get(&app, &format!("/tiles/{layers}")).await.json().get("encoding").is_none());
        get(&app, &format!("/tiles/{layers}/14/0/0?f=png")).await.problem(400);

        // A new case drops the cached MLT tile with the MVT one, and the new MLT draws it.
        let g = city.grids[city.grids.len() / 2].geom.interior_point().unwrap();
        let t = tiles_covering([g.x(), g.y(), g.x(), g.y()], 16).next().unwrap();
        let uri = format!("/tiles/cases/16/{}/{}?f=mlt", t.x, t.y);
        let before = get(&app, &uri).await;
        assert_eq!(get(&app, &uri).await.headers["x-tile-cache"], "hit", "{label}");
        let token = create(&*st.store, Role::Supervisor, None, None).await.unwrap();
        let body = json!({"class_code": city.event_classes[0].code.as_str(), "lon": g.x(), "lat": g.y(),
            "crs": "cgcs2000", "description": "MLT 测试", "source": "supervisor"});
        assert_eq!(post_as(&app, "/api/v1/cases", Some(&token), body.to_string().into_bytes()).await.status, 201);
        let mut after = get(&app, &uri).await;
        for _ in 0..50 {
            if after.headers["x-tile-cache"] == "miss" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            after = get(&app, &uri).await;
        }
        assert_eq!(after.headers["x-tile-cache"], "miss", "{label}: the MLT tile was not invalidated");
        assert_ne!(after.body, before.body, "{label}");
        // The cases an MLT answer draws, as @maplibre/mlt decodes them (none in a 204).
        let cases = |r: &Resp, name: &str| {
            if r.status == 204 {
                return 0;
            }
            let f = dir.path().join(format!("{label}-{name}.mlt"));
            std::fs::write(&f, &r.body).unwrap();
            mlt_layers(&[f])[0].iter().find(|(n, _)| n == "cases").map_or(0, |(_, f)| f.len())
        };
        assert_eq!(
            cases(&after, "after"),
            cases(&before, "before") + 1,
            "{label}: the new case is not in the MLT tile"
        );
        st.store.close().await;
    }
}
