//! The live view and its spine, the change log. Every committed mutation is a [`Change`]
//! ({old, new} of the records it touched, as in tile38), built only by the commit path (from the
//! records it just wrote) or by the follower (from the store's log). [`Live::apply`] hands each
//! change, strictly in log order, to the index, the tile cache, the locate cache, the engines that
//! keep state (the sensor engine) and the live feed, in that order, so a client told to refetch a
//! tile always gets the new data. The feed's event ids are the log's sequence numbers: global to
//! the store, increasing across restarts, replayable from the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rstar::AABB;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::geo::tile::MAX_ZOOM;
use crate::index::{CityIndex, Layered, Record};
use crate::model::with_model;
use crate::model::*;
use crate::store::log::{ChangeRow, Logged, Op};
use crate::store::schema::{Filter, Row, Val};
use crate::store::{Store, StoreError};
use crate::tiles::cache::{ALL_SOURCES, TileCache, source_bit};
use crate::tiles::{derived_layers, min_zoom};

/// One event of the live feed, serialised once for every subscriber.
#[derive(Debug)]
pub struct Event {
    /// The change it comes from: its SSE `id`, so a reconnecting client resumes after it.
    pub seq: i64,
    /// Whether this is the change's last event: only that one carries the id, so a client cut
    /// off between two events of one change gets the whole change again.
    pub last: bool,
    pub name: String,
    pub data: String,
}

/// How far a subscriber may fall behind before it is told to resynchronise.
const BUFFER: usize = 4096;

/// The live feed: a broadcast channel of the applied changes' events. The log is its memory: a
/// reconnecting client is replayed from the store (see [`Live::replay`]).
pub struct Feed {
    tx: broadcast::Sender<Arc<Event>>,
    /// Set at shutdown: every subscriber's stream ends.
    closing: watch::Sender<bool>,
    /// When each sensor's last `sensor.reading` (and each member's last `staff.moved`) went out
    /// (reading or position time, ms): at most one per record per `feed_every`, so browsers keep
    /// up with a 50,000 readings/s ingest.
    fed: Mutex<Fed>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed { tx: broadcast::channel(BUFFER).0, closing: watch::channel(false).0, fed: Default::default() }
    }
}

impl Feed {
    fn send(&self, seq: i64, events: Vec<(String, Value)>) {
        let n = events.len();
        for (i, (name, data)) in events.into_iter().enumerate() {
            let _ = self.tx.send(Arc::new(Event { seq, last: i + 1 == n, name, data: data.to_string() }));
        }
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
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
}

/// When each paced record's last event went out, by collection and key.
type Fed = HashMap<(Collection, Str), i64>;

/// A record of any collection, as a change carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    District(District),
    Street(Street),
    Community(Community),
    Grid(Grid),
    Component(Component),
    Case(Case),
    Sensor(Sensor),
    Staff(Staff),
    Camera(Camera),
}

/// A model type the index holds, and how it sits in an [`Item`].
pub trait Indexed: Layered + Clone + Row {
    fn item(self) -> Item;
}

macro_rules! indexed {
    ($($ty:ident),*) => {
        $(impl Indexed for $ty {
            fn item(self) -> Item {
                Item::$ty(self)
            }
        })*

        impl Item {
            /// Puts the record into the index; returns the one it replaced.
            fn upsert_into(self, index: &CityIndex) -> Option<Item> {
                match self { $(Item::$ty(r) => $ty::layer(index).write().upsert(r).map(Item::$ty),)* }
            }
        }
    };
}
indexed!(District, Street, Community, Grid, Component, Case, Sensor, Staff, Camera);

/// A committed change: its place in the log, its row, and the records before and after.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    pub row: ChangeRow,
    /// The records as they were (filled in by [`Live::apply`] from the index).
    pub old: Vec<Item>,
    /// The records as committed (none for a removal, a touch or readings).
    pub new: Vec<Item>,
}

impl Change {
    /// The change the commit path builds from the records it just wrote.
    pub fn committed(seq: i64, row: ChangeRow, new: Vec<Item>) -> Change {
        Change { seq, row, old: Vec::new(), new }
    }
}

/// Something that keeps state of its own over the index and must hear of every change (the
/// sensor engine). Called under the apply turn: it must not commit or wait.
pub trait Follower: Send + Sync {
    fn applied(&self, change: &Change);
}

/// Above this many areas, one `tiles.invalidated` covers them all.
const AREAS_ONE_BY_ONE: usize = 64;
/// Changes read from the log at a time.
const PAGE: i64 = 1000;

