//! Sensors through the real router on both stores: registration, batches with bad readings in
//! them, the alarm lifecycle from blue to red and clear with its one case, acknowledgement,
//! history with downsampling, stale flags, metrics, and the state a restart brings back.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use onemap::auth::Role;
use serde_json::{Value, json};

const CODE: &str = "T-GAS-0001";

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn readings(app: &axum::Router, token: &str, items: Vec<Value>) -> Resp {
    post_as(app, "/api/v1/sensors/readings", Some(token), json!({ "readings": items }).to_string().into_bytes()).await
}

fn reading(t: DateTime<Utc>, v: f64) -> Value {
    json!({"sensor": CODE, "at": at(t), "value": v})
}

async fn history(app: &axum::Router, id: i64) -> Vec<String> {
    let c = get(app, &format!("/api/v1/cases/{id}")).await.json();
    c["history"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn readings_raise_escalate_and_clear_alarms_with_one_case_on_both_stores() {
    let city = small_city();
    // A point component with an owner on record, for owner-first routing.
    let (comp, p) = owned_point_component(city);
    for (label, location) in [("gpkg", fresh_gpkg("sensors")), ("postgis", fresh_pg("onemap_t_sensors").await)] {
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone().with_public_read());
        let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
        let device = onemap::auth::create(&*st.store, Role::Device, None, None).await.unwrap();
        let viewer = onemap::auth::create(&*st.store, Role::Viewer, None, None).await.unwrap();
        let dispatcher = onemap::auth::create(&*st.store, Role::Dispatcher, None, None).await.unwrap();

        // Registration and its refusals.
        let reg = |code: &str, kind: &str, lon: f64, lat: f64, extra: Value| {
            let mut b = json!({"code": code, "kind": kind, "lon": lon, "lat": lat, "crs": "cgcs2000"});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b.to_string().into_bytes()
        };
        let overrides = json!({"component_code": comp.code, "thresholds": {"min_duration_s": 0, "hysteresis": 0.5}});
        let r = post_as(&app, "/api/v1/sensors", Some(&device), reg(CODE, "gas_lel", p.x(), p.y(), overrides.clone()))
            .await;
        r.problem(403);
        let r = post_as(&app, "/api/v1/sensors", None, reg(CODE, "gas_lel", p.x(), p.y(), overrides.clone())).await;
        r.problem(401);
        for (body, status) in [
            (reg("T-X", "radon", p.x(), p.y(), json!({})), 400),
            (reg("T/X", "gas_lel", p.x(), p.y(), json!({})), 400),
            (reg("T-X", "gas_lel", p.x(), p.y(), json!({"thresholds": {"yellow": 50, "orange": 20}})), 400),
            (reg("T-X", "gas_lel", p.x(), p.y(), json!({"thresholds": {"purple": 1}})), 400),
            (reg("T-X", "gas_lel", p.x(), p.y(), json!({"component_code": "NO-SUCH"})), 400),
            (reg("T-X", "gas_lel", 10.0, 10.0, json!({})), 404),
            (reg("T-X", "gas_lel", 200.0, 10.0, json!({})), 400),
        ] {
            post_as(&app, "/api/v1/sensors", Some(&admin), body).await.problem(status);
        }
        let r =
            post_as(&app, "/api/v1/sensors", Some(&admin), reg(CODE, "gas_lel", p.x(), p.y(), overrides.clone())).await;
        assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["thresholds"]["yellow"], 10.0);
        assert_eq!(r.json()["thresholds"]["min_duration_s"], 0);
        post_as(&app, "/api/v1/sensors", Some(&admin), reg(CODE, "gas_lel", p.x(), p.y(), overrides.clone()))
            .await
            .problem(409);
        let item = get(&app, &format!("/collections/sensors/items/{CODE}")).await.json();
        assert_eq!(item["properties"]["stale"], true, "{label}: never read yet");
        assert_eq!(item["properties"]["unit"], "%LEL");

        let mut feed = EventStream::open(&app).await;
        let t0 = Utc::now() - Duration::minutes(30);

        // A batch with bad readings in it: the good ones land, each bad one is named.
        let batch = vec![
            reading(t0, 2.0),
            json!({"sensor": "NO-SUCH-SENSOR", "at": at(t0), "value": 1.0}),
            json!({"sensor": CODE, "at": at(t0 + Duration::seconds(1)), "value": "NaN"}),
            serde_json::from_str(&format!(
                r#"{{"sensor":"{CODE}","at":"{}","value":1e999}}"#,
                at(t0 + Duration::seconds(2))
            ))
            .unwrap_or(json!(null)),
            json!({"sensor": CODE, "at": at(Utc::now() + Duration::days(2)), "value": 3.0}),
            json!({"sensor": CODE, "at": at(t0 + Duration::seconds(3)), "value": "abc"}),
            reading(t0 + Duration::seconds(4), 6.0),
        ];
        // serde_json cannot hold 1e999, so that reading is sent as raw text.
        let mut text = json!({ "readings": batch }).to_string();
        text = text.replace(
            "null",
            &format!(r#"{{"sensor":"{CODE}","at":"{}","value":1e999}}"#, at(t0 + Duration::seconds(2))),
        );
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&device), text.clone().into_bytes()).await;
        assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
        let rep = r.json();
        assert_eq!(rep["accepted"], 2, "{label}: {rep}");
        let reasons: Vec<(u64, &str)> = rep["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["index"].as_u64().unwrap(), x["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            [(1, "unknown_sensor"), (2, "not_finite"), (3, "not_finite"), (4, "future"), (5, "not_a_number")],
            "{label}"
        );
        let raised = feed.wait_for("alarm.raised", |d| d["sensor"] == CODE).await;
        assert_eq!(raised["level"], "blue", "{label}: 6 %LEL is past blue (5)");
        assert!(raised["case_id"].is_null(), "{label}: blue opens no case");
        // The same batch again: nothing new.
        let again = post_as(&app, "/api/v1/sensors/readings", Some(&device), text.into_bytes()).await.json();
        assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(2)), "{label}");
        // One stored, one new: only the new one is taken.
        let mixed =
            readings(&app, &device, vec![reading(t0, 2.0), reading(t0 + Duration::seconds(6), 6.5)]).await.json();
        assert_eq!((mixed["accepted"].as_u64(), mixed["duplicates"].as_u64()), (Some(1), Some(1)), "{label}: {mixed}");

        // Refusals of whole requests, which change nothing.
        readings(&app, &device, vec![json!({"sensor": "NOPE", "value": 1})]).await.problem(400);
        post_as(&app, "/api/v1/sensors/readings", Some(&device), b"{\"readings\": [".to_vec()).await.problem(400);
        post_as(&app, "/api/v1/sensors/readings", Some(&device), b"{\"rows\": []}".to_vec()).await.problem(400);
        readings(&app, &viewer, vec![reading(t0, 1.0)]).await.problem(403);
        post_as(&app, "/api/v1/sensors/readings", Some("wrong"), b"{}".to_vec()).await.problem(401);

        // Yellow opens the case, routed to the component's owner.
        let r = readings(&app, &device, vec![reading(t0 + Duration::seconds(10), 12.0)]).await.json();
        assert_eq!(r["accepted"], 1);
        let created = feed.wait_for("case.created", |d| d["source"] == "sensor").await;
        let case_id = created["id"].as_i64().unwrap();
        let up = feed.wait_for("alarm.raised", |d| d["level"] == "yellow").await;
        assert_eq!(up["case_id"], case_id, "{label}");
        assert_eq!(up["escalated_from"], "blue");
        let alarm_id = up["id"].as_i64().unwrap();
        assert_eq!(alarm_id, raised["id"].as_i64().unwrap(), "{label}: the same alarm");
        let case = get_as(&app, &format!("/api/v1/cases/{case_id}"), &viewer).await.json();
        assert_eq!(case["source"], "sensor");
        assert_eq!(case["class_code"], "0503", "{label}: gas maps to 燃气管道破裂");
        assert_eq!(case["component_code"], comp.code.as_str());
        assert_eq!(case["suggested_dept"]["code"], comp.owner_dept.as_deref().unwrap(), "{label}: owner first");
        assert_eq!(case["suggested_dept"]["basis"], "owner");
        assert_eq!(case["history"][0]["actor"], format!("sensor:{CODE}"));

        // Red: the same alarm and case, the escalation noted on the case.
        readings(&app, &device, vec![reading(t0 + Duration::seconds(20), 30.0)]).await;
        let red = feed.wait_for("alarm.raised", |d| d["level"] == "red").await;
        assert_eq!((red["id"].as_i64(), red["case_id"].as_i64()), (Some(alarm_id), Some(case_id)), "{label}");
        assert_eq!(history(&app, case_id).await, ["report", "alarm_escalated"], "{label}");
        let active = get(&app, "/api/v1/alarms?active=true").await.json();
        let list = active["alarms"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{label}");
        assert_eq!((list[0]["level"].as_str(), list[0]["peak_level"].as_str()), (Some("red"), Some("red")));
        let item = get(&app, &format!("/collections/sensors/items/{CODE}")).await.json();
        assert_eq!(
            (
                item["properties"]["level"].as_str(),
                item["properties"]["value"].as_f64(),
                item["properties"]["stale"].as_bool()
            ),
            (Some("red"), Some(30.0), Some(false)),
            "{label}"
        );

        // Acknowledgement.
        post_as(&app, &format!("/api/v1/alarms/{alarm_id}/ack"), Some(&viewer), vec![]).await.problem(403);
        post_as(&app, "/api/v1/alarms/999999/ack", Some(&dispatcher), vec![]).await.problem(404);
        post_as(&app, "/api/v1/alarms/x/ack", Some(&dispatcher), vec![]).await.problem(404);
        let acked = post_as(&app, &format!("/api/v1/alarms/{alarm_id}/ack"), Some(&dispatcher), vec![]).await;
        assert_eq!(acked.status, 200, "{label}");
        let first_ack = acked.json()["acked_at"].clone();
        assert!(first_ack.is_string());
        let again = post_as(&app, &format!("/api/v1/alarms/{alarm_id}/ack"), Some(&dispatcher), vec![]).await.json();
        assert_eq!(again["acked_at"], first_ack, "{label}: acknowledging twice changes nothing");

        // An old reading is stored but does not move the rules.
        let r = readings(&app, &device, vec![reading(t0 + Duration::seconds(5), 0.0)]).await.json();
        assert_eq!((r["accepted"].as_u64(), r["out_of_order"].as_u64()), (Some(1), Some(1)), "{label}");
        assert_eq!(get(&app, "/api/v1/alarms").await.json()["alarms"][0]["level"], "red");

        // Back to normal (below blue by more than the hysteresis): cleared, noted, no new case.
        readings(&app, &device, vec![reading(t0 + Duration::seconds(30), 0.5)]).await;
        let cleared = feed.wait_for("alarm.cleared", |d| d["id"] == alarm_id).await;
        assert!(cleared["cleared_at"].is_string());
        assert_eq!(get(&app, "/api/v1/alarms?active=true").await.json()["alarms"], json!([]), "{label}");
        let all = get(&app, "/api/v1/alarms?active=false").await.json();
        assert_eq!(all["alarms"][0]["id"], alarm_id);
        assert!(all["alarms"][0]["acked_by"].is_string(), "{label}: acknowledgement stored");
        assert_eq!(history(&app, case_id).await, ["report", "alarm_escalated", "alarm_cleared"], "{label}");
        let cases_from_sensor = st.index.cases.read().iter().filter(|c| c.source == "sensor").count();
        assert_eq!(cases_from_sensor, 1, "{label}: one case for the whole alarm");

        // History, whole and downsampled.
        let from = at(t0 - Duration::hours(1));
        let h = get(&app, &format!("/api/v1/sensors/{CODE}/readings?from={}", enc(&from))).await.json();
        assert_eq!(h["count"], 7, "{label}: {h}");
        assert!(h["bucket_s"].is_null());
        let values: Vec<f64> = h["readings"].as_array().unwrap().iter().map(|r| r["value"].as_f64().unwrap()).collect();
        assert_eq!(values, [2.0, 6.0, 0.0, 6.5, 12.0, 30.0, 0.5], "{label}: in time order");
        let h = get(&app, &format!("/api/v1/sensors/{CODE}/readings?from={}&max_points=2", enc(&from))).await.json();
        let buckets = h["readings"].as_array().unwrap();
        assert!(h["bucket_s"].as_i64().unwrap() >= 1800 && buckets.len() <= 3, "{label}: {h}");
        assert_eq!(buckets.iter().map(|b| b["n"].as_i64().unwrap()).sum::<i64>(), 7);
        assert_eq!(buckets.iter().map(|b| b["max"].as_f64().unwrap()).fold(0.0, f64::max), 30.0);
        get(&app, &format!("/api/v1/sensors/{CODE}/readings?from=2026-01-02&to=2026-01-01")).await.problem(400);
        get(&app, &format!("/api/v1/sensors/{CODE}/readings?from=soon")).await.problem(400);
        get(&app, &format!("/api/v1/sensors/{CODE}/readings?max_points=0")).await.problem(400);
        get(&app, "/api/v1/sensors/NOPE/readings").await.problem(404);
        get(&app, "/api/v1/alarms?active=maybe").await.problem(400);

        // Rejections are counted by reason.
        let m = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
        let count = |needle: &str| -> f64 {
            m.lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
        };
        assert!(
            count("onemap_sensor_readings_rejected_total{transport=\"http\",reason=\"not_finite\"}") >= 4.0,
            "{label}"
        );
        assert!(count("onemap_sensor_readings_rejected_total{transport=\"http\",reason=\"unknown_sensor\"}") >= 3.0);
        assert!(count("onemap_sensor_readings_total{transport=\"http\",outcome=\"duplicate\"}") >= 2.0);

        // A sensor that goes quiet is flagged stale, and fresh again with its next reading.
        assert!(st.sensors.sweep_stale(Utc::now() + Duration::hours(2)).await.unwrap() >= 1);
        let s = feed.wait_for("sensor.stale", |d| d["sensor"] == CODE).await;
        assert_eq!(s["stale"], true);
        assert_eq!(get(&app, &format!("/api/v1/sensors/{CODE}")).await.json()["stale"], true);

        // Orange straight away: a new alarm with a new case; then a restart keeps it raised.
        readings(&app, &device, vec![reading(t0 + Duration::seconds(40), 22.0)]).await;
        let orange = feed.wait_for("alarm.raised", |d| d["level"] == "orange").await;
        assert_ne!(orange["id"], alarm_id);
        assert_ne!(orange["case_id"], case_id);
        assert_eq!(get(&app, &format!("/api/v1/sensors/{CODE}")).await.json()["stale"], false);
        st.store.close().await;

        let st = onemap::server::start(&location, false, 16).await.expect("restart");
        let app = onemap::app(st.clone().with_public_read());
        let mut feed = EventStream::open(&app).await;
        let active = get(&app, "/api/v1/alarms").await.json();
        assert_eq!(active["alarms"].as_array().unwrap().len(), 1, "{label}: {active}");
        assert_eq!(active["alarms"][0]["id"], orange["id"]);
        let s = get(&app, &format!("/api/v1/sensors/{CODE}")).await.json();
        assert_eq!((s["level"].as_str(), s["value"].as_f64()), (Some("orange"), Some(22.0)), "{label}");
        readings(&app, &device, vec![reading(t0 + Duration::seconds(50), 22.5)]).await;
        let ev = feed.wait_for("sensor.reading", |d| d["sensor"] == CODE).await;
        assert_eq!(ev["level"], "orange");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), feed.wait_for("alarm.raised", |_| true))
                .await
                .is_err(),
            "{label}: a restored alarm is not raised again"
        );
        st.store.close().await;
    }
}
