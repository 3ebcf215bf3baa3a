//! Live changes on both stores: reporting a case through the API commits it, puts it in the
//! index, drops exactly the cached tiles that cover it and announces it on the SSE feed; bad
//! reports are refused with problems and change nothing.

mod common;

use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, create};
use onemap::geo::tile::{TileCoord, tiles_covering};
use onemap::tiles::buffered_bounds;
use serde_json::{Value, json};

/// The tile variants the invalidation test watches: `cases` ones must follow a new case, the
/// grids-only one must not.
const VARIANTS: &[&str] = &["cases", "case_density", "grids,cases", "grids"];

fn inside(b: [f64; 4], p: (f64, f64)) -> bool {
    b[0] <= p.0 && p.0 <= b[2] && b[1] <= p.1 && p.1 <= b[3]
}

/// (ETag or "none", x-tile-cache) of one tile.
async fn probe(app: &axum::Router, layers: &str, t: TileCoord) -> (String, String) {
    let r = get(app, &format!("/tiles/{layers}/{}/{}/{}", t.z, t.x, t.y)).await;
    assert!(r.status == 200 || r.status == 204, "{layers} {t:?}: {}", r.status);
    let h = |k: &str| r.headers.get(k).map(|v| v.to_str().unwrap().to_string());
    (h("etag").unwrap_or_else(|| "none".into()), h("x-tile-cache").expect("cache header"))
}

