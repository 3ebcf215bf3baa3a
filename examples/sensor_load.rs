//! Sustained sensor ingest against a running server, alarm rules included.
//!
//! `sensor_load URL ADMIN_TOKEN http [SECONDS] [CONCURRENCY] [BATCH]`: concurrent clients post
//! batches of readings spread over every registered sensor; prints readings per second.
//!
//! `sensor_load URL ADMIN_TOKEN mqtt BROKER_PORT [SECONDS] [RATE]`: one client publishes readings
//! at about RATE per second over MQTT (QoS 1) for SECONDS while a probe sensor is driven to red
//! and back 200 times; prints the readings per second the server took in, and the latency from
//! publishing the red reading to its `alarm.raised` on the live feed (p50, p99, max).
//!
//! (`scripts/bench sensors` starts the server, the broker and makes the token.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

mod common;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: sensor_load URL ADMIN_TOKEN http|mqtt ...";
    let url = args.get(1).expect(usage).clone();
    let token = args.get(2).expect(usage).clone();
    let client = reqwest::Client::new();
    let codes = common::sensor_codes(&client, &url, &token, "").await;
    assert!(!codes.is_empty(), "no sensors registered");
    match args.get(3).map(String::as_str) {
        Some("http") => {
            let seconds: u64 = args.get(4).map_or(20, |s| s.parse().unwrap());
            let concurrency: usize = args.get(5).map_or(8, |s| s.parse().unwrap());
            let batch: usize = args.get(6).map_or(5000, |s| s.parse().unwrap());
            http(&client, &url, &token, codes, seconds, concurrency, batch).await;
        }
        Some("mqtt") => {
            let port: u16 = args.get(4).expect("BROKER_PORT").parse().unwrap();
            let seconds: u64 = args.get(5).map_or(20, |s| s.parse().unwrap());
            let rate: u64 = args.get(6).map_or(20_000, |s| s.parse().unwrap());
            mqtt(&client, &url, &token, codes, port, seconds, rate).await;
        }
        _ => panic!("{usage}"),
    }
}

/// Readings time-stamped in the past, one millisecond apart per sensor, so none is a duplicate
/// and none is in the future; values wander below and across the thresholds.
fn reading(codes: &[String], k: u64, base: chrono::DateTime<Utc>) -> Value {
    let n = codes.len() as u64;
    let code = &codes[(k % n) as usize];
    let at = base + chrono::Duration::milliseconds((k / n) as i64);
    let value = ((k as f64) * 0.001).sin().abs() * 0.3;
    json!({"sensor": code, "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "value": value})
}

async fn accepted(client: &reqwest::Client, url: &str, transport: &str) -> f64 {
    let m = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let needle = format!("onemap_sensor_readings_total{{transport=\"{transport}\",outcome=\"accepted\"}}");
    m.lines().find(|l| l.starts_with(&needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

async fn http(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    codes: Vec<String>,
    seconds: u64,
    concurrency: usize,
    batch: usize,
) {
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicU64::new(0));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let base = Utc::now() - chrono::Duration::days(20);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
            let (codes, next, ok, errors) = (codes.clone(), next.clone(), ok.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let k0 = next.fetch_add(batch as u64, Ordering::Relaxed);
                    let readings: Vec<Value> = (k0..k0 + batch as u64).map(|k| reading(&codes, k, base)).collect();
                    let body = json!({ "readings": readings }).to_string();
                    let r = client
                        .post(format!("{url}/api/v1/sensors/readings"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
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
        "http: {concurrency} clients, batches of {batch}, {secs:.1} s, {} sensors: {:.0} readings/s accepted ({n}), {} failed requests",
        codes.len(),
        n as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
}

/// Reads the live feed and reports each `alarm.raised` of `probe` with its arrival instant.
async fn watch(url: String, probe: String, tx: tokio::sync::mpsc::UnboundedSender<Instant>) {
    let mut r = reqwest::Client::new().get(format!("{url}/api/v1/events")).send().await.unwrap();
    let mut buf = String::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.contains("event: alarm.raised") && block.contains(&format!("\"sensor\":\"{probe}\"")) {
                let _ = tx.send(Instant::now());
            }
        }
    }
}

async fn mqtt(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    codes: Vec<String>,
    port: u16,
    seconds: u64,
    rate: u64,
) {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    // The probe: a water-level sensor at the first sensor's place, alarming on the first reading.
    let first: Value =
        client.get(format!("{url}/api/v1/sensors/{}", codes[0])).send().await.unwrap().json().await.unwrap();
    let probe = format!("PROBE-{}", std::process::id());
    let r = client
        .post(format!("{url}/api/v1/sensors"))
        .bearer_auth(token)
        .json(
            &json!({"code": probe, "kind": "water_level", "lon": first["lon"], "lat": first["lat"], "crs": "cgcs2000",
            "thresholds": {"min_duration_s": 0}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "registering the probe: {}", r.text().await.unwrap());

    let mut opts = MqttOptions::new(format!("load-{}", std::process::id()), "127.0.0.1", port);
    opts.set_inflight(1000);
    let (mqtt, mut events) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let (tx, mut raised) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watch(url.to_string(), probe.clone(), tx));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = accepted(client, url, "mqtt").await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Background load: readings in ticks of 10 ms.
    let load = {
        let mqtt = mqtt.clone();
        tokio::spawn(async move {
            let base = Utc::now() - chrono::Duration::days(10);
            let per_tick = (rate / 100).max(1);
            let mut k = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < deadline {
                tick.tick().await;
                for _ in 0..per_tick {
                    let r = reading(&codes, k, base);
                    let topic = format!("onemap/sensors/{}/readings", r["sensor"].as_str().unwrap());
                    let body = json!({"at": r["at"], "value": r["value"]}).to_string();
                    if mqtt.publish(topic, QoS::AtLeastOnce, false, body).await.is_err() {
                        return k;
                    }
                    k += 1;
                }
            }
            k
        })
    };
    // The probe, to red and back, on a connection of its own (so it does not queue behind the
    // load in the client): latency from publish to the feed's alarm.raised.
    let (probe_mqtt, mut probe_events) =
        AsyncClient::new(MqttOptions::new(format!("probe-{}", std::process::id()), "127.0.0.1", port), 16);
    tokio::spawn(async move { while probe_events.poll().await.is_ok() {} });
    let mqtt = probe_mqtt;
    let mut lat = Vec::new();
    let topic = format!("onemap/sensors/{probe}/readings");
    for i in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let sent = Instant::now();
        let body = json!({"at": Utc::now().to_rfc3339(), "value": 1.0}).to_string();
        mqtt.publish(topic.clone(), QoS::AtLeastOnce, false, body).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), raised.recv()).await {
            Ok(Some(at)) => lat.push(at - sent),
            _ => eprintln!("probe {i}: no alarm.raised within 5 s"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let body = json!({"at": Utc::now().to_rfc3339(), "value": 0.0}).to_string();
        mqtt.publish(topic.clone(), QoS::AtLeastOnce, false, body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = load.await.unwrap();
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
    lat.sort();
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    println!(
        "mqtt: {published} readings published at ~{rate}/s for {seconds} s; server took {:.0} readings/s ({:.0}); \
         publish -> alarm.raised over {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        (after - before) / secs,
        after - before,
        lat.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}
