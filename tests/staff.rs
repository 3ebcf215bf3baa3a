//! Field staff through the real router on both stores: registration and its refusals, a phone's
//! token posting only its own positions, the live `staff` layer (collection, tiles, feed), who
//! is nearest, a track, patrol coverage by member, grid and community, going off duty, and
//! where everyone was seen surviving a restart. Also `token create --staff` on the command line.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, TokenSpec};
use serde_json::{Value, json};

const CODE: &str = "T-SUP-0001";

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn positions(app: &axum::Router, token: &str, items: Vec<Value>) -> Resp {
    post_as(app, "/api/v1/staff/positions", Some(token), json!({ "positions": items }).to_string().into_bytes()).await
}

fn position(code: &str, t: DateTime<Utc>, lon: f64, lat: f64) -> Value {
    json!({"staff": code, "at": at(t), "lon": lon, "lat": lat, "crs": "cgcs2000"})
}

#[tokio::test]
async fn staff_move_on_the_live_layer_and_patrol_is_reported_on_both_stores() {
    let city = small_city();
    let grid = &city.grids[0];
    let other_grid = city.grids.iter().find(|g| g.community_code != grid.community_code).unwrap();
    let p = grid.geom.interior_point().unwrap();
    let q = other_grid.geom.interior_point().unwrap();
    let demo_member = city.staff[0].code.to_string();
    for (label, location) in [("gpkg", fresh_gpkg("staff")), ("postgis", fresh_pg("onemap_t_staff").await)] {
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone());
        let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
        let viewer = onemap::auth::create(&*st.store, Role::Viewer, None, None).await.unwrap();
        let list = get_as(&app, "/api/v1/staff", &viewer).await.json();
        assert_eq!(list["count"], city.staff.len(), "{label}: the demo's supervisors are registered");
        assert_eq!(list["on_duty"], 0, "{label}: nobody seen yet");

        // Registration and its refusals.
        let reg = |extra: Value| {
            let mut b = json!({"code": CODE, "name": "测试 监督员", "role": "supervisor", "grids": [grid.code]});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b.to_string().into_bytes()
        };
        post_as(&app, "/api/v1/staff", Some(&viewer), reg(json!({}))).await.problem(403);
        post_as(&app, "/api/v1/staff", None, reg(json!({}))).await.problem(401);
        for (extra, status) in [
            (json!({"role": "boss"}), 400),
            (json!({"code": "T/1"}), 400),
            (json!({"name": "a\u{0}b"}), 400),
            (json!({"grids": ["999999999999999"]}), 400),
            (json!({"grids": [], "community": "nope"}), 400),
            (json!({"role": "worker"}), 400),
            (json!({"role": "worker", "dept_code": "NO-SUCH"}), 400),
            (json!({"grids": []}), 400),
            (json!({"lon": 10.0, "lat": 10.0}), 400),
            (json!({"lon": 10.0}), 400),
            (json!({"shoe_size": 42}), 400),
        ] {
            post_as(&app, "/api/v1/staff", Some(&admin), reg(extra.clone())).await.problem(status);
        }
        let r = post_as(&app, "/api/v1/staff", Some(&admin), reg(json!({}))).await;
        assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["on_duty"], false);
        assert_eq!(r.json()["grids"], json!([grid.code]));
        post_as(&app, "/api/v1/staff", Some(&admin), reg(json!({}))).await.problem(409);

        // A phone's token: bound to the member, with the role their work takes.
        let spec = |code: &str| TokenSpec { staff_code: Some(code.into()), ..TokenSpec::default() };
        assert!(onemap::auth::create_with(&*st.store, Role::Viewer, &spec(CODE)).await.is_err(), "role must fit");
        assert!(onemap::auth::create_with(&*st.store, Role::Supervisor, &spec("NOBODY")).await.is_err());
        let phone = onemap::auth::create_with(&*st.store, Role::Supervisor, &spec(CODE)).await.unwrap();
        let supervisor = onemap::auth::create(&*st.store, Role::Supervisor, None, None).await.unwrap();

        let mut feed = EventStream::open_with(&app, &viewer).await;
        let t0 = Utc::now() - Duration::minutes(3);
        let (dx, dy) = (0.0002, 0.0001);
        let walk = vec![
            position(CODE, t0, p.x(), p.y()),
            position(CODE, t0 + Duration::seconds(30), p.x() + dx, p.y()),
            position(CODE, t0 + Duration::seconds(60), p.x() + dx, p.y() + dy),
        ];
        // Only for itself: another member's position is refused, the rest land.
        let mut mixed = walk.clone();
        mixed.push(position(&demo_member, t0, p.x(), p.y()));
        mixed.push(json!({"staff": CODE, "lon": 200.0, "lat": 1.0}));
        let r = positions(&app, &phone, mixed).await;
        assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
        let rep = r.json();
        assert_eq!(rep["accepted"], 3, "{label}: {rep}");
        let reasons: Vec<&str> =
            rep["rejected"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["not_yours", "bad_coordinates"], "{label}");
        assert!(r.headers.get("onemap-seq").is_some());
        positions(&app, &phone, vec![position(&demo_member, t0, p.x(), p.y())]).await.problem(400);
        positions(&app, &supervisor, walk.clone()).await.problem(403);
        positions(&app, &viewer, walk.clone()).await.problem(403);
        post_as(&app, "/api/v1/staff/positions", Some(&phone), b"{\"positions\": 3}".to_vec()).await.problem(400);
        // Resent: duplicates; one from before the walk: stored in the track, not counted.
        let again =
            positions(&app, &phone, vec![walk[2].clone(), position(CODE, t0 - Duration::seconds(30), p.x(), p.y())])
                .await
                .json();
        assert_eq!(
            (again["duplicates"].as_u64(), again["out_of_order"].as_u64()),
            (Some(1), Some(1)),
            "{label}: {again}"
        );

        let on = feed.wait_for("staff.on_duty", |d| d["staff"] == CODE).await;
        assert_eq!(on["grid_code"], grid.code.as_str(), "{label}");
        let moved = feed.wait_for("staff.moved", |d| d["staff"] == CODE).await;
        assert_eq!(moved["name"], "测试 监督员");

        // The live layer: the collection, tiles, the member's own record.
        let item = get_as(&app, &format!("/collections/staff/items/{CODE}"), &viewer).await.json();
        assert_eq!(item["properties"]["on_duty"], true, "{label}");
        assert_eq!(item["properties"]["grid_code"], grid.code.as_str());
        let c = item["geometry"]["coordinates"].as_array().unwrap();
        assert!((c[0].as_f64().unwrap() - (p.x() + dx)).abs() < 1e-7, "{label}: at the latest position");
        let on_duty = get_as(&app, "/collections/staff/items?on_duty=true", &viewer).await.json();
        assert_eq!(on_duty["numberMatched"], 1, "{label}");
        let (z, x, y) = tile_of(p.x() + dx, p.y() + dy, 16);
        let tile = get_as(&app, &format!("/tiles/staff/{z}/{x}/{y}"), &viewer).await;
        assert_eq!(tile.status, 200);
        assert!(String::from_utf8_lossy(&tile.body).contains(CODE), "{label}: the member is in the tile");

        // Nearest, on duty by default.
        let near =
            get_as(&app, &format!("/api/v1/staff/nearest?lon={}&lat={}&crs=cgcs2000&k=3", p.x(), p.y()), &viewer)
                .await
                .json();
        let first = &near["staff"][0];
        assert_eq!(first["code"], CODE, "{label}: {near}");
        assert!(first["distance_m"].as_f64().unwrap() < 40.0, "{label}: {first}");
        assert_eq!(near["staff"].as_array().unwrap().len(), 1, "only one on duty");
        let all = get_as(
            &app,
            &format!("/api/v1/staff/nearest?lon={}&lat={}&crs=cgcs2000&k=3&on_duty=false", q.x(), q.y()),
            &viewer,
        )
        .await
        .json();
        assert_eq!(all["staff"].as_array().unwrap().len(), 3.min(city.staff.len() + 1), "{label}");
        let d: Vec<f64> = all["staff"].as_array().unwrap().iter().map(|s| s["distance_m"].as_f64().unwrap()).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{label}: nearest first {d:?}");
        for bad in ["lon=1", "lon=x&lat=1", "lon=88&lat=29&k=0", "lon=88&lat=29&k=101", "lon=88&lat=29&shoe=1"] {
            get_as(&app, &format!("/api/v1/staff/nearest?{bad}"), &viewer).await.problem(400);
        }

        // The track: four stored positions (the late one included), in time order.
        let from = enc(&at(t0 - Duration::minutes(5)));
        let track = get_as(&app, &format!("/api/v1/staff/{CODE}/track?from={from}&crs=cgcs2000"), &viewer).await;
        assert_eq!(track.content_type(), "application/geo+json");
        let track = track.json();
        assert_eq!(track["geometry"]["type"], "LineString", "{label}");
        assert_eq!(track["geometry"]["coordinates"].as_array().unwrap().len(), 4, "{label}: {track}");
        assert_eq!(track["properties"]["times"][0], at(t0 - Duration::seconds(30)));
        get_as(&app, &format!("/api/v1/staff/{CODE}/track?from=2026-01-01&to=2026-03-01"), &viewer).await.problem(422);
        get_as(&app, "/api/v1/staff/NOBODY/track", &viewer).await.problem(404);

        // Patrol coverage of the day: 2 gaps of 30 s on duty, the walk's distance, its grid.
        let day = onemap::staff::positions::city_day(t0).to_string();
        let rows = get_as(&app, &format!("/api/v1/analysis/patrol?date={day}"), &viewer).await.json();
        let mine = rows["rows"].as_array().unwrap().iter().find(|r| r["staff"] == CODE).unwrap().clone();
        assert_eq!(
            (mine["grids_assigned"].as_u64(), mine["grids_visited"].as_u64()),
            (Some(1), Some(1)),
            "{label}: {mine}"
        );
        assert_eq!(mine["coverage_rate"], 1.0);
        assert_eq!(mine["duty_minutes"], 1.0, "{label}");
        assert_eq!(mine["positions"], 3, "{label}: the late one does not count");
        let walked = onemap::geo::haversine_m((p.x(), p.y()), (p.x() + dx, p.y()))
            + onemap::geo::haversine_m((p.x() + dx, p.y()), (p.x() + dx, p.y() + dy));
        assert!((mine["distance_m"].as_f64().unwrap() - walked).abs() < 0.2, "{label}: {mine} vs {walked}");
        let by_grid = get_as(&app, &format!("/api/v1/analysis/patrol?date={day}&by=grid"), &viewer).await.json();
        let g = by_grid["rows"].as_array().unwrap().iter().find(|r| r["grid_code"] == grid.code.as_str()).unwrap();
        assert_eq!((g["visited"].as_bool(), g["visitors"].as_u64()), (Some(true), Some(1)), "{label}: {g}");
        assert_eq!(by_grid["summary"]["grids_visited"], 1);
        let by_community =
            get_as(&app, &format!("/api/v1/analysis/patrol?date={day}&by=community"), &viewer).await.json();
        let cm = by_community["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["community_code"] == grid.community_code.as_str())
            .unwrap();
        assert_eq!(cm["grids_visited"], 1, "{label}: {cm}");
        get_as(&app, "/api/v1/analysis/patrol?by=street", &viewer).await.problem(400);
        get_as(&app, "/api/v1/analysis/patrol?date=yesterday", &viewer).await.problem(400);
        let empty = get_as(&app, "/api/v1/analysis/patrol?date=2020-01-01", &viewer).await.json();
        assert_eq!(empty["summary"]["grids_visited"], 0);

        // Field tasks: a public report, accepted, goes to the nearest supervisor on duty whose
        // beat holds its grid; overdue, to the next one; a workflow step ends it.
        let r = positions(&app, &admin, vec![position(&demo_member, Utc::now(), q.x(), q.y())]).await;
        assert_eq!(r.json()["accepted"], 1, "{label}: an admin places anyone");
        let class = city.event_classes[0].code.to_string();
        let report = json!({"class_code": class, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "description": "市民反映", "source": "public"});
        let case = post_as(&app, "/api/v1/cases", Some(&admin), report.to_string().into_bytes()).await.json();
        let accepted = act(&app, &admin, &case, "accept").await.json();
        assert_eq!(accepted["status"], "accepted");
        let now = Utc::now();
        let reassign = Duration::minutes(30);
        assert!(onemap::staff::tasks::assign(&st.live, now, reassign).await.unwrap() >= 1, "{label}");
        let assigned = feed.wait_for("case.assigned", |d| d["id"] == case["id"]).await;
        assert_eq!(assigned["assignee"], CODE, "{label}: the responsible member, nearest");
        let tasks = get_as(&app, "/api/v1/tasks", &phone).await.json();
        let mine: Vec<&Value> = tasks["tasks"].as_array().unwrap().iter().filter(|t| t["id"] == case["id"]).collect();
        assert_eq!(mine.len(), 1, "{label}: {tasks}");
        assert_eq!(mine[0]["task"], "verify");
        get_as(&app, "/api/v1/tasks", &viewer).await.problem(403);
        assert_eq!(onemap::staff::tasks::assign(&st.live, now, reassign).await.unwrap(), 0, "{label}: nothing twice");
        onemap::staff::tasks::assign(&st.live, now + Duration::minutes(31), reassign).await.unwrap();
        let again = get_as(&app, &format!("/api/v1/cases/{}", case["id"]), &viewer).await.json();
        assert_eq!(again["assignee"], demo_member.as_str(), "{label}: reassigned to the next on duty");
        let steps: Vec<&str> =
            again["history"].as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap()).collect();
        assert_eq!(steps, ["report", "accept", "assign", "assign"], "{label}");
        let verified = act(&app, &admin, &again, "verify").await.json();
        assert!(verified["assignee"].is_null(), "{label}: the step ends the task");
        assert!(
            get_as(&app, "/api/v1/tasks", &phone).await.json()["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["id"] != case["id"])
        );

        // Off duty once the timeout passed without a position, through the log.
        let off = st.staff.sweep_duty(Utc::now() + Duration::minutes(10)).await.unwrap();
        assert_eq!(off, 2, "{label}: both members");
        feed.wait_for("staff.off_duty", |d| d["staff"] == CODE).await;
        let item = get_as(&app, &format!("/api/v1/staff/{CODE}"), &viewer).await.json();
        assert_eq!(item["on_duty"], false, "{label}");
        assert_eq!(st.staff.sweep_duty(Utc::now() + Duration::minutes(10)).await.unwrap(), 0, "nobody twice");

        // A restart restores where the member was seen (and, long ago enough, off duty).
        let again = onemap::server::start(&location, false, 16).await.expect("restart");
        let restored = again.index.staff.read().get(CODE).cloned().unwrap();
        assert_eq!(
            restored.last_seen.map(|t| t.timestamp_millis()),
            Some((t0 + Duration::seconds(60)).timestamp_millis())
        );
        assert!((restored.geom.x() - (p.x() + dx)).abs() < 1e-9, "{label}");
        assert_eq!(restored.grid_code.as_deref(), Some(grid.code.as_str()));
        assert!(restored.on_duty, "{label}: seen within the timeout at restart");
        again.store.close().await;
        st.store.close().await;
    }
}

