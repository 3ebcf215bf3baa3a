//! The real binary: `onemap demo` writes a city, `onemap serve --demo` seeds and serves it, and
//! SIGTERM shuts the server down gracefully with exit status 0.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::serve;

const BIN: &str = env!("CARGO_BIN_EXE_onemap");

fn terminate(mut child: Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn demo_subcommand_then_serve_then_sigterm() {
    let path = common::fresh_gpkg("cli-demo");
    let out = Command::new(BIN).args(["demo", "--scale", "0.05", "--store", &path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo city written"), "{text}");
    // A second demo into the same store is refused: it already holds a city.
    let again = Command::new(BIN).args(["demo", "--scale", "0.05", "--store", &path]).output().unwrap();
    assert!(!again.status.success());

    let (child, url) = serve(&["--store", &path, "--public-read"]);
    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["store"], "gpkg");
    let expected = onemap::demo::generate(&onemap::demo::DemoParams::scaled(0.05));
    assert_eq!(health["layers"]["grids"], expected.grids.len());

    // A token created while the server runs works at once; it is the last line of the output.
    let out = Command::new(BIN).args(["token", "create", "--role", "supervisor", "--store", &path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("om_"), "{stdout}");
    let bad = Command::new(BIN).args(["token", "create", "--role", "department", "--store", &path]).output().unwrap();
    assert!(!bad.status.success(), "a department token needs --dept");

    // A browser holding the live feed open must not keep the server from shutting down.
    let mut feed = reqwest::get(format!("{url}/api/v1/events")).await.unwrap();
    let first = feed.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: ready"));
    let class = expected.event_classes[0].code.to_string();
    let (lon, lat) = {
        use geo::InteriorPoint;
        let p = expected.grids[0].geom.interior_point().unwrap();
        (p.x(), p.y())
    };
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/cases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"class_code": class, "lon": lon, "lat": lat, "crs": "cgcs2000",
            "description": "命令行测试", "source": "supervisor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    terminate(child);
}

#[tokio::test]
async fn serve_demo_seeds_an_empty_store_once() {
    let path = common::fresh_gpkg("cli-serve-demo");
    let (child, url) = serve(&["--store", &path, "--demo", "--public-read"]);
    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["layers"]["districts"], 4);
    assert_eq!(health["layers"]["communities"], 43);
    let grids = health["layers"]["grids"].as_u64().unwrap();
    assert!((6_000..7_000).contains(&grids), "{grids}");
    terminate(child);
    // Restarting with --demo on the now full store keeps the same city (no second seeding).
    let (child, url) = serve(&["--store", &path, "--demo", "--public-read"]);
    let again: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(again["layers"], health["layers"]);
    terminate(child);
}

#[test]
fn bad_arguments_fail_clearly() {
    let out = Command::new(BIN).args(["serve", "--store", "mysql://x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".gpkg"));
    let out = Command::new(BIN).args(["demo", "--scale", "huge", "--store", "/tmp/x.gpkg"]).output().unwrap();
    assert!(!out.status.success());
}

/// `onemap token create|list|revoke` against a running server that does not allow anonymous
/// reads: a token created with a scope and an expiry reads at once, is listed (never shown
/// again), and once revoked by its id gets 401 within a second.
#[tokio::test]
async fn tokens_are_created_listed_and_revoked_from_the_command_line() {
    let path = common::fresh_gpkg("cli-tokens");
    let out = Command::new(BIN).args(["demo", "--scale", "0.02", "--store", &path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (child, url) = serve(&["--store", &path]);
    let client = reqwest::Client::new();
    let read = |token: Option<String>| {
        let mut req = client.get(format!("{url}/collections/grids/items?limit=1"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(read(None).await, 401, "closed without --public-read");

    let district = {
        let store = onemap::store::open(&path).await.unwrap();
        let d: Vec<onemap::model::District> =
            onemap::store::select(&*store, onemap::store::schema::Filter::All).await.unwrap();
        store.close().await;
        d[0].code.to_string()
    };
    let created = Command::new(BIN)
        .args(["token", "create", "--role", "viewer", "--district", &district, "--expires", "2h"])
        .args(["--label", "区指挥中心", "--store", &path])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).to_string();
    let token = stdout.lines().last().unwrap().trim().to_string();
    assert_eq!(read(Some(token.clone())).await, 200);

    let list = Command::new(BIN).args(["token", "list", "--store", &path]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let row = list.lines().find(|l| l.contains("区指挥中心")).unwrap_or_else(|| panic!("not listed: {list}"));
    let cols: Vec<&str> = row.split('\t').collect();
    assert_eq!((cols[1], cols[2], cols[6]), ("viewer", district.as_str(), "-"), "{row}");
    assert_ne!(cols[5], "-", "an expiry is listed: {row}");
    assert!(!list.contains(&token), "the token itself is never shown again");

    let revoked = Command::new(BIN).args(["token", "revoke", cols[0], "--store", &path]).output().unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let t = Instant::now();
    while read(Some(token.clone())).await != 401 {
        assert!(t.elapsed() < Duration::from_secs(1), "a revoked token still reads after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bad = Command::new(BIN)
        .args(["token", "create", "--role", "viewer", "--street", "1", "--store", &path])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown street is refused");
    terminate(child);
}
