//! The big-screen page in a real browser: a small demo city served by the real binary, then
//! `web/tests/map.test.mjs` drives headless Chromium (playwright-core) against `/map/`: nothing
//! leaves 127.0.0.1, every tile layer renders, a case created through the API shows within 2 s
//! without reload, and a screenshot lands in `tests/artifacts/map.png`.
//! `scripts/test` installs Chromium and builds `web/` first; this test builds nothing itself.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{fresh_gpkg, serve, token_cli};

const BIN: &str = env!("CARGO_BIN_EXE_onemap");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Stops the server with SIGTERM when dropped, so a failed assertion leaves no process behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{} is missing: {what}. Run scripts/test (or `cd web && npm ci && npm run build`) first.",
        path.display()
    );
}

#[test]
fn big_screen_page_in_headless_chromium() {
    let root = Path::new(ROOT);
    let web = root.join("web");
    require(&web.join("dist/index.html"), "the web build");
    require(&web.join("node_modules/playwright-core"), "the web dependencies");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    require(Path::new(&chromium), "Debian's chromium (apt-get install chromium; scripts/lib.sh ensure_web)");

    let store = fresh_gpkg("browser");
    let out = Command::new(BIN).args(["demo", "--scale", "0.05", "--store", &store]).output().unwrap();
    assert!(out.status.success(), "onemap demo: {}", String::from_utf8_lossy(&out.stderr));

    let dist = web.join("dist").display().to_string();
    let (child, base) = serve(&["--store", &store, "--web-dir", &dist]);
    let server = Server(child);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // Created while the server runs: a token works at once.
    let token = token_cli(&store, "supervisor");
    let device = token_cli(&store, "device");
    // The page logs in as a shift leader, who may publish the hotspot overlay.
    let leader = token_cli(&store, "shift_leader");

    // A phone photo for the case the page reports (the page uploads it and shows it in the popup).
    let photo = std::env::temp_dir().join(format!("onemap-browser-photo-{}.jpg", std::process::id()));
    let picture = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    }));
    std::fs::write(&photo, onemap::media::photo::stamp(&picture, chrono::Utc::now(), None, onemap::model::city_tz()))
        .unwrap();

    // A hang guard, not a timing check: coreutils' timeout kills a browser run that never ends.
    let status = Command::new("timeout")
        .args(["300", "node"])
        .arg(web.join("tests/map.test.mjs"))
        .args([&base, &token, &device, &leader])
        .env("CHROMIUM", &chromium)
        .env("PHOTO_FILE", &photo)
        .current_dir(root)
        .status()
        .expect("run node (apt-get install nodejs npm)");
    assert_ne!(status.code(), Some(124), "the browser test hung for 300 s");
    assert!(status.success(), "the browser test failed ({status}); see its output above");
    assert!(root.join("tests/artifacts/map.png").is_file(), "no screenshot at tests/artifacts/map.png");
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{store}{suffix}"));
    }
}
