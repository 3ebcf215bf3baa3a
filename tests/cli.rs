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

    let (child, url) = serve(&["--store", &path]);
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
    let (child, url) = serve(&["--store", &path, "--demo"]);
    let health: serde_json::Value = reqwest::get(format!("{url}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["layers"]["districts"], 4);
    assert_eq!(health["layers"]["communities"], 43);
    let grids = health["layers"]["grids"].as_u64().unwrap();
    assert!((6_000..7_000).contains(&grids), "{grids}");
    terminate(child);
    // Restarting with --demo on the now full store keeps the same city (no second seeding).
    let (child, url) = serve(&["--store", &path, "--demo"]);
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
