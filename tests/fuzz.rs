//! Property-based fuzzing (proptest; cargo-fuzz needs a nightly toolchain this machine does not
//! have) of every parser that takes outside input: WKT and GeoJSON polygons, the items query
//! (bbox, datetime, filters, within, near), tile paths, reading JSON, MQTT messages and Open311
//! forms. The properties: nothing panics, every refusal is a 4xx problem, nothing accepted is
//! out of its range. Each target first replays the committed corpus (`tests/fuzz/*.txt`: one
//! input per line, the hostile cases found so far), then random inputs: `ONEMAP_FUZZ_CASES` a
//! round (default 200), for `ONEMAP_FUZZ_SECONDS` (default one round). `scripts/fuzz` runs each
//! target for ten minutes; a failure is shrunk and kept in `tests/fuzz/regressions/`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use onemap::geo::Crs;
use onemap::index::query::{ItemQuery, Params, parse_polygon};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz");

/// The committed corpus of target `name`.
fn corpus(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{CORPUS}/{name}.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("# "))
        .map(|l| l.replace("\\n", "\n").replace("\\0", "\0"))
        .collect()
}

/// Runs `test` over the corpus, then over `strategy` for the configured time.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: From<String>,
{
    for input in corpus(name) {
        test(S::Value::from(input.clone())).unwrap_or_else(|e| panic!("{name}: corpus input {input:?}: {e}"));
    }
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("ONEMAP_FUZZ_CASES").unwrap_or(200) as u32;
    let until = Instant::now() + Duration::from_secs(env("ONEMAP_FUZZ_SECONDS").unwrap_or(0));
    let mut rounds = 0u64;
    loop {
        let config = Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
                format!("{CORPUS}/regressions/{name}.txt").into_boxed_str(),
            )))),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        rounds += 1;
        if Instant::now() >= until {
            break;
        }
    }
    if rounds > 1 {
        eprintln!("{name}: {} cases in {rounds} rounds", rounds * cases as u64);
    }
}

/// Text near the shapes the parsers expect, with hostile pieces mixed in.
fn textish(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), prop::collection::vec(prop::sample::select(pieces), 0..24).prop_map(|v| v.concat()),]
}

const POLYGON_PIECES: &[&str] = &[
    "POLYGON",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
    "POINT",
    "((",
    "))",
    "(",
    ")",
    ",",
    " ",
    "106.5",
    "29.5",
    "-180",
    "180.0000001",
    "90",
    "-91",
    "1e308",
    "NaN",
    "inf",
    "0",
    "0 0",
    "1 1",
    "0 1",
    "1 0",
    "EMPTY",
    "{\"type\":\"Polygon\",\"coordinates\":[[",
    "]]}",
    "[",
    "]",
    "{\"type\":\"MultiPolygon\"",
    "\"coordinates\":",
    "null",
    "\u{0}",
    "\"",
    "{",
    "}",
    ":",
];

#[test]
fn fuzz_wkt_and_geojson_polygons() {
    fuzz("polygons", textish(POLYGON_PIECES), |s| {
        for crs in [Crs::Wgs84, Crs::Gcj02] {
            if let Ok(g) = parse_polygon(&s, &crs) {
                // Accepted: a polygon with finite coordinates in range.
                let ok = geo::CoordsIter::coords_iter(&g).all(|c| c.x.is_finite() && c.y.is_finite());
                prop_assert!(ok, "non-finite coordinates accepted from {s:?}");
            }
        }
        Ok(())
    });
}

const QUERY_KEYS: &[&str] = &[
    "bbox",
    "datetime",
    "within",
    "near",
    "radius",
    "k",
    "limit",
    "offset",
    "crs",
    "f",
    "bbox-crs",
    "status",
    "grid_code",
    "x",
];
const QUERY_VALUES: &[&str] = &[
    "106,29,107,30",
    "1,2,3",
    "200,0,-200,1",
    "NaN,0,1,1",
    "2026-10-01",
    "2026-10-01/2026-10-31",
    "../2026-01-01",
    "2026-13-01",
    "2026-10-01T00:00:00Z/..",
    "..",
    "/",
    "POLYGON((0 0,1 0,1 1,0 0))",
    "106.5,29.5",
    "181,95",
    "5",
    "0",
    "-1",
    "1e30",
    "100001",
    "EPSG:3857",
    "EPSG:4490",
    "gcj02",
    "bd09",
    "json",
    "html",
    "\u{0}",
    "",
    "%",
];

#[test]
fn fuzz_items_queries() {
    let strategy = prop::collection::btree_map(
        prop_oneof![prop::sample::select(QUERY_KEYS).prop_map(String::from), any::<String>()],
        prop_oneof![prop::sample::select(QUERY_VALUES).prop_map(String::from), any::<String>()],
        0..6,
    )
    .prop_map(|m| serde_urlencoded::to_string(&m).unwrap_or_default());
    fuzz("queries", strategy, |q| {
        let params: Params = serde_urlencoded::from_str(&q).unwrap_or_default();
        if let Ok(parsed) = ItemQuery::parse(&params, &["status", "grid_code"]) {
            prop_assert!(parsed.limit >= 1 && parsed.limit <= onemap::index::query::MAX_LIMIT);
            if let Some(b) = parsed.bbox {
                prop_assert!(b.iter().all(|v| v.is_finite()), "bbox {b:?} from {q:?}");
            }
        }
        Ok(())
    });
}

