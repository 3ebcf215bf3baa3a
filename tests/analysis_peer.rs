//! The analysis statistics against a real peer: `scripts/peer/analysis.py` computes Gi*, local and
//! global Moran's I, the FDR q-values, queen and H3 neighbours, H3 covers and counts, the
//! space-time Gi* of emerging hotspots, Mann-Kendall and Gauss-Krüger coordinates with PySAL
//! (esda, libpysal), h3-py, pymannkendall, scipy and pyproj, on the same fixtures onemap reads:
//! a hand-made set of irregular polygons, the demo city's unit grids and communities, and H3
//! cells over the demo city. Every number must agree to 1e-9.
//!
//! The peer runs from the virtual environment `scripts/test` makes (`var/peer-venv`, or
//! `ONEMAP_PEER_PYTHON`); without it the test fails, it never skips.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::peer_python;
use geo::{MultiPolygon, Polygon};
use onemap::analysis::emerging::space_time_gi_star;
use onemap::analysis::stats::{self, Neighbours};
use onemap::analysis::units::{UnitKind, Units};
use onemap::analysis::{Filter, Source, count};
use onemap::geo::gauss_kruger::GaussKruger;
use onemap::index::CityIndex;
use onemap::model::Str;
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-9;

/// Runs the peer on `input` and returns its answer.
fn run_peer(input: &Value) -> Value {
    let dir = std::env::temp_dir().join(format!("onemap-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (inp, out) = (dir.join("input.json"), dir.join("output.json"));
    std::fs::write(&inp, input.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/peer/analysis.py");
    let status = Command::new(peer_python()).arg(&script).arg(&inp).arg(&out).status().expect("run the peer");
    assert!(status.success(), "the peer failed: {status}");
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

/// `a` equals the peer's `b` to 1e-9 (relative above 1); `None` stands for the peer's null.
fn close(a: Option<f64>, b: &Value, what: &str) {
    match (a, b.as_f64()) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert!((a - b).abs() <= TOLERANCE * b.abs().max(1.0), "{what}: onemap {a} vs peer {b} (diff {:e})", a - b)
        }
        (a, _) => panic!("{what}: onemap {a:?} vs peer {b}"),
    }
}

fn floats(v: &Value) -> &Vec<Value> {
    v.as_array().expect("an array")
}

fn polygons_json(geoms: &[MultiPolygon<f64>]) -> Value {
    let ring = |r: &geo::LineString<f64>| r.0.iter().map(|c| json!([c.x, c.y])).collect::<Vec<_>>();
    let poly = |p: &Polygon<f64>| {
        std::iter::once(ring(p.exterior())).chain(p.interiors().iter().map(ring)).collect::<Vec<_>>()
    };
    json!(geoms.iter().map(|g| g.0.iter().map(poly).collect::<Vec<_>>()).collect::<Vec<_>>())
}

/// Compares the neighbours and every statistic of one unit set with the peer's.
fn compare_statistics(name: &str, w: &Neighbours, values: &[f64], peer: &Value) {
    let nb: Vec<Vec<u32>> = (0..w.len()).map(|i| w.of(i).to_vec()).collect();
    let peer_nb: Vec<Vec<u32>> = serde_json::from_value(peer["neighbours"].clone()).unwrap();
    assert_eq!(nb, peer_nb, "{name}: neighbours");
    let gi = stats::gi_star(values, w);
    for (i, g) in gi.iter().enumerate() {
        close(g.z, &peer["gi_z"][i], &format!("{name} Gi* z[{i}]"));
        close(g.p, &peer["gi_p"][i], &format!("{name} Gi* p[{i}]"));
    }
    let q = stats::fdr_bh(&gi.iter().map(|g| g.p).collect::<Vec<_>>());
    for (i, q) in q.iter().enumerate() {
        close(*q, &peer["gi_q"][i], &format!("{name} FDR q[{i}]"));
    }
    let lm = stats::local_moran(values, w).expect("values vary");
    let n = values.len() as f64;
    for (i, l) in lm.iter().enumerate() {
        // esda's Is is (n-1)/n of the GeoDa and spdep I.
        close(Some(l.i * (n - 1.0) / n), &peer["lm_is"][i], &format!("{name} local I[{i}]"));
        close(Some(l.e), &peer["lm_ei"][i], &format!("{name} local E[I][{i}]"));
        close(Some(l.v), &peer["lm_vi"][i], &format!("{name} local V[I][{i}]"));
        // esda's quadrants: 1 HH, 2 LH, 3 LL, 4 HL.
        let q = ["HH", "LH", "LL", "HL"][peer["lm_q"][i].as_u64().unwrap() as usize - 1];
        assert_eq!(l.quadrant(), q, "{name} quadrant[{i}]");
    }
    let gm = stats::global_moran(values, w).expect("values vary");
    close(Some(gm.i), &peer["moran"]["i"], &format!("{name} global I"));
    close(Some(gm.e), &peer["moran"]["ei"], &format!("{name} global E[I]"));
    close(Some(gm.v), &peer["moran"]["vi"], &format!("{name} global V[I]"));
    close(gm.z, &peer["moran"]["z"], &format!("{name} global z"));
    close(gm.p, &peer["moran"]["p"], &format!("{name} global p"));
}

#[test]
fn statistics_agree_with_pysal_h3_and_pymannkendall() {
    // Fixture 1: hand-made irregular polygons (T-junctions, a hole and its filling, an island).
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/analysis/irregular.json")).expect("fixture parses");
    let codes: Vec<Str> = serde_json::from_value(fixture["codes"].clone()).unwrap();
    let polys: Vec<Vec<Vec<Vec<[f64; 2]>>>> = serde_json::from_value(fixture["polygons"].clone()).unwrap();
    let geoms: Vec<MultiPolygon<f64>> = polys
        .iter()
        .map(|unit| {
            MultiPolygon(
                unit.iter()
                    .map(|rings| {
                        let ls = |r: &Vec<[f64; 2]>| {
                            geo::LineString::from(r.iter().map(|c| (c[0], c[1])).collect::<Vec<_>>())
                        };
                        Polygon::new(ls(&rings[0]), rings[1..].iter().map(ls).collect())
                    })
                    .collect(),
            )
        })
        .collect();
    let irregular = Units::from_polygons(codes, geoms.clone());
    let irregular_values: Vec<f64> = serde_json::from_value(fixture["values"].clone()).unwrap();

    // Fixtures 2 and 3: the demo city's unit grids and communities with its case counts (half
    // the Shigatse demo: about 3,200 grids in 22 communities).
    let city = onemap::demo::generate(&onemap::demo::DemoParams::scaled(0.5));
    let index = CityIndex::from_city(city);
    let grids = Units::build(&index, UnitKind::Grid).unwrap();
    let (grid_counts, outside) = count(&index, &grids, Source::Cases, &[], &Filter::default());
    assert_eq!(outside, 0, "every demo case lies in a grid");
    let communities = Units::build(&index, UnitKind::Community).unwrap();
    let (community_counts, _) = count(&index, &communities, Source::Cases, &[], &Filter::default());
    assert_eq!(community_counts.iter().sum::<f64>(), grid_counts.iter().sum::<f64>());

    // Fixture 4: H3 cells at resolution 9 covering the demo city's unit grids, with its cases.
    let res = h3o::Resolution::Nine;
    let hex = Units::build(&index, UnitKind::H3(res)).unwrap();
    let (hex_counts, hex_outside) = count(&index, &hex, Source::Cases, &[], &Filter::default());
    // The city H3 covers: its unit grids (onemap tiles each and takes the union).
    let outline: Vec<Value> =
        index.grids.read().iter().map(|g| g.geom.exterior().0.iter().map(|c| json!([c.x, c.y])).collect()).collect();
    let points: Vec<Value> = index.cases.read().iter().map(|c| json!([c.geom.x(), c.geom.y()])).collect();

    // A space-time cube on the irregular units: 8 steps with a rising burst in one corner.
    let steps = 8;
    let cube: Vec<f64> = (0..irregular.len())
        .flat_map(|u| (0..steps).map(move |t| ((u * 7 + t * 3) % 5) as f64 + if u < 4 { t as f64 * 2.0 } else { 0.0 }))
        .collect();
    // Mann-Kendall series with ties, trends and none.
    let series = [
        vec![1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 6.0, 6.0, 6.0, 9.0],
        vec![5.0, 4.0, 4.0, 4.0, 3.0, 1.0, 1.0, 0.5],
        vec![0.3, -1.2, 0.8, 0.3, 2.5, -0.7, 0.3],
        vec![2.0, 2.0, 2.0, 2.0],
    ];
    let gk_points = [(114.0, 30.0), (113.1, 22.5), (115.4, 40.1), (114.7, 31.3)];

    let input = json!({
        "polygon_sets": [
            {"name": "irregular", "polygons": polygons_json(&geoms), "values": irregular_values},
            {"name": "demo_grids", "polygons": polygons_json(&grids.geoms), "values": grid_counts},
            {"name": "demo_communities", "polygons": polygons_json(&communities.geoms), "values": community_counts},
        ],
        "h3": [{"name": "demo_h3_9", "res": 9, "outline": outline, "points": points}],
        "cubes": [{"name": "irregular_cube", "set": "irregular", "steps": steps, "values": cube}],
        "mk": series,
        "gk": {"epsg": 4547, "points": gk_points.iter().map(|p| json!([p.0, p.1])).collect::<Vec<_>>()},
    });
    let peer = run_peer(&input);

    let sets = floats(&peer["polygon_sets"]);
    compare_statistics("irregular", irregular.neighbours(), &irregular_values, &sets[0]);
    compare_statistics("demo grids", grids.neighbours(), &grid_counts, &sets[1]);
    compare_statistics("demo communities", communities.neighbours(), &community_counts, &sets[2]);
    // The fixture does what it says: T-junction units and the hole have neighbours.
    let at = |c: &str| irregular.index_of(c).unwrap();
    assert!(irregular.neighbours().degree(at("E1")) >= 2, "E1 meets the lattice at T-junctions only");
    assert!(irregular.neighbours().of(at("H1")).contains(&(at("H2") as u32)), "a hole's filling is a neighbour");
    assert_eq!(irregular.neighbours().degree(at("ISL")), 0);

    // H3: the same cover, the same cell for every point, the same counts and statistics.
    let h = &peer["h3"][0];
    let peer_cells: Vec<String> = serde_json::from_value(h["cells"].clone()).unwrap();
    assert_eq!(hex.codes.iter().map(|c| c.to_string()).collect::<Vec<_>>(), peer_cells, "H3 cover");
    for (k, c) in index.cases.read().iter().enumerate() {
        let cell = h3o::LatLng::new(c.geom.y(), c.geom.x()).unwrap().to_cell(res).to_string();
        assert_eq!(cell, h["point_cells"][k].as_str().unwrap(), "H3 cell of case {}", c.id);
    }
    let peer_counts: Vec<f64> = serde_json::from_value(h["counts"].clone()).unwrap();
    assert_eq!(hex_counts, peer_counts, "H3 counts");
    assert_eq!(hex_outside as u64, h["outside"].as_u64().unwrap());
    compare_statistics("demo H3 9", hex.neighbours(), &hex_counts, h);

    // The space-time cube's Gi* and the Mann-Kendall trend of each unit's z series.
    let c = &peer["cubes"][0];
    let gi = space_time_gi_star(&cube, steps, irregular.neighbours());
    for (k, g) in gi.iter().enumerate() {
        close(g.z, &c["z"][k], &format!("space-time Gi* z[{k}]"));
    }
    for u in 0..irregular.len() {
        // The peer's own z series, so the trend test is compared on identical input.
        let zs: Vec<f64> = (0..steps).map(|t| c["z"][u * steps + t].as_f64().unwrap()).collect();
        let mk = stats::mann_kendall(&zs).unwrap();
        let p = &c["mk"][u];
        for (what, a) in [("s", mk.s), ("var_s", mk.var_s), ("z", mk.z), ("p", mk.p), ("tau", mk.tau)] {
            close(Some(a), &p[what], &format!("Mann-Kendall {what} of unit {u}"));
        }
    }
    for (k, s) in series.iter().enumerate() {
        let mk = stats::mann_kendall(s).unwrap();
        let p = &peer["mk"][k];
        for (what, a) in [("s", mk.s), ("var_s", mk.var_s), ("z", mk.z), ("p", mk.p), ("tau", mk.tau)] {
            close(Some(a), &p[what], &format!("Mann-Kendall {what} of series {k}"));
        }
    }

    // Gauss-Krüger against PROJ, to a millimetre.
    let gk = GaussKruger::new(114.0);
    for (k, &(lon, lat)) in gk_points.iter().enumerate() {
        let (x, y) = gk.forward(lon, lat);
        let (px, py) = (peer["gk"][k][0].as_f64().unwrap(), peer["gk"][k][1].as_f64().unwrap());
        assert!((x - px).abs() < 1e-3 && (y - py).abs() < 1e-3, "GK {lon},{lat}: {x},{y} vs PROJ {px},{py}");
    }
}
