//! No acknowledged write is lost: the real binary takes a burst of reports and workflow steps,
//! is killed with SIGKILL in the middle of it, and after a restart every case and step that was
//! acknowledged with a 2xx is there, on both stores.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{serve, token_cli};
use geo::InteriorPoint;
use serde_json::{Value, json};

/// Reports cases and walks each through accept and file, from several tasks at once, recording
/// every acknowledged (case id, version) until the server dies.
async fn burst(url: String, admin: String, body: Value, acked: Arc<Mutex<Vec<(i64, i64)>>>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    loop {
        let Ok(r) = client.post(format!("{url}/api/v1/cases")).bearer_auth(&admin).json(&body).send().await else {
            return;
        };
        if r.status() != 201 {
            return;
        }
        let Ok(mut case) = r.json::<Value>().await else { return };
        acked.lock().unwrap().push((case["id"].as_i64().unwrap(), 1));
        for action in ["accept", "file"] {
            let req = json!({"action": action, "expected_version": case["version"]});
            let Ok(r) = client
                .post(format!("{url}/api/v1/cases/{}/actions", case["id"]))
                .bearer_auth(&admin)
                .json(&req)
                .send()
                .await
            else {
                return;
            };
            if r.status() != 200 {
                return;
            }
            let Ok(next) = r.json::<Value>().await else { return };
            case = next;
            acked.lock().unwrap().push((case["id"].as_i64().unwrap(), case["version"].as_i64().unwrap()));
        }
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let city = common::small_city();
    let gpkg = common::fresh_gpkg("durability");
    let pg = common::fresh_pg("onemap_t_durability").await;
    for store in [gpkg, pg] {
        let s = onemap::store::open(&store).await.unwrap();
        s.write_city(city, &|_, _| {}).await.unwrap();
        s.close().await;
        let admin = token_cli(&store, "admin");
        let (mut child, url) = serve(&["--store", &store, "--public-read"]);
        let p = city.grids[5].geom.interior_point().unwrap();
        let body = json!({"class_code": city.event_classes[0].code.as_str(), "lon": p.x(), "lat": p.y(),
            "crs": "cgcs2000", "description": "断电测试", "source": "hotline"});
        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> =
            (0..8).map(|_| tokio::spawn(burst(url.clone(), admin.clone(), body.clone(), acked.clone()))).collect();
        // Let the burst run, then pull the plug mid-flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() > 20, "{store}: the burst was too small to mean anything ({})", acked.len());

        let (mut child, url) = serve(&["--store", &store, "--public-read"]);
        let client = reqwest::Client::new();
        let mut latest = std::collections::HashMap::new();
        for (id, version) in &acked {
            let v = latest.entry(*id).or_insert(0);
            *v = (*v).max(*version);
        }
        for (id, version) in latest {
            let case: Value =
                client.get(format!("{url}/api/v1/cases/{id}")).send().await.unwrap().json().await.unwrap();
            assert!(
                case["version"].as_i64().is_some_and(|v| v >= version),
                "{store}: case {id} acknowledged at version {version}, found {case}"
            );
            let steps = case["history"].as_array().unwrap().len() as i64;
            assert_eq!(steps, case["version"].as_i64().unwrap(), "{store}: case {id} history");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Posts readings of `sensor` over HTTP, one a millisecond apart in reading time, recording the
/// times of every batch the server acknowledged; the values swing between calm and red so
/// alarms are raised and cleared while the server is killed.
async fn readings_burst(url: String, device: String, sensor: String, start: i64, acked: Arc<Mutex<Vec<i64>>>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for i in 0.. {
        let at = start + i * 1000;
        let value = if (i / 5) % 2 == 0 { 0.05 } else { 0.6 };
        let body = json!({"readings": [{"sensor": sensor, "at": at, "value": value}]});
        let Ok(r) = client.post(format!("{url}/api/v1/sensors/readings")).bearer_auth(&device).json(&body).send().await
        else {
            return;
        };
        if r.status() != 200 {
            return;
        }
        acked.lock().unwrap().push(at);
    }
}

/// Writes a CSV of `n` new point components (copies of `like` with codes whose serials start at
/// `first`) for `onemap import components`, and returns the first and last codes.
fn components_csv(path: &std::path::Path, like: &onemap::model::Component, first: usize, n: usize) -> (String, String) {
    let onemap::model::Shape::Point(p) = like.geom else { panic!("a point component") };
    let code = |i: usize| format!("{}{:06}", &like.code[..10], first + i);
    let mut csv = String::from("ObjID,ObjName,ObjState,lon,lat\n");
    for i in 0..n {
        let (x, y) = (p.x() + (i % 100) as f64 * 1e-6, p.y() + (i / 100) as f64 * 1e-6);
        csv.push_str(&format!("{},{},完好,{x},{y}\n", code(i), like.name));
    }
    std::fs::write(path, csv).unwrap();
    (code(0), code(n - 1))
}

/// Repeated SIGKILL under mixed load on PostGIS: cases and workflow steps over HTTP, readings
/// over HTTP and over MQTT (QoS 1, acknowledged to the broker only after the commit, so the
/// broker redelivers what the dead server had not committed), and an import of 20,000
/// components by `onemap import` running beside the server. After every restart each
/// acknowledged case step and HTTP reading is there, every MQTT reading arrives, no sensor has
/// more than one active alarm, and the import is whole: all of it when it finished, all or
/// nothing when it was killed too (round 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_survives_repeated_sigkill() {
    use common::broker::{Broker, free_port};
    let city = common::small_city();
    let store = common::fresh_pg("onemap_t_durability_mixed").await;
    let s = onemap::store::open(&store).await.unwrap();
    s.write_city(city, &|_, _| {}).await.unwrap();
    s.close().await;
    let port = free_port();
    let _broker = Broker::start(port);
    let mqtt = format!("mqtt://127.0.0.1:{port}?client_id=onemap-durability");
    let admin = token_cli(&store, "admin");
    let device = token_cli(&store, "device");
    let p = city.grids[5].geom.interior_point().unwrap();
    let case_body = json!({"class_code": city.event_classes[0].code.as_str(), "lon": p.x(), "lat": p.y(),
        "crs": "cgcs2000", "description": "反复断电", "source": "hotline"});
    let client = reqwest::Client::new();
    let (mut child, mut url) = serve(&["--store", &store, "--public-read", "--mqtt", &mqtt]);
    for code in ["KILL-HTTP", "KILL-MQTT"] {
        let s = json!({"code": code, "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000"});
        let r = client.post(format!("{url}/api/v1/sensors")).bearer_auth(&admin).json(&s).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    // An MQTT publisher with its own session: QoS 1 messages wait in the broker for onemap.
    let (publisher, mut events) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("durability-pub", "127.0.0.1", port), 256);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let start = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let like =
        city.components.iter().find(|c| matches!(c.geom, onemap::model::Shape::Point(_))).expect("a point component");
    let dir = tempfile::tempdir().unwrap();
    let (mut cases_acked, mut readings_acked, mut published) = (Vec::new(), Vec::new(), 0i64);
    for round in 0..3 {
        const IMPORTED: usize = 20_000;
        let csv = dir.path().join(format!("components-{round}.csv"));
        let (first, last) = components_csv(&csv, like, 900_000 - (round as usize + 1) * IMPORTED, IMPORTED);
        let mut import = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
            .args(["import", "components", csv.to_str().unwrap(), "--store", &store, "--crs", "cgcs2000"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let cases = Arc::new(Mutex::new(Vec::new()));
        let readings = Arc::new(Mutex::new(Vec::new()));
        let mut tasks: Vec<_> =
            (0..4).map(|_| tokio::spawn(burst(url.clone(), admin.clone(), case_body.clone(), cases.clone()))).collect();
        tasks.push(tokio::spawn(readings_burst(
            url.clone(),
            device.clone(),
            "KILL-HTTP".into(),
            start + round * 600_000,
            readings.clone(),
        )));
        let publish = async {
            for _ in 0..50 {
                let at = start + published * 1000;
                let body = json!({"at": at, "value": 0.05}).to_string();
                publisher
                    .publish("onemap/sensors/KILL-MQTT/readings", rumqttc::QoS::AtLeastOnce, false, body)
                    .await
                    .unwrap();
                published += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        publish.await;
        child.kill().unwrap();
        child.wait().unwrap();
        // The import dies with the server in round 1; elsewhere it runs to its end.
        let imported = if round == 1 {
            import.kill().unwrap();
            import.wait().unwrap().success()
        } else {
            let out = import.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: import: {}", String::from_utf8_lossy(&out.stderr));
            true
        };
        for t in tasks {
            t.await.unwrap();
        }
        cases_acked.extend(cases.lock().unwrap().iter().copied());
        readings_acked.extend(readings.lock().unwrap().iter().copied());
        (child, url) = serve(&["--store", &store, "--public-read", "--mqtt", &mqtt]);
        // Every acknowledged case step.
        let mut latest = std::collections::HashMap::new();
        for (id, version) in &cases_acked {
            let v = latest.entry(*id).or_insert(0);
            *v = (*v).max(*version);
        }
        for (id, version) in &latest {
            let case: Value =
                client.get(format!("{url}/api/v1/cases/{id}")).send().await.unwrap().json().await.unwrap();
            assert!(case["version"].as_i64().is_some_and(|v| v >= *version), "round {round}: case {id} lost: {case}");
        }
        // Every acknowledged HTTP reading, and (after redelivery) every MQTT reading.
        let s = onemap::store::open(&store).await.unwrap();
        for &at in &readings_acked {
            let t = chrono::DateTime::from_timestamp_millis(at).unwrap();
            let n = s.count_readings("KILL-HTTP", t, t + chrono::Duration::milliseconds(1)).await.unwrap();
            assert_eq!(n, 1, "round {round}: the acknowledged reading at {t} was lost");
        }
        let (from, to) = (chrono::DateTime::from_timestamp_millis(start).unwrap(), chrono::Utc::now());
        let mut mqtt_stored = 0;
        for _ in 0..100 {
            mqtt_stored = s.count_readings("KILL-MQTT", from, to).await.unwrap();
            if mqtt_stored == published {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(mqtt_stored, published, "round {round}: MQTT readings published with QoS 1");
        // The import is whole: its first and last components both there, or (killed) neither.
        let status = |code: String| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client.get(format!("{url}/collections/components/items/{code}")).send().await.unwrap().status().as_u16()
            }
        };
        let (a, b) = (status(first.clone()).await, status(last.clone()).await);
        if imported {
            assert_eq!((a, b), (200, 200), "round {round}: the finished import's {first} and {last}");
        } else {
            assert_eq!(a, b, "round {round}: a killed import is all or nothing ({first}: {a}, {last}: {b})");
        }
        // At most one active alarm per sensor, whatever was cut short.
        let active = s.alarms(true, 1000).await.unwrap();
        let mut per_sensor = std::collections::HashMap::new();
        for a in &active {
            *per_sensor.entry(a.sensor_code.to_string()).or_insert(0) += 1;
        }
        assert!(per_sensor.values().all(|&n| n <= 1), "round {round}: {per_sensor:?}");
        s.close().await;
        assert!(cases_acked.len() > 10 && readings_acked.len() > 10, "round {round}: the load was too small");
        eprintln!(
            "round {round}: checked {} acknowledged case steps, {} HTTP readings, {published} MQTT readings, an import of {IMPORTED} {}",
            cases_acked.len(),
            readings_acked.len(),
            if imported { "finished" } else { "killed" }
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
