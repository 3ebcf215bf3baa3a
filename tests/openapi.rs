//! The OpenAPI document at `/api` against the real server: schemathesis (PyPI, pinned in
//! `scripts/schemathesis/requirements.txt`) generates requests for every operation, valid and
//! invalid, follows the document's links (a created case to its actions, a registered sensor to
//! its readings) and checks that nothing answers 5xx, every status and content type is
//! documented and every answer matches its schema. Settings: `scripts/schemathesis/schemathesis.toml`.
//!
//! The run is bounded (`ONEMAP_SCHEMATHESIS_SECONDS`, default 180). schemathesis comes from the
//! virtual environment `scripts/test` makes (`var/schema-venv`, or `ONEMAP_SCHEMATHESIS`); without
//! it the test fails, it never skips.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("ONEMAP_SCHEMATHESIS") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("var/schema-venv/bin/schemathesis");
    assert!(p.exists(), "schemathesis is missing at {} (run scripts/test)", p.display());
    p
}

#[tokio::test]
async fn every_operation_conforms_to_the_document() {
    let dir = std::env::temp_dir().join(format!("onemap-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("city.gpkg").to_string_lossy().to_string();
    let _ = std::fs::remove_file(&store);
    common::remote::seed(&store);
    let token = common::token_cli(&store, "admin");
    // Rate limits off: they would answer most analysis requests 429 and leave the analyses
    // themselves untested (tests/access.rs covers the limits).
    let config = dir.join("onemap.toml");
    std::fs::write(&config, "[rate_limits]\nheavy_burst = 0\nheavy_per_s = 0\ndensity_burst = 0\ndensity_per_s = 0\n")
        .unwrap();
    let (mut server, base) = common::serve(&["--store", &store, "--config", config.to_str().unwrap()]);

    // The document lists every route the router has (the contract's paths).
    let doc: serde_json::Value =
        reqwest::get(format!("{base}/api")).await.unwrap().json().await.expect("the document is JSON");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/cases/{id}/actions",
        "/api/v1/analysis/stats",
        "/open311/v2/requests.json",
        "/tiles/{layers}/{z}/{x}/{y}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from /api");
    }
    // schemathesis leaves out the operation that serves the document itself (GET /api).
    let operations: usize = paths.values().map(|m| m.as_object().unwrap().len()).sum::<usize>() - 1;

    let seconds = std::env::var("ONEMAP_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "180".into());
    let settings = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/schemathesis/schemathesis.toml");
    let out = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&settings)
        .args(["run", &format!("{base}/api"), "--max-time", &seconds, "--no-shrink"])
        .env("ONEMAP_TOKEN", &token)
        .env("NO_COLOR", "1")
        .current_dir(&dir)
        .output()
        .expect("run schemathesis");
    server.kill().ok();
    server.wait().ok();
    let report = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = report.lines().rev().take(120).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.status.success(), "schemathesis found failures:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    // Every operation was exercised, not just loaded, and the links were followed.
    assert!(
        report.contains(&format!("Tested: {operations}"))
            && report.contains(&format!("Selected: {operations}/{operations}")),
        "not every one of the {operations} operations was tested:\n{}",
        tail.join("\n")
    );
    assert!(report.contains("✅ Stateful"), "the stateful phase did not run:\n{}", tail.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
