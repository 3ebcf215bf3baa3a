//! Staff positions against a running server, patrol tallies included.
//!
//! `staff_load URL ADMIN_TOKEN register N`: registers N supervisors (HTTP, 8 at a time), each
//! patrolling one unit grid, starting in it.
//!
//! `staff_load URL ADMIN_TOKEN http [SECONDS] [CONCURRENCY] [BATCH]`: concurrent clients post
//! batches of positions; every member walks, one position per 10 s of simulated time; prints
//! positions per second taken in.
//!
//! `staff_load URL ADMIN_TOKEN mqtt BROKER_PORT [SECONDS] [RATE]`: one client publishes
//! positions at about RATE per second on `onemap/staff/{code}/positions` (QoS 1); prints the
//! positions per second the server took in.
//!
//! (`scripts/bench staff` starts the server and the broker and makes the token.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

mod common;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: staff_load URL ADMIN_TOKEN register|http|mqtt ...";
    let url = args.get(1).expect(usage).clone();
    let token = args.get(2).expect(usage).clone();
    let client = reqwest::Client::new();
    match args.get(3).map(String::as_str) {
        Some("register") => {
            let n: usize = args.get(4).map_or(5000, |s| s.parse().unwrap());
            register(&client, &url, &token, n).await;
        }
        Some("http") => {
            let walkers = walkers(&client, &url, &token).await;
            let seconds: u64 = args.get(4).map_or(20, |s| s.parse().unwrap());
            let concurrency: usize = args.get(5).map_or(8, |s| s.parse().unwrap());
            let batch: usize = args.get(6).map_or(5000, |s| s.parse().unwrap());
            http(&client, &url, &token, walkers, seconds, concurrency, batch).await;
        }
        Some("mqtt") => {
            let walkers = walkers(&client, &url, &token).await;
            let port: u16 = args.get(4).expect("BROKER_PORT").parse().unwrap();
            let seconds: u64 = args.get(5).map_or(20, |s| s.parse().unwrap());
            let rate: u64 = args.get(6).map_or(20_000, |s| s.parse().unwrap());
            mqtt(&client, &url, walkers, port, seconds, rate).await;
        }
        _ => panic!("{usage}"),
    }
}

async fn register(client: &reqwest::Client, url: &str, token: &str, n: usize) {
    let grids = common::get_json(client, &format!("{url}/collections/grids/items?limit=10000"), token).await;
    let codes: Vec<String> = grids["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["code"].as_str().unwrap().to_string())
        .collect();
    assert!(!codes.is_empty(), "no grids");
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, token, codes, next) =
                (client.clone(), url.to_string(), token.to_string(), codes.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return;
                    }
                    let body = json!({"code": format!("LOAD-{i:05}"), "name": format!("压测监督员{i}"),
                        "role": "supervisor", "grids": [codes[i % codes.len()]]});
                    let r = client
                        .post(format!("{url}/api/v1/staff"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success() || r.status() == 409, "{}", r.text().await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    println!("registered {n} staff in {:.1} s", started.elapsed().as_secs_f64());
}

/// Every member and where they start.
async fn walkers(client: &reqwest::Client, url: &str, token: &str) -> Arc<Vec<(String, f64, f64)>> {
    let list = common::get_json(client, &format!("{url}/api/v1/staff"), token).await;
    let w: Vec<(String, f64, f64)> = list["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["code"].as_str().unwrap().to_string(), s["lon"].as_f64().unwrap(), s["lat"].as_f64().unwrap()))
        .collect();
    assert!(!w.is_empty(), "no staff registered (staff_load URL TOKEN register 5000)");
    Arc::new(w)
}

/// Position `k`: member `k % n` in round `k / n`, 10 s of simulated time after the last, a few
/// metres further along a slow circle around the start.
fn position(w: &[(String, f64, f64)], k: u64, base: DateTime<Utc>) -> (String, DateTime<Utc>, f64, f64) {
    let n = w.len() as u64;
    let (code, lon, lat) = &w[(k % n) as usize];
    let round = k / n;
    let angle = round as f64 * 0.05;
    let at = base + chrono::Duration::seconds(10 * round as i64);
    (code.clone(), at, lon + 0.0003 * angle.cos(), lat + 0.0003 * angle.sin())
}

fn ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn accepted(client: &reqwest::Client, url: &str, transport: &str) -> f64 {
    let m = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let needle = format!("onemap_staff_positions_total{{transport=\"{transport}\",outcome=\"accepted\"}}");
    m.lines().find(|l| l.starts_with(&needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// Simulated time starts `hours` ago, so a whole run stays in the past. The MQTT run starts
/// later than the HTTP run before it reached (about 80 rounds of 10 s), so its positions are
/// newer than where the members were seen and count, not arrive out of order.
fn base(hours: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(hours)
}

async fn http(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    walkers: Arc<Vec<(String, f64, f64)>>,
    seconds: u64,
    concurrency: usize,
    batch: usize,
) {
    let next = Arc::new(AtomicU64::new(0));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let base = base(20);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
            let (walkers, next, ok, errors) = (walkers.clone(), next.clone(), ok.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let k0 = next.fetch_add(batch as u64, Ordering::Relaxed);
                    let list: Vec<Value> = (k0..k0 + batch as u64)
                        .map(|k| {
                            let (code, at, lon, lat) = position(&walkers, k, base);
                            json!({"staff": code, "at": ms(at), "lon": lon, "lat": lat, "crs": "cgcs2000"})
                        })
                        .collect();
                    let r = client
                        .post(format!("{url}/api/v1/staff/positions"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(json!({ "positions": list }).to_string())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let rep: Value = r.json().await.unwrap();
                            ok.fetch_add(rep["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "http: {concurrency} clients, batches of {batch}, {secs:.1} s, {} staff: {:.0} positions/s accepted ({n}), {} failed requests",
        walkers.len(),
        n as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
}

async fn mqtt(
    client: &reqwest::Client,
    url: &str,
    walkers: Arc<Vec<(String, f64, f64)>>,
    port: u16,
    seconds: u64,
    rate: u64,
) {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let mut opts = MqttOptions::new(format!("staff-load-{}", std::process::id()), "127.0.0.1", port);
    opts.set_inflight(1000);
    let (mqtt, mut events) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = accepted(client, url, "mqtt").await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let base = base(10);
    let per_tick = (rate / 100).max(1);
    let mut k = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < deadline {
        tick.tick().await;
        for _ in 0..per_tick {
            let (code, at, lon, lat) = position(&walkers, k, base);
            let body = json!({"at": ms(at), "lon": lon, "lat": lat, "crs": "cgcs2000"}).to_string();
            mqtt.publish(format!("onemap/staff/{code}/positions"), QoS::AtLeastOnce, false, body).await.unwrap();
            k += 1;
        }
    }
    // Let the server drain what is queued before counting.
    let mut after = accepted(client, url, "mqtt").await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = accepted(client, url, "mqtt").await;
        if now == after {
            break;
        }
        after = now;
    }
    let secs = started.elapsed().as_secs_f64().max(seconds as f64);
    println!(
        "mqtt: {k} positions published at ~{rate}/s for {seconds} s; server took {:.0} positions/s ({:.0})",
        (after - before) / secs,
        after - before
    );
}
