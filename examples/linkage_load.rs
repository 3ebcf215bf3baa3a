//! 一键联动 against a running server: how long from a red alarm to its incident with every
//! department's task (the feed's `incident.created`) and to the plan's first outside call
//! reaching a receiver; then 50 incidents open at once, as the big screen sees them.
//!
//! `linkage_load URL ADMIN_TOKEN [ALARMS]` (default 50): saves a plan started by tilt alarms at
//! red with a webhook to a receiver of its own on 127.0.0.1, registers ALARMS tilt sensors on
//! as many unit grids, and raises one red alarm at a time (the next once the last one's call
//! arrived). Prints p50/p99 of both latencies, then the big screen's load with the ALARMS
//! incidents open (`GET /api/v1/incidents?open=true`: time and size), and the feed's rate while
//! every department of every incident reports ack, arrive, done (8 requests at a time).
//!
//! (`scripts/bench linkage` starts the server and makes the token.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: linkage_load URL ADMIN_TOKEN [ALARMS]";
    let url = args.get(1).expect(usage).clone();
    let token = args.get(2).expect(usage).clone();
    let n: usize = args.get(3).map_or(50, |s| s.parse().unwrap());
    let client = reqwest::Client::new();

    // The outside system: notes when each sensor's call first arrives.
    let called: Arrivals = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = called.clone();
    let app = axum::Router::new().route(
        "/signals",
        axum::routing::post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                if let Some(s) = body["sensor_code"].as_str() {
                    seen.lock().unwrap().entry(s.to_string()).or_insert_with(Instant::now);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let plan = json!({
        "code": "bench-tilt", "name": "结构倾斜红色预警联动", "trigger": {"sensor_kind": "tilt", "level": "red"},
        "lead": {"role": "street", "task": "封控", "deadline_min": 10},
        "assist": [{"role": "owner", "task": "抢修"}, {"role": "competent", "task": "督导"}],
        "webhooks": [{"url": format!("http://127.0.0.1:{port}/signals"), "secret": "bench-signals-secret-0001"}],
    });
    let r = client.post(format!("{url}/api/v1/plans")).bearer_auth(&token).json(&plan).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let (points, _) = common::report_targets(&client, &url, n).await;
    let run = chrono::Utc::now().timestamp();
    let codes: Vec<String> = (0..points.len()).map(|i| format!("BENCH-TILT-{run}-{i}")).collect();
    for (code, (lon, lat)) in codes.iter().zip(&points) {
        let s = json!({"code": code, "kind": "tilt", "lon": lon, "lat": lat, "thresholds": {"min_duration_s": 0}});
        let r = client.post(format!("{url}/api/v1/sensors")).bearer_auth(&token).json(&s).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    // The feed as the big screen hears it: when each sensor's incident was announced, and how
    // many incident events arrived.
    let created: Arrivals = Default::default();
    let updates = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut feed = client.get(format!("{url}/api/v1/events?access_token={token}")).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    let (c2, u2) = (created.clone(), updates.clone());
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = feed.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("");
                let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim).unwrap_or("");
                match name {
                    "incident.created" => {
                        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                        if let Some(s) = v["sensor_code"].as_str() {
                            c2.lock().unwrap().entry(s.to_string()).or_insert_with(Instant::now);
                        }
                    }
                    "incident.updated" => {
                        u2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut to_tasks, mut to_call) = (Vec::new(), Vec::new());
    for code in &codes {
        let at =
            (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = json!({"readings": [{"sensor": code, "at": at, "value": 10.0}]});
        let t0 = Instant::now();
        let r =
            client.post(format!("{url}/api/v1/sensors/readings")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let (c, w) = (created.lock().unwrap().get(code).copied(), called.lock().unwrap().get(code).copied());
            if let (Some(c), Some(w)) = (c, w) {
                to_tasks.push((c - t0).as_secs_f64() * 1000.0);
                to_call.push((w - t0).as_secs_f64() * 1000.0);
                break;
            }
            assert!(Instant::now() < deadline, "{code}: no incident or no call within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!("alarm -> incident with all tasks (feed): {} over {} alarms", pcts(&mut to_tasks), codes.len());
    println!("alarm -> first webhook call received:    {}", pcts(&mut to_call));

    // The big screen's load with the incidents open.
    let mut loads = Vec::new();
    let mut bytes = 0;
    let mut open = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let r = client.get(format!("{url}/api/v1/incidents?open=true")).bearer_auth(&token).send().await.unwrap();
        let body = r.bytes().await.unwrap();
        loads.push(t0.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
        open = serde_json::from_slice::<Value>(&body).unwrap()["incidents"].as_array().unwrap().clone();
    }
    println!("GET /api/v1/incidents?open=true with {} open: {} ({} KB)", open.len(), pcts(&mut loads), bytes / 1024);

    // Every department of every open incident reports, 8 at a time; the feed hears each.
    let steps: Vec<(String, String, &str)> = open
        .iter()
        .flat_map(|i| {
            let id = i["id"].as_str().unwrap().to_string();
            i["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (id.clone(), t["dept_code"].as_str().unwrap().to_string()))
        })
        .flat_map(|(id, dept)| ["ack", "arrive", "done"].map(|a| (id.clone(), dept.clone(), a)))
        .collect();
    let before = updates.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    // One department's steps in order; departments and incidents in parallel.
    let mut by_task: HashMap<(String, String), Vec<&str>> = HashMap::new();
    for (id, dept, a) in &steps {
        by_task.entry((id.clone(), dept.clone())).or_default().push(a);
    }
    let mut handles = Vec::new();
    for ((id, dept), actions) in by_task {
        let (client, url, token, sem) = (client.clone(), url.clone(), token.clone(), sem.clone());
        let actions: Vec<String> = actions.into_iter().map(str::to_string).collect();
        handles.push(tokio::spawn(async move {
            for a in actions {
                let _permit = sem.acquire().await.unwrap();
                let r = client
                    .post(format!("{url}/api/v1/incidents/{id}/tasks/{dept}/actions"))
                    .bearer_auth(&token)
                    .json(&json!({"action": a}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let acted = t0.elapsed();
    // The feed's events for them, however long after the last answer they come.
    let want = before + steps.len() as u64;
    let wait = Instant::now();
    while updates.load(std::sync::atomic::Ordering::Relaxed) < want && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let heard = updates.load(std::sync::atomic::Ordering::Relaxed) - before;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} task reports in {:.2} s ({:.0}/s); the feed carried {heard} incident.updated ({:.0}/s)",
        steps.len(),
        acted.as_secs_f64(),
        steps.len() as f64 / acted.as_secs_f64(),
        heard as f64 / secs
    );
}

/// p50 / p99 / max of millisecond samples.
fn pcts(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", at(0.5), at(0.99), v[v.len() - 1])
}
