//! A real `onemap serve` process over HTTP: its live feed, reports and seeding.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_onemap");

/// The live feed of a real server over HTTP: (id, event, data) as they arrive.
pub struct RemoteEvents {
    resp: reqwest::Response,
    buf: String,
}

impl RemoteEvents {
    pub async fn open(base: &str, last_id: Option<&str>) -> RemoteEvents {
        let mut req = reqwest::Client::new().get(format!("{base}/api/v1/events"));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        RemoteEvents { resp, buf: String::new() }
    }

    pub async fn next(&mut self) -> Option<(Option<i64>, String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some((id, name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events up to and including the first named `name` that satisfies `pred`.
    pub async fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Vec<(Option<i64>, String, Value)> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await.unwrap_or_else(|| panic!("no {name} within 10 s; saw {seen:?}"));
            let done = e.1 == name && pred(&e.2);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

pub async fn report(base: &str, token: &str, lon: f64, lat: f64, class: &str) -> (i64, i64) {
    let body = json!({"class_code": class, "lon": lon, "lat": lat, "crs": "cgcs2000",
        "description": "日志测试", "source": "supervisor"});
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let seq: i64 = r.headers()["onemap-seq"].to_str().unwrap().parse().unwrap();
    (r.json::<Value>().await.unwrap()["id"].as_i64().unwrap(), seq)
}

pub fn seed(location: &str) {
    let out = Command::new(BIN).args(["demo", "--store", location, "--scale", "0.05"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