/// A workflow step on `case` at its version.
async fn act(app: &axum::Router, token: &str, case: &Value, action: &str) -> Resp {
    let body = json!({"action": action, "expected_version": case["version"]});
    post_as(app, &format!("/api/v1/cases/{}/actions", case["id"]), Some(token), body.to_string().into_bytes()).await
}

/// The tile holding a point at zoom `z`.
fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32, u32) {
    let n = 2f64.powi(z as i32);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let lat = lat.to_radians();
    let y = ((1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (z, x, y)
}

/// `onemap token create --role supervisor --staff CODE` makes a phone's token that posts its
/// member's positions and no one else's; a role that does not fit the member is refused.
#[tokio::test]
async fn a_staff_token_from_the_command_line_posts_only_for_its_member() {
    let city = small_city();
    let location = fresh_gpkg("staff-cli");
    let st = seeded_state(&location, city).await;
    let member = city.staff[0].code.to_string();
    let other = city.staff.last().unwrap().code.to_string();
    assert_ne!(member, other, "the small city has more than one supervisor");
    let bin = env!("CARGO_BIN_EXE_onemap");
    let make = |role: &str| {
        std::process::Command::new(bin)
            .args(["token", "create", "--role", role, "--staff", &member, "--store", &location])
            .output()
            .unwrap()
    };
    let bad = make("viewer");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--role supervisor"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let out = make("supervisor");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();
    let app = onemap::app(st.clone());
    let g = city.grids[0].geom.interior_point().unwrap();
    let mine = positions(&app, &token, vec![position(&member, Utc::now(), g.x(), g.y())]).await;
    assert_eq!(mine.json()["accepted"], 1);
    positions(&app, &token, vec![position(&other, Utc::now(), g.x(), g.y())]).await.problem(400);
    let list = std::process::Command::new(bin).args(["token", "list", "--store", &location]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&format!("staff:{member}")));
    st.store.close().await;
}
