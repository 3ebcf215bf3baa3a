//! Counts per map cell at every aggregation level of a point layer (a count pyramid), kept up to
//! date with the layer, so an aggregated tile reads at most 4,096 cells instead of scanning the
//! million records under a low-zoom tile of a ten-million-component city.
//!
//! Positions are web-mercator fixed point, 2^32 units across the world (x east, y south, as tile
//! rows count), so a cell's sum of positions is exact integer arithmetic: adding and removing
//! records for days never drifts. A cell of level `L` is a square of the 2^L × 2^L world grid;
//! an aggregated tile of zoom `z` has 64 × 64 cells of level `z + 6`. Cells are keyed by Morton
//! (Z-order) code, so the cells of one tile form one contiguous key range.

use std::collections::BTreeMap;

use rstar::AABB;

use crate::geo::tile::{world_x, world_y};

/// Cells across an aggregated tile: 2^6 = 64.
pub const CELL_BITS: u8 = 6;

/// A record's position as fixed point: web mercator scaled to 2^32 units across the world, by
/// the same projection that assigns tiles ([`world_x`], [`world_y`]).
pub fn fixed(lon: f64, lat: f64) -> (u32, u32) {
    let scale = |f: f64| (f * 4_294_967_296.0).clamp(0.0, u32::MAX as f64) as u32;
    (scale(world_x(lon)), scale(world_y(lat)))
}

/// The fixed-point position of a record: the centre of its envelope.
pub fn fixed_centre(env: &AABB<[f64; 2]>) -> (u32, u32) {
    fixed((env.lower()[0] + env.upper()[0]) / 2.0, (env.lower()[1] + env.upper()[1]) / 2.0)
}

/// Spreads the low 32 bits of `v` to the even bits of a u64.
fn spread(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Morton code of a cell: x bits even, y bits odd.
pub fn morton(cx: u32, cy: u32) -> u64 {
    spread(cx) | (spread(cy) << 1)
}

/// The Morton key of the level-`level` cell holding a fixed-point position.
pub fn cell_key(p: (u32, u32), level: u8) -> u64 {
    let shift = 32 - level as u32;
    morton(p.0 >> shift, p.1 >> shift)
}

/// A cell's records: how many, and the sums of their fixed-point positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    pub n: u64,
    pub sx: u64,
    pub sy: u64,
}

impl Cell {
    pub fn add(&mut self, p: (u32, u32)) {
        self.n += 1;
        self.sx += p.0 as u64;
        self.sy += p.1 as u64;
    }
    fn merge(&mut self, o: &Cell) {
        self.n += o.n;
        self.sx += o.sx;
        self.sy += o.sy;
    }
}

/// Cells of the levels `min_level..=max_level`.
#[derive(Debug, Default)]
pub struct CountPyramid {
    min_level: u8,
    levels: Vec<BTreeMap<u64, Cell>>,
}

impl CountPyramid {
    /// Builds the pyramid of fixed-point positions for aggregated tiles of zooms `0..below`.
    pub fn build(points: impl Iterator<Item = (u32, u32)>, below: u8) -> CountPyramid {
        let (min_level, max_level) = (CELL_BITS, below - 1 + CELL_BITS);
        // Finest level first, from sorted keys; each coarser level merges runs of the finer one.
        let mut keyed: Vec<(u64, (u32, u32))> = points.map(|p| (cell_key(p, max_level), p)).collect();
        keyed.sort_unstable_by_key(|k| k.0);
        let mut level: Vec<(u64, Cell)> = Vec::new();
        for (key, p) in keyed {
            match level.last_mut() {
                Some((k, c)) if *k == key => c.add(p),
                _ => {
                    let mut c = Cell::default();
                    c.add(p);
                    level.push((key, c));
                }
            }
        }
        let mut levels = Vec::with_capacity((max_level - min_level + 1) as usize);
        loop {
            let coarser = merge_up(&level);
            levels.push(level.into_iter().collect::<BTreeMap<_, _>>());
            if levels.len() == (max_level - min_level + 1) as usize {
                break;
            }
            level = coarser;
        }
        levels.reverse();
        CountPyramid { min_level, levels }
    }

