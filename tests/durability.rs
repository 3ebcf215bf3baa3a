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
