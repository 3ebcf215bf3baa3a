//! Access on both stores: reads are closed without `--public-read`; a department token sees only
//! its own cases on every path (items, item by id, filters, tiles, export, feed, counters), an
//! area token only its area's (and its area's evaluation); a public key reads only its own
//! Open311 requests; a device token posts only its sensors' readings; tokens expire and are
//! revoked through the change log (on another replica within a second); a GET never publishes
//! the hotspot overlay, a POST by an analyst does; expensive requests are refused by their cost
//! and rate-limited per client.

mod common;

use std::time::Duration;

use common::*;
use geozero::mvt::{Message, Tile};
use onemap::auth::{Role, TokenSpec};
use onemap::model::Case;
use serde_json::json;

async fn token(st: &onemap::AppState, role: Role, spec: TokenSpec) -> String {
    onemap::auth::create_with(&*st.store, role, &spec).await.unwrap()
}

/// The number of features of layer `name` in an MVT answer (0 for 204).
fn tile_features(r: &Resp, name: &str) -> usize {
    if r.status == 204 {
        return 0;
    }
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let t = Tile::decode(r.body.as_slice()).expect("an MVT");
    t.layers.iter().filter(|l| l.name == name).map(|l| l.features.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_closed_and_scoped_on_every_path() {
    let city = small_city();
    for (label, st) in both_stores("access", city).await {
        let closed = onemap::app(st.clone());
        let viewer = token(&st, Role::Viewer, TokenSpec::default()).await;

        // 1. Closed reads: 401 without a token on every data path; health, readiness, metrics,
        //    the page and the API description stay open; the token opens them (header or query).
        for uri in ["/collections/cases/items", "/api/v1/cases/summary", "/tiles/grids/12/3000/1600", "/api/v1/alarms"]
        {
            let v = get(&closed, uri).await.problem(401);
            assert!(v["detail"].as_str().unwrap().contains("bearer token"), "{label} {uri}: {v}");
        }
        for uri in ["/health", "/ready", "/metrics", "/api", "/conformance"] {
            assert_eq!(get(&closed, uri).await.status, 200, "{label}: {uri} stays open");
        }
        assert_eq!(get_as(&closed, "/collections/cases/items?limit=1", &viewer).await.status, 200);
        assert_eq!(get(&closed, &format!("/collections/cases/items?limit=1&access_token={viewer}")).await.status, 200);
        get_as(&closed, "/collections/cases/items", "om_not_a_token").await.problem(401);
        get_with(&closed, "/collections/cases/items", &[("authorization", "Basic eDp5")]).await.problem(401);
        // A reporting key and a device read nothing of the city.
        let public = token(&st, Role::Public, TokenSpec::default()).await;
        let device = token(&st, Role::Device, TokenSpec::default()).await;
        get_as(&closed, "/collections/grids/items", &public).await.problem(403);
        get_as(&closed, "/collections/grids/items", &device).await.problem(403);

        // 2. A department token: its own cases everywhere.
        let cases: Vec<Case> = st.index.cases.read().iter().cloned().collect();
        let mine = cases.iter().find_map(|c| c.dept_code.clone()).expect("a dispatched case");
        let other_case = cases.iter().find(|c| c.dept_code.as_ref().is_some_and(|d| *d != mine)).expect("another dept");
        let other = other_case.dept_code.clone().unwrap();
        let own_count = cases.iter().filter(|c| c.dept_code.as_ref() == Some(&mine)).count();
        let dept =
            token(&st, Role::Department, TokenSpec { dept_code: Some(mine.to_string()), ..Default::default() }).await;
        let items = get_as(&closed, "/collections/cases/items?limit=10000", &dept).await.json();
        assert_eq!(items["numberMatched"], own_count, "{label}: a department lists its own cases");
        assert!(items["features"].as_array().unwrap().iter().all(|f| f["properties"]["dept_code"] == mine.as_str()));
        let foreign = get_as(&closed, &format!("/collections/cases/items?dept_code={other}"), &dept).await.json();
        assert_eq!(foreign["numberMatched"], 0, "{label}: a filter on another department finds nothing");
        get_as(&closed, &format!("/collections/cases/items/{}", other_case.id), &dept).await.problem(403);
        get_as(&closed, &format!("/api/v1/cases/{}", other_case.id), &dept).await.problem(403);
        let listed = get_as(&closed, "/api/v1/cases?limit=1000", &dept).await.json();
        assert!(listed["cases"].as_array().unwrap().iter().all(|c| c["dept_code"] == mine.as_str()), "{label}");
        let export = get_as(&closed, "/api/v1/export/cases?format=geojson", &dept).await;
        assert_eq!(export.status, 200);
        assert_eq!(export.headers["x-feature-count"].to_str().unwrap(), own_count.to_string(), "{label}: export");
        let all = get_as(&closed, "/api/v1/export/cases?format=geojson", &viewer).await;
        assert_eq!(all.headers["x-feature-count"].to_str().unwrap(), cases.len().to_string());
        // Tiles: the department's tile is the viewer's tile filtered to the department.
        let z = 16;
        let t = onemap::geo::tile::tiles_covering(
            [other_case.geom.x(), other_case.geom.y(), other_case.geom.x(), other_case.geom.y()],
            z,
        )
        .next()
        .unwrap();
        let path = format!("/tiles/cases/{z}/{}/{}", t.x, t.y);
        let everyone = tile_features(&get_as(&closed, &path, &viewer).await, "cases");
        let theirs = get_as(&closed, &path, &dept).await;
        let filtered = get_as(&closed, &format!("{path}?dept_code={mine}"), &viewer).await;
        assert!(everyone >= 1, "{label}: the other department's case is in the viewer's tile");
        assert_eq!(tile_features(&theirs, "cases"), tile_features(&filtered, "cases"), "{label}: scoped tile");
        assert!(tile_features(&theirs, "cases") < everyone, "{label}: the department's tile leaves the case out");
        // Analyses count its cases only.
        let q = "/api/v1/analysis/hotspots?unit=grid&method=count&geometry=false";
        let counted = get_as(&closed, q, &dept).await.json();
        assert_eq!(counted["analysis"]["total"], own_count as f64, "{label}: a department's hotspots");
        assert_eq!(get_as(&closed, q, &viewer).await.json()["analysis"]["total"], cases.len() as f64);
        // Counters count its cases only.
        let s_all = get_as(&closed, "/api/v1/cases/summary", &viewer).await.json();
        let s_own = get_as(&closed, "/api/v1/cases/summary", &dept).await.json();
        assert!(s_own["open"].as_u64().unwrap() < s_all["open"].as_u64().unwrap(), "{label}: {s_own} vs {s_all}");

        // 3. The feed: a new (undispatched) case reaches the viewer, not the department; a
        //    sensor registered next reaches both, so the department's stream is known to be live.
        let mut seen_by_viewer = EventStream::open_with(&closed, &viewer).await;
        let mut seen_by_dept = EventStream::open_with(&closed, &dept).await;
        let admin = token(&st, Role::Admin, TokenSpec::default()).await;
        let p = other_case.geom;
        let class = city.event_classes[0].code.to_string();
        let body = json!({"class_code": class, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "description": "scoped feed", "source": "supervisor"});
        let created = post_as(&closed, "/api/v1/cases", Some(&admin), body.to_string().into_bytes()).await;
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        let sensor = json!({"code": "ACC-1", "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000"});
        assert_eq!(
            post_as(&closed, "/api/v1/sensors", Some(&admin), sensor.to_string().into_bytes()).await.status,
            201
        );
        // The viewer hears of the case and of the case tiles it redraws (which name whose case
        // it is); the department of neither: a redrawn area would show where another's case is.
        let redrawn = seen_by_viewer.wait_for("tiles.invalidated", |d| d["layer"] == "cases").await;
        assert!(redrawn["case"]["grid_code"].is_string(), "{label}: {redrawn}");
        seen_by_viewer.wait_for("case.created", |_| true).await;
        loop {
            let (name, data) = seen_by_dept.next(Duration::from_secs(5)).await.expect("the department's feed is live");
            assert!(!name.starts_with("case."), "{label}: the department heard of another's case: {name}");
            assert!(
                !(name == "tiles.invalidated" && data["layer"] == "cases"),
                "{label}: the department heard where another's case is: {data}"
            );
            if name == "sensor.registered" {
                break;
            }
        }

        // 4. An area token (a street command centre): its area's cases and evaluation only.
        let street = city.streets[0].code.to_string();
        let area =
            token(&st, Role::ShiftLeader, TokenSpec { area_code: Some(street.clone()), ..Default::default() }).await;
        let cases: Vec<Case> = st.index.cases.read().iter().cloned().collect();
        let in_area = cases.iter().filter(|c| c.grid_code.as_ref().is_some_and(|g| g.starts_with(&street))).count();
        let items = get_as(&closed, "/collections/cases/items?limit=10000", &area).await.json();
        assert_eq!(items["numberMatched"], in_area, "{label}: the street's cases");
        assert!(in_area > 0 && in_area < cases.len(), "{label}: the test needs cases on both sides");
        let outside = cases.iter().find(|c| c.grid_code.as_ref().is_some_and(|g| !g.starts_with(&street))).unwrap();
        get_as(&closed, &format!("/api/v1/cases/{}", outside.id), &area).await.problem(403);
        let act = json!({"action": "void", "expected_version": outside.version});
        post_as(&closed, &format!("/api/v1/cases/{}/actions", outside.id), Some(&area), act.to_string().into_bytes())
            .await
            .problem(403);
        let eval = get_as(&closed, "/api/v1/evaluation?from=2020-01-01&to=2030-12-31&by=grid", &area).await.json();
        let rows = eval["rows"].as_array().unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|r| r["unit"].as_str().unwrap().starts_with(&street)), "{label}");
        get_as(&closed, "/api/v1/evaluation?from=2020-01-01&to=2030-12-31&by=dept", &area).await.problem(403);
        let bad = TokenSpec { area_code: Some("999999".into()), ..Default::default() };
        assert!(onemap::auth::create_with(&*st.store, Role::Viewer, &bad).await.is_err(), "unknown area refused");

        // 5. A public key reads its own Open311 requests only.
        let other_public = token(&st, Role::Public, TokenSpec::default()).await;
        let mut mine_ids = Vec::new();
        for key in [&public, &other_public] {
            let form = format!(
                "api_key={key}&service_code={class}&lat={}&long={}&description=%E5%9E%83%E5%9C%BE",
                p.y(),
                p.x()
            );
            let r = post_form(&closed, "/open311/v2/requests.json", form).await;
            assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
            mine_ids.push(r.json()[0]["service_request_id"].as_str().unwrap().to_string());
        }
        let own = get_as(&closed, "/open311/v2/requests.json", &public).await.json();
        let own: Vec<&str> =
            own.as_array().unwrap().iter().map(|r| r["service_request_id"].as_str().unwrap()).collect();
        assert_eq!(own, vec![mine_ids[0].as_str()], "{label}: a public key sees only its own request");
        get_as(&closed, &format!("/open311/v2/requests/{}.json", mine_ids[1]), &public).await.problem(404);
        let staff = get_as(&closed, "/open311/v2/requests.json", &viewer).await.json();
        assert!(staff.as_array().unwrap().len() >= 2, "{label}: staff see every public request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_are_revoked_everywhere_and_devices_post_their_own() {
    let city = small_city();
    let location = fresh_pg("onemap_t_access_tokens").await;
    let a = seeded_state(&location, city).await;
    let b = onemap::server::start(&location, false, 16).await.expect("a second replica");
    let (app_a, app_b) = (onemap::app(a.clone()), onemap::app(b.clone()));

    // Revocation through the change log: 401 on the other replica within a second.
    let viewer = token(&a, Role::Viewer, TokenSpec { label: Some("大屏".into()), ..Default::default() }).await;
    assert_eq!(get_as(&app_b, "/collections/grids/items?limit=1", &viewer).await.status, 200, "known on b");
    let id = onemap::auth::revoke(&*a.store, &viewer).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut refused = false;
    while t0.elapsed() < Duration::from_secs(1) {
        if get_as(&app_b, "/collections/grids/items?limit=1", &viewer).await.status == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the revoked token still reads on the other replica after 1 s");
    let v = get_as(&app_a, "/collections/grids/items?limit=1", &viewer).await.problem(401);
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    let listed = onemap::auth::list(&*a.store).await.unwrap();
    let row = listed.iter().find(|l| l.id == id).expect("listed by id");
    assert!(row.revoked_at.is_some() && row.token.label.as_deref() == Some("大屏"));
    assert!(onemap::auth::revoke(&*a.store, "0123456789ab").await.is_err(), "an unknown id is refused");

    // Expiry.
    let brief =
        token(&a, Role::Viewer, TokenSpec { expires_in: Some(Duration::from_secs(2)), ..Default::default() }).await;
    assert_eq!(get_as(&app_a, "/collections/grids/items?limit=1", &brief).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let v = get_as(&app_a, "/collections/grids/items?limit=1", &brief).await.problem(401);
    assert!(v["detail"].as_str().unwrap().contains("expired"), "{v}");

    // A device token limited to a prefix posts its own sensors' readings only.
    let admin = token(&a, Role::Admin, TokenSpec::default()).await;
    let p = geo::InteriorPoint::interior_point(&city.grids[0].geom).unwrap();
    for code in ["WL-A-1", "WL-B-1"] {
        let s = json!({"code": code, "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000"});
        assert_eq!(post_as(&app_a, "/api/v1/sensors", Some(&admin), s.to_string().into_bytes()).await.status, 201);
    }
    let device =
        token(&a, Role::Device, TokenSpec { sensors_prefix: Some("WL-A-".into()), ..Default::default() }).await;
    let at = chrono::Utc::now().to_rfc3339();
    let readings = json!({"readings": [{"sensor": "WL-A-1", "at": at, "value": 0.1}, {"sensor": "WL-B-1", "at": at, "value": 0.1}]});
    let r = post_as(&app_a, "/api/v1/sensors/readings", Some(&device), readings.to_string().into_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let report = r.json();
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["rejected"][0]["reason"], "not_yours");
    let area_device = TokenSpec { area_code: Some(city.districts[0].code.to_string()), ..Default::default() };
    assert!(onemap::auth::create_with(&*a.store, Role::Device, &area_device).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_publishes_nothing_and_expensive_requests_are_bounded() {
    let city = small_city();
    let st = seeded_state(&fresh_gpkg("access-cost"), city).await;
    let quotas = onemap::config::RateQuotas { heavy_burst: 3, heavy_per_s: 1, ..Default::default() };
    let app = onemap::app(st.clone().with_rate_limits(quotas));
    let viewer = token(&st, Role::Viewer, TokenSpec::default()).await;
    let analyst = token(&st, Role::Analyst, TokenSpec::default()).await;
    let tile = "/tiles/hotspots/12/3000/1600";
    let q = "/api/v1/analysis/hotspots?unit=grid&method=gi_star&geometry=false";

    // The GET answers and changes nothing anyone else sees.
    assert_eq!(get_as(&app, q, &viewer).await.status, 200);
    assert_eq!(get_as(&app, tile, &viewer).await.status, 204, "no overlay before a publication");
    // Publishing is a POST by a role that may publish.
    post_as(&app, q, Some(&viewer), Vec::new()).await.problem(403);
    let mut feed = EventStream::open_with(&app, &viewer).await;
    let r = post_as(&app, q, Some(&analyst), Vec::new()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.headers.contains_key("onemap-seq"));
    let ev = feed.wait_for("hotspots.published", |_| true).await;
    assert!(ev["params"].as_str().unwrap().contains("gi_star"), "{ev}");
    assert!(st.analysis.latest.read().is_some(), "the overlay is published");

    // Cost limits: refused before any work, with the limit named.
    let analyst_app = onemap::app(st.clone());
    let v = get_as(&analyst_app, "/api/v1/analysis/density?layer=cases&cell_m=1.5&bandwidth_m=50000", &analyst)
        .await
        .problem(422);
    assert_eq!(v["type"], "/problems/cost-limit", "{v}");
    let v = get_as(&analyst_app, "/api/v1/analysis/hotspots?unit=h3:15&method=count", &analyst).await.problem(422);
    assert_eq!(v["type"], "/problems/too-many-cells", "{v}");
    // The answer's size, with a limit this small city can reach.
    let small = onemap::analysis::CostLimits { answer_bytes: 1e6, ..Default::default() };
    let capped = onemap::app(st.clone().with_cost_limits(small));
    let v = get_as(&capped, "/api/v1/analysis/hotspots?unit=h3:12&method=count", &analyst).await.problem(422);
    assert_eq!(v["type"], "/problems/cost-limit", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("geometry=false"), "{v}");
    assert_eq!(
        get_as(&capped, "/api/v1/analysis/hotspots?unit=grid&method=count&geometry=false", &analyst).await.status,
        200
    );
    // An export counts its matches before it writes anything.
    let few = onemap::analysis::CostLimits { export_features: 10, ..Default::default() };
    let capped = onemap::app(st.clone().with_cost_limits(few));
    let v = get_as(&capped, "/api/v1/export/grids?format=geojson", &analyst).await.problem(422);
    assert_eq!(v["type"], "/problems/cost-limit", "{v}");
    let narrow =
        get_as(&capped, &format!("/api/v1/export/grids?format=geojson&code={}", city.grids[0].code), &analyst).await;
    assert_eq!(narrow.status, 200, "{}", String::from_utf8_lossy(&narrow.body));
    *st.analysis.limits.write() = onemap::analysis::CostLimits::default();

    // Rate limits: a client's burst, then 429 with Retry-After; others are not affected.
    let mut limited = None;
    for _ in 0..50 {
        let r = get_as(&app, "/api/v1/analysis/ranking?layer=cases&by=grid", &viewer).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a burst of heavy requests is refused once the bucket is empty");
    r.problem(429);
    assert!(r.headers.get("retry-after").is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    assert_eq!(get_as(&app, "/api/v1/analysis/ranking?layer=cases&by=grid", &analyst).await.status, 200);
    assert_eq!(get_as(&app, "/collections/grids/items?limit=1", &viewer).await.status, 200, "cheap reads pass");
}

/// A connection that sends half its headers is closed by the server (slowloris).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = fresh_gpkg("access-slow");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["demo", "--scale", "0.02", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (mut child, url) = serve(&["--store", &store]);
    let addr = url.strip_prefix("http://").unwrap().to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut buf = [0u8; 512];
    // The server's header read timeout is 10 s; the guard below only keeps a broken server from
    // hanging the test.
    let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
    let _ = child.kill();
    let n = n.expect("the server held a half-sent request open for 30 s");
    // Closed (0 bytes), reset, or answered 408: anything but a connection held open.
    match n {
        Ok(0) | Err(_) => {}
        Ok(k) => assert!(String::from_utf8_lossy(&buf[..k]).starts_with("HTTP/1.1 408"), "{:?}", &buf[..k]),
    }
}
