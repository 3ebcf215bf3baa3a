//! Soak: a long run of the mixed load a city's platform sees, at about 80% of the peak this
//! machine reaches, with 100 live-feed clients connected throughout, and the server's memory
//! sampled every minute.
//!
//! `soak_load URL TOKEN SERVER_PID SECONDS [PEAK_SECONDS]`: with the feed clients connected,
//! first PEAK_SECONDS (default 60) of the mix as fast as 32 clients can go, which gives the peak; then SECONDS at 80% of it, open
//! loop (requests start on a clock, not when the previous one ends, so a slow server queues
//! work as it would in life). Prints a line a minute (requests, errors, resident memory, feed
//! events) and at the end each route's count, errors, p50, p99 and max, and how far memory
//! moved after the first 10 minutes. (`scripts/bench soak` seeds the city and starts the server.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

mod common;

/// The mix: route label and weight out of 100. Case reports come on their own clock
/// ([`REPORTS_PER_S`]): at a share of this rate they would add a year of a big city's cases an
/// hour, and the memory they rightly take would hide a leak.
const MIX: &[(&str, u32)] = &[
    ("tile", 45),
    ("locate", 22),
    ("readings", 12),
    ("items", 5),
    ("case_get", 5),
    ("summary", 4),
    ("analysis", 4),
    ("case_list", 3),
];

const REPORTS_PER_S: f64 = 2.0;
const FEED_CLIENTS: usize = 100;
const WARM_UP: Duration = Duration::from_secs(600);

struct Target {
    url: String,
    token: String,
    client: reqwest::Client,
    points: Vec<(f64, f64)>,
    class: String,
    sensors: Vec<String>,
    max_case: AtomicU64,
}

#[derive(Default)]
struct Stats {
    /// Per route: latencies in microseconds and errors.
    routes: BTreeMap<&'static str, (Vec<u32>, u64)>,
}

fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let lat_r = lat.to_radians();
    let y = ((1.0 - (lat_r.tan() + 1.0 / lat_r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

fn pick(rng: &mut StdRng) -> &'static str {
    let mut r = rng.random_range(0..100);
    for (name, w) in MIX {
        if r < *w {
            return name;
        }
        r -= w;
    }
    MIX[0].0
}

/// One request of route `route`; whether it succeeded (2xx, or 204/404 where that is an answer).
async fn one(t: &Target, route: &str, rng: &mut StdRng) -> bool {
    let (x, y) = t.points[rng.random_range(0..t.points.len())];
    let (x, y) = (x + rng.random_range(-0.0003..0.0003), y + rng.random_range(-0.0003..0.0003));
    let get = |path: String| t.client.get(format!("{}{path}", t.url)).bearer_auth(&t.token);
    let post = |path: &str, body: Value| t.client.post(format!("{}{path}", t.url)).bearer_auth(&t.token).json(&body);
    let req = match route {
        "tile" => {
            let z = rng.random_range(12..=16);
            let (tx, ty) = tile_of(x, y, z);
            let layer = ["grids", "components", "cases", "sensors", "grids,components"][rng.random_range(0..5)];
            get(format!("/tiles/{layer}/{z}/{tx}/{ty}"))
        }
        "locate" => get(format!("/api/v1/locate?lon={x}&lat={y}")),
        "readings" => {
            let now = chrono::Utc::now();
            let readings: Vec<Value> = (0..20)
                .map(|i| {
                    let s = &t.sensors[rng.random_range(0..t.sensors.len())];
                    // Mostly normal levels, now and then a high one (alarms come and go).
                    let v = if rng.random_bool(0.01) { 0.6 } else { rng.random_range(0.0..0.12) };
                    json!({"sensor": s, "at": (now + chrono::Duration::microseconds(i)).to_rfc3339(), "value": v})
                })
                .collect();
            post("/api/v1/sensors/readings", json!({"readings": readings}))
        }
        "items" => get(format!(
            "/collections/cases/items?bbox={},{},{},{}&limit=100",
            x - 0.005,
            y - 0.005,
            x + 0.005,
            y + 0.005
        )),
        "case_get" => {
            let n = t.max_case.load(Ordering::Relaxed).max(1);
            get(format!("/api/v1/cases/{}", rng.random_range(1..=n)))
        }
        "case_report" => post(
            "/api/v1/cases",
            json!({"class_code": t.class, "lon": x, "lat": y, "description": "soak", "source": "supervisor"}),
        ),
        "summary" => get("/api/v1/cases/summary".into()),
        "analysis" => match rng.random_range(0..4) {
            0 => get("/api/v1/analysis/hotspots?layer=cases&unit=grid&method=gi_star&geometry=false".into()),
            1 => get("/api/v1/analysis/ranking?layer=cases&by=community&top=10".into()),
            2 => get("/api/v1/analysis/peaks?layer=cases".into()),
            _ => post(
                "/api/v1/analysis/stats",
                json!({"geometry": format!("POLYGON(({a} {b},{c} {b},{c} {d},{a} {d},{a} {b}))",
                    a = x - 0.004, b = y - 0.004, c = x + 0.004, d = y + 0.004)}),
            ),
        },
        _ => get("/api/v1/cases?limit=20".into()),
    };
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await;
            if route == "case_report"
                && status == 201
                && let Ok(b) = &body
                && let Ok(v) = serde_json::from_slice::<Value>(b)
            {
                t.max_case.fetch_max(v["id"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
            // A tile outside every feature is 204; a point between grids 404.
            body.is_ok() && ((200..300).contains(&status) || (status == 404 && route == "locate"))
        }
        Err(_) => false,
    }
}

async fn timed(t: &Target, stats: &Mutex<Stats>, route: &'static str, rng: &mut StdRng) {
    let start = Instant::now();
    let ok = one(t, route, rng).await;
    let us = start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    let mut s = stats.lock();
    let e = s.routes.entry(route).or_default();
    e.0.push(us);
    if !ok {
        e.1 += 1;
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    f64::from(sorted[((sorted.len() - 1) as f64 * p).round() as usize]) / 1000.0
}

fn report(stats: &Stats) {
    println!("| route | requests | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let (mut total, mut errors) = (0usize, 0u64);
    for (route, (lat, err)) in &stats.routes {
        let mut l = lat.clone();
        l.sort_unstable();
        total += l.len();
        errors += err;
        println!(
            "| {route} | {} | {err} | {:.2} | {:.2} | {:.1} |",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 1.0)
        );
    }
    println!("| all | {total} | {errors} | | | |");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: soak_load URL TOKEN SERVER_PID SECONDS [PEAK_SECONDS]";
    let url = args.get(1).expect(usage).clone();
    let token = args.get(2).expect(usage).clone();
    let pid: u32 = args.get(3).expect(usage).parse().expect("SERVER_PID");
    let seconds: u64 = args.get(4).expect(usage).parse().expect("SECONDS");
    let peak_seconds: u64 = args.get(5).map_or(60, |s| s.parse().expect("PEAK_SECONDS"));
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let (points, class) = common::report_targets(&client, &url, 2000).await;
    let sensors = common::sensor_codes(&client, &url, &token, "kind=water_level").await;
    assert!(!sensors.is_empty(), "no water-level sensors");
    let max_case = common::get_json(&client, &format!("{url}/api/v1/cases?limit=1"), &token).await;
    let target = Arc::new(Target {
        url: url.clone(),
        token: token.clone(),
        client: client.clone(),
        points,
        class,
        sensors,
        max_case: AtomicU64::new(max_case["cases"][0]["id"].as_u64().unwrap_or(1)),
    });

    // 1. The feed clients, connected throughout (the peak is measured with them: they cost the
    //    server real work), reconnecting when cut off.
    let feed_events = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..FEED_CLIENTS {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let (events, reconnects, stop) = (feed_events.clone(), reconnects.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut r) = client.get(format!("{url}/api/v1/events")).bearer_auth(&token).send().await {
                    while let Ok(Some(chunk)) = r.chunk().await {
                        let n = chunk.windows(7).filter(|w| w == b"event: ").count();
                        events.fetch_add(n as u64, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
                reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // 2. The peak: 32 clients as fast as they go.
    let peak_stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..32u64)
        .map(|w| {
            let (t, s) = (target.clone(), peak_stats.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w);
                while started.elapsed() < Duration::from_secs(peak_seconds) {
                    let route = pick(&mut rng);
                    timed(&t, &s, route, &mut rng).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let peak_n: usize = peak_stats.lock().routes.values().map(|r| r.0.len()).sum();
    let peak = peak_n as f64 / started.elapsed().as_secs_f64();
    let rate = (peak * 0.8).max(1.0);
    println!("peak: {peak:.0} requests/s over {peak_seconds} s (32 clients); soak at {rate:.0}/s for {seconds} s");
    report(&peak_stats.lock());
    let stats = Arc::new(Mutex::new(Stats::default()));

    // Case reports on their own clock, through the soak.
    {
        let (t, s, stop) = (target.clone(), stats.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(11);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / REPORTS_PER_S));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                timed(&t, &s, "case_report", &mut rng).await;
            }
        });
    }

    // 3. The soak: open loop at `rate`, at most 1,024 requests in flight (beyond that a
    //    request is counted as an error rather than queued without bound in this client).
    let in_flight = Arc::new(tokio::sync::Semaphore::new(1024));
    let shed = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let mut next_sample = Duration::ZERO;
    let mut memory: Vec<(u64, f64)> = Vec::new();
    let mut last_count = 0usize;
    println!("| minute | requests | errors | shed | RSS MiB | feed events | feed reconnects |");
    println!("|---|---|---|---|---|---|---|");
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        if started.elapsed() >= next_sample {
            let minute = next_sample.as_secs() / 60;
            let rss = rss_mib(pid);
            memory.push((minute, rss));
            let (n, e): (usize, u64) = {
                let s = stats.lock();
                (s.routes.values().map(|r| r.0.len()).sum(), s.routes.values().map(|r| r.1).sum())
            };
            println!(
                "| {minute} | {} | {e} | {} | {rss:.0} | {} | {} |",
                n - last_count,
                shed.load(Ordering::Relaxed),
                feed_events.load(Ordering::Relaxed),
                reconnects.load(Ordering::Relaxed)
            );
            last_count = n;
            next_sample += Duration::from_secs(60);
        }
        let route = pick(&mut rng);
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (t, s) = (target.clone(), stats.clone());
        let mut r = StdRng::seed_from_u64(rng.random());
        tokio::spawn(async move {
            timed(&t, &s, route, &mut r).await;
            drop(permit);
        });
    }
    let _ = in_flight.acquire_many(1024).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let rss = rss_mib(pid);
    memory.push((elapsed as u64 / 60, rss));
    let s = stats.lock();
    let n: usize = s.routes.values().map(|r| r.0.len()).sum();
    println!(
        "soak: {n} requests in {elapsed:.0} s ({:.0}/s), {} shed, {} feed events to {FEED_CLIENTS} clients, {} feed reconnects",
        n as f64 / elapsed,
        shed.load(Ordering::Relaxed),
        feed_events.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed)
    );
    report(&s);
    let after: Vec<f64> = memory.iter().filter(|(m, _)| *m >= WARM_UP.as_secs() / 60).map(|(_, r)| *r).collect();
    if let (Some(lo), Some(hi)) = (after.iter().copied().reduce(f64::min), after.iter().copied().reduce(f64::max)) {
        println!(
            "memory after the first {} minutes: {lo:.0}-{hi:.0} MiB ({:+.1}% from the lowest to the highest; first {:.0}, last {:.0})",
            WARM_UP.as_secs() / 60,
            (hi - lo) / lo * 100.0,
            after[0],
            after[after.len() - 1]
        );
    }
}
