//! The change record and its fan-out. Every committed mutation of a layer becomes one change
//! ({old, new} of one record, as in tile38): it is applied to the live index, drops the cached
//! tiles it touches and goes out on the live feed as `tiles.invalidated`, in that order, so a
//! client told to refetch a tile always gets the new data. Domain events (`case.created`, ...)
//! are published by the code that made the change, after it.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rstar::{AABB, Envelope};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::geo::tile::MAX_ZOOM;
use crate::index::{CityIndex, Layer, Record};
use crate::model::*;
use crate::tiles::cache::{TileCache, source_bit};
use crate::tiles::{derived_layers, min_zoom};

/// One event of the live feed, serialised once for every subscriber.
#[derive(Debug)]
pub struct Event {
    /// Increasing from 1 within a process; the SSE `id`, so a reconnecting client can resume.
    pub id: u64,
    pub name: &'static str,
    pub data: String,
}

/// How many recent events a reconnecting client can catch up on (`Last-Event-ID`).
const REPLAY: usize = 4096;

/// The live feed: a broadcast channel plus the recent past for clients that reconnect.
pub struct Feed {
    tx: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    /// Set at shutdown: every subscriber's stream ends.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            tx: broadcast::channel(REPLAY).0,
            recent: Mutex::new(VecDeque::with_capacity(REPLAY)),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Feed {
    /// Sends an event to every subscriber.
    pub fn publish(&self, name: &'static str, data: &Value) {
        // Ids are given and sent under the lock, so the replay buffer and the channel agree on
        // the order.
        let mut recent = self.recent.lock();
        let id = recent.back().map_or(1, |e| e.id + 1);
        let event = Arc::new(Event { id, name, data: data.to_string() });
        if recent.len() == REPLAY {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        let _ = self.tx.send(event);
    }

    /// A receiver of everything published from now on, and the buffered events after `last_id`
    /// (none without one). The replay is `None` when `last_id` is older than the buffer: the
    /// client missed events and must resynchronise.
    pub fn subscribe(&self, last_id: Option<u64>) -> (broadcast::Receiver<Arc<Event>>, Option<Vec<Arc<Event>>>) {
        let recent = self.recent.lock();
        let rx = self.tx.subscribe();
        let replay = match last_id {
            None => Some(Vec::new()),
            Some(last) => match recent.front() {
                Some(first) if first.id > last + 1 => None,
                _ => Some(recent.iter().filter(|e| e.id > last).cloned().collect()),
            },
        };
        (rx, replay)
    }

    /// Ends every subscriber's stream (at shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the feed is closed.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Open subscriptions (SSE connections).
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The id of the latest event, 0 before the first.
    pub fn last_id(&self) -> u64 {
        self.recent.lock().back().map_or(0, |e| e.id)
    }
}

/// Which index layer holds records of a model type.
pub trait Indexed: Record + Clone + Sized {
    fn layer(index: &CityIndex) -> &RwLock<Layer<Self>>;
}

macro_rules! indexed {
    ($($ty:ty => $field:ident),*) => {
        $(impl Indexed for $ty {
            fn layer(index: &CityIndex) -> &RwLock<Layer<Self>> {
                &index.$field
            }
        })*
    };
}
indexed!(District => districts, Street => streets, Community => communities, Grid => grids,
    Component => components, Case => cases, Sensor => sensors);

/// Above this many touched records, one `tiles.invalidated` covers them all.
const TOUCHED_ONE_BY_ONE: usize = 64;

/// The index, the tile cache and the feed: everything a change must reach.
pub struct Live {
    pub index: Arc<CityIndex>,
    pub tiles: TileCache,
    pub feed: Feed,
}

impl Live {
    pub fn new(index: Arc<CityIndex>, tile_cache_mb: usize) -> Live {
        Live { index, tiles: TileCache::new(tile_cache_mb), feed: Feed::default() }
    }

    /// Applies a committed insert or update of one record; returns the record it replaced.
    pub fn upsert<T: Indexed>(&self, new: T) -> Option<T> {
        let new_env = new.envelope();
        let old = T::layer(&self.index).write().upsert(new);
        self.changed::<T>(old.as_ref().map(|o| o.envelope()), Some(new_env));
        old
    }

    /// Applies many committed inserts or updates of one layer (an import) under one write lock,
    /// announced like [`Live::touched`]: one area when there are many.
    pub fn upsert_many<T: Indexed>(&self, records: Vec<T>) {
        if records.is_empty() {
            return;
        }
        let mut envs = Vec::with_capacity(records.len());
        {
            let mut layer = T::layer(&self.index).write();
            for r in records {
                envs.push(r.envelope());
                if let Some(old) = layer.upsert(r) {
                    envs.push(old.envelope());
                }
            }
        }
        self.touched::<T>(&envs);
    }

    /// Announces records whose look changed without their data changing (a deadline light
    /// turning as time passes): their tiles are dropped and announced like any change.
    /// Many at once are announced as one area, so a sweep does not flood the feed.
    pub fn touched<T: Indexed>(&self, envelopes: &[AABB<[f64; 2]>]) {
        if envelopes.len() > TOUCHED_ONE_BY_ONE {
            let union = envelopes.iter().skip(1).fold(envelopes[0], |a, e| a.merged(e));
            self.changed::<T>(Some(union), None);
        } else {
            for env in envelopes {
                self.changed::<T>(Some(*env), None);
            }
        }
    }

    fn changed<T: Indexed>(&self, old: Option<AABB<[f64; 2]>>, new: Option<AABB<[f64; 2]>>) {
        if matches!(T::COLLECTION, "grids" | "communities" | "streets" | "districts") {
            self.index.hierarchy_changed();
        }
        let mut envs: Vec<AABB<[f64; 2]>> = old.into_iter().collect();
        if let Some(n) = new {
            if !envs.contains(&n) {
                envs.push(n);
            }
        }
        let layers: Vec<&str> = std::iter::once(T::COLLECTION).chain(derived_layers(T::COLLECTION)).collect();
        let zooms: Vec<u8> = (min_zoom(T::COLLECTION)..=MAX_ZOOM).collect();
        for env in envs {
            let bbox = [env.lower()[0], env.lower()[1], env.upper()[0], env.upper()[1]];
            self.tiles.invalidate(source_bit(T::COLLECTION), bbox);
            self.feed.publish(
                "tiles.invalidated",
                &json!({"layer": T::COLLECTION, "layers": layers, "bbox": bbox, "zooms": zooms}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::tile::{TileCoord, tiles_covering};
    use crate::tiles::cache::Rendered;

    #[test]
    fn a_moved_component_drops_tiles_at_both_ends_only() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let (a, b) = (city.components[0].clone(), city.components[city.components.len() / 2].clone());
        let live = Live::new(Arc::new(CityIndex::from_city(city)), 16);
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
        let (mut rx, _) = live.feed.subscribe(None);
        let mut moved = a.clone();
        moved.geom = b.geom.clone();
        let old = live.upsert(moved).expect("replaced");
        assert_eq!(old.code, a.code);
        assert!(live.tiles.get(from, "components").is_none(), "old place dropped");
        assert!(live.tiles.get(to, "components").is_none(), "new place dropped");
        assert!(live.tiles.get(elsewhere, "components").is_some(), "elsewhere kept");
        let (e1, e2) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        assert_eq!((e1.name, e2.name), ("tiles.invalidated", "tiles.invalidated"));
        assert!(rx.try_recv().is_err(), "one event per envelope");
        assert_eq!(live.index.components.read().get(&a.code).unwrap().geom, b.geom);
    }

    #[test]
    fn replay_resumes_after_the_last_seen_id_or_asks_for_a_resync() {
        let feed = Feed::default();
        for i in 0..3 {
            feed.publish("x", &json!(i));
        }
        let (_, replay) = feed.subscribe(Some(1));
        let ids: Vec<u64> = replay.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3]);
        let (_, fresh) = feed.subscribe(None);
        assert!(fresh.unwrap().is_empty());
        for i in 0..REPLAY {
            feed.publish("x", &json!(i));
        }
        assert!(feed.subscribe(Some(1)).1.is_none(), "event 2 is gone: resync");
        assert_eq!(feed.last_id(), 3 + REPLAY as u64);
    }
}
