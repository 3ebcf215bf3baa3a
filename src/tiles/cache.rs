//! Rendered tiles kept in memory with exact invalidation: a change to a layer drops, at every
//! zoom, only the cached tiles of that layer whose buffered bounds meet the changed envelope.
//!
//! A tile is cached per (z, x, y) and per *variant*, the canonical form of the requested layers
//! and filters, together with the set of collections it was drawn from. Entries hold the MVT body
//! both raw and gzipped, so a hit costs a hash lookup and no compression.
//!
//! Renders race with changes. Every invalidation bumps a generation; a render records the
//! generation before it reads the index and its result is only stored if no invalidation
//! happened meanwhile, so a tile rendered from data older than a change never outlives it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::geo::tile::{MAX_ZOOM, TileCoord, lonlat_to_mercator, mercator_to_lonlat, tiles_covering};

/// The collections tiles are drawn from, as bits of a mask.
pub const SOURCES: [&str; 9] =
    ["districts", "streets", "communities", "grids", "components", "cases", "sensors", "staff", "cameras"];

/// A mask of [`SOURCES`].
pub type Sources = u16;

/// Every source.
pub const ALL_SOURCES: Sources = Sources::MAX;

/// The mask bit of a source collection (0 for an unknown name, which then matches nothing).
pub fn source_bit(collection: &str) -> Sources {
    SOURCES.iter().position(|s| *s == collection).map(|i| 1 << i).unwrap_or(0)
}

/// A rendered tile: the MVT bytes (empty for a tile without features), the same gzipped, and
/// the strong ETag of the bytes.
#[derive(Debug)]
pub struct Rendered {
    pub raw: Bytes,
    pub gzip: Bytes,
    pub etag: String,
}

impl Rendered {
    /// Wraps freshly encoded MVT bytes (`None`: no feature in the tile).
    pub fn new(body: Option<Vec<u8>>) -> Rendered {
        let raw = Bytes::from(body.unwrap_or_default());
        let gzip = if raw.is_empty() { Bytes::new() } else { Bytes::from(gzip(&raw)) };
        // XXH3 over the bytes: equal tiles get equal tags whichever process rendered them.
        let hash = xxhash_rust::xxh3::xxh3_64(&raw);
        let etag = format!("\"{hash:016x}-{}\"", raw.len());
        Rendered { raw, gzip, etag }
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    fn cost(&self) -> usize {
        self.raw.len() + self.gzip.len() + ENTRY_OVERHEAD
    }
}

/// Fast gzip: tiles are served many times, but rendered right before the first request waits.
/// Level 1 of libdeflate, with a compressor kept per thread.
pub fn gzip(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        static GZIP: std::cell::RefCell<libdeflater::Compressor> =
            // Level 1: libdeflate's `fastest()` is level 0, stored blocks without compression.
            std::cell::RefCell::new(libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).expect("a level")));
    }
    GZIP.with_borrow_mut(|c| {
        let mut out = vec![0; c.gzip_compress_bound(raw.len())];
        let n = c.gzip_compress(raw, &mut out).expect("the bound fits any input");
        out.truncate(n);
        out
    })
}

/// Bookkeeping per entry beyond its bytes (key, variant, map slots), for the memory budget.
const ENTRY_OVERHEAD: usize = 160;

struct Entry {
    variant: Arc<str>,
    sources: Sources,
    tile: Arc<Rendered>,
    last_used: AtomicU64,
}

/// Cached tiles of one zoom level by (x, y).
type Level = HashMap<(u32, u32), Vec<Entry>>;