const READING_PIECES: &[&str] = &[
    "{",
    "}",
    "\"sensor\":",
    "\"at\":",
    "\"value\":",
    "\"SEN-1\"",
    "\"2026-12-01T00:00:00Z\"",
    "1764547200000",
    "1e999",
    "-0",
    "1.7e308",
    "null",
    "true",
    "[",
    "]",
    ",",
    "\"x\":1",
    "\"\\u0000\"",
    "99999999999999999999",
    "\"2999-01-01T00:00:00Z\"",
    "\"1999-12-31T23:59:59Z\"",
    "0.1",
];

#[test]
fn fuzz_reading_json() {
    let now = chrono::Utc::now();
    fuzz("readings", textish(READING_PIECES), |s| {
        for topic in [None, Some("SEN-1")] {
            if let Ok(r) = onemap::sensors::ingest::parse_reading(&s, topic, now, chrono::Duration::seconds(30)) {
                prop_assert!(r.value.is_finite(), "a non-finite value accepted from {s:?}");
                prop_assert!(r.at <= now + chrono::Duration::seconds(30), "a future time accepted from {s:?}");
                prop_assert!(topic.is_none_or(|t| r.sensor == t));
            }
        }
        Ok(())
    });
}

/// The HTTP surface in process: tile paths, MQTT-shaped topics and Open311 forms never get a
/// 5xx, and every refusal is a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_http_paths_messages_and_forms() {
    let st = seeded_state(&fresh_gpkg("fuzz"), small_city()).await;
    let app = onemap::app(st.clone().with_public_read());
    let public = onemap::auth::create(&*st.store, onemap::auth::Role::Public, None, None).await.unwrap();
    let rt = tokio::runtime::Handle::current();
    let check = move |r: Resp, what: &str| -> Result<(), TestCaseError> {
        prop_assert!(r.status.as_u16() < 500, "{what}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        if r.status.is_client_error() {
            prop_assert_eq!(r.content_type(), "application/problem+json", "{}", what);
        }
        Ok(())
    };
    let (a, c) = (app.clone(), check);
    let tiles = prop_oneof![
        (0u64..40, any::<u64>(), any::<u64>()).prop_map(|(z, x, y)| format!(
            "/tiles/grids/{z}/{}/{}",
            x % 70000,
            y % 70000
        )),
        "[a-z,]{0,20}/[-0-9a-z.]{0,6}/[-0-9.]{0,8}/[-0-9.a-z]{0,10}".prop_map(|s| format!("/tiles/{s}")),
    ];
    let handle = rt.clone();
    tokio::task::spawn_blocking(move || {
        fuzz("tiles", tiles, |path| {
            let uri = path.replace(' ', "%20");
            if uri.parse::<axum::http::Uri>().is_err() {
                return Ok(());
            }
            let r = handle.block_on(get(&a, &uri));
            c(r, &uri)
        })
    })
    .await
    .unwrap();

    // MQTT messages go through the same parser the broker loop calls.
    let ingest = st.sensors.clone();
    tokio::task::spawn_blocking(move || {
        let topics = prop_oneof![
            Just("onemap/sensors/SEN-WL-0001/readings".to_string()),
            "onemap/sensors/[^/]{0,8}/readings",
            any::<String>()
        ];
        let strategy = (topics, textish(READING_PIECES)).prop_map(|(t, p)| format!("{t}\t{p}"));
        fuzz("mqtt", strategy, |line| {
            let (topic, payload) = line.split_once('\t').unwrap_or((&line, ""));
            for r in onemap::mqtt::parse_message(topic, payload.as_bytes(), &ingest).into_iter().flatten() {
                prop_assert!(r.value.is_finite());
                prop_assert!(onemap::mqtt::topic_sensor(topic) == Some(r.sensor.as_str()));
            }
            Ok(())
        })
    })
    .await
    .unwrap();

    let (a, c) = (app.clone(), check);
    let handle = rt.clone();
    const FORM_KEYS: &[&str] =
        &["api_key", "service_code", "lat", "long", "description", "address_string", "email", "media_url", "x"];
    let form = prop::collection::vec(
        (prop::sample::select(FORM_KEYS), prop_oneof![any::<String>(), "[0-9.-]{0,12}", Just("0504".to_string())]),
        0..8,
    )
    .prop_map(move |pairs| serde_urlencoded::to_string(&pairs).unwrap_or_default());
    tokio::task::spawn_blocking(move || {
        fuzz("open311", form, |body| {
            // Half the forms carry a real key, so the checks past authentication are reached.
            let body = if body.len() % 2 == 0 { format!("{body}&api_key={public}") } else { body };
            let r = handle.block_on(post_form(&a, "/open311/v2/requests.json", body.clone()));
            c(r, &body)
        })
    })
    .await
    .unwrap();
}