#[tokio::test]
async fn a_new_case_invalidates_exactly_its_tiles_and_is_announced() {
    let city = small_city();
    for (label, st) in both_stores("live_case", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let token = create(&*st.store, Role::Supervisor, None, Some("张三")).await.unwrap();
        // A point well inside a grid in the middle of the city.
        let grid = &city.grids[city.grids.len() / 2];
        let p = grid.geom.interior_point().unwrap();
        let (lon, lat) = (p.x(), p.y());

        // Warm the cache: the covering tile and its neighbours up to two tiles away, z10-z18.
        let mut watched = Vec::new();
        for z in 10..=18u8 {
            let c = tiles_covering([lon, lat, lon, lat], z).next().unwrap();
            for dx in -2i64..=2 {
                for dy in -2i64..=2 {
                    let t = TileCoord::new(z as u32, (c.x as i64 + dx) as u32, (c.y as i64 + dy) as u32).unwrap();
                    for layers in VARIANTS {
                        let before = probe(&app, layers, t).await;
                        watched.push((*layers, t, t == c, before.0));
                    }
                }
            }
        }

        let mut feed = EventStream::open(&app).await;
        feed.wait_for("ready", |_| true).await;
        let class = city.event_classes[0].code.to_string();
        let body = json!({"class_code": class, "lon": lon, "lat": lat, "crs": "cgcs2000",
            "description": "测试：道路上有暴露垃圾", "source": "supervisor"});
        let r = post_as(&app, "/api/v1/cases", Some(&token), body.to_string().into_bytes()).await;
        assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
        let case = r.json();
        let id = case["id"].as_i64().unwrap();
        assert_eq!(case["status"], "reported");
        assert_eq!(case["grid_code"], grid.code.as_str(), "{label}");
        assert_eq!(case["version"], 1);
        // Just reported: no working time has gone by (each state has its own light clock).
        assert_eq!(case["light"], "green", "{case}");
        assert_eq!(r.headers["location"], format!("/api/v1/cases/{id}").as_str());

        // The feed says so: its tiles for both layers drawn from cases, then the case.
        let inv = feed.wait_for("tiles.invalidated", |d| d["layer"] == "cases").await;
        let created = feed.wait_for("case.created", |d| d["id"] == id).await;
        assert_eq!(created["class_code"], class.as_str());
        let bbox: Vec<f64> = inv["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(inside([bbox[0], bbox[1], bbox[2], bbox[3]], (lon, lat)), "{inv}");
        assert_eq!(inv["layers"], json!(["cases", "case_density"]));
        let zooms: Vec<u64> = inv["zooms"].as_array().unwrap().iter().map(|z| z.as_u64().unwrap()).collect();
        assert!((10..=18).all(|z| zooms.contains(&z)), "{inv}");

        let mut changed = 0;
        for (layers, t, covering, before) in watched {
            let (_, near) = buffered_bounds(t);
            let (after, cache) = probe(&app, layers, t).await;
            let draws_cases = layers.contains("case");
            if covering && draws_cases {
                assert_ne!(after, before, "{label}: {layers} {t:?} covers the case but kept its ETag");
                assert_eq!(cache, "miss", "{label}: {layers} {t:?} was not invalidated");
                changed += 1;
            } else if !draws_cases || !inside(near, (lon, lat)) {
                assert_eq!(after, before, "{label}: {layers} {t:?} does not cover the case but changed");
                assert_eq!(cache, "hit", "{label}: {layers} {t:?} was dropped from the cache needlessly");
            }
        }
        assert_eq!(changed, 9 * 3);

        // The case is there to read, with its history, in the list and in the counters.
        let r = get_as(&app, &format!("/api/v1/cases/{id}"), &token).await;
        assert_eq!(r.status, 200);
        let full = r.json();
        // An anonymous reader of a public server sees the steps, not who took them.
        let anonymous = get(&app, &format!("/api/v1/cases/{id}")).await.json();
        assert_eq!(anonymous["history"][0]["action"], "report");
        assert!(anonymous["history"][0]["actor"].is_null() && anonymous["history"][0]["note"].is_null());
        assert_eq!(full["history"][0]["action"], "report");
        assert_eq!(full["history"][0]["actor"], "张三");
        assert_eq!(full["history"][0]["to"], "reported");
        assert!(full["deadline"].is_string());
        let list = get(&app, "/api/v1/cases?limit=5").await.json();
        assert_eq!(list["cases"][0]["id"], id, "{label}: newest first");
        let summary = get(&app, "/api/v1/cases/summary").await.json();
        assert!(summary["today"].as_u64().unwrap() >= 1);
        assert!(summary["open"].as_u64().unwrap() >= 1);

        // The store committed it before the 201.
        let stored = onemap::store::find::<onemap::model::Case>(&*st.store, "id", onemap::store::schema::Val::Int(id))
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{label}");
        assert_eq!(stored[0].description, "测试：道路上有暴露垃圾");
        assert_eq!(stored[0].grid_code.as_deref(), Some(grid.code.as_str()));
    }
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let city = small_city();
    for (label, st) in both_stores("live_bad", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let supervisor = create(&*st.store, Role::Supervisor, None, None).await.unwrap();
        let viewer = create(&*st.store, Role::Viewer, None, None).await.unwrap();
        let g = city.grids[0].geom.interior_point().unwrap();
        let good = json!({"class_code": city.event_classes[0].code.as_str(), "lon": g.x(), "lat": g.y(),
            "crs": "cgcs2000", "description": "x", "source": "supervisor"});
        let with = |k: &str, v: Value| {
            let mut b = good.clone();
            b[k] = v;
            b.to_string().into_bytes()
        };
        let before = st.index.cases.read().len();
        let head = st.store.log_bounds().await.unwrap().1;
        let cases = [
            (None, good.to_string().into_bytes(), 401),
            (Some("om_not_a_token"), good.to_string().into_bytes(), 401),
            (Some(viewer.as_str()), good.to_string().into_bytes(), 403),
            (Some(supervisor.as_str()), b"{\"class_code\":".to_vec(), 400),
            (Some(supervisor.as_str()), with("class_code", json!("9999")), 400),
            (Some(supervisor.as_str()), with("component_code", json!("0000000000000000")), 400),
            (Some(supervisor.as_str()), with("source", json!("rumour")), 400),
            (Some(supervisor.as_str()), with("description", json!("  ")), 400),
            (Some(supervisor.as_str()), with("lon", json!(200.0)), 400),
            (Some(supervisor.as_str()), with("crs", json!("EPSG:999999")), 400),
            (Some(supervisor.as_str()), with("unknown_field", json!(1)), 400),
            (Some(supervisor.as_str()), with("lon", json!(0.0)), 404),
            (Some(supervisor.as_str()), vec![b' '; 17 * 1024 * 1024], 413),
        ];
        for (i, (token, body, status)) in cases.into_iter().enumerate() {
            let r = post_as(&app, "/api/v1/cases", token, body).await;
            let p = r.problem(status);
            if status == 401 {
                assert_eq!(r.headers["www-authenticate"], "Bearer", "{label} #{i}");
            }
            assert!(p["detail"].is_string(), "{label} #{i}");
        }
        assert_eq!(st.index.cases.read().len(), before, "{label}: nothing reached the index");
        let stored = st.store.load_city(&|_, _| {}).await.unwrap();
        assert_eq!(stored.cases.len(), before, "{label}: nothing reached the store");
        assert_eq!(st.store.log_bounds().await.unwrap().1, head, "{label}: nothing was logged");
        assert_eq!(st.live.applied(), head, "{label}: nothing was announced");
        // Unknown cases are 404; bad list parameters 400.
        get(&app, "/api/v1/cases/99999999").await.problem(404);
        get(&app, "/api/v1/cases/abc").await.problem(404);
        get(&app, "/api/v1/cases?limit=0").await.problem(400);
        get(&app, "/api/v1/cases?colour=red").await.problem(400);
    }
}

#[tokio::test]
async fn the_light_sweeper_announces_lights_that_turn() {
    let city = small_city();
    let st = seeded_state(&fresh_gpkg("live_sweep"), city).await;
    let app = onemap::app(st.clone().with_public_read());
    let token = create(&*st.store, Role::Supervisor, None, None).await.unwrap();
    let g = city.grids[1].geom.interior_point().unwrap();
    let body = json!({"class_code": city.event_classes[0].code.as_str(), "lon": g.x(), "lat": g.y(),
        "crs": "cgcs2000", "description": "井盖破损", "source": "hotline", "urgency": "urgent"});
    let r = post_as(&app, "/api/v1/cases", Some(&token), body.to_string().into_bytes()).await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_i64().unwrap();
    let tile = tiles_covering([g.x(), g.y(), g.x(), g.y()], 16).next().unwrap();
    let uri = format!("/tiles/cases/16/{}/{}", tile.x, tile.y);
    let before = get(&app, &uri).await;
    assert_eq!(get(&app, &uri).await.headers["x-tile-cache"], "hit");

    let mut feed = EventStream::open(&app).await;
    feed.wait_for("ready", |_| true).await;
    // Ten days on, the urgent case (four working hours) is late whatever the hour of the test.
    let later = st.live.clock() + chrono::Duration::days(10);
    let turned = st.live.sweep_lights(later).await.unwrap();
    assert!(turned >= 1);
    let updated = feed.wait_for("case.updated", |d| d["id"] == id).await;
    assert_eq!(updated["light"], "red");
    let after = get(&app, &uri).await;
    assert_eq!(after.headers["x-tile-cache"], "miss");
    assert_ne!(after.headers["etag"], before.headers["etag"]);
    assert_eq!(get(&app, &format!("/api/v1/cases/{id}")).await.json()["light"], "red");
}
