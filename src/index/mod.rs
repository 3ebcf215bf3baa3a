//! The live in-memory index: one R-tree per layer, bulk-loaded from the store at start-up and
//! updated in place on every change (insert, move, remove) without a rebuild. Queries are an
//! envelope search in the tree followed by exact refinement with `geo`.

mod projected;
pub mod pyramid;
pub mod query;
mod record;

pub use projected::Projected;
pub use record::{GeomRef, PropValue, Record};

/// Runs `$body` with `$layer` bound to the read-locked layer of feature collection `$c` (a
/// [`crate::model::Collection`]), or evaluates `$other` for one the index does not hold.
macro_rules! with_layer {
    ($index:expr, $c:expr, |$layer:ident| $body:expr, $other:expr) => {
        $crate::model::with_model!(
            $c,
            |T| {
                let $layer = &*<T as $crate::index::Layered>::layer(&$index).read();
                $body
            },
            $other
        )
    };
}
pub(crate) use with_layer;

use std::hash::BuildHasher;

use geo::{Geometry, Intersects};
use hashbrown::HashTable;
use rstar::{AABB, RTree, RTreeObject};

use crate::model::Str;
use pyramid::{CountPyramid, fixed_centre};

/// What the R-tree holds: a feature's envelope, the slot of the feature in the layer, and the
/// feature's tag (see [`Record::tag`]; it fills what would be padding), so aggregations over a
/// region can count points by class and status from the tree alone, without visiting records
/// scattered over gigabytes.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    env: AABB<[f64; 2]>,
    slot: u32,
    tag: u32,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

/// One layer of the city: its records in slots, a key → slot map for feature ids, and the R-tree.
///
/// Slots keep their order (spatial order at load, see [`Layer::bulk`], then append order), which
/// gives paging a stable order without sorting the whole layer on every request.
///
/// The key map stores only slot numbers and compares keys through the records themselves: at
/// ten million components a `HashMap<String, u32>` would cost half a gigabyte more.
pub struct Layer<T> {
    items: Vec<Option<T>>,
    keys: HashTable<u32>,
    hasher: std::hash::RandomState,
    free: Vec<u32>,
    tree: RTree<Entry>,
    /// Counts per cell for aggregated tiles, in layers drawn aggregated at low zooms.
    counts: Option<CountPyramid>,
    /// The distinct tags of the layer's records, by tag id (0: no tag), and their ids.
    tags: Vec<[Str; 2]>,
    tag_ids: std::collections::HashMap<[Str; 2], u32>,
    /// The polygonal records' rings projected for tiles, by slot (see [`Projected`]).
    projected: hashbrown::HashMap<u32, Projected>,
}

impl<T> Default for Layer<T> {
    fn default() -> Self {
        Layer {
            items: Vec::new(),
            keys: HashTable::new(),
            hasher: Default::default(),
            free: Vec::new(),
            tree: RTree::new(),
            counts: None,
            tags: vec![[Str::default(), Str::default()]],
            tag_ids: Default::default(),
            projected: Default::default(),
        }
    }
}

