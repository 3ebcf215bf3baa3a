//! The one-map core through the real router on both stores: health, locate (every grid, shared
//! edges, outside, GCJ-02 and BD-09 input), OGC API Features, and bad input.

mod common;

use common::*;
use geo::{BoundingRect, Contains, InteriorPoint, Intersects};
use onemap::app;
use onemap::geo::china::{wgs84_to_bd09, wgs84_to_gcj02};
use onemap::index::Record;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_api_on_both_stores() {
    let city = shigatse();
    for (label, state) in both_stores("core", city).await {
        let router = app(state.clone().with_public_read());
        health(&router, label, city).await;
        locate_every_grid(&router, label, city).await;
        shared_edges_resolve_deterministically(&router, city).await;
        offsets_locate_to_the_same_grid(&router, city).await;
        outside_is_404(&router).await;
        features(&router, city).await;
        bad_input(&router).await;
        database_agrees_with_index(&state, label, city).await;
        state.store.close().await;
    }
}

async fn health(router: &axum::Router, label: &str, city: &onemap::model::City) {
    let r = get(router, "/health").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["store"], label);
    assert_eq!(v["layers"]["grids"], city.grids.len());
    assert_eq!(v["layers"]["components"], city.components.len());
    assert_eq!(v["layers"]["cases"], city.cases.len());
    assert_eq!(v["layers"]["districts"], 4);
    assert_eq!(v["layers"]["streets"], 9);
    assert_eq!(v["layers"]["communities"], 43);
    let m = get(router, "/metrics").await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body).unwrap();
    assert!(text.contains("onemap_http_requests_total"), "{text}");
    assert!(text.contains("onemap_layer_features{layer=\"grids\"}"), "{text}");
}

/// Every unit grid's interior point, in one batch, locates to that grid with its parents and the
/// responsible street office and district government.
async fn locate_every_grid(router: &axum::Router, label: &str, city: &onemap::model::City) {
    let points: Vec<[f64; 2]> = city
        .grids
        .iter()
        .map(|g| {
            let p = g.geom.interior_point().expect("grid has an interior point");
            [p.x(), p.y()]
        })
        .collect();
    let r = post_json(router, "/api/v1/locate", &json!({"crs": "cgcs2000", "points": points})).await;
    assert_eq!(r.status, 200, "{label}");
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), city.grids.len());
    let communities: std::collections::HashMap<&str, &onemap::model::Community> =
        city.communities.iter().map(|c| (c.code.as_str(), c)).collect();
    for (g, res) in city.grids.iter().zip(&results) {
        // An interior point can only sit on a shared edge if the grid is degenerate; it must be ours.
        assert_eq!(res["grid"]["code"], g.code.as_str(), "{label}: interior point of {} located elsewhere", g.code);
        assert_eq!(res["grid"]["name"], g.name.as_str());
        assert!((res["grid"]["area_m2"].as_f64().unwrap() - g.area_m2).abs() < 1e-6);
        assert_eq!(res["community"]["code"], g.community_code.as_str());
        let community = communities[g.community_code.as_str()];
        assert_eq!(res["street"]["code"], community.street_code.as_str());
        assert_eq!(res["district"]["code"], &community.street_code[..6]);
        // Exactly the territory responsibilities of the grid, its community, street and district,
        // narrowest first.
        let regions =
            [g.code.as_str(), community.code.as_str(), community.street_code.as_str(), &community.street_code[..6]];
        let expected: Vec<(&str, &str)> = regions
            .iter()
            .flat_map(|region| {
                city.responsibilities
                    .iter()
                    .filter(move |r| r.scope == "territory" && r.target == *region)
                    .map(|r| (r.dept_code.as_str(), r.role.as_str()))
            })
            .collect();
        let got: Vec<(&str, &str)> = res["responsible"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["dept_code"].as_str().unwrap(), r["role"].as_str().unwrap()))
            .collect();
        assert!(got.len() >= 2, "{}: a street office and a district government at least", g.code);
        assert_eq!(got, expected, "{}", g.code);
        for resp in res["responsible"].as_array().unwrap() {
            let dept =
                city.departments.iter().find(|d| d.code == resp["dept_code"].as_str().unwrap()).expect("known dept");
            assert_eq!(resp["dept_name"], dept.name.as_str());
        }
        assert_eq!(res["input"]["crs"], "cgcs2000");
    }
    // The single-point GET gives the same answer as the batch.
    let g = &city.grids[city.grids.len() / 2];
    let [lon, lat] = points[city.grids.len() / 2];
    let r = get(router, &format!("/api/v1/locate?lon={lon}&lat={lat}")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["grid"]["code"], g.code.as_str());
    assert_eq!(
        v,
        results[city.grids.len() / 2]
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("input".into(), json!({"lon": lon, "lat": lat, "crs": "wgs84"}));
                Value::Object(o)
            })
            .unwrap()
    );
}

