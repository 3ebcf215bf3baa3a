//! Input hygiene, on both stores: free text with control characters is refused (400) on every
//! write path and exports write well-formed files whatever is stored; a raced step answers 409
//! before 422; readings of one millisecond are one reading, implausible values are refused and
//! an early device clock never hides a later alarm; polygons wind either way; `near` wraps at
//! 180°; bare dates are inclusive city days; a projected `crs` is refused, not answered in
//! degrees; every error answer, the framework's own included, is problem+json; request metrics
//! keep a bounded method label.

mod common;

use axum::body::Body;
use axum::http::Request;
use chrono::{Duration, Utc};
use common::*;
use geo::InteriorPoint;
use onemap::auth::Role;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_exports_stay_well_formed() {
    let city = small_city();
    for (label, st) in both_stores("hygiene", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
        let public = onemap::auth::create(&*st.store, Role::Public, None, None).await.unwrap();
        let p = city.grids[3].geom.interior_point().unwrap();
        let class = city.event_classes[0].code.to_string();
        let report = |description: &str| {
            json!({"class_code": class, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
                "description": description, "source": "supervisor"})
            .to_string()
            .into_bytes()
        };

        // 1. Control characters, on every path that stores text.
        for bad in ["垃圾\u{0}堆放", "a\u{1}b", "v\u{b}tab", "esc\u{1b}[31m"] {
            let v = post_as(&app, "/api/v1/cases", Some(&admin), report(bad)).await.problem(400);
            assert!(v["detail"].as_str().unwrap().contains("control character"), "{label}: {v}");
        }
        let ok = post_as(&app, "/api/v1/cases", Some(&admin), report("两行\n描述\t可以")).await;
        assert_eq!(ok.status, 201, "{label}: newline and tab are text");
        let case = ok.json();
        let form = format!(
            "api_key={public}&service_code={class}&lat={}&long={}&description={}",
            p.y(),
            p.x(),
            enc("井盖\u{0}缺失")
        );
        let r = post_form(&app, "/open311/v2/requests.json", form).await;
        r.problem(400);
        let sensor = json!({"code": "HY-WL-1", "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "name": "积水\u{0}点", "thresholds": {"min_duration_s": 0}});
        post_as(&app, "/api/v1/sensors", Some(&admin), sensor.to_string().into_bytes()).await.problem(400);
        let step = json!({"action": "accept", "expected_version": case["version"], "note": "好\u{7}"});
        let uri = format!("/api/v1/cases/{}/actions", case["id"]);
        post_as(&app, &uri, Some(&admin), step.to_string().into_bytes()).await.problem(400);

        // Text stored before this check (an older version, a database edited by hand) still
        // exports well-formed, in every format.
        let id = case["id"].as_i64().unwrap().to_string();
        st.index.cases.write().update_in_place(&id, |c| c.description = "旧\u{0}数据\u{1}\u{b}\u{1b}".into());
        for format in ["geojson", "kml", "csv", "gpkg", "shp", "fgb"] {
            let r = get(&app, &format!("/api/v1/export/cases?format={format}")).await;
            assert_eq!(
                r.status,
                200,
                "{label} {format}: {}",
                String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
            );
            if matches!(format, "geojson" | "kml" | "csv") {
                let text = String::from_utf8(r.body.clone()).unwrap();
                assert!(text.contains("旧数据"), "{label} {format}: the text is kept, without its controls");
                assert!(
                    !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
                    "{label} {format}: a control character was written"
                );
            }
        }

        // 2. A raced step: the version is checked before the status (409, not 422).
        let stale = json!({"action": "close", "expected_version": case["version"].as_i64().unwrap() + 5});
        let v = post_as(&app, &uri, Some(&admin), stale.to_string().into_bytes()).await.problem(409);
        assert_eq!(v["type"], "/problems/version-conflict", "{label}: {v}");

        // 3. Readings: two within one millisecond are one; implausible values are refused; a
        // reading stamped ahead of the clock does not hide a later alarm.
        let sensor = json!({"code": "HY-WL-2", "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "thresholds": {"min_duration_s": 0}});
        assert_eq!(post_as(&app, "/api/v1/sensors", Some(&admin), sensor.to_string().into_bytes()).await.status, 201);
        let t = Utc::now() - Duration::minutes(5);
        let at = |t: chrono::DateTime<Utc>, frac: &str| format!("{}{frac}Z", t.format("%Y-%m-%dT%H:%M:%S"));
        let batch = json!({"readings": [
            {"sensor": "HY-WL-2", "at": at(t, ".1231"), "value": 0.01},
            {"sensor": "HY-WL-2", "at": at(t, ".1234"), "value": 0.02},
            {"sensor": "HY-WL-2", "at": at(t, ".2"), "value": 1.7e308},
        ]});
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&admin), batch.to_string().into_bytes()).await;
        let rep = r.json();
        assert_eq!((rep["accepted"].as_u64(), rep["duplicates"].as_u64()), (Some(1), Some(1)), "{label}: {rep}");
        assert_eq!(rep["rejected"][0]["reason"], "implausible", "{label}: {rep}");
        let early = json!({"readings": [{"sensor": "HY-WL-2", "at": (Utc::now() + Duration::seconds(20)).to_rfc3339(), "value": 0.02}]});
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&admin), early.to_string().into_bytes()).await;
        assert_eq!(r.json()["accepted"], 1, "{label}: within the slack");
        let far = json!({"readings": [{"sensor": "HY-WL-2", "at": (Utc::now() + Duration::seconds(120)).to_rfc3339(), "value": 0.02}]});
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&admin), far.to_string().into_bytes()).await;
        assert!(r.problem(400)["detail"].as_str().unwrap().contains("future"), "{label}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let red = json!({"readings": [{"sensor": "HY-WL-2", "at": Utc::now().to_rfc3339(), "value": 0.6}]});
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&admin), red.to_string().into_bytes()).await;
        assert_eq!((r.json()["accepted"].as_u64(), r.json()["out_of_order"].as_u64()), (Some(1), Some(0)), "{label}");
        let alarms = get(&app, "/api/v1/alarms?active=true").await.json();
        let raised = alarms["alarms"].as_array().unwrap().iter().find(|a| a["sensor"] == "HY-WL-2").cloned();
        assert_eq!(raised.map(|a| a["level"].clone()), Some(json!("red")), "{label}: the early reading hid nothing");

        // 4. Geometry and coordinates: a clockwise ring is the same selection as a
        // counter-clockwise one; near wraps at 180°; a projected crs is refused.
        let b = city.grids[3].geom.exterior().0.clone();
        let ring = |cw: bool| {
            let mut pts: Vec<Value> = b.iter().map(|c| json!([c.x, c.y])).collect();
            if cw == (geo::Area::signed_area(&city.grids[3].geom) > 0.0) {
                pts.reverse();
            }
            json!({"geometry": {"type": "Polygon", "coordinates": [pts]}, "crs": "cgcs2000"})
        };
        let ccw = post_json(&app, "/api/v1/analysis/stats", &ring(false)).await;
        let cw = post_json(&app, "/api/v1/analysis/stats", &ring(true)).await;
        assert_eq!((ccw.status, cw.status), (axum::http::StatusCode::OK, axum::http::StatusCode::OK), "{label}");
        let (a1, a2) = (ccw.json()["area_m2"].as_f64().unwrap(), cw.json()["area_m2"].as_f64().unwrap());
        assert!(a1 > 1000.0 && (a1 - a2).abs() < 1e-6 * a1, "{label}: {a1} vs {a2}");
        let near = |lon: f64| format!("/collections/components/items?near={lon},{}&k=5&crs=cgcs2000", p.y());
        let ids =
            |r: Resp| r.json()["features"].as_array().unwrap().iter().map(|f| f["id"].clone()).collect::<Vec<_>>();
        let here = ids(get(&app, &near(p.x())).await);
        assert_eq!(here.len(), 5);
        assert_eq!(ids(get(&app, &near(p.x() + 360.0)).await), here, "{label}: near wraps at 180°");
        get(&app, "/collections/grids/items?crs=EPSG:3857&limit=1").await.problem(400);

        // 5. A bare date range holds both of its city days.
        let c = &city.cases[0];
        let day = c.reported_at.with_timezone(&onemap::model::city_tz()).date_naive();
        let range = format!("{day}/{day}");
        let fc = get(&app, &format!("/collections/cases/items?datetime={range}&limit=10000")).await.json();
        let want = city
            .cases
            .iter()
            .filter(|k| k.reported_at.with_timezone(&onemap::model::city_tz()).date_naive() == day)
            .count();
        assert!(want > 0);
        assert_eq!(fc["features"].as_array().unwrap().len(), want, "{label}: the city day {day}");

        // 6. The framework's own rejections are problems too; metrics labels stay bounded.
        let big = vec![b' '; onemap::http::MAX_BODY_BYTES + 1];
        let v = post_as(&app, "/api/v1/sensors/readings", Some(&admin), big.clone()).await.problem(413);
        assert_eq!(v["type"], "/problems/payload-too-large");
        let r = post_form(&app, "/open311/v2/requests.json", big).await;
        r.problem(413);
        let odd = send(&app, Request::builder().method("BREW").uri("/health").body(Body::empty()).unwrap()).await;
        odd.problem(405);
        let m = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
        assert!(m.contains("method=\"other\""), "{label}: an unknown method is counted as other");
        assert!(!m.contains("BREW"), "{label}");
        st.store.close().await;
    }
}