/// How often sensor values and staff positions reach the feed and the tiles (`[sensors]` and
/// `[staff]` of the config file).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub feed_every_ms: i64,
    pub draw_every_ms: i64,
    /// At most one `staff.moved` per member this often.
    pub moved_every_ms: i64,
}

/// The index, the tile cache and the feed, kept in step with the change log.
pub struct Live {
    pub index: Arc<CityIndex>,
    pub tiles: TileCache,
    pub feed: Feed,
    store: Arc<dyn Store>,
    /// The instant every case light is read at (epoch ms). Lights change with time alone, so a
    /// tile or page that read them at "now" would silently disagree with a cached tile rendered
    /// a minute earlier; instead the clock moves only with a logged light sweep.
    clock: AtomicI64,
    /// The sequence number of the last change applied.
    applied: watch::Sender<i64>,
    /// One applier at a time, so changes are applied in log order.
    turn: tokio::sync::Mutex<()>,
    /// Changes this process committed and has not applied yet, by sequence number.
    pending: Mutex<BTreeMap<i64, Change>>,
    /// Commits of this process between their store write and their deposit (see
    /// [`Live::in_flight`]), and a wake-up for each deposit or end of one.
    in_flight: AtomicI64,
    deposited: tokio::sync::Notify,
    /// Wakes the log follower at once (a reader waits for a change it has not applied).
    nudge: tokio::sync::Notify,
    followers: RwLock<Vec<Arc<dyn Follower>>>,
    pacing: RwLock<Pacing>,
    /// When each sensor's (or member's) tiles were last redrawn for a new value or position
    /// (reading or position time, ms).
    drawn: Mutex<Fed>,
}