/// Points on a boundary shared by several grids go to the smallest code, every time.
async fn shared_edges_resolve_deterministically(router: &axum::Router, city: &onemap::model::City) {
    let mut checked = 0;
    let mut ties = 0;
    for g in city.grids.iter().step_by(97) {
        let ring = &g.geom.exterior().0;
        // A vertex and the middle of the first edge: both lie on boundaries shared with neighbours.
        let mid = geo::coord! { x: (ring[0].x + ring[1].x) / 2.0, y: (ring[0].y + ring[1].y) / 2.0 };
        for c in [ring[0], mid] {
            let p = geo::Point::from(c);
            let touching: Vec<&str> =
                city.grids.iter().filter(|o| o.geom.intersects(&p)).map(|o| o.code.as_str()).collect();
            let expected = touching.iter().min().copied().expect("the grid itself touches");
            if touching.len() >= 2 {
                ties += 1;
            }
            for _ in 0..2 {
                let r = get(router, &format!("/api/v1/locate?lon={}&lat={}&crs=cgcs2000", c.x, c.y)).await;
                assert_eq!(r.status, 200);
                assert_eq!(r.json()["grid"]["code"], expected, "point {c:?} touching {touching:?}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100);
    assert!(
        ties > checked / 2,
        "most vertices and edge midpoints are shared by two or more grids: {ties} of {checked}"
    );
}

/// A phone in GCJ-02 or BD-09 finds the same grid as the WGS84 point it came from.
async fn offsets_locate_to_the_same_grid(router: &axum::Router, city: &onemap::model::City) {
    let sample: Vec<_> = city.grids.iter().step_by(31).collect();
    for (crs, f) in [("gcj02", wgs84_to_gcj02 as fn(f64, f64) -> (f64, f64)), ("bd09", wgs84_to_bd09)] {
        let pts: Vec<[f64; 2]> = sample
            .iter()
            .map(|g| {
                let p = g.geom.interior_point().unwrap();
                let (x, y) = f(p.x(), p.y());
                // The offset is hundreds of metres: the raw offset point is usually in another grid.
                [x, y]
            })
            .collect();
        let r = post_json(router, "/api/v1/locate", &json!({"crs": crs, "points": pts})).await;
        assert_eq!(r.status, 200);
        let results = r.json()["results"].as_array().unwrap().clone();
        let mut moved = 0;
        for ((g, res), [x, y]) in sample.iter().zip(&results).zip(&pts) {
            assert_eq!(res["grid"]["code"], g.code.as_str(), "{crs} input");
            assert_eq!(res["input"]["crs"], crs);
            let back = (res["cgcs2000"]["lon"].as_f64().unwrap(), res["cgcs2000"]["lat"].as_f64().unwrap());
            let ip = g.geom.interior_point().unwrap();
            assert!(onemap::geo::haversine_m(back, (ip.x(), ip.y())) < 0.01, "inverse within 1 cm");
            if !g.geom.contains(&geo::Point::new(*x, *y)) {
                moved += 1;
            }
        }
        assert!(moved > sample.len() / 2, "{crs}: the offset should matter");
        // And one GET.
        let [x, y] = pts[0];
        let r = get(router, &format!("/api/v1/locate?lon={x}&lat={y}&crs={crs}")).await;
        assert_eq!(r.json()["grid"]["code"], sample[0].code.as_str());
    }
}

async fn outside_is_404(router: &axum::Router) {
    // Lhasa is far outside the demo city; so is (0, 0).
    for (lon, lat) in [(91.13, 29.65), (0.0, 0.0), (88.0, 29.27)] {
        get(router, &format!("/api/v1/locate?lon={lon}&lat={lat}")).await.problem(404);
    }
    let r = post_json(router, "/api/v1/locate", &json!({"points": [[91.13, 29.65]]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"], json!([null]));
}

async fn features(router: &axum::Router, city: &onemap::model::City) {
    let landing = get(router, "/").await.json();
    let rels: Vec<&str> = landing["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
    assert!(rels.contains(&"conformance") && rels.contains(&"data") && rels.contains(&"service-desc"));
    let api = get(router, "/api").await;
    assert_eq!(api.status, 200);
    let api = api.json();
    assert_eq!(api["components"]["parameters"]["limit"]["schema"]["maximum"], 10_000);
    assert!(api["paths"]["/collections/{collectionId}/items"]["get"].is_object());
    let conf = get(router, "/conformance").await.json();
    assert!(conf["conformsTo"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().ends_with("/conf/core")));
    let cols = get(router, "/collections").await.json();
    let ids: Vec<&str> = cols["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["districts", "streets", "communities", "grids", "components", "cases", "sensors", "staff", "cameras"]
    );
    let grids_col = get(router, "/collections/grids").await.json();
    let ext = grids_col["extent"]["spatial"]["bbox"][0].as_array().unwrap().clone();
    assert!(ext[0].as_f64().unwrap() < 88.88 && ext[2].as_f64().unwrap() > 88.88);
    get(router, "/collections/nope").await.problem(404);
    get(router, "/collections/nope/items").await.problem(404);

    // Paging: default limit 100, numberMatched = layer size, next link carries the offset.
    let r = get(router, "/collections/grids/items").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/geo+json");
    let v = r.json();
    assert_eq!(v["type"], "FeatureCollection");
    assert_eq!(v["numberMatched"], city.grids.len());
    assert_eq!(v["numberReturned"], 100);
    let next = v["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next").expect("next link")["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(next.contains("offset=100"), "{next}");
    let next_path = next.trim_start_matches("http://127.0.0.1:8080");
    let v2 = get(router, next_path).await.json();
    assert_eq!(v2["numberReturned"], 100);
    assert_ne!(v["features"][0]["id"], v2["features"][0]["id"]);
    let f = &v["features"][0];
    for key in ["code", "name", "community_code", "area_m2"] {
        assert!(!f["properties"][key].is_null(), "grid property {key}");
    }
    assert_eq!(f["geometry"]["type"], "Polygon");
    // Last page has no next link.
    let last = get(router, &format!("/collections/grids/items?limit=10&offset={}", city.grids.len() - 5)).await.json();
    assert_eq!(last["numberReturned"], 5);
    assert!(!last["links"].as_array().unwrap().iter().any(|l| l["rel"] == "next"));

    // A property filter: counts match the city.
    let class = "0101";
    let expected = city.components.iter().filter(|c| c.class_code == class).count();
    assert!(expected > 0);
    let v = get(router, &format!("/collections/components/items?class_code={class}&limit=10000")).await.json();
    assert_eq!(v["numberMatched"], expected);
    for f in v["features"].as_array().unwrap() {
        assert_eq!(f["properties"]["class_code"], class);
        for key in ["code", "name", "status", "owner_dept", "maint_dept"] {
            assert!(f["properties"].get(key).is_some(), "component property {key}");
        }
    }
    // bbox: every returned point lies in the box, and the count matches a brute force.
    let g0 = &city.grids[100];
    let b = g0.geom.bounding_rect().unwrap();
    let bbox = [b.min().x - 0.002, b.min().y - 0.002, b.max().x + 0.002, b.max().y + 0.002];
    let brute = city
        .components
        .iter()
        .filter(|c| c.geom.to_geometry().intersects(&geo::Rect::new((bbox[0], bbox[1]), (bbox[2], bbox[3]))))
        .count();
    let v = get(
        router,
        &format!("/collections/components/items?bbox={},{},{},{}&limit=10000", bbox[0], bbox[1], bbox[2], bbox[3]),
    )
    .await
    .json();
    assert_eq!(v["numberMatched"], brute);
    // within: a WKT polygon (the grid itself) and the same as GeoJSON give the same answer.
    let wkt = format!(
        "POLYGON(({}))",
        g0.geom.exterior().0.iter().map(|c| format!("{} {}", c.x, c.y)).collect::<Vec<_>>().join(",")
    );
    let in_grid = city.components.iter().filter(|c| c.geom.to_geometry().intersects(&g0.geom)).count();
    let v = get(router, &format!("/collections/components/items?within={}&limit=10000", enc(&wkt))).await.json();
    assert_eq!(v["numberMatched"], in_grid);
    let gj = json!({"type": "Polygon", "coordinates": [g0.geom.exterior().0.iter().map(|c| [c.x, c.y]).collect::<Vec<_>>()]});
    let v2 =
        get(router, &format!("/collections/components/items?within={}&limit=10000", enc(&gj.to_string()))).await.json();
    assert_eq!(v2["numberMatched"], in_grid);
    // near with radius: sorted by distance, all within radius, exactly the brute-force set.
    let c0 = city.components[500].geom.to_geometry().interior_point().unwrap();
    let mut brute: Vec<(f64, &str)> = city
        .components
        .iter()
        .map(|c| (c.distance_m(c0.x(), c0.y()), c.code.as_str()))
        .filter(|(d, _)| *d <= 150.0)
        .collect();
    brute.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    assert!(brute.len() > 3);
    let v = get(
        router,
        &format!("/collections/components/items?near={},{}&radius=150&crs=cgcs2000&limit=10000", c0.x(), c0.y()),
    )
    .await
    .json();
    let got: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, brute.iter().map(|b| b.1).collect::<Vec<_>>());
    let ds: Vec<f64> =
        v["features"].as_array().unwrap().iter().map(|f| f["properties"]["distance_m"].as_f64().unwrap()).collect();
    assert!(ds.windows(2).all(|w| w[0] <= w[1]) && ds.iter().all(|d| *d <= 150.0));
    // near with k: exactly the k nearest, nearest first; the first is the component itself.
    let v = get(router, &format!("/collections/components/items?near={},{}&k=7", c0.x(), c0.y())).await.json();
    assert_eq!(v["numberReturned"], 7);
    assert_eq!(v["features"][0]["properties"]["distance_m"], 0.0);
    let mut all: Vec<(f64, &str)> =
        city.components.iter().map(|c| (c.distance_m(c0.x(), c0.y()), c.code.as_str())).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    let got: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, all.iter().take(7).map(|b| b.1).collect::<Vec<_>>());
    // k counts matching records: the 5 nearest street lamps.
    let lamp_codes: std::collections::HashSet<&str> =
        city.components.iter().filter(|c| c.class_code == "0118").map(|c| c.code.as_str()).collect();
    let v = get(router, &format!("/collections/components/items?near={},{}&k=5&class_code=0118", c0.x(), c0.y()))
        .await
        .json();
    let lamps: Vec<&str> = all.iter().filter(|(_, code)| lamp_codes.contains(code)).take(5).map(|b| b.1).collect();
    let got: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, lamps);
    // A bbox larger than the world is clamped, not refused.
    let v = get(router, "/collections/districts/items?bbox=-400,-100,400,100").await.json();
    assert_eq!(v["numberMatched"], 4);
    // datetime on cases.
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let to = chrono::DateTime::parse_from_rfc3339("2026-03-31T23:59:59Z").unwrap();
    let expected = city.cases.iter().filter(|c| c.reported_at >= from && c.reported_at <= to).count();
    let v =
        get(router, "/collections/cases/items?datetime=2026-01-01T00:00:00Z/2026-03-31T23:59:59Z&limit=1").await.json();
    assert_eq!(v["numberMatched"], expected);
    for key in ["id", "class_code", "status", "source"] {
        assert!(!v["features"][0]["properties"][key].is_null(), "case property {key}");
    }
    // Output in GCJ-02 / BD-09 for phone maps: the stored point through the forward formula, and
    // a bbox given in GCJ-02 selects the same features as the CGCS2000 bbox it came from.
    let comp = city.components.iter().find(|c| matches!(c.geom, onemap::model::Shape::Point(_))).unwrap();
    let onemap::model::Shape::Point(p) = comp.geom else { unreachable!() };
    for (crs, f) in [("gcj02", wgs84_to_gcj02 as fn(f64, f64) -> (f64, f64)), ("bd09", wgs84_to_bd09)] {
        let v = get(router, &format!("/collections/components/items/{}?crs={crs}", comp.code)).await.json();
        let (x, y) = f(p.x(), p.y());
        let c = v["geometry"]["coordinates"].as_array().unwrap();
        assert!((c[0].as_f64().unwrap() - x).abs() < 1e-9 && (c[1].as_f64().unwrap() - y).abs() < 1e-9, "{crs}: {v}");
    }
    let (gx0, gy0) = wgs84_to_gcj02(bbox[0], bbox[1]);
    let (gx1, gy1) = wgs84_to_gcj02(bbox[2], bbox[3]);
    let v = get(router, &format!("/collections/components/items?bbox={gx0},{gy0},{gx1},{gy1}&crs=gcj02&limit=1"))
        .await
        .json();
    let plain = get(
        router,
        &format!("/collections/components/items?bbox={},{},{},{}&limit=1", bbox[0], bbox[1], bbox[2], bbox[3]),
    )
    .await
    .json();
    assert_eq!(v["numberMatched"], plain["numberMatched"]);
    // One item by id, and a missing one.
    let code = city.components[42].code.as_str();
    let v = get(router, &format!("/collections/components/items/{code}")).await.json();
    assert_eq!(v["id"], code);
    assert_eq!(v["properties"]["code"], code);
    get(router, "/collections/components/items/0000").await.problem(404);
    let case_id = city.cases[7].id;
    assert_eq!(get(router, &format!("/collections/cases/items/{case_id}")).await.json()["properties"]["id"], case_id);
}

async fn bad_input(router: &axum::Router) {
    for uri in [
        "/api/v1/locate?lon=abc&lat=29.27",
        "/api/v1/locate?lon=88.88",
        "/api/v1/locate?lon=88.88&lat=95",
        "/api/v1/locate?lon=188.88&lat=29",
        "/api/v1/locate?lon=NaN&lat=29",
        "/api/v1/locate?lon=inf&lat=29",
        "/api/v1/locate?lon=88.88&lat=29.27&crs=foo",
        "/api/v1/locate?lon=88.88&lat=29.27&crs=EPSG:99999",
        "/api/v1/locate?lon=88.88&lat=29.27&lon=1",
        "/collections/grids/items?limit=10001",
        "/collections/grids/items?limit=0",
        "/collections/grids/items?limit=-1",
        "/collections/grids/items?offset=x",
        "/collections/grids/items?bbox=1,2,3",
        "/collections/grids/items?bbox=89,29,88,30",
        "/collections/grids/items?bbox=a,b,c,d",
        "/collections/grids/items?within=POLYGON((1 2,3 4",
        "/collections/grids/items?within=POINT(88.88 29.27)",
        "/collections/grids/items?within=%7B%22type%22%3A%22Polygon%22%7D",
        "/collections/grids/items?within=POLYGON((0 0,1 1,1 0,0 1,0 0))",
        "/collections/grids/items?near=88.88&k=3",
        "/collections/grids/items?near=88.88,29.27",
        "/collections/grids/items?near=88.88,29.27&radius=-5",
        "/collections/grids/items?near=88.88,29.27&k=0",
        "/collections/grids/items?radius=5",
        "/collections/grids/items?no_such_property=1",
        "/collections/cases/items?datetime=yesterday",
        "/collections/cases/items?datetime=2026-02-01/2026-01-01",
        "/collections/grids/items?f=html",
        "/collections/grids/items?near=88.88,95&k=1",
        "/collections/grids/items?near=88.88,29.27&k=10001",
        "/collections/grids/items?within=GEOMETRYCOLLECTION(POINT(1 2))",
        "/collections/%FF%FE/items",
    ] {
        let r = get(router, &uri.replace(' ', "%20")).await;
        r.problem(400);
    }
    // Batches: malformed JSON, wrong shape, bad points, too many points.
    post_raw(router, "/api/v1/locate", b"{\"points\": [[1,2]".to_vec()).await.problem(400);
    post_raw(router, "/api/v1/locate", b"{\"points\": 5}".to_vec()).await.problem(400);
    post_json(router, "/api/v1/locate", &json!({"points": [[88.88, 29.27], [88.88, 129.27]]})).await.problem(400);
    post_json(router, "/api/v1/locate", &json!({"crs": "mars", "points": [[88.88, 29.27]]})).await.problem(400);
    let too_many: Vec<[f64; 2]> = vec![[88.88, 29.27]; 100_001];
    let v = post_json(router, "/api/v1/locate", &json!({"points": too_many})).await.problem(400);
    assert!(v["detail"].as_str().unwrap().contains("100000"), "{v}");
    let r = post_raw(router, "/api/v1/locate", vec![b' '; 20 * 1024 * 1024]).await;
    r.problem(413);
    get(router, "/no/such/path").await.problem(404);
    // Deeply nested WKT never reaches the recursive parser (it would overflow the stack).
    let nested = format!("{}POINT(1 2){}", "GEOMETRYCOLLECTION(".repeat(2_500), ")".repeat(2_500));
    get(router, &format!("/collections/grids/items?within={}", enc(&nested))).await.problem(400);
    // Wrong methods are problems too.
    let r =
        send(router, axum::http::Request::delete("/collections/grids/items").body(axum::body::Body::empty()).unwrap())
            .await;
    r.problem(405);
}

/// PostGIS answers the same grid as the index for a sample of points (the gpkg store has no
/// spatial SQL and says so).
async fn database_agrees_with_index(state: &onemap::AppState, label: &str, city: &onemap::model::City) {
    let pts: Vec<(f64, f64)> = city
        .grids
        .iter()
        .step_by(13)
        .map(|g| {
            let p = g.geom.interior_point().unwrap();
            (p.x(), p.y())
        })
        .chain([(91.13, 29.65)])
        .collect();
    let db = state.store.locate_in_db(&pts).await.unwrap();
    match label {
        "postgis" => {
            let db = db.expect("PostGIS answers spatially");
            let idx: Vec<Option<String>> = pts
                .iter()
                .map(|&(x, y)| onemap::grids::grid_code_at(&state.index, x, y).map(|c| c.to_string()))
                .collect();
            assert_eq!(db, idx);
            assert_eq!(db.last().unwrap(), &None);
        }
        _ => assert!(db.is_none()),
    }
}