impl<T: Record> Layer<T> {
    /// Builds a layer in one pass with rstar's bulk load, far faster than repeated inserts.
    ///
    /// Records are laid out in Morton order of their envelope centres (ties keep the order given):
    /// the records a map tile or an area query visits then sit together in memory, where in load
    /// order each of a tile's thousand records would be a cache miss of its own.
    pub fn bulk(mut records: Vec<T>) -> Self {
        use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
        use rayon::slice::ParallelSliceMut;
        records.par_sort_by_cached_key(|r| pyramid::cell_key(fixed_centre(&r.envelope()), 32));
        let mut layer = Layer::default();
        let entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Entry { env: r.envelope(), slot: i as u32, tag: layer.tag_id(r) })
            .collect();
        layer.counts =
            T::AGGREGATE_BELOW.map(|below| CountPyramid::build(entries.iter().map(|e| fixed_centre(&e.env)), below));
        layer.projected = records
            .par_iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i as u32, Projected::of(r.geom_ref())?)))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        layer.items = records.into_iter().map(Some).collect();
        layer.tree = RTree::bulk_load(entries);
        let Layer { items, keys, hasher, .. } = &mut layer;
        keys.reserve(items.len(), |&s| slot_hash(hasher, items, s));
        for slot in 0..items.len() as u32 {
            let key = key_of(items, slot).expect("bulk slots are full");
            let h = hasher.hash_one(key.as_str());
            // A duplicate key (the stores' unique constraints forbid it) keeps the first record
            // findable by id rather than corrupting the map.
            if keys.find(h, |&s| items[s as usize].as_ref().is_some_and(|r| r.has_key(&key))).is_none() {
                keys.insert_unique(h, slot, |&s| slot_hash(hasher, items, s));
            }
        }
        layer
    }

    /// The tag id of a record, interning its tag on first sight.
    fn tag_id(&mut self, r: &T) -> u32 {
        let Some([a, b]) = r.tag() else { return 0 };
        if let Some(&id) = self.tag_ids.get(&[Str::from(a), Str::from(b)]) {
            return id;
        }
        let key = [Str::from(a), Str::from(b)];
        let id = self.tags.len() as u32;
        self.tags.push(key.clone());
        self.tag_ids.insert(key, id);
        id
    }

    /// The tag of tag id `id`.
    pub fn tag(&self, id: u32) -> &[Str; 2] {
        &self.tags[id as usize]
    }

    fn slot_of(&self, key: &str) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.keys.find(h, |&s| self.items[s as usize].as_ref().is_some_and(|r| r.has_key(key))).copied()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The bounding box `[minx, miny, maxx, maxy]` of the whole layer, `None` when empty.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        (!self.is_empty()).then(|| {
            let e = self.tree.root().envelope();
            [e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1]]
        })
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.slot_of(key).and_then(|s| self.items[s as usize].as_ref())
    }

    /// The slot of the record with `key`: four bytes that find it again cheaply, so a long read
    /// (an export) can note its matches under one short lock and fetch them under others.
    pub fn slot(&self, key: &str) -> Option<u32> {
        self.slot_of(key)
    }

    /// The record in `slot`, if the slot is in use.
    pub fn at_slot(&self, slot: u32) -> Option<&T> {
        self.items.get(slot as usize)?.as_ref()
    }

    /// Inserts a record, or replaces (and moves in the tree) the one with the same key.
    /// Returns the previous record, whose envelope tells caches what to invalidate.
    pub fn upsert(&mut self, record: T) -> Option<T> {
        let key = record.key();
        let env = record.envelope();
        let tag = self.tag_id(&record);
        let projected = Projected::of(record.geom_ref());
        if let Some(slot) = self.slot_of(&key) {
            self.set_projected(slot, projected);
            let old = self.items[slot as usize].replace(record);
            if let Some(o) = &old {
                let old_tag = self.tag_id(o);
                self.tree.remove(&Entry { env: o.envelope(), slot, tag: old_tag });
                if let Some(c) = &mut self.counts {
                    c.remove(fixed_centre(&o.envelope()));
                }
            }
            self.tree.insert(Entry { env, slot, tag });
            if let Some(c) = &mut self.counts {
                c.add(fixed_centre(&env));
            }
            old
        } else {
            let slot = match self.free.pop() {
                Some(s) => {
                    self.items[s as usize] = Some(record);
                    s
                }
                None => {
                    self.items.push(Some(record));
                    (self.items.len() - 1) as u32
                }
            };
            let Layer { items, keys, hasher, .. } = self;
            keys.insert_unique(hasher.hash_one(key.as_str()), slot, |&s| slot_hash(hasher, items, s));
            self.set_projected(slot, projected);
            self.tree.insert(Entry { env, slot, tag });
            if let Some(c) = &mut self.counts {
                c.add(fixed_centre(&env));
            }
            None
        }
    }

    /// Removes the record with this key from the slots, the key map and the tree.
    pub fn remove(&mut self, key: &str) -> Option<T> {
        let h = self.hasher.hash_one(key);
        let Layer { items, keys, .. } = self;
        let slot = keys.find_entry(h, |&s| items[s as usize].as_ref().is_some_and(|r| r.has_key(key))).ok()?.remove().0;
        let old = self.items[slot as usize].take()?;
        self.projected.remove(&slot);
        let tag = self.tag_id(&old);
        self.tree.remove(&Entry { env: old.envelope(), slot, tag });
        if let Some(c) = &mut self.counts {
            c.remove(fixed_centre(&old.envelope()));
        }
        self.free.push(slot);
        Some(old)
    }

    fn set_projected(&mut self, slot: u32, projected: Option<Projected>) {
        match projected {
            Some(p) => self.projected.insert(slot, p),
            None => self.projected.remove(&slot),
        };
    }

    /// The projected rings of the polygonal record in `slot`.
    pub fn projected(&self, slot: u32) -> Option<&Projected> {
        self.projected.get(&slot)
    }

    /// Changes the record with `key` in place. `f` must leave what the tree, the key map and
    /// the projected rings rest on alone (key, geometry, tag): it is for derived state such as a
    /// case's light.
    pub fn update_in_place(&mut self, key: &str, f: impl FnOnce(&mut T)) {
        if let Some(slot) = self.slot_of(key)
            && let Some(r) = self.items[slot as usize].as_mut()
        {
            f(r);
        }
    }

    /// Every record, mutably, for derived state only (as [`Layer::update_in_place`]).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut().flatten()
    }

    /// The count pyramid of a layer drawn aggregated at low zooms.
    pub fn counts(&self) -> Option<&CountPyramid> {
        self.counts.as_ref()
    }

    /// Every record in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    /// Every record, on every core, in pieces of at least 64 Ki slots (a piece's work must
    /// outweigh what it sets up, such as a vector of counts per unit). `filter_map`, not
    /// `flatten`: rayon folds each flattened item on its own, which set up such a vector for
    /// every record.
    pub fn par_iter(&self) -> impl rayon::iter::ParallelIterator<Item = &T> {
        use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
        self.items.par_iter().with_min_len(1 << 16).filter_map(Option::as_ref)
    }

    /// Slots whose envelope meets `env`, ascending (so results keep the layer's stable order).
    fn slots_in(&self, env: &AABB<[f64; 2]>) -> Vec<u32> {
        let mut slots: Vec<u32> = self.tree.locate_in_envelope_intersecting(env).map(|e| e.slot).collect();
        slots.sort_unstable();
        slots
    }

    /// How many records' envelopes meet the bbox, counting no further than `limit`.
    pub fn count_in(&self, bbox: [f64; 4], limit: usize) -> usize {
        self.tree.locate_in_envelope_intersecting(&aabb(bbox)).take(limit).count()
    }

    /// Records whose envelope meets the bbox `[minx, miny, maxx, maxy]`, with their slots,
    /// without the exact test: for tiles, whose clipping drops what only the envelope reaches.
    pub fn envelope_in(&self, bbox: [f64; 4]) -> impl Iterator<Item = (u32, &T)> {
        self.slots_in(&aabb(bbox)).into_iter().filter_map(|s| Some((s, self.items[s as usize].as_ref()?)))
    }

    /// Records whose envelope meets the bbox `[minx, miny, maxx, maxy]`, then whose geometry does.
    pub fn in_bbox(&self, bbox: [f64; 4]) -> Vec<&T> {
        let rect: Geometry<f64> = geo::Rect::new((bbox[0], bbox[1]), (bbox[2], bbox[3])).into();
        self.envelope_in(bbox).map(|(_, r)| r).filter(|r| r.intersects(&rect)).collect()
    }

    /// Records whose envelope meets the bbox, with their envelope centres, without exact
    /// refinement: for aggregations that only need a representative point.
    pub fn in_envelope(&self, bbox: [f64; 4]) -> Vec<(&T, [f64; 2])> {
        self.tree
            .locate_in_envelope_intersecting(&aabb(bbox))
            .filter_map(|e| self.items[e.slot as usize].as_ref().map(|r| (r, rstar::Envelope::center(&e.env))))
            .collect()
    }

    /// Records whose geometry intersects `g` (points inside or on the boundary count).
    pub fn intersecting(&self, g: &Geometry<f64>) -> Vec<&T> {
        let Some(env) = envelope_of(g) else {
            return Vec::new();
        };
        self.slots_in(&env)
            .into_iter()
            .filter_map(|s| self.items[s as usize].as_ref())
            .filter(|r| r.intersects(g))
            .collect()
    }

    /// Calls `f` with every record whose geometry intersects `g`, in no particular order: for
    /// aggregations, which need neither the list nor the layer's order.
    pub fn for_each_intersecting<'a>(&'a self, g: &Geometry<f64>, mut f: impl FnMut(&'a T)) {
        self.visit_part(g, 0, 1, |e| {
            if let Some(r) = self.items[e.slot as usize].as_ref()
                && r.intersects(g)
            {
                f(r)
            }
        })
    }

    /// Counts by tag id of the records that intersect `g` and whose envelope starts in the
    /// `part`-th of `parts` vertical strips of `g`'s envelope (those starting west of it in the
    /// first): each record belongs to one strip, so threads can share one large query. Points
    /// are tested on their envelope, which is the point, without visiting the record; `other`
    /// is called with each other record that counts.
    pub fn count_tags_part<'a>(
        &'a self,
        g: &Geometry<f64>,
        part: usize,
        parts: usize,
        mut other: impl FnMut(&'a T),
    ) -> std::collections::HashMap<u32, u64> {
        let mut counts = std::collections::HashMap::new();
        self.visit_part(g, part, parts, |e| {
            let [x0, y0] = e.env.lower();
            let hit = if e.env.lower() == e.env.upper() {
                g.intersects(&geo::Point::new(x0, y0))
            } else {
                match self.items[e.slot as usize].as_ref() {
                    Some(r) if r.intersects(g) => {
                        other(r);
                        true
                    }
                    _ => false,
                }
            };
            if hit {
                *counts.entry(e.tag).or_default() += 1;
            }
        });
        counts
    }

    /// The tree entries of one strip of `g`'s envelope whose envelope meets `g`'s.
    fn visit_part(&self, g: &Geometry<f64>, part: usize, parts: usize, mut f: impl FnMut(&Entry)) {
        let Some(env) = envelope_of(g) else { return };
        let (x0, width) = (env.lower()[0], env.upper()[0] - env.lower()[0]);
        let strip = |x: f64| {
            if width <= 0.0 { 0 } else { (((x - x0) / width * parts as f64).floor().max(0.0) as usize).min(parts - 1) }
        };
        let lo = x0 + width * part as f64 / parts as f64;
        let hi = if part + 1 == parts { env.upper()[0] } else { x0 + width * (part + 1) as f64 / parts as f64 };
        let query = AABB::from_corners([lo, env.lower()[1]], [hi, env.upper()[1]]);
        for e in self.tree.locate_in_envelope_intersecting(&query) {
            if strip(e.env.lower()[0]) == part {
                f(e);
            }
        }
    }

    /// Records whose geometry contains or touches the point, smallest key first, so a point on
    /// an edge shared by two grids always resolves to the same one.
    pub fn at_point(&self, lon: f64, lat: f64) -> Option<&T> {
        let p = geo::Point::new(lon, lat);
        self.tree
            .locate_in_envelope_intersecting(&AABB::from_point([lon, lat]))
            .filter_map(|e| self.items[e.slot as usize].as_ref())
            .filter(|r| r.intersects_point(&p))
            .min_by(|a, b| a.key().cmp(&b.key()))
    }

    /// Records within `radius_m` metres of a point, nearest first, with their distances.
    pub fn within_radius(&self, lon: f64, lat: f64, radius_m: f64) -> Vec<(&T, f64)> {
        let (dlon, dlat) = crate::geo::metres_to_degrees(radius_m, lat);
        let env = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let mut out: Vec<(&T, f64)> = self
            .slots_in(&env)
            .into_iter()
            .filter_map(|s| self.items[s as usize].as_ref())
            .map(|r| (r, r.distance_m(lon, lat)))
            .filter(|(_, d)| *d <= radius_m)
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.key().cmp(&b.0.key())));
        out
    }

    /// The `k` records nearest to a point that satisfy `keep`, by growing a search radius until
    /// `k` are certainly found; exact in metres, unlike a nearest-neighbour walk on raw lon/lat.
    pub fn nearest_where(&self, lon: f64, lat: f64, k: usize, keep: impl Fn(&T) -> bool) -> Vec<(&T, f64)> {
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        let mut radius = 50.0;
        loop {
            let mut found = self.within_radius(lon, lat, radius);
            found.retain(|(r, _)| keep(r));
            // Half the Earth's circumference covers the globe: past it everything has been seen.
            if found.len() >= k || radius > 2.1e7 {
                found.truncate(k);
                return found;
            }
            radius *= 4.0;
        }
    }

    /// The `k` records nearest to a point.
    pub fn nearest(&self, lon: f64, lat: f64, k: usize) -> Vec<(&T, f64)> {
        self.nearest_where(lon, lat, k, |_| true)
    }
}