impl Live {
    /// The live view over a freshly loaded index that reflects the log up to `head`.
    pub fn new(index: Arc<CityIndex>, store: Arc<dyn Store>, tile_cache_mb: usize, head: i64) -> Live {
        let now = Utc::now();
        for c in index.cases.write().iter_mut() {
            c.light = light(c, now);
        }
        Live {
            index,
            tiles: TileCache::new(tile_cache_mb),
            feed: Feed::default(),
            store,
            clock: AtomicI64::new(now.timestamp_millis()),
            applied: watch::channel(head).0,
            turn: Default::default(),
            pending: Default::default(),
            in_flight: AtomicI64::new(0),
            deposited: Default::default(),
            nudge: Default::default(),
            followers: Default::default(),
            pacing: RwLock::new(Pacing { feed_every_ms: 1000, draw_every_ms: 10_000, moved_every_ms: 5_000 }),
            drawn: Default::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn pacing(&self) -> Pacing {
        *self.pacing.read()
    }

    pub fn set_pacing(&self, pacing: Pacing) {
        *self.pacing.write() = pacing;
    }

    pub fn add_follower(&self, f: Arc<dyn Follower>) {
        self.followers.write().push(f);
    }

    /// The light clock: the instant case lights are read at.
    pub fn clock(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.load(Ordering::Acquire)).expect("clock in range")
    }

    /// The light of `case` at the light clock.
    pub fn light_of(&self, case: &Case) -> Option<Light> {
        light(case, self.clock())
    }

    /// The sequence number of the last change applied here.
    pub fn applied(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until change `seq` is applied here (a client reading its own write on another
    /// replica, `Onemap-Min-Seq`), at most `within`, waking the follower at once. False when it
    /// was not applied in time.
    pub async fn wait_applied(&self, seq: i64, within: std::time::Duration) -> bool {
        if self.applied() >= seq {
            return true;
        }
        self.nudge.notify_one();
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(within, rx.wait_for(|&a| a >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Resolves when a reader asks the follower to look at the log now.
    pub async fn nudged(&self) {
        self.nudge.notified().await
    }

    /// Whether change `seq` is applied here, after giving this process's commits in flight a
    /// moment to apply their own. A store announces every commit, ours included: on a busy
    /// replica most announcements are changes their committers are applying already, which the
    /// follower should not read back from the store.
    pub async fn applied_soon(&self, seq: i64) -> bool {
        if self.applied() >= seq {
            return true;
        }
        if self.in_flight.load(Ordering::Acquire) == 0 && !self.pending.lock().contains_key(&seq) {
            return false;
        }
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(IN_FLIGHT_WAIT, rx.wait_for(|&a| a >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// How far this process is behind the log: (head, time since the oldest change it has not
    /// applied was committed; zero when none).
    pub async fn lag(&self) -> Result<(i64, chrono::Duration), StoreError> {
        let (_, head) = self.store.log_bounds().await?;
        let applied = self.applied();
        if applied >= head {
            return Ok((head, chrono::Duration::zero()));
        }
        let next = self.store.changes_after(applied, 1).await?;
        let lag = next.first().map_or(chrono::Duration::zero(), |c| (Utc::now() - c.at).max(chrono::Duration::zero()));
        Ok((head, lag))
    }

    /// Applies changes this process just committed (under `in_flight`, taken before the store
    /// write), after any earlier ones (from the log), so the caller's answer reflects them.
    pub async fn commit(&self, changes: Vec<Change>, in_flight: InFlight<'_>) -> Result<(), StoreError> {
        let Some(upto) = changes.iter().map(|c| c.seq).max() else { return Ok(()) };
        self.deposit(changes);
        drop(in_flight);
        self.catch_up(Some(upto)).await
    }

    /// Notes committed changes to be applied in their turn (by [`Live::catch_up`]).
    pub fn deposit(&self, changes: Vec<Change>) {
        let applied = self.applied();
        {
            let mut pending = self.pending.lock();
            for c in changes.into_iter().filter(|c| c.seq > applied) {
                pending.insert(c.seq, c);
            }
        }
        self.deposited.notify_waiters();
    }

    /// Marks a commit of this process as under way until the guard drops (after its deposit):
    /// an applier that meets a gap in the numbers meanwhile waits for the deposit rather than
    /// reading the change back from the store. Group commit answers a batch's writers in any
    /// order, so without this most of a batch would be reloaded record by record.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// Applies every change after the last applied one, up to `upto` (or to the log's head), in
    /// order: this process's own from memory, the others' read back from the store.
    pub async fn catch_up(&self, upto: Option<i64>) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        loop {
            let applied = self.applied();
            if upto.is_some_and(|u| applied >= u) {
                return Ok(());
            }
            let next = self.pending.lock().remove(&(applied + 1));
            if let Some(change) = next {
                self.apply(change);
                continue;
            }
            // A committer waiting for its own change waits for ours in flight below it; the
            // follower does not (under steady load it would hold the turn, and everyone's
            // answers, for the wait): it reads the log, at worst reloading one of ours.
            if upto.is_some() && self.await_deposit(applied + 1).await {
                continue;
            }
            let page = self.store.changes_after(applied, PAGE).await?;
            let Some(first) = page.first() else {
                // Nothing after `applied` in the log: our own changes below it were applied.
                self.pending.lock().retain(|&s, _| s > applied);
                return Ok(());
            };
            if first.seq > applied + 1 {
                // The log was pruned past us: the changes in between are gone.
                tracing::warn!(applied, oldest = first.seq, "fell behind the retained change log: reloading the city");
                self.reload(first.seq - 1).await?;
                continue;
            }
            for logged in page {
                let seq = logged.seq;
                let own = self.pending.lock().remove(&seq);
                let change = match own {
                    Some(c) => c,
                    None => materialize(&*self.store, logged).await?,
                };
                self.apply(change);
                if upto.is_some_and(|u| seq >= u) {
                    return Ok(());
                }
            }
        }
    }

    /// While commits of this process are under way, waits (at most [`IN_FLIGHT_WAIT`]) for
    /// change `seq` to be deposited: most likely it is one of ours, a moment from its deposit.
    /// False when it did not come, and it must be read from the log.
    async fn await_deposit(&self, seq: i64) -> bool {
        let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        loop {
            let deposited = self.deposited.notified();
            tokio::pin!(deposited);
            deposited.as_mut().enable();
            if self.pending.lock().contains_key(&seq) {
                return true;
            }
            if self.in_flight.load(Ordering::Acquire) == 0
                || tokio::time::timeout_at(deadline, deposited).await.is_err()
            {
                return false;
            }
        }
    }

    /// Replaces every layer from the store and marks the log applied to `head`; every feed
    /// subscriber is told to resynchronise.
    async fn reload(&self, head: i64) -> Result<(), StoreError> {
        let city = self.store.load_city(&|_, _| {}).await?;
        let fresh = tokio::task::spawn_blocking(move || CityIndex::from_city(city))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        fn swap<T: Indexed>(to: &CityIndex, from: &CityIndex) {
            std::mem::swap(&mut *T::layer(to).write(), &mut *T::layer(from).write());
        }
        // Sensors keep their live values across the reload.
        let lives: HashMap<Str, SensorLive> =
            self.index.sensors.read().iter().map(|s| (s.code.clone(), s.live.clone())).collect();
        for s in fresh.sensors.write().iter_mut() {
            if let Some(l) = lives.get(&s.code) {
                s.live = l.clone();
            }
        }
        // Staff keep where they were last seen (the store's row holds where they registered).
        let seen: Vec<Staff> = self.index.staff.read().iter().filter(|s| s.last_seen.is_some()).cloned().collect();
        {
            let mut staff = fresh.staff.write();
            for was in seen {
                if let Some(mut now) = staff.get(&was.code).cloned() {
                    keep_whereabouts(&mut now, &was);
                    staff.upsert(now);
                }
            }
        }
        let clock = self.clock();
        for c in fresh.cases.write().iter_mut() {
            c.light = light(c, clock);
        }
        swap::<District>(&self.index, &fresh);
        swap::<Street>(&self.index, &fresh);
        swap::<Community>(&self.index, &fresh);
        swap::<Grid>(&self.index, &fresh);
        swap::<Component>(&self.index, &fresh);
        swap::<Case>(&self.index, &fresh);
        swap::<Sensor>(&self.index, &fresh);
        swap::<Staff>(&self.index, &fresh);
        swap::<Camera>(&self.index, &fresh);
        self.index.hierarchy_changed();
        self.tiles.invalidate(ALL_SOURCES, [-180.0, -90.0, 180.0, 90.0]);
        self.pending.lock().retain(|&s, _| s > head);
        self.feed.send(head, vec![("resync".into(), json!({"last_id": head}))]);
        self.applied.send_replace(head);
        Ok(())
    }

    /// Applies one change, the next in log order: index, tiles, locate cache, followers, feed.
    fn apply(&self, mut change: Change) {
        let row = &change.row;
        match row.op {
            Op::Upsert | Op::Import => {
                for item in std::mem::take(&mut change.new) {
                    let item = self.prepare(item);
                    if let Some(old) = item.clone().upsert_into(&self.index) {
                        change.old.push(old);
                    }
                    change.new.push(item);
                }
            }
            Op::Remove => {
                if let Some(key) = &row.key {
                    let old = with_model!(
                        row.collection,
                        |T| T::layer(&self.index).write().remove(key).map(Indexed::item),
                        None
                    );
                    change.old.extend(old);
                }
            }
            Op::Touch => self.touch(row),
            Op::Readings | Op::Positions => {}
        }
        if row.collection == Collection::Alarms {
            self.alarm_level(row);
        }
        if row.collection.is_hierarchy() {
            self.index.hierarchy_changed();
        }
        let mut areas = row.bbox.clone();
        match row.op {
            Op::Readings => areas.extend(self.readings(row)),
            Op::Positions => areas.extend(self.positions(row)),
            _ => {}
        }
        let sources = source_bit(row.collection.as_str());
        for a in &areas {
            self.tiles.invalidate(sources, *a);
        }
        for f in self.followers.read().iter() {
            f.applied(&change);
        }
        let mut fed = self.feed.fed.lock();
        let events = events_of(&self.index, &change.row, &areas, &mut fed, *self.pacing.read());
        drop(fed);
        self.feed.send(change.seq, events);
        self.applied.send_replace(change.seq);
    }

    /// Readies a record for the index: a case gets its light at the clock, a sensor keeps the
    /// live status of the record it replaces (the store does not hold it).
    fn prepare(&self, item: Item) -> Item {
        match item {
            Item::Case(mut c) => {
                c.light = self.light_of(&c);
                Item::Case(c)
            }
            Item::Sensor(mut s) => {
                match self.index.sensors.read().get(&s.code) {
                    Some(old) => s.live = old.live.clone(),
                    // A new sensor has not been heard from.
                    None => s.live.0.lock().stale = true,
                }
                Item::Sensor(s)
            }
            Item::Staff(mut s) => {
                if let Some(old) = self.index.staff.read().get(&s.code) {
                    keep_whereabouts(&mut s, old);
                }
                Item::Staff(s)
            }
            other => other,
        }
    }

    /// A touch: the light clock moved (cases), or sensors went quiet or woke (sensors).
    fn touch(&self, row: &ChangeRow) {
        let Some(data) = &row.data else { return };
        match row.collection {
            Collection::Cases => {
                if let Some(ms) = data["clock"].as_i64() {
                    self.clock.fetch_max(ms, Ordering::AcqRel);
                }
                let clock = self.clock();
                let mut cases = self.index.cases.write();
                for id in data["cases"].as_array().into_iter().flatten().filter_map(Value::as_i64) {
                    cases.update_in_place(&id.to_string(), |c| c.light = light(c, clock));
                }
            }
            Collection::Staff => {
                let mut staff = self.index.staff.write();
                for (code, last_seen) in off_duty_of(data) {
                    // A position taken in since the sweep looked keeps the member on duty.
                    staff.update_in_place(code, |s| {
                        if s.last_seen.is_none_or(|t| t.timestamp_millis() <= last_seen) {
                            s.on_duty = false;
                        }
                    });
                }
            }
            Collection::Sensors => {
                let sensors = self.index.sensors.read();
                for s in data["stale"].as_array().into_iter().flatten() {
                    if let (Some(code), Some(stale)) = (s[0].as_str(), s[1].as_bool())
                        && let Some(sensor) = sensors.get(code)
                    {
                        sensor.live.0.lock().stale = stale;
                    }
                }
            }
            _ => {}
        }
    }

    /// An alarm change sets its sensor's level (none once cleared), whoever ruled on it.
    fn alarm_level(&self, row: &ChangeRow) {
        let Some(data) = &row.data else { return };
        let Some(code) = data["sensor"].as_str() else { return };
        if let Some(sensor) = self.index.sensors.read().get(code) {
            let active = data["active"].as_bool().unwrap_or(true);
            sensor.live.0.lock().level = if active { data["level"].as_str().and_then(Level::parse) } else { None };
        }
    }

    /// A readings batch: each sensor's live value moves (if newer than what it shows) and its
    /// tiles are redrawn at most every `draw_every`; returns the areas to redraw.
    fn readings(&self, row: &ChangeRow) -> Vec<[f64; 4]> {
        let draw_every = self.pacing.read().draw_every_ms;
        let sensors = self.index.sensors.read();
        let mut drawn = self.drawn.lock();
        let mut areas = Vec::new();
        for (code, at, value) in readings_of(row) {
            let Some(sensor) = sensors.get(code) else { continue };
            let was_stale = {
                let mut live = sensor.live.0.lock();
                let Some(t) = DateTime::from_timestamp_millis(at) else { continue };
                if live.at.is_none_or(|a| a <= t) {
                    live.at = Some(t);
                    live.value = Some(value);
                }
                std::mem::replace(&mut live.stale, false)
            };
            let last = drawn.entry((Collection::Sensors, sensor.code.clone())).or_insert(i64::MIN);
            if was_stale || at.saturating_sub(*last) >= draw_every {
                *last = at;
                areas.push(bbox_of(&sensor.envelope()));
            }
        }
        areas
    }

    /// A positions batch: each member moves to their latest position (if newer than where they
    /// were seen) and is on duty; their tiles are redrawn at most every `draw_every`. Returns the
    /// areas to redraw.
    fn positions(&self, row: &ChangeRow) -> Vec<[f64; 4]> {
        let draw_every = self.pacing.read().draw_every_ms;
        let mut staff = self.index.staff.write();
        let mut drawn = self.drawn.lock();
        let mut areas = Vec::new();
        for p in positions_of(row) {
            let Some(was) = staff.get(p.code) else { continue };
            let Some(at) = DateTime::from_timestamp_millis(p.at) else { continue };
            if was.last_seen.is_some_and(|t| t >= at) {
                continue;
            }
            let mut now = was.clone();
            now.geom = geo::Point::new(p.lon, p.lat);
            now.last_seen = Some(at);
            now.grid_code = p.grid.map(Str::from);
            now.on_duty = true;
            let came_on = !was.on_duty;
            let from = was.envelope();
            let to = now.envelope();
            staff.upsert(now);
            let last = drawn.entry((Collection::Staff, Str::from(p.code))).or_insert(i64::MIN);
            if came_on || p.at.saturating_sub(*last) >= draw_every {
                *last = p.at;
                areas.extend(moved(Some(&from), Some(&to)));
            }
        }
        areas
    }

    /// The events a client that last saw `after` missed, from the log, in order, up to what
    /// this process has applied: `None` when the log no longer holds them all or `after` is
    /// beyond its head (the client must resynchronise). Derived as [`Live::apply`] derives them,
    /// against today's records.
    pub async fn replay(&self, after: i64) -> Result<Option<ReplayPages<'_>>, StoreError> {
        let (oldest, head) = self.store.log_bounds().await?;
        let upto = self.applied();
        if after > head.max(upto) || (oldest > 0 && after < oldest - 1) || after < 0 {
            return Ok(None);
        }
        Ok(Some(ReplayPages { live: self, next: after, upto, fed: HashMap::new() }))
    }

    /// Sweeps the case lights: moves the light clock to `now` through the log and redraws and
    /// announces every open case whose light turned. Returns how many turned.
    pub async fn sweep_lights(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let index = self.index.clone();
        let turned = tokio::task::spawn_blocking(move || {
            index
                .cases
                .read()
                .iter()
                .filter(|c| !c.status.is_finished() && light(c, now) != c.light)
                .map(|c| (c.id, bbox_of(&c.envelope())))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let ids: Vec<i64> = turned.iter().map(|t| t.0).collect();
        let data = json!({"clock": now.timestamp_millis(), "cases": ids});
        self.touch_logged(Collection::Cases, data, turned.iter().map(|t| t.1).collect()).await?;
        Ok(ids.len())
    }

    /// Logs and applies a touch of `collection`: records whose look changed with time alone
    /// (`data` says how), redrawing `areas`. Returns its sequence number.
    pub async fn touch_logged(
        &self,
        collection: Collection,
        data: Value,
        areas: Vec<[f64; 4]>,
    ) -> Result<i64, StoreError> {
        let row =
            ChangeRow { collection, key: None, op: Op::Touch, event: None, data: Some(data), bbox: self::areas(areas) };
        self.log(row).await
    }

    /// Logs a change that stores nothing else (a publication, a touch) and applies it here;
    /// returns its sequence number.
    pub async fn log(&self, row: ChangeRow) -> Result<i64, StoreError> {
        let in_flight = self.in_flight();
        let seq = self.store.append_changes(vec![row.clone()]).await?[0];
        self.commit(vec![Change::committed(seq, row, Vec::new())], in_flight).await?;
        Ok(seq)
    }
}

/// How long an applier waits for a commit of this process to deposit its change before it
/// reads the change from the store.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A commit of this process under way (see [`Live::in_flight`]).
pub struct InFlight<'a>(&'a Live);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.deposited.notify_waiters();
    }
}

/// One page at a time of a replay (see [`Live::replay`]).
pub struct ReplayPages<'a> {
    live: &'a Live,
    next: i64,
    upto: i64,
    fed: Fed,
}

impl ReplayPages<'_> {
    /// The up to last sequence number this replay runs to (what was applied when it began).
    pub fn upto(&self) -> i64 {
        self.upto
    }

    /// The next page of events; empty at the end.
    pub async fn next_page(&mut self) -> Result<Vec<Event>, StoreError> {
        if self.next >= self.upto {
            return Ok(Vec::new());
        }
        let page = self.live.store.changes_after(self.next, PAGE).await?;
        let mut out = Vec::new();
        let pacing = *self.live.pacing.read();
        for logged in page.into_iter().take_while(|l| l.seq <= self.upto) {
            self.next = logged.seq;
            let events = events_of(&self.live.index, &logged.row, &logged.row.bbox, &mut self.fed, pacing);
            let n = events.len();
            out.extend(events.into_iter().enumerate().map(|(i, (name, data))| Event {
                seq: logged.seq,
                last: i + 1 == n,
                name,
                data: data.to_string(),
            }));
        }
        if out.is_empty() && self.next < self.upto {
            // Nothing left to read below `upto`: the rest produced no events.
            self.next = self.upto;
        }
        Ok(out)
    }
}

/// The feed events of a change: `tiles.invalidated` for the areas it redraws, then its domain
/// event or the events its touch or readings imply. `fed` paces `sensor.reading` per sensor.
fn events_of(
    index: &CityIndex,
    row: &ChangeRow,
    areas: &[[f64; 4]],
    fed: &mut Fed,
    pacing: Pacing,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if !areas.is_empty() {
        let collection = row.collection.as_str();
        let layers: Vec<&str> = std::iter::once(collection).chain(derived_layers(collection)).collect();
        let zooms: Vec<u8> = (min_zoom(collection)..=MAX_ZOOM).collect();
        // Whose case it is, so a department's or an area's feed hears only of its own cases'
        // tiles (a change of many cases, a sweep or an import, names none).
        let case = match (row.collection, &row.data) {
            (Collection::Cases, Some(d)) if d.get("grid_code").is_some() => Some(json!({
                "dept_code": d["dept_code"], "grid_code": d["grid_code"],
                "previous_dept_code": d.get("previous_dept_code").unwrap_or(&Value::Null),
            })),
            _ => None,
        };
        let tiles = |bbox: &[f64; 4]| {
            let mut data = json!({"layer": collection, "layers": layers, "bbox": bbox, "zooms": zooms});
            if let Some(case) = &case {
                data["case"] = case.clone();
            }
            ("tiles.invalidated".to_string(), data)
        };
        if areas.len() > AREAS_ONE_BY_ONE {
            out.push(tiles(&union_all(areas)));
        } else {
            out.extend(areas.iter().map(tiles));
        }
    }
    if let (Some(event), Some(data)) = (&row.event, &row.data) {
        out.push((event.clone(), data.clone()));
    }
    match (row.op, row.collection, &row.data) {
        (Op::Touch, Collection::Cases, Some(data)) => {
            let cases = index.cases.read();
            for id in data["cases"].as_array().into_iter().flatten().filter_map(Value::as_i64) {
                if let Some(c) = cases.get(&id.to_string()) {
                    out.push(("case.updated".into(), case_json(c)));
                }
            }
        }
        (Op::Touch, Collection::Sensors, Some(data)) => {
            for s in data["stale"].as_array().into_iter().flatten() {
                let last_at = s[2].as_i64().and_then(DateTime::from_timestamp_millis).map(rfc3339_ms);
                out.push(("sensor.stale".into(), json!({"sensor": s[0], "stale": s[1], "last_at": last_at})));
            }
        }
        (Op::Touch, Collection::Staff, Some(data)) => {
            for (code, last_seen) in off_duty_of(data) {
                let last_seen = DateTime::from_timestamp_millis(last_seen).map(rfc3339_ms);
                out.push(("staff.off_duty".into(), json!({"staff": code, "last_seen": last_seen})));
            }
        }
        (Op::Positions, _, Some(data)) => {
            let staff = index.staff.read();
            let came_on: Vec<&str> =
                data["on_duty"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for p in positions_of(row) {
                let at = DateTime::from_timestamp_millis(p.at).map(rfc3339_ms);
                let member = staff.get(p.code);
                let (name, role) = (member.map(|m| m.name.as_str()), member.map(|m| m.role.as_str()));
                let body = json!({"staff": p.code, "name": name, "role": role, "at": at, "lon": p.lon, "lat": p.lat,
                    "grid_code": p.grid});
                if came_on.contains(&p.code) {
                    out.push(("staff.on_duty".into(), body.clone()));
                }
                let last = fed.entry((Collection::Staff, Str::from(p.code))).or_insert(i64::MIN);
                if came_on.contains(&p.code) || p.at.saturating_sub(*last) >= pacing.moved_every_ms {
                    *last = p.at;
                    out.push(("staff.moved".into(), body));
                }
            }
        }
        (Op::Readings, _, _) => {
            let sensors = index.sensors.read();
            for (code, at, value) in readings_of(row) {
                let last = fed.entry((Collection::Sensors, Str::from(code))).or_insert(i64::MIN);
                if at.saturating_sub(*last) < pacing.feed_every_ms {
                    continue;
                }
                *last = at;
                let sensor = sensors.get(code);
                let level = sensor.and_then(|s| s.live.get().level).map(Level::as_str);
                let at = DateTime::from_timestamp_millis(at).map(rfc3339_ms);
                out.push((
                    "sensor.reading".into(),
                    json!({"sensor": code, "at": at, "value": value, "level": level, "kind": sensor.map(|s| &s.kind)}),
                ));
            }
        }
        _ => {}
    }
    out
}

/// The `[code, epoch ms, value]` entries of a readings change.
fn readings_of(row: &ChangeRow) -> impl Iterator<Item = (&str, i64, f64)> {
    row.data
        .as_ref()
        .and_then(|d| d["readings"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r[0].as_str()?, r[1].as_i64()?, r[2].as_f64()?)))
}

/// One entry of a positions change.
struct Moved<'a> {
    code: &'a str,
    at: i64,
    lon: f64,
    lat: f64,
    grid: Option<&'a str>,
}

/// The `[code, epoch ms, lon, lat, grid]` entries of a positions change.
fn positions_of(row: &ChangeRow) -> impl Iterator<Item = Moved<'_>> {
    row.data.as_ref().and_then(|d| d["positions"].as_array()).into_iter().flatten().filter_map(|p| {
        Some(Moved {
            code: p[0].as_str()?,
            at: p[1].as_i64()?,
            lon: p[2].as_f64()?,
            lat: p[3].as_f64()?,
            grid: p[4].as_str(),
        })
    })
}

/// The `[code, last seen ms]` entries of a duty sweep's touch.
fn off_duty_of(data: &Value) -> impl Iterator<Item = (&str, i64)> {
    data["off_duty"].as_array().into_iter().flatten().filter_map(|s| Some((s[0].as_str()?, s[1].as_i64()?)))
}

/// Carries where a member was seen over to a new record of them (a re-registration or a
/// reload), which the store's row does not hold.
fn keep_whereabouts(now: &mut Staff, was: &Staff) {
    if was.last_seen.is_some() {
        now.geom = was.geom;
        now.last_seen = was.last_seen;
        now.grid_code = was.grid_code.clone();
    }
    now.on_duty = was.on_duty;
}

/// Turns a change read from the log back into a [`Change`], reloading the records it names.
async fn materialize(store: &dyn Store, logged: Logged) -> Result<Change, StoreError> {
    let row = logged.row;
    let key = row.key.clone().unwrap_or_default();
    let new: Vec<Item> = match row.op {
        Op::Upsert => {
            let filter = |key_col: &'static str| match key_col {
                "id" => key.parse().map(|id| Filter::Eq("id", Val::Int(id))).ok(),
                col => Some(Filter::Eq(col, Val::Text(Some(key.as_str().into())))),
            };
            with_model!(
                row.collection,
                |T| match filter(T::table().cols[0].0) {
                    Some(f) => crate::store::select::<T>(store, f).await?.into_iter().map(Indexed::item).collect(),
                    None => Vec::new(),
                },
                Vec::new()
            )
        }
        Op::Import => match key.parse() {
            Ok(import) => with_model!(
                row.collection,
                |T| crate::store::select::<T>(store, Filter::Imported(import))
                    .await?
                    .into_iter()
                    .map(Indexed::item)
                    .collect(),
                Vec::new()
            ),
            Err(_) => Vec::new(),
        },
        Op::Remove | Op::Touch | Op::Readings | Op::Positions => Vec::new(),
    };
    Ok(Change { seq: logged.seq, row, old: Vec::new(), new })
}

/// A case as the API and the feed show it: its properties (light included) and its position
/// in CGCS2000.
pub fn case_json(case: &Case) -> Value {
    let mut m = case.properties();
    m.insert("lon".into(), json!(case.geom.x()));
    m.insert("lat".into(), json!(case.geom.y()));
    Value::Object(m)
}

/// An envelope as `[west, south, east, north]`.
pub fn bbox_of(env: &AABB<[f64; 2]>) -> [f64; 4] {
    [env.lower()[0], env.lower()[1], env.upper()[0], env.upper()[1]]
}

/// The box around all of `list` (not empty).
fn union_all(list: &[[f64; 4]]) -> [f64; 4] {
    list[1..].iter().fold(list[0], |a, b| crate::geo::bbox_union(a, *b))
}

/// The areas a change redraws, without repeats, as one when there are many (a light sweep at
/// start-up can turn thousands of cases).
pub fn areas(mut list: Vec<[f64; 4]>) -> Vec<[f64; 4]> {
    list.dedup();
    if list.len() > AREAS_ONE_BY_ONE { vec![union_all(&list)] } else { list }
}

/// The areas a record change redraws: where it was and where it is.
pub fn moved(old: Option<&AABB<[f64; 2]>>, new: Option<&AABB<[f64; 2]>>) -> Vec<[f64; 4]> {
    let mut out: Vec<[f64; 4]> = old.into_iter().map(bbox_of).collect();
    if let Some(n) = new.map(bbox_of)
        && !out.contains(&n)
    {
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
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
        live.commit(vec![Change::committed(seq, r, vec![moved.clone().item()])], live.in_flight()).await.unwrap();
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
        live.commit(vec![Change::committed(seq, own, Vec::new())], live.in_flight()).await.unwrap();
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
        live.commit(vec![Change::committed(seq, r, vec![case.clone().item()])], live.in_flight()).await.unwrap();
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

    #[tokio::test]
    async fn a_follower_behind_the_retained_log_reloads_the_city_and_says_resync() {
        // The index holds a city the store does not: a reload is seen in the layer counts.
        let (live, _) = live_over_empty_store("reload", 0.02).await;
        assert!(!live.index.grids.read().is_empty());
        let store = live.store().clone();
        let rows = (0..3).map(|i| row(Collection::Cases, &i.to_string(), Some("case.updated"), Vec::new())).collect();
        assert_eq!(store.append_changes(rows).await.unwrap(), [1, 2, 3]);
        assert_eq!(store.prune_changes(Utc::now() + chrono::Duration::days(1)).await.unwrap(), 2);
        let mut rx = live.feed.subscribe();
        live.catch_up(None).await.unwrap();
        assert_eq!(live.index.grids.read().len(), 0, "the layers are the store's now");
        let first = rx.try_recv().unwrap();
        assert_eq!((first.name.as_str(), first.seq), ("resync", 2), "told to resynchronise from the pruned head");
        let next = rx.try_recv().unwrap();
        assert_eq!((next.name.as_str(), next.seq), ("case.updated", 3), "then the retained change");
        assert_eq!(live.applied(), 3);
    }
}
