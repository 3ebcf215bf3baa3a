//! Sustained workflow transitions over HTTP: concurrent clients report cases and walk each one
//! through accept, file, dispatch, handle, check_pass and close, and the run reports committed
//! transitions per second (reports counted separately).
//!
//! `cargo run --release --example workflow_load -- URL ADMIN_TOKEN [CONCURRENCY] [SECONDS]`
//! (`scripts/bench workflow` starts the server and makes the token).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PATH: &[&str] = &["accept", "file", "dispatch", "handle", "check_pass", "close"];

mod common;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: workflow_load URL ADMIN_TOKEN [CONCURRENCY] [SECONDS]").clone();
    let token = args.get(2).expect("ADMIN_TOKEN").clone();
    let concurrency: usize = args.get(3).map(|s| s.parse().expect("CONCURRENCY")).unwrap_or(32);
    let seconds: u64 = args.get(4).map(|s| s.parse().expect("SECONDS")).unwrap_or(20);
    let client = reqwest::Client::new();

    // Report points at the centres of 500 unit grids (reports spread over the city as they do in
    // life, rather than piling up on one spot), and a class to report, from the server itself.
    let (points, class) = common::report_targets(&client, &url, 500).await;
    let points = Arc::new(points);
    let next_point = Arc::new(AtomicU64::new(0));

    let (reports, steps, errors) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token, class) = (client.clone(), url.clone(), token.clone(), class.clone());
            let (points, next_point) = (points.clone(), next_point.clone());
            let (reports, steps, errors) = (reports.clone(), steps.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    // Within a metre or so of a grid centre, a different one each time.
                    let k = next_point.fetch_add(1, Ordering::Relaxed);
                    let (x, y) = points[k as usize % points.len()];
                    let jitter = ((k % 97) as f64 - 48.0) * 2e-7;
                    let report = json!({"class_code": class, "lon": x + jitter, "lat": y - jitter,
                        "description": "压测", "source": "supervisor"});
                    let r = client.post(format!("{url}/api/v1/cases")).bearer_auth(&token).json(&report).send().await;
                    let Ok(r) = r.filter_ok() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    reports.fetch_add(1, Ordering::Relaxed);
                    let mut case: Value = r.json().await.unwrap();
                    for action in PATH {
                        let body = json!({"action": action, "expected_version": case["version"]});
                        let r = client
                            .post(format!("{url}/api/v1/cases/{}/actions", case["id"]))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await;
                        match r.filter_ok() {
                            Ok(r) => {
                                case = r.json().await.unwrap();
                                steps.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
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
    let (r, s, e) = (reports.load(Ordering::Relaxed), steps.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    println!(
        "{concurrency} clients, {secs:.1} s: {:.0} transitions/s ({s} steps), {:.0} reports/s ({r}), {:.0} writes/s in all, {e} errors",
        s as f64 / secs,
        r as f64 / secs,
        (r + s) as f64 / secs
    );
}

/// A response with a 2xx status, or an error.
trait FilterOk {
    fn filter_ok(self) -> Result<reqwest::Response, ()>;
}

impl FilterOk for Result<reqwest::Response, reqwest::Error> {
    fn filter_ok(self) -> Result<reqwest::Response, ()> {
        match self {
            Ok(r) if r.status().is_success() => Ok(r),
            _ => Err(()),
        }
    }
}