fn key_of<T: Record>(items: &[Option<T>], slot: u32) -> Option<Str> {
    items[slot as usize].as_ref().map(Record::key)
}

/// Rehashing needs each stored slot's hash again, computed from its record's key.
fn slot_hash<T: Record>(hasher: &std::hash::RandomState, items: &[Option<T>], slot: u32) -> u64 {
    hasher.hash_one(key_of(items, slot).unwrap_or_default().as_str())
}

/// A `[minx, miny, maxx, maxy]` box as the R-tree's envelope.
fn aabb(bbox: [f64; 4]) -> AABB<[f64; 2]> {
    AABB::from_corners([bbox[0], bbox[1]], [bbox[2], bbox[3]])
}

/// The envelope of any geometry as an R-tree box; `None` for an empty geometry.
pub fn envelope_of(g: &Geometry<f64>) -> Option<AABB<[f64; 2]>> {
    use geo::BoundingRect;
    g.bounding_rect().map(|r| AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]))
}

/// Exact intersection test shared by the record impls.
pub(crate) fn geom_intersects<G: Intersects<Geometry<f64>>>(own: &G, other: &Geometry<f64>) -> bool {
    own.intersects(other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grid;
    use geo::polygon;

    fn grid(code: &str, x0: f64, y0: f64) -> Grid {
        Grid {
            code: code.into(),
            name: code.into(),
            community_code: "c".into(),
            area_m2: 1.0,
            geom: polygon![(x: x0, y: y0), (x: x0 + 1.0, y: y0), (x: x0 + 1.0, y: y0 + 1.0), (x: x0, y: y0 + 1.0)],
        }
    }

    #[test]
    fn insert_move_remove_in_place() {
        let mut l = Layer::bulk(vec![grid("b", 0.0, 0.0), grid("a", 1.0, 0.0)]);
        assert_eq!(l.at_point(0.5, 0.5).unwrap().code, "b");
        // A point on the shared edge x = 1 resolves to the smaller code.
        assert_eq!(l.at_point(1.0, 0.5).unwrap().code, "a");
        assert!(l.at_point(5.5, 0.5).is_none());
        // Move "b" far away: the old place is empty, the new one finds it.
        let old = l.upsert(grid("b", 5.0, 0.0)).unwrap();
        assert_eq!(old.geom.exterior().0[0].x, 0.0);
        assert!(l.at_point(0.5, 0.5).is_none());
        assert_eq!(l.at_point(5.5, 0.5).unwrap().code, "b");
        assert_eq!(l.len(), 2);
        l.remove("a");
        assert!(l.at_point(1.5, 0.5).is_none());
        assert_eq!(l.len(), 1);
        l.upsert(grid("c", 1.0, 0.0));
        assert_eq!(l.at_point(1.5, 0.5).unwrap().code, "c");
        assert_eq!(l.iter().count(), 2);
    }

    #[test]
    fn strips_split_a_query_without_overlap() {
        let grids: Vec<Grid> =
            (0..40).map(|i| grid(&format!("g{i:02}"), (i % 8) as f64 * 0.5, (i / 8) as f64)).collect();
        let l = Layer::bulk(grids);
        let sel: Geometry<f64> = geo::Rect::new((0.2, 0.2), (3.3, 3.9)).to_polygon().into();
        let mut all = Vec::new();
        l.for_each_intersecting(&sel, |g| all.push(g.code.clone()));
        let mut parts = Vec::new();
        let mut counted = 0;
        for part in 0..3 {
            counted += l.count_tags_part(&sel, part, 3, |g| parts.push(g.code.clone())).values().sum::<u64>();
        }
        assert_eq!(counted as usize, parts.len());
        all.sort();
        parts.sort();
        assert_eq!(all, parts, "every record once");
        assert_eq!(all.len(), l.intersecting(&sel).len());
    }

    #[test]
    fn tag_counts_follow_the_records_through_changes() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let mut layer = Layer::bulk(city.components.clone());
        let b = layer.bbox().unwrap();
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let sel: Geometry<f64> =
            geo::Polygon::new(vec![(cx - 0.01, cy - 0.01), (cx + 0.012, cy - 0.008), (cx, cy + 0.01)].into(), vec![])
                .into();
        let by_tag = |l: &Layer<crate::model::Component>| {
            let mut m: std::collections::BTreeMap<[Str; 2], u64> = Default::default();
            for part in 0..2 {
                for (tag, n) in l.count_tags_part(&sel, part, 2, |_| {}) {
                    *m.entry(l.tag(tag).clone()).or_default() += n;
                }
            }
            m
        };
        let listed = |l: &Layer<crate::model::Component>| {
            let mut m: std::collections::BTreeMap<[Str; 2], u64> = Default::default();
            for c in l.intersecting(&sel) {
                *m.entry([c.class_code.clone(), c.status.clone()]).or_default() += 1;
            }
            m
        };
        assert!(listed(&layer).values().sum::<u64>() > 10, "the selection holds components");
        assert_eq!(by_tag(&layer), listed(&layer));
        // A status change moves the component to another tag; a removal takes it away.
        let inside: Vec<_> = layer.intersecting(&sel).into_iter().take(2).cloned().collect();
        let mut changed = inside[0].clone();
        changed.status = "丢失".into();
        layer.upsert(changed);
        layer.remove(&inside[1].code);
        assert_eq!(by_tag(&layer), listed(&layer));
    }

    #[test]
    fn bbox_refines_exactly() {
        let l = Layer::bulk(vec![grid("a", 0.0, 0.0), grid("b", 2.0, 0.0)]);
        let hits: Vec<_> = l.in_bbox([0.5, 0.5, 1.5, 0.6]).into_iter().map(|g| g.code.clone()).collect();
        assert_eq!(hits, vec!["a"]);
        assert_eq!(l.in_bbox([-1.0, -1.0, 10.0, 10.0]).len(), 2);
    }
}

mod city;
pub use city::{CityIndex, Dictionaries, Layered, LocationCache, LocationCodes};
