//! Shared helpers for the integration tests: real stores (a GeoPackage file and a fresh PostGIS
//! database), the demo city generated once per test binary, and request helpers over the router.
#![allow(dead_code)]

pub mod broker;
pub mod files;
pub mod remote;
pub mod s3;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use onemap::demo::{DemoParams, generate};
use onemap::model::City;
use serde_json::Value;
use sqlx::Connection;
use tower::ServiceExt;

/// The admin URL tests create their databases through (`scripts/test` exports it).
pub fn pg_admin_url() -> String {
    std::env::var("ONEMAP_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database `name` (dropping any leftover) and returns its URL. Fails the test
/// when PostgreSQL cannot be reached: a store test never skips silently.
pub async fn fresh_pg(name: &str) -> String {
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostGIS test database unreachable at {admin}: {e} (run scripts/test)"));
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
    format!("{base}/{name}")
}

/// A new GeoPackage path under the system temp folder.
pub fn fresh_gpkg(name: &str) -> String {
    let dir = std::env::temp_dir().join("onemap-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.gpkg", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

/// The Shigatse demo city, generated once per test binary.
pub fn shigatse() -> &'static City {
    static CITY: OnceLock<City> = OnceLock::new();
    CITY.get_or_init(|| generate(&DemoParams::shigatse()))
}

/// A small city for tests that only need some of everything.
pub fn small_city() -> &'static City {
    static CITY: OnceLock<City> = OnceLock::new();
    CITY.get_or_init(|| generate(&DemoParams::scaled(0.05)))
}

/// Writes `city` into the store at `location` and starts the server state from it, exactly as
/// `onemap serve` does.
pub async fn seeded_state(location: &str, city: &City) -> onemap::AppState {
    let store = onemap::store::open(location).await.expect("open store");
    store.write_city(city, &|_, _| {}).await.expect("write city");
    store.close().await;
    onemap::server::start(location, false, onemap::config::DEFAULT_TILE_CACHE_MB).await.expect("start")
}

/// Both stores, each seeded with `city`, as (label, router, state).
pub async fn both_stores(test: &str, city: &City) -> Vec<(&'static str, onemap::AppState)> {
    let gpkg = seeded_state(&fresh_gpkg(test), city).await;
    let pg = seeded_state(&fresh_pg(&format!("onemap_t_{test}")).await, city).await;
    vec![("gpkg", gpkg), ("postgis", pg)]
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// Asserts a problem+json response with this status and returns its body.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type(), "application/problem+json");
        let v = self.json();
        assert_eq!(v["status"], status);
        assert!(v["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
        v
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, headers, body }
}

pub async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Request::get(uri).header("host", "127.0.0.1:8080").body(Body::empty()).unwrap()).await
}

pub async fn post_json(app: &Router, uri: &str, body: &Value) -> Resp {
    post_raw(app, uri, body.to_string().into_bytes()).await
}

pub async fn post_raw(app: &Router, uri: &str, body: Vec<u8>) -> Resp {
    send(
        app,
        Request::post(uri)
            .header("content-type", "application/json")
            .header("host", "127.0.0.1:8080")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// A POST of a url-encoded form (an Open311 request).
pub async fn post_form(app: &Router, uri: &str, body: impl Into<Body>) -> Resp {
    send(
        app,
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "127.0.0.1:8080")
            .body(body.into())
            .unwrap(),
    )
    .await
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_string()
}

/// A POST with a JSON body and, when given, a bearer token.
pub async fn post_as(app: &Router, uri: &str, token: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = Request::post(uri).header("content-type", "application/json").header("host", "127.0.0.1:8080");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

/// A multipart/form-data body of `parts` (name, file name for a file part, bytes) and its
/// content type.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "onemap-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(f) = file {
            // The header claims JPEG whatever the bytes are: the server must not believe it.
            body.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: image/jpeg").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A multipart POST of `parts` with, when given, a bearer token.
pub async fn post_multipart(
    app: &Router,
    uri: &str,
    token: Option<&str>,
    parts: &[(&str, Option<&str>, &[u8])],
) -> Resp {
    let (kind, body) = multipart(parts);
    let mut req = Request::post(uri).header("content-type", kind).header("host", "127.0.0.1:8080");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

/// A GET with `Authorization: Bearer TOKEN`.
pub async fn get_as(app: &Router, uri: &str, token: &str) -> Resp {
    get_with(app, uri, &[("authorization", &format!("Bearer {token}"))]).await
}

/// A GET with extra headers.
pub async fn get_with(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::get(uri).header("host", "127.0.0.1:8080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

/// The live feed over the router: yields (event, data) pairs as they arrive.
pub struct EventStream {
    body: Body,
    buf: String,
}

impl EventStream {
    pub async fn open(app: &Router) -> EventStream {
        Self::open_uri(app, "/api/v1/events").await
    }

    /// The feed as a token holder sees it (the token in the query, as a browser's EventSource
    /// sends it).
    pub async fn open_with(app: &Router, token: &str) -> EventStream {
        Self::open_uri(app, &format!("/api/v1/events?access_token={token}")).await
    }

    async fn open_uri(app: &Router, uri: &str) -> EventStream {
        let req = Request::get(uri).header("host", "127.0.0.1:8080").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        EventStream { body: resp.into_body(), buf: String::new() }
    }

    /// The next event, or None after `timeout`.
    pub async fn next(&mut self, timeout: std::time::Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap_or(Value::String(data))));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.ok()?;
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// Waits for the first event named `name` whose data satisfies `pred`.
    pub async fn wait_for(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let t = std::time::Duration::from_secs(10);
        loop {
            let (n, data) = self.next(t).await.unwrap_or_else(|| panic!("no {name} event within {t:?}"));
            if n == name && pred(&data) {
                return data;
            }
        }
    }
}

/// Starts the real `onemap serve` on a free port with `args` and returns the child and its base
/// URL, read from its first stdout line.
pub fn serve(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start onemap");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("onemap serving on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

/// Creates a token with `onemap token create` on `store` and returns it (the last output line).
pub fn token_cli(store: &str, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["token", "create", "--role", role, "--store", store])
        .output()
        .unwrap();
    assert!(out.status.success(), "onemap token create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("a token line").trim().to_string()
}

/// A point component whose owner is a department on record (for owner-first routing tests),
/// and its point.
pub fn owned_point_component(city: &City) -> (&onemap::model::Component, geo::Point<f64>) {
    city.components
        .iter()
        .find_map(|c| match c.geom {
            onemap::model::Shape::Point(p)
                if c.owner_dept.as_ref().is_some_and(|d| city.departments.iter().any(|x| x.code == d)) =>
            {
                Some((c, p))
            }
            _ => None,
        })
        .expect("an owned point component")
}

/// The Python of the peers' virtual environment (`var/peer-venv`, made by `scripts/test`, or
/// `ONEMAP_PEER_PYTHON`): PySAL and friends, and pyogrio's GDAL. Missing, the test fails.
pub fn peer_python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("ONEMAP_PEER_PYTHON") {
        return p.into();
    }
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("var/peer-venv/bin/python");
    assert!(p.exists(), "the peers' Python is missing at {} (run scripts/test)", p.display());
    p
}
