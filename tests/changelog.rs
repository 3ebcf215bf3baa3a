//! The change log as the spine: the live feed resumes across a SIGKILL from the store's log with
//! ids that keep growing, stale or future ids get `resync`, an import of any collection is live in
//! a running server within a second, and concurrent writers on PostGIS never let a follower skip
//! or repeat a change.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::remote::*;
use common::*;
use geo::InteriorPoint;
use onemap::index::Record;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_onemap");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_across_a_sigkill_from_the_log_on_both_stores() {
    for location in [fresh_gpkg("log-sigkill"), fresh_pg("onemap_t_log_sigkill").await] {
        seed(&location);
        let token = token_cli(&location, "supervisor");
        let city = small_city();
        let p = city.grids[3].geom.interior_point().unwrap();
        let class = city.event_classes[0].code.to_string();

        let (mut child, base) = serve(&["--store", &location, "--public-read"]);
        let mut feed = RemoteEvents::open(&base, None).await;
        let (first, seq) = report(&base, &token, p.x(), p.y(), &class).await;
        let seen = feed.until("case.created", |d| d["id"] == first).await;
        let id = seen.last().unwrap().0.expect("the change's last event carries its id");
        assert_eq!(id, seq, "{location}: the SSE id is the Onemap-Seq of the write");
        let invalidated = &seen[seen.len() - 2];
        assert_eq!((invalidated.0, invalidated.1.as_str()), (None, "tiles.invalidated"), "no id before the last");
        child.kill().unwrap();
        child.wait().unwrap();

        let (mut child, base) = serve(&["--store", &location, "--public-read"]);
        // Resumes from id 0 of this store: the whole log is replayed, ids increasing.
        let mut all = RemoteEvents::open(&base, Some("0")).await;
        let replayed = all.until("case.created", |d| d["id"] == first).await;
        let ids: Vec<i64> = replayed.iter().filter_map(|e| e.0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{location}: {ids:?}");
        assert_eq!(ids.last(), Some(&seq));
        // A client that saw the first case resumes after it and gets the new process's case.
        let mut resumed = RemoteEvents::open(&base, Some(&seq.to_string())).await;
        let (second, seq2) = report(&base, &token, p.x(), p.y(), &class).await;
        assert!(seq2 > seq, "{location}: ids keep growing across restarts");
        let got = resumed.until("case.created", |_| true).await;
        assert_eq!(got.last().unwrap().2["id"], second, "{location}: the first case is not sent again");
        assert_eq!(got.last().unwrap().0, Some(seq2));
        assert_eq!(got[0].1, "ready");
        // Beyond the head, and a garbled id: resync.
        for stale in [format!("{}", seq2 + 1000), "abc".to_string()] {
            let mut far = RemoteEvents::open(&base, Some(&stale)).await;
            let names: Vec<String> = vec![far.next().await.unwrap().1, far.next().await.unwrap().1];
            assert_eq!(names, ["ready", "resync"], "{location}: Last-Event-ID {stale}");
        }
        // Before the retained log: prune everything but the head, then ask for id 1.
        let store = onemap::store::open(&location).await.unwrap();
        assert!(store.prune_changes(chrono::Utc::now() + chrono::Duration::days(1)).await.unwrap() >= 1);
        assert_eq!(store.log_bounds().await.unwrap(), (seq2, seq2), "the newest change is kept");
        store.close().await;
        let mut old = RemoteEvents::open(&base, Some("1")).await;
        assert_eq!(old.next().await.unwrap().1, "ready");
        let resync = old.next().await.unwrap();
        assert_eq!(resync.1, "resync", "{location}: id 1 was pruned");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_sensor_takes_readings_and_an_imported_grid_is_located_and_drawn_within_a_second() {
    let city = small_city();
    // The city without its last unit grid and without one of its sensors: both arrive by import.
    let mut base = city.clone();
    let grid = base.grids.pop().unwrap();
    let sensor = base.sensors.pop().unwrap();
    base.components.retain(|c| c.grid_code.as_deref() != Some(grid.code.as_str()));
    base.cases.retain(|c| c.grid_code.as_deref() != Some(grid.code.as_str()));
    let kept: std::collections::HashSet<i64> = base.cases.iter().map(|c| c.id).collect();
    base.case_steps.retain(|s| kept.contains(&s.case_id));
    base.sensors.retain(|s| s.grid_code.as_deref() != Some(grid.code.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let grid_file = dir.path().join("grid.geojson");
    let fields = ["code", "name", "community_code"];
    let row = vec![Some(grid.code.to_string()), Some(grid.name.to_string()), Some(grid.community_code.to_string())];
    files::write_layer(grid_file.to_str().unwrap(), "GeoJSON", Some(4490), &[], &fields, &[(row, grid.geometry())]);
    let sensor_file = dir.path().join("sensor.geojson");
    let fields = ["code", "kind", "name"];
    let row = vec![Some(sensor.code.to_string()), Some(sensor.kind.to_string()), Some(sensor.name.to_string())];
    files::write_layer(sensor_file.to_str().unwrap(), "GeoJSON", Some(4490), &[], &fields, &[(row, sensor.geometry())]);
    for location in [fresh_gpkg("log-import"), fresh_pg("onemap_t_log_import").await] {
        let state = seeded_state(&location, &base).await;
        let app = onemap::app(state.clone().with_public_read());
        // `server::start` (through `seeded_state`) runs the log follower, as `serve` does.
        let device = onemap::auth::create(&*state.store, onemap::auth::Role::Device, None, None).await.unwrap();
        let reading = json!({"readings": [{"sensor": sensor.code.as_str(), "value": 0.1}]}).to_string();
        let r = post_as(&app, "/api/v1/sensors/readings", Some(&device), reading.clone().into_bytes()).await;
        assert_eq!(r.status, 400, "{location}: not registered yet");
        let p = grid.geom.interior_point().unwrap();
        let locate = format!("/api/v1/locate?lon={}&lat={}&crs=cgcs2000", p.x(), p.y());
        assert_eq!(get(&app, &locate).await.status, 404);

        for (collection, file) in [("grids", &grid_file), ("sensors", &sensor_file)] {
            let out = Command::new(BIN)
                .args(["import", collection, file.to_str().unwrap(), "--store", &location])
                .output()
                .unwrap();
            assert!(out.status.success(), "{collection}: {}", String::from_utf8_lossy(&out.stdout));
        }
        let started = std::time::Instant::now();
        let accepted = loop {
            let r = post_as(&app, "/api/v1/sensors/readings", Some(&device), reading.clone().into_bytes()).await;
            if r.status == 200 || started.elapsed() > Duration::from_secs(3) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(accepted.status, 200, "{location}: {}", String::from_utf8_lossy(&accepted.body));
        assert_eq!(accepted.json()["accepted"], 1);
        let s = get(&app, &format!("/api/v1/sensors/{}", sensor.code)).await.json();
        assert_eq!(s["value"], 0.1, "{location}: the engine and the index share the live value");
        let located = get(&app, &locate).await;
        assert_eq!(located.status, 200, "{location}");
        assert_eq!(located.json()["grid"]["code"], grid.code.as_str());
        let tile = onemap::geo::tile::tiles_covering([p.x(), p.y(), p.x(), p.y()], 15).next().unwrap();
        let drawn = get(&app, &format!("/tiles/grids/15/{}/{}", tile.x, tile.y)).await;
        assert_eq!(drawn.status, 200, "{location}: the grid is drawn");
        state.live.feed.close();
        state.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_postgis_never_let_a_follower_skip_or_repeat_a_change() {
    use onemap::model::Collection;
    use onemap::store::log::{ChangeRow, Op};
    let location = fresh_pg("onemap_t_log_writers").await;
    let store = onemap::store::open(&location).await.unwrap();
    const WRITERS: usize = 16;
    const EACH: usize = 60;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The follower reads `seq > last` while the writers commit.
    let follower = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen: Vec<(i64, String)> = Vec::new();
            loop {
                let done = stop.load(std::sync::atomic::Ordering::Acquire);
                for c in store.changes_after(last, 500).await.unwrap() {
                    assert_eq!(c.seq, last + 1, "a follower never sees a gap");
                    last = c.seq;
                    seen.push((c.seq, c.row.key.unwrap()));
                }
                if done {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                // Each writer's own key, with a counter: per key, commit order is the counter.
                let row = ChangeRow::record(Collection::Cases, format!("w{w}"), Op::Touch, None, Some(json!({"i": i})));
                let seq = store.append_changes(vec![row]).await.unwrap()[0];
                mine.push(seq);
            }
            mine
        });
    }
    let mut committed = Vec::new();
    while let Some(r) = writers.join_next().await {
        let mine = r.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one writer's changes in its commit order");
        committed.extend(mine);
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = follower.await.unwrap();
    committed.sort();
    let seen_seqs: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(seen_seqs, committed, "every committed change seen exactly once, in order");
    assert_eq!(seen.len(), WRITERS * EACH);
    // Per key, the follower saw the writer's changes in the writer's order.
    let mut per_key: HashMap<String, Vec<i64>> = HashMap::new();
    for (seq, key) in &seen {
        per_key.entry(key.clone()).or_default().push(*seq);
    }
    assert_eq!(per_key.len(), WRITERS);
    let stored = store.changes_after(0, 10_000).await.unwrap();
    for c in &stored {
        let key = c.row.key.as_ref().unwrap();
        let i = c.row.data.as_ref().unwrap()["i"].as_i64().unwrap();
        let pos = per_key[key].iter().position(|s| *s == c.seq).unwrap();
        assert_eq!(pos as i64, i, "key {key}: the {i}th change is the {i}th seen");
    }
    store.close().await;
}