/// Postponements are bounded: positive hours of at least half an hour, never more granted than
/// asked (approval defaults to what was asked), and at most three per case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponements_are_bounded() {
    let city = small_city();
    let st = seeded_state(&fresh_gpkg("hygiene-postpone"), city).await;
    let app = onemap::app(st.clone());
    let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
    let dept = city.departments[0].code.to_string();
    let p = city.grids[5].geom.interior_point().unwrap();
    let body = json!({"class_code": city.event_classes[0].code, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
        "description": "延期测试", "source": "supervisor"});
    let mut case = post_as(&app, "/api/v1/cases", Some(&admin), body.to_string().into_bytes()).await.json();
    let act = |case: &Value, action: &str, hours: Option<f64>| {
        let mut body = json!({"action": action, "expected_version": case["version"], "dept_code": dept});
        if let Some(h) = hours {
            body["hours"] = json!(h);
        }
        let uri = format!("/api/v1/cases/{}/actions", case["id"]);
        let (app, admin) = (app.clone(), admin.clone());
        async move { post_as(&app, &uri, Some(&admin), body.to_string().into_bytes()).await }
    };
    for a in ["accept", "file", "dispatch"] {
        let r = act(&case, a, None).await;
        assert_eq!(r.status, 200, "{a}: {}", String::from_utf8_lossy(&r.body));
        case = r.json();
    }
    for bad in [1e-300, 0.0, -4.0, 1e9] {
        let v = act(&case, "request_postpone", Some(bad)).await.problem(400);
        assert!(v["detail"].as_str().unwrap().contains("between 0.5 and 720"), "{bad}: {v}");
    }
    for round in 0..3 {
        let r = act(&case, "request_postpone", Some(8.0)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        case = r.json();
        let v = act(&case, "approve_postpone", Some(10.0)).await.problem(422);
        assert!(v["detail"].as_str().unwrap().contains("more than the 8 h asked"), "{v}");
        let before = case["deadline_at"].as_str().unwrap().to_string();
        // Without hours, what was asked is granted.
        let r = act(&case, "approve_postpone", None).await;
        assert_eq!(r.status, 200, "round {round}: {}", String::from_utf8_lossy(&r.body));
        case = r.json();
        assert!(case["deadline_at"].as_str().unwrap() > before.as_str(), "the deadline moved");
    }
    let v = act(&case, "request_postpone", Some(8.0)).await.problem(422);
    assert!(v["detail"].as_str().unwrap().contains("3 times"), "{v}");
}
