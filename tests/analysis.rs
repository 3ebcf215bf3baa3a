//! The analysis API through the real router on both stores: hotspots by every unit kind and
//! method with filters, density as a grid, as GeoJSON and as heat tiles, the hotspots tile
//! layer, emerging hotspots, rankings, the peak profile and box-select statistics, each checked
//! against counts taken independently from the demo city; and every kind of bad input as a 4xx
//! problem. The statistics themselves are checked against PySAL in `analysis_peer.rs`.

mod common;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};
use common::{both_stores, get, get_with, post_as, post_json, post_raw, small_city};
use geo::{Contains, GeodesicArea, Intersects, Polygon};
use geozero::mvt::{Message, Tile};
use onemap::model::{Alarm, City};
use onemap::sensors::rules::Level;
use serde_json::{Value, json};

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

fn midnight(s: &str) -> DateTime<Utc> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    beijing().from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap()).unwrap().to_utc()
}

fn props(fc: &Value) -> Vec<&Value> {
    fc["features"].as_array().unwrap().iter().map(|f| &f["properties"]).collect()
}

fn total(fc: &Value) -> f64 {
    props(fc).iter().map(|p| p["count"].as_f64().unwrap()).sum()
}

/// A box around the centre of the city's first grids, about `half_m` metres each way.
fn box_around(city: &City, half_m: f64) -> Polygon<f64> {
    let c = geo::Centroid::centroid(&city.grids[city.grids.len() / 2].geom).unwrap();
    let (dx, dy) = onemap::geo::metres_to_degrees(half_m, c.y());
    geo::Rect::new((c.x() - dx, c.y() - dy), (c.x() + dx, c.y() + dy)).to_polygon()
}

fn polygon_json(p: &Polygon<f64>) -> Value {
    json!({"type": "Polygon", "coordinates": [p.exterior().0.iter().map(|c| [c.x, c.y]).collect::<Vec<_>>()]})
}

