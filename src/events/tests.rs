use super::*;
use crate::geo::tile::{TileCoord, tiles_covering};
use crate::tiles::cache::Rendered;

async fn live_over_empty_store(name: &str, scale: f64) -> (Live, crate::model::City) {
    let path = std::env::temp_dir().join(format!("onemap-events-{name}-{}.gpkg", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = crate::store::open(&path.display().to_string()).await.unwrap();
    let city = crate::demo::generate(&crate::demo::DemoParams::scaled(scale));
    let live = Live::new(Arc::new(CityIndex::from_city(city.clone())), store, 16, 0);
    (live, city)
}

fn row(collection: Collection, key: &str, event: Option<&str>, bbox: Vec<[f64; 4]>) -> ChangeRow {
    ChangeRow { bbox, ..ChangeRow::record(collection, key, Op::Upsert, event, Some(json!({"key": key}))) }
}

#[tokio::test]
async fn a_moved_component_drops_tiles_at_both_ends_only_and_its_events_carry_the_sequence() {
    let (live, city) = live_over_empty_store("moved", 0.05).await;
    let (a, b) = (city.components[0].clone(), city.components[city.components.len() / 2].clone());
    let at = |c: &Component, z: u8| {
        let e = c.envelope();
        tiles_covering([e.lower()[0], e.lower()[1], e.lower()[0], e.lower()[1]], z).next().unwrap()
    };
    let bit = source_bit("components");
    let z = 17;
    let (from, to) = (at(&a, z), at(&b, z));
    let elsewhere = TileCoord::new(z as u32, from.x + 7, from.y + 7).unwrap();
    for t in [from, to, elsewhere] {
        live.tiles.put(t, "components", bit, Arc::new(Rendered::new(Some(vec![1]))), live.tiles.generation());
    }
    let mut rx = live.feed.subscribe();
    let mut moved = a.clone();
    moved.geom = b.geom.clone();
    let r = row(Collection::Components, &a.code, None, super::moved(Some(&a.envelope()), Some(&moved.envelope())));
    let seq = live.store().append_changes(vec![r.clone()]).await.unwrap()[0];
    assert_eq!(seq, 1, "the first change of a new store");
    live.commit(vec![Change::committed(seq, r, vec![moved.clone().item()])]).await.unwrap();
    assert_eq!(live.applied(), 1);
    assert!(live.tiles.get(from, "components").is_none(), "old place dropped");
    assert!(live.tiles.get(to, "components").is_none(), "new place dropped");
    assert!(live.tiles.get(elsewhere, "components").is_some(), "elsewhere kept");
    let (e1, e2) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
    assert_eq!((e1.name.as_str(), e2.name.as_str()), ("tiles.invalidated", "tiles.invalidated"));
    assert_eq!((e1.seq, e1.last, e2.seq, e2.last), (1, false, 1, true), "only the change's last event has the id");
    assert!(rx.try_recv().is_err(), "one event per area");
    assert_eq!(live.index.components.read().get(&a.code).unwrap().geom, b.geom);
}

#[tokio::test]
async fn changes_of_other_writers_are_read_back_from_the_log_in_order_and_replayed() {
    let (live, city) = live_over_empty_store("follow", 0.05).await;
    let store = live.store().clone();
    // Another process registers a sensor: only the store knows.
    let mut sensor = city.sensors[0].clone();
    sensor.code = "SEN-TEST-0001".into();
    let r = row(Collection::Sensors, &sensor.code, Some("sensor.registered"), vec![bbox_of(&sensor.envelope())]);
    let seqs = crate::store::insert(&*store, std::slice::from_ref(&sensor), vec![r]).await.unwrap();
    assert_eq!(seqs, [1]);
    // And this one commits the next change before it has heard of the first.
    let own = row(Collection::Cases, "1", Some("case.updated"), Vec::new());
    let seq = store.append_changes(vec![own.clone()]).await.unwrap()[0];
    let mut rx = live.feed.subscribe();
    live.commit(vec![Change::committed(seq, own, Vec::new())]).await.unwrap();
    let names: Vec<(i64, String)> =
        std::iter::from_fn(|| rx.try_recv().ok()).map(|e| (e.seq, e.name.clone())).collect();
    assert_eq!(
        names,
        [(1, "tiles.invalidated".into()), (1, "sensor.registered".into()), (2, "case.updated".into())],
        "the other writer's change first, read back from the log"
    );
    let got = live.index.sensors.read().get("SEN-TEST-0001").cloned().expect("indexed from the store");
    assert!(got.live.get().stale, "a new sensor has not been heard from");

    let mut replay = live.replay(0).await.unwrap().expect("all retained");
    let events = replay.next_page().await.unwrap();
    let ids: Vec<(i64, bool)> = events.iter().map(|e| (e.seq, e.last)).collect();
    assert_eq!(ids, [(1, false), (1, true), (2, true)]);
    assert!(replay.next_page().await.unwrap().is_empty());
    assert!(live.replay(3).await.unwrap().is_none(), "beyond the head: resync");
    assert!(live.replay(2).await.unwrap().is_some(), "at the head: nothing missed");
}

#[tokio::test]
async fn the_light_sweep_moves_this_views_clock_and_turns_exactly_the_due_cases() {
    let (live, city) = live_over_empty_store("lights", 0.02).await;
    let now = live.clock();
    // A case reported 9 hours ago, due in 10: yellow now, red in an hour.
    let mut case = crate::cases::sample(999_999, "dispatched", now - chrono::Duration::hours(9), 10);
    case.geom = city.cases[0].geom;
    let r = row(Collection::Cases, "999999", Some("case.created"), Vec::new());
    let seq = live.store().append_changes(vec![r.clone()]).await.unwrap()[0];
    live.commit(vec![Change::committed(seq, r, vec![case.clone().item()])]).await.unwrap();
    let light_now = || live.index.cases.read().get("999999").unwrap().light;
    assert_eq!(light_now(), Some(Light::Yellow));
    let mut rx = live.feed.subscribe();
    let later = now + chrono::Duration::hours(1);
    let turned = live.sweep_lights(later).await.unwrap();
    assert!(turned >= 1);
    assert_eq!(light_now(), Some(Light::Red));
    assert_eq!(live.clock(), later);
    let updated: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|e| e.name == "case.updated")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert!(updated.iter().any(|c| c["id"] == 999_999 && c["light"] == "red"), "{updated:?}");
    assert_eq!(live.sweep_lights(later).await.unwrap(), 0, "nothing turns twice");
}