pub struct TileCache {
    max_bytes: usize,
    bytes: AtomicUsize,
    generation: AtomicU64,
    tick: AtomicU64,
    levels: Vec<Mutex<Level>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl TileCache {
    /// A cache holding up to `max_mb` megabytes of tiles; 0 turns caching off.
    pub fn new(max_mb: usize) -> TileCache {
        TileCache {
            max_bytes: max_mb * 1024 * 1024,
            bytes: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            tick: AtomicU64::new(0),
            levels: (0..=MAX_ZOOM).map(|_| Mutex::new(Level::new())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Bytes held now.
    pub fn size(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Read before rendering; hand back to [`TileCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, t: TileCoord, variant: &str) -> Option<Arc<Rendered>> {
        if !self.enabled() {
            return None;
        }
        let level = self.levels[t.z as usize].lock();
        let found = level.get(&(t.x, t.y)).and_then(|es| es.iter().find(|e| &*e.variant == variant)).map(|e| {
            e.last_used.store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
            e.tile.clone()
        });
        drop(level);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a tile rendered from data read after `generation` was taken, unless something was
    /// invalidated since.
    pub fn put(&self, t: TileCoord, variant: &str, sources: Sources, tile: Arc<Rendered>, generation: u64) {
        if !self.enabled() || tile.cost() > self.max_bytes / 8 {
            return;
        }
        let cost = tile.cost();
        {
            let mut level = self.levels[t.z as usize].lock();
            // Checked under the level lock, which invalidation also takes: an invalidation
            // either finished before (and bumped the generation first) or runs after and
            // removes this entry.
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            let entries = level.entry((t.x, t.y)).or_default();
            let last_used = AtomicU64::new(self.tick.fetch_add(1, Ordering::Relaxed));
            if let Some(e) = entries.iter_mut().find(|e| &*e.variant == variant) {
                self.bytes.fetch_sub(e.tile.cost(), Ordering::Relaxed);
                e.tile = tile;
                e.last_used = last_used;
            } else {
                entries.push(Entry { variant: variant.into(), sources, tile, last_used });
            }
        }
        if self.bytes.fetch_add(cost, Ordering::Relaxed) + cost > self.max_bytes {
            self.evict();
        }
    }

    /// Drops, at every zoom, the cached tiles drawn from any of the `sources` whose bounds grown
    /// by the tile buffer meet `bbox` (lon/lat). Returns the number of tiles dropped.
    pub fn invalidate(&self, sources: Sources, bbox: [f64; 4]) -> usize {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut dropped = 0;
        for z in 0..=MAX_ZOOM {
            let mut level = self.levels[z as usize].lock();
            if level.is_empty() {
                continue;
            }
            let grown = grow_by_buffer(bbox, z);
            let mut drop_at = |level: &mut Level, key: (u32, u32)| {
                if let Some(entries) = level.get_mut(&key) {
                    entries.retain(|e| {
                        let keep = e.sources & sources == 0;
                        if !keep {
                            self.bytes.fetch_sub(e.tile.cost(), Ordering::Relaxed);
                            dropped += 1;
                        }
                        keep
                    });
                    if entries.is_empty() {
                        level.remove(&key);
                    }
                }
            };
            let [w, s, e, n] = grown;
            let (x0, y0) = tile_xy(w, n, z);
            let (x1, y1) = tile_xy(e, s, z);
            let span = (x1 - x0 + 1) as u64 * (y1 - y0 + 1) as u64;
            if span <= level.len() as u64 {
                for t in tiles_covering(grown, z) {
                    drop_at(&mut level, (t.x, t.y));
                }
            } else {
                // A large area at a deep zoom: fewer cached tiles than covering ones.
                let keys: Vec<(u32, u32)> =
                    level.keys().copied().filter(|&(x, y)| (x0..=x1).contains(&x) && (y0..=y1).contains(&y)).collect();
                for key in keys {
                    drop_at(&mut level, key);
                }
            }
        }
        dropped
    }

    /// Cached (z, x, y, variant) keys, for tests and diagnostics.
    pub fn keys(&self) -> Vec<(u8, u32, u32, String)> {
        let mut out = Vec::new();
        for (z, level) in self.levels.iter().enumerate() {
            for (&(x, y), entries) in level.lock().iter() {
                out.extend(entries.iter().map(|e| (z as u8, x, y, e.variant.to_string())));
            }
        }
        out
    }

    /// Brings the cache to 3/4 of its budget by dropping the least recently used tiles.
    fn evict(&self) {
        // (last use, zoom, tile, variant)
        type Use = (u64, u8, (u32, u32), Arc<str>);
        let mut all: Vec<Use> = Vec::new();
        for (z, level) in self.levels.iter().enumerate() {
            for (k, entries) in level.lock().iter() {
                all.extend(
                    entries.iter().map(|e| (e.last_used.load(Ordering::Relaxed), z as u8, *k, e.variant.clone())),
                );
            }
        }
        all.sort_unstable_by_key(|e| e.0);
        let target = self.max_bytes / 4 * 3;
        for (_, z, key, variant) in all {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            let mut level = self.levels[z as usize].lock();
            if let Some(entries) = level.get_mut(&key) {
                if let Some(i) = entries.iter().position(|e| e.variant == variant) {
                    let e = entries.swap_remove(i);
                    self.bytes.fetch_sub(e.tile.cost(), Ordering::Relaxed);
                }
                if entries.is_empty() {
                    level.remove(&key);
                }
            }
        }
    }
}

/// `bbox` grown by the tile buffer at zoom `z`: a tile's buffered bounds meet `bbox` exactly
/// when the tile itself meets the grown box.
pub fn grow_by_buffer(bbox: [f64; 4], z: u8) -> [f64; 4] {
    let pad = super::buffer_m(z);
    let (x0, y0) = lonlat_to_mercator(bbox[0], bbox[1]);
    let (x1, y1) = lonlat_to_mercator(bbox[2], bbox[3]);
    let (w, s) = mercator_to_lonlat(x0 - pad, y0 - pad);
    let (e, n) = mercator_to_lonlat(x1 + pad, y1 + pad);
    [w.max(-180.0), s, e.min(180.0), n]
}

/// The tile holding a lon/lat at zoom `z`, clamped to the world.
fn tile_xy(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let t = tiles_covering([lon, lat, lon, lat], z).next();
    t.map(|t| (t.x, t.y)).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(bytes: &[u8]) -> Arc<Rendered> {
        Arc::new(Rendered::new(Some(bytes.to_vec())))
    }

    #[test]
    fn gzip_compresses_and_round_trips() {
        use std::io::Read;
        let raw: Vec<u8> = (0..20_000u32).flat_map(|i| [b'a' + (i % 7) as u8, b'0' + (i % 3) as u8]).collect();
        let packed = gzip(&raw);
        assert!(packed.len() * 10 < raw.len(), "{} bytes from {}", packed.len(), raw.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, raw);
    }

    #[test]
    fn invalidation_drops_only_covering_tiles_of_the_changed_source() {
        let cache = TileCache::new(64);
        let p = [89.0, 29.27];
        let cases = source_bit("cases");
        let grids = source_bit("grids");
        let mut near = Vec::new();
        for z in 10..=18u8 {
            let t = tiles_covering([p[0], p[1], p[0], p[1]], z).next().unwrap();
            let far = TileCoord::new(z as u32, t.x + 3, t.y).unwrap();
            let g = cache.generation();
            cache.put(t, "cases", cases, tile(b"a"), g);
            cache.put(t, "grids", grids, tile(b"b"), g);
            cache.put(far, "cases", cases, tile(b"c"), g);
            near.push(t);
        }
        assert_eq!(cache.keys().len(), 27);
        let dropped = cache.invalidate(cases, [p[0], p[1], p[0], p[1]]);
        assert_eq!(dropped, 9);
        for t in near {
            assert!(cache.get(t, "cases").is_none());
            assert!(cache.get(t, "grids").is_some(), "other sources stay");
            let far = TileCoord::new(t.z as u32, t.x + 3, t.y).unwrap();
            assert!(cache.get(far, "cases").is_some(), "tiles elsewhere stay");
        }
    }

    #[test]
    fn a_render_that_raced_an_invalidation_is_not_kept() {
        let cache = TileCache::new(64);
        let t = TileCoord::new(14, 12_236, 6_793).unwrap();
        let g = cache.generation();
        cache.invalidate(source_bit("cases"), [0.0, 0.0, 0.0, 0.0]);
        cache.put(t, "cases", source_bit("cases"), tile(b"stale"), g);
        assert!(cache.get(t, "cases").is_none());
    }

    #[test]
    fn the_budget_is_kept_by_dropping_the_least_recently_used() {
        let cache = TileCache::new(1);
        let body = vec![7u8; 20_000];
        for x in 0..200 {
            let t = TileCoord::new(16, x, 0).unwrap();
            cache.put(t, "v", 1, tile(&body), cache.generation());
            // Keep tile 0 in use.
            cache.get(TileCoord::new(16, 0, 0).unwrap(), "v");
        }
        assert!(cache.size() <= 1024 * 1024, "{}", cache.size());
        assert!(cache.get(TileCoord::new(16, 0, 0).unwrap(), "v").is_some());
        assert!(cache.get(TileCoord::new(16, 1, 0).unwrap(), "v").is_none());
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let cache = TileCache::new(0);
        let t = TileCoord::new(3, 1, 1).unwrap();
        cache.put(t, "v", 1, tile(b"x"), cache.generation());
        assert!(cache.get(t, "v").is_none());
    }
}