#[tokio::test]
async fn analyses_count_what_the_city_holds_on_both_stores() {
    let city = small_city();
    assert!(city.communities.len() < 4 && city.grids.len() > 100, "the checks below assume a small city");
    for (store, st) in both_stores("analysis", city).await {
        let app = onemap::app(st.clone().with_public_read());

        // Gi* by unit grid: one feature per grid, every case counted in its grid.
        let r = get(&app, "/api/v1/analysis/hotspots?layer=cases&unit=grid&method=gi_star").await;
        assert_eq!(r.status, 200, "{store}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.content_type(), "application/geo+json");
        let fc = r.json();
        assert_eq!(fc["features"].as_array().unwrap().len(), city.grids.len(), "{store}: empty grids included");
        assert_eq!(total(&fc), city.cases.len() as f64);
        assert_eq!(fc["analysis"]["outside"], 0);
        let busiest = &city.grids[0].code;
        let expected = city.cases.iter().filter(|c| c.grid_code.as_ref() == Some(busiest)).count() as f64;
        let f = fc["features"].as_array().unwrap().iter().find(|f| f["id"] == busiest.as_str()).unwrap();
        assert_eq!(f["properties"]["count"].as_f64().unwrap(), expected);
        assert_eq!(f["geometry"]["type"], "MultiPolygon");
        let mut hot = 0;
        for p in props(&fc) {
            let (z, bin) = (p["z"].as_f64().unwrap(), p["bin"].as_i64().unwrap());
            let level = if z.abs() > 2.576 {
                3
            } else if z.abs() > 1.960 {
                2
            } else if z.abs() > 1.645 {
                1
            } else {
                0
            };
            assert_eq!(bin, if z < 0.0 { -level } else { level }, "{store}: bin of z {z}");
            assert!((0.0..=1.0).contains(&p["p"].as_f64().unwrap()));
            hot += (bin == 3) as usize;
        }
        assert!(hot > 0, "{store}: the demo's hotspots show at 99%");

        // The FDR correction can only make fewer units significant.
        let fdr = get(&app, "/api/v1/analysis/hotspots?unit=grid&fdr=true&geometry=false").await.json();
        let significant = |fc: &Value| props(fc).iter().filter(|p| p["bin"].as_i64().unwrap() != 0).count();
        assert!(significant(&fdr) <= significant(&fc));
        assert!(props(&fdr).iter().all(|p| p["p_fdr"].as_f64().unwrap() >= p["p"].as_f64().unwrap() - 1e-15));
        assert!(fdr["features"][0]["geometry"].is_null(), "geometry=false leaves it out");

        // Filters: a class prefix, a status, a source and a date range count only their cases.
        let month = "from=2026-10-01&to=2026-10-31";
        let (from, to) = (midnight("2026-10-01"), midnight("2026-11-01"));
        let fc = get(&app, &format!("/api/v1/analysis/hotspots?method=count&class_code=01&{month}")).await.json();
        let expected =
            city.cases.iter().filter(|c| c.class_code.starts_with("01") && c.reported_at >= from && c.reported_at < to);
        assert_eq!(total(&fc), expected.count() as f64, "{store}");
        let fc = get(&app, "/api/v1/analysis/hotspots?method=count&status=closed&source=public").await.json();
        let expected =
            city.cases.iter().filter(|c| c.status == onemap::model::Status::Closed && c.source == "public").count();
        assert_eq!(total(&fc), expected as f64);
        assert!(expected > 0, "the filter keeps some cases");

        // Other units: communities, districts and H3 cells count every case too.
        for unit in ["community", "street", "district", "h3:8"] {
            let fc = get(&app, &format!("/api/v1/analysis/hotspots?unit={unit}&method=local_moran")).await.json();
            assert_eq!(total(&fc), city.cases.len() as f64, "{store} {unit}");
            let p = props(&fc);
            // The small city has only a few communities, streets and districts: Moran's I needs
            // four units and some variation.
            if p.len() >= 4 {
                assert!(
                    p.iter().all(|p| ["HH", "LH", "LL", "HL"].contains(&p["quadrant"].as_str().unwrap())),
                    "{unit}"
                );
                assert!(fc["analysis"]["global_moran"]["i"].is_number(), "{unit}");
            } else {
                assert!(fc["analysis"]["global_moran"].is_null(), "{unit}: {}", fc["analysis"]);
            }
        }
        let hex = get(&app, "/api/v1/analysis/hotspots?unit=h3:9&geometry=false").await.json();
        let code = hex["features"][0]["id"].as_str().unwrap();
        assert_eq!(code.len(), 15, "an H3 index: {code}");
        assert!(props(&hex).iter().any(|p| p["count"] == 0.0), "empty cells included");

        // Components by class; alarms from the store at their sensors.
        let fc = get(&app, "/api/v1/analysis/hotspots?layer=components&class_code=0101&method=count").await.json();
        assert_eq!(total(&fc), city.components.iter().filter(|c| c.class_code == "0101").count() as f64);
        let sensor = &city.sensors[0];
        let at = midnight("2026-11-20");
        let alarm = Alarm {
            id: 0,
            sensor_code: sensor.code.clone(),
            level: Level::Red,
            peak_level: Level::Red,
            raised_at: at,
            value: 1.0,
            updated_at: at,
            last_value: 1.0,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            case_id: None,
        };
        let change = onemap::store::log::ChangeRow::record(
            onemap::model::Collection::Alarms,
            "0",
            onemap::store::log::Op::Upsert,
            None,
            None,
        );
        st.store.save_alarm(&alarm, change).await.unwrap();
        let uri = format!(
            "/api/v1/analysis/hotspots?layer=alarms&method=count&unit=grid&level=red&class_code={}",
            sensor.kind
        );
        let fc = get(&app, &uri).await.json();
        assert_eq!(total(&fc), 1.0, "{store}");
        let f = props(&fc).into_iter().find(|p| p["count"] == 1.0).unwrap();
        assert_eq!(Some(f["code"].as_str().unwrap()), sensor.grid_code.as_deref());
        let none = get(&app, "/api/v1/analysis/hotspots?layer=alarms&method=count&status=cleared").await.json();
        assert_eq!(total(&none), 0.0);

        // Rankings with the change against the period before.
        let r = get(&app, &format!("/api/v1/analysis/ranking?by=grid&top=5&{month}")).await.json();
        let rows = r["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 5);
        let count_in = |code: &str, f: DateTime<Utc>, t: DateTime<Utc>| {
            city.cases
                .iter()
                .filter(|c| c.grid_code.as_deref() == Some(code) && c.reported_at >= f && c.reported_at < t)
                .count() as u64
        };
        let prev_from = from - (to - from);
        for w in rows.windows(2) {
            assert!(w[0]["count"].as_u64() >= w[1]["count"].as_u64());
        }
        for row in rows {
            let code = row["code"].as_str().unwrap();
            assert_eq!(row["count"].as_u64().unwrap(), count_in(code, from, to), "{store} {code}");
            assert_eq!(row["previous"].as_u64().unwrap(), count_in(code, prev_from, from));
            assert!(row["name"].is_string());
        }
        let mut grid_counts: Vec<u64> = city.grids.iter().map(|g| count_in(&g.code, from, to)).collect();
        grid_counts.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(rows[0]["count"].as_u64().unwrap(), grid_counts[0], "the top grid is the busiest");
        let by_class = get(&app, &format!("/api/v1/analysis/ranking?by=class&top=3&{month}")).await.json();
        assert!(by_class["rows"][0]["name"].is_string(), "{by_class}");
        let by_district = get(&app, "/api/v1/analysis/ranking?by=district&from=2025-01-01&to=2025-12-31").await.json();
        assert!(!by_district["rows"].as_array().unwrap().is_empty());

        // The peak-time profile: every case of the filter in one hour of one weekday, city time.
        let p = get(&app, &format!("/api/v1/analysis/peaks?{month}")).await.json();
        let mut m = [[0u64; 24]; 7];
        for c in city.cases.iter().filter(|c| c.reported_at >= from && c.reported_at < to) {
            let t = c.reported_at.with_timezone(&beijing());
            m[t.weekday().num_days_from_monday() as usize][t.hour() as usize] += 1;
        }
        assert_eq!(p["matrix"], json!(m), "{store}");
        assert_eq!(p["total"].as_u64().unwrap(), m.iter().flatten().sum::<u64>());

        // Box-select statistics against point-in-polygon counts of the city.
        let sel = box_around(city, 250.0);
        let r = post_json(&app, "/api/v1/analysis/stats", &json!({"geometry": polygon_json(&sel)})).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let s = r.json();
        let comps = city.components.iter().filter(|c| sel.intersects(&c.geom.to_geometry())).count();
        assert_eq!(s["components"]["total"].as_u64().unwrap(), comps as u64, "{store}");
        assert!(comps > 0);
        let cases = city.cases.iter().filter(|c| sel.intersects(&c.geom)).count();
        assert_eq!(s["cases"]["total"].as_u64().unwrap(), cases as u64);
        let open = city.cases.iter().filter(|c| sel.intersects(&c.geom) && onemap::cases::is_open(c)).count();
        assert_eq!(s["cases"]["open"].as_u64().unwrap(), open as u64);
        let by_light: u64 =
            s["cases"]["open_by_light"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(by_light, open as u64);
        let grids = city.grids.iter().filter(|g| sel.intersects(&g.geom)).count();
        assert_eq!(s["grids"]["count"].as_u64().unwrap(), grids as u64);
        let (inside, area) = (s["grids"]["area_inside_m2"].as_f64().unwrap(), s["area_m2"].as_f64().unwrap());
        // The grids' area inside: each grid's intersection with the box, measured geodesically.
        let expected: f64 =
            city.grids.iter().map(|g| geo::BooleanOps::intersection(&sel, &g.geom).geodesic_area_unsigned()).sum();
        assert!((inside - expected).abs() <= 1e-6 * expected && expected > 0.0, "{inside} vs {expected}");
        assert!(inside <= area * (1.0 + 1e-9), "{inside} of {area}");
        assert!((area - 0.25e6).abs() < 0.01 * 0.25e6, "a 500 m box: {area}");
        assert!(s["green_space_m2"].as_f64().unwrap() >= 0.0);
        let whole = city.grids.iter().filter(|g| sel.contains(&g.geom)).count();
        assert!(whole > 0 && whole < grids, "some grids inside, some across the edge");
    }
}

#[tokio::test]
async fn density_grid_geojson_and_heat_tiles() {
    let city = small_city();
    let st = common::seeded_state(&common::fresh_gpkg("analysis-density"), city).await;
    let app = onemap::app(st.with_public_read());
    let r = get(&app, "/api/v1/analysis/density?cell_m=100&bandwidth_m=400").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let g = r.json();
    let (cols, rows) = (g["cols"].as_u64().unwrap(), g["rows"].as_u64().unwrap());
    let values = g["values"].as_array().unwrap();
    assert_eq!(values.len() as u64, cols * rows);
    assert_eq!(g["points"].as_u64().unwrap(), city.cases.len() as u64);
    assert!(g["crs"].as_str().unwrap().starts_with("EPSG:45"), "a CGCS2000 Gauss-Krüger zone: {}", g["crs"]);
    // The kernel integrates to one per point, less what falls outside the grid at its edges.
    let mass: f64 = values.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() * 0.01;
    let n = city.cases.len() as f64;
    assert!(mass <= n * 1.001 && mass > 0.95 * n, "{mass} of {n}");
    let max = values.iter().map(|v| v.as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(g["max"].as_f64().unwrap(), max);

    let gj = get(&app, "/api/v1/analysis/density?cell_m=100&bandwidth_m=400&format=geojson&class_code=04").await.json();
    let feats = gj["features"].as_array().unwrap();
    assert!(!feats.is_empty());
    assert!(feats.iter().all(|f| f["properties"]["density"].as_f64().unwrap() > 0.0));

    // Heat tiles: points with density and weight 0-1 where the cases are.
    let c = &city.cases[0].geom;
    let t = onemap::geo::tiles_covering([c.x(), c.y(), c.x(), c.y()], 14).next().unwrap();
    let r = get(&app, &format!("/tiles/density/{}/{}/{}?cell_m=100&bandwidth_m=400", t.z, t.x, t.y)).await;
    assert_eq!(r.status, 200);
    let tile = Tile::decode(&r.body[..]).unwrap();
    assert_eq!(tile.layers[0].name, "density");
    assert!(tile.layers[0].keys.contains(&"weight".to_string()));
    let tj = get(&app, "/tiles/density").await.json();
    assert_eq!(tj["vector_layers"][0]["id"], "density");
}

#[tokio::test]
async fn hotspot_tiles_and_emerging_hotspots() {
    let city = small_city();
    let st = common::seeded_state(&common::fresh_gpkg("analysis-emerging"), city).await;
    let analyst = onemap::auth::create(&*st.store, onemap::auth::Role::Analyst, None, None).await.unwrap();
    let app = onemap::app(st.with_public_read());
    let c = &city.cases[0].geom;
    let t = onemap::geo::tiles_covering([c.x(), c.y(), c.x(), c.y()], 13).next().unwrap();
    let path = format!("/tiles/hotspots/{}/{}/{}", t.z, t.x, t.y);
    assert_eq!(get(&app, &path).await.status, 204, "no analysis yet");
    let mut events = common::EventStream::open(&app).await;
    let fc = get(&app, "/api/v1/analysis/hotspots?unit=grid&geometry=false").await.json();
    // A GET changes nothing shared: the feed stays quiet (the caller redraws its overlay).
    assert_eq!(events.next(std::time::Duration::from_secs(2)).await.map(|e| e.0), Some("ready".into()));
    assert!(events.next(std::time::Duration::from_millis(500)).await.is_none(), "no event for a GET");
    assert_eq!(get(&app, &path).await.status, 204, "a GET publishes no overlay");
    // Publishing is a POST, announced to every screen.
    let published =
        post_as(&app, "/api/v1/analysis/hotspots?unit=grid&geometry=false", Some(&analyst), Vec::new()).await;
    assert_eq!(published.status, 200, "{}", String::from_utf8_lossy(&published.body));
    events.wait_for("hotspots.published", |_| true).await;
    let r = get_with(&app, &path, &[]).await;
    assert_eq!(r.status, 200);
    let tile = Tile::decode(&r.body[..]).unwrap();
    let layer = &tile.layers[0];
    assert_eq!(layer.name, "hotspots");
    assert!(layer.keys.contains(&"bin".to_string()) && layer.keys.contains(&"z".to_string()));
    // The tile's grid codes are units of the analysis.
    let codes: Vec<&str> = fc["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    let code_key = layer.keys.iter().position(|k| k == "code").unwrap() as u32;
    let f = &layer.features[0];
    let v = f.tags.chunks(2).find(|kv| kv[0] == code_key).map(|kv| &layer.values[kv[1] as usize]).unwrap();
    assert!(codes.contains(&v.string_value.as_deref().unwrap()));
    let tj = get(&app, "/tiles/hotspots").await.json();
    assert_eq!(tj["tilejson"], "3.0.0");
    assert!(tj["vector_layers"][0]["fields"].get("bin").is_some());

    // Emerging hotspots by community over the demo's last year, by month.
    let r = get(&app, "/api/v1/analysis/emerging?unit=community&step=month&from=2025-11-01&to=2026-10-31&series=true")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json();
    assert_eq!(e["emerging"]["steps"].as_array().unwrap().len(), 12);
    let feats = e["features"].as_array().unwrap();
    assert_eq!(feats.len(), city.communities.len());
    let tally: u64 = e["emerging"]["categories"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(tally, feats.len() as u64);
    let (from, to) = (midnight("2025-11-01"), midnight("2026-11-01"));
    let in_year = city.cases.iter().filter(|c| c.reported_at >= from && c.reported_at < to).count() as f64;
    let counted: f64 = feats.iter().map(|f| f["properties"]["count"].as_f64().unwrap()).sum();
    assert_eq!(counted, in_year);
    for f in feats {
        let p = &f["properties"];
        assert_eq!(p["series"]["z"].as_array().unwrap().len(), 12);
        let tau = p["trend"]["tau"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&tau));
        let bins = p["series"]["bin"].as_array().unwrap();
        assert_eq!(p["hot_steps"].as_u64().unwrap(), bins.iter().filter(|b| b.as_i64().unwrap() > 0).count() as u64);
        // A category's defining fact holds: hot now for the hot categories but historical.
        let cat = p["category"].as_str().unwrap();
        if cat.ends_with("hot_spot") && cat != "historical_hot_spot" {
            assert!(bins.last().unwrap().as_i64().unwrap() > 0, "{cat}");
        }
    }
    let weeks = get(&app, "/api/v1/analysis/emerging?unit=h3:8&step=week&from=2026-09-01&to=2026-10-31").await.json();
    assert!(weeks["emerging"]["steps"].as_array().unwrap().len() >= 8);
}

#[tokio::test]
async fn bad_analysis_requests_are_problems() {
    let city = small_city();
    let st = common::seeded_state(&common::fresh_gpkg("analysis-bad"), city).await;
    let app = onemap::app(st.with_public_read());
    let cases = [
        ("/api/v1/analysis/hotspots?unit=county", 400, "unknown-unit"),
        ("/api/v1/analysis/hotspots?unit=h3:16", 400, "invalid-h3-resolution"),
        ("/api/v1/analysis/hotspots?unit=h3:-1", 400, "invalid-h3-resolution"),
        ("/api/v1/analysis/hotspots?unit=h3:x", 400, "invalid-h3-resolution"),
        ("/api/v1/analysis/hotspots?unit=h3:15", 422, "too-many-cells"),
        ("/api/v1/analysis/hotspots?from=2026-10-31&to=2026-10-01", 400, "invalid-date-range"),
        ("/api/v1/analysis/hotspots?from=2026-13-01", 400, "invalid-parameter"),
        ("/api/v1/analysis/hotspots?layer=trees", 400, "unknown-layer"),
        ("/api/v1/analysis/hotspots?method=kriging", 400, "unknown-method"),
        ("/api/v1/analysis/hotspots?colour=red", 400, "unknown-parameter"),
        ("/api/v1/analysis/hotspots?fdr=perhaps", 400, "invalid-parameter"),
        ("/api/v1/analysis/hotspots?class_code=01%27%20OR%201", 400, "invalid-parameter"),
        ("/api/v1/analysis/hotspots?class_code=99", 400, "unknown-class"),
        ("/api/v1/analysis/hotspots?layer=alarms&class_code=lava", 400, "unknown-class"),
        ("/api/v1/analysis/hotspots?level=red", 400, "invalid-parameter"),
        ("/api/v1/analysis/density?cell_m=0", 400, "invalid-parameter"),
        ("/api/v1/analysis/density?cell_m=100&bandwidth_m=50", 400, "invalid-parameter"),
        ("/api/v1/analysis/density?cell_m=1&bandwidth_m=10", 422, "too-many-cells"),
        ("/api/v1/analysis/density?bbox=1,2,3", 400, "invalid-bbox"),
        ("/api/v1/analysis/density?format=png", 400, "invalid-parameter"),
        ("/api/v1/analysis/emerging?step=year", 400, "invalid-parameter"),
        ("/api/v1/analysis/emerging?step=month&from=2026-10-01&to=2026-10-31", 400, "invalid-parameter"),
        ("/api/v1/analysis/emerging?unit=grid&step=day&from=1900-01-01&to=2999-12-31", 422, "too-many-bins"),
        ("/api/v1/analysis/ranking?by=planet", 400, "unknown-unit"),
        ("/api/v1/analysis/ranking?top=0", 400, "invalid-parameter"),
        ("/api/v1/analysis/ranking?from=2026-10-02&to=2026-10-01", 400, "invalid-date-range"),
        ("/api/v1/analysis/peaks?layer=roads", 400, "unknown-layer"),
        ("/tiles/hotspots/3/6/3?status=closed", 400, "unknown-parameter"),
        ("/tiles/density/99/0/0", 400, "invalid-tile"),
    ];
    for (uri, status, kind) in cases {
        let v = get(&app, uri).await.problem(status);
        assert_eq!(v["type"], format!("/problems/{kind}"), "{uri}: {v}");
    }

    // Box-select: a bow-tie, a polygon larger than the city, malformed bodies, a line.
    let stats = "/api/v1/analysis/stats";
    let bow = json!({"geometry": {"type": "Polygon", "coordinates": [[[88.8, 29.2], [88.9, 29.3], [88.9, 29.2], [88.8, 29.3], [88.8, 29.2]]]}});
    let v = post_json(&app, stats, &bow).await.problem(400);
    assert_eq!(v["type"], "/problems/invalid-geometry");
    let huge = json!({"geometry": "POLYGON((80 20, 100 20, 100 40, 80 40, 80 20))"});
    let v = post_json(&app, stats, &huge).await.problem(422);
    assert_eq!(v["type"], "/problems/polygon-too-large", "{v}");
    post_raw(&app, stats, b"{\"geometry\":".to_vec()).await.problem(400);
    post_json(&app, stats, &json!({"shape": "POLYGON((0 0,1 0,1 1,0 0))"})).await.problem(400);
    let line = json!({"geometry": {"type": "LineString", "coordinates": [[88.8, 29.2], [88.9, 29.3]]}});
    post_json(&app, stats, &line).await.problem(400);
    post_json(&app, stats, &json!({"geometry": 5})).await.problem(400);
    // GCJ-02 input lands where the same place in WGS84 does.
    let sel = box_around(city, 300.0);
    let gcj: Vec<[f64; 2]> = sel
        .exterior()
        .0
        .iter()
        .map(|c| {
            let (x, y) = onemap::geo::wgs84_to_gcj02(c.x, c.y);
            [x, y]
        })
        .collect();
    let a = post_json(&app, stats, &json!({"geometry": polygon_json(&sel)})).await.json();
    let b = post_json(&app, stats, &json!({"crs": "gcj02", "geometry": {"type": "Polygon", "coordinates": [gcj]}}))
        .await
        .json();
    assert_eq!(a["components"]["total"], b["components"]["total"]);
    assert_eq!(a["grids"]["codes"], b["grids"]["codes"]);
}
