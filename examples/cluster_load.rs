//! Convergence of two replicas over one PostgreSQL: cases reported to replica A at a steady rate,
//! and how long after A acknowledged each one replica B announces it on its live feed (every
//! write) and answers it to a plain read (every 20th write, polled every 2 ms).
//!
//! `cargo run --release --example cluster_load -- A_URL B_URL TOKEN [RATE] [SECONDS]`
//! (`scripts/bench cluster` starts the replicas and makes the token).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

mod common;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cluster_load A_URL B_URL TOKEN [RATE] [SECONDS]";
    let a = args.get(1).expect(usage).clone();
    let b = args.get(2).expect(usage).clone();
    let token = args.get(3).expect(usage).clone();
    let rate: u64 = args.get(4).map(|s| s.parse().expect("RATE")).unwrap_or(500);
    let seconds: u64 = args.get(5).map(|s| s.parse().expect("SECONDS")).unwrap_or(20);
    let client = reqwest::Client::new();

    let (points, class) = common::report_targets(&client, &a, 200).await;

    // B's feed: when each case.created arrived.
    let announced: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let mut feed = client.get(format!("{b}/api/v1/events")).send().await.unwrap();
    let seen = announced.clone();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = feed.chunk().await {
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if !block.contains("event: case.created") {
                    continue;
                }
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:"))
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                    && let Some(id) = v["id"].as_i64()
                {
                    seen.lock().insert(id, now);
                }
            }
        }
    });

    let acked: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let readable: Arc<Mutex<Vec<Duration>>> = Default::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut n = 0u64;
    let mut tasks = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        let (client, a, b, token, class) = (client.clone(), a.clone(), b.clone(), token.clone(), class.clone());
        let (acked, readable, errors) = (acked.clone(), readable.clone(), errors.clone());
        let (x, y) = points[n as usize % points.len()];
        tasks.push(tokio::spawn(async move {
            let body = json!({"class_code": class, "lon": x, "lat": y, "crs": "cgcs2000",
                "description": "convergence", "source": "supervisor"});
            let r = match client.post(format!("{a}/api/v1/cases")).bearer_auth(&token).json(&body).send().await {
                Ok(r) if r.status() == 201 => r,
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            };
            let at = Instant::now();
            let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            acked.lock().insert(id, at);
            if n.is_multiple_of(20) {
                let url = format!("{b}/collections/cases/items/{id}");
                while at.elapsed() < Duration::from_secs(10) {
                    if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                        readable.lock().push(at.elapsed());
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    let elapsed = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let acked = acked.lock().clone();
    let announced = announced.lock().clone();
    let mut feed_lat: Vec<Duration> =
        acked.iter().filter_map(|(id, at)| announced.get(id).map(|seen| seen.saturating_duration_since(*at))).collect();
    let missing = acked.len() - feed_lat.len();
    let mut read_lat = readable.lock().clone();
    let pct = |v: &mut Vec<Duration>, p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "writes: {} acknowledged in {:.1} s ({:.0}/s), {} failed",
        acked.len(),
        elapsed.as_secs_f64(),
        acked.len() as f64 / elapsed.as_secs_f64(),
        errors.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "A ack -> B feed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} never announced)",
        pct(&mut feed_lat, 0.5),
        pct(&mut feed_lat, 0.99),
        pct(&mut feed_lat, 1.0),
        missing
    );
    println!(
        "A ack -> readable on B: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} sampled)",
        pct(&mut read_lat, 0.5),
        pct(&mut read_lat, 0.99),
        pct(&mut read_lat, 1.0),
        read_lat.len()
    );
}