    fn level_mut(&mut self, level: u8) -> &mut BTreeMap<u64, Cell> {
        &mut self.levels[(level - self.min_level) as usize]
    }

    fn max_level(&self) -> u8 {
        self.min_level + self.levels.len() as u8 - 1
    }

    pub fn add(&mut self, p: (u32, u32)) {
        for level in self.min_level..=self.max_level() {
            self.level_mut(level).entry(cell_key(p, level)).or_default().add(p);
        }
    }

    pub fn remove(&mut self, p: (u32, u32)) {
        for level in self.min_level..=self.max_level() {
            let key = cell_key(p, level);
            let cells = self.level_mut(level);
            if let Some(c) = cells.get_mut(&key) {
                c.n -= 1;
                c.sx -= p.0 as u64;
                c.sy -= p.1 as u64;
                if c.n == 0 {
                    cells.remove(&key);
                }
            }
        }
    }

    /// The non-empty cells of the aggregated tile (z, x, y) in Morton order, `None` when the
    /// pyramid does not cover zoom `z`.
    pub fn tile_cells(&self, z: u8, x: u32, y: u32) -> Option<impl Iterator<Item = (&u64, &Cell)>> {
        let level = z + CELL_BITS;
        if level < self.min_level || level > self.max_level() {
            return None;
        }
        let first = morton(x, y) << (2 * CELL_BITS as u32);
        let end = (morton(x, y) + 1) << (2 * CELL_BITS as u32);
        Some(self.levels[(level - self.min_level) as usize].range(first..end))
    }
}

/// The next coarser level of a sorted level.
fn merge_up(level: &[(u64, Cell)]) -> Vec<(u64, Cell)> {
    let mut out: Vec<(u64, Cell)> = Vec::new();
    for (key, c) in level {
        let parent = key >> 2;
        match out.last_mut() {
            Some((k, acc)) if *k == parent => acc.merge(c),
            _ => out.push((parent, *c)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morton_keeps_a_tiles_cells_together() {
        // Cell (65, 130) at level z+6 lies in tile (1, 2).
        let k = morton(65, 130);
        let (lo, hi) = (morton(1, 2) << 12, (morton(1, 2) + 1) << 12);
        assert!(lo <= k && k < hi);
        assert!(!(lo..hi).contains(&morton(64 + 64, 130)));
    }

    #[test]
    fn updates_match_a_rebuild() {
        let pts: Vec<(u32, u32)> =
            (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761), i.wrapping_mul(40_503) << 12)).collect();
        let mut p = CountPyramid::build(pts[..4000].iter().copied(), 16);
        for &q in &pts[4000..] {
            p.add(q);
        }
        for &q in &pts[..1000] {
            p.remove(q);
        }
        let rebuilt = CountPyramid::build(pts[1000..].iter().copied(), 16);
        assert_eq!(p.levels, rebuilt.levels);
        let total: u64 = p.levels[0].values().map(|c| c.n).sum();
        assert_eq!(total, 4000);
        assert_eq!(p.tile_cells(0, 0, 0).unwrap().map(|(_, c)| c.n).sum::<u64>(), 4000);
        assert!(p.tile_cells(16, 0, 0).is_none());
    }

    #[test]
    fn fixed_point_matches_tile_math() {
        for (lon, lat) in [(116.3975, 39.9087), (88.88, 29.27), (-70.1, -33.4), (0.0, 0.0)] {
            let (x, y) = fixed(lon, lat);
            for z in [1u8, 5, 10, 15, 20] {
                let t = crate::geo::tile::tiles_covering([lon, lat, lon, lat], z).next().unwrap();
                assert_eq!((x >> (32 - z), y >> (32 - z)), (t.x, t.y), "{lon},{lat} z{z}");
            }
        }
    }
}
