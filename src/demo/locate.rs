//! Which unit grid holds a point: an R-tree over grid bounding boxes, then an exact
//! point-in-ring test on the few candidates, on the lon/lat rings the city stores.

use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};

use super::layout::NONE;
use super::planar::{P, in_ring};

pub(super) struct GridIndex {
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>,
    /// Exterior rings in lon/lat, without the closing vertex.
    rings: Vec<Vec<P>>,
}

impl GridIndex {
    pub fn new(rings: Vec<Vec<P>>) -> Self {
        let boxes = rings
            .iter()
            .enumerate()
            .map(|(g, r)| {
                let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
                for p in r {
                    for k in 0..2 {
                        lo[k] = lo[k].min(p[k]);
                        hi[k] = hi[k].max(p[k]);
                    }
                }
                GeomWithData::new(Rectangle::from_corners(lo, hi), g as u32)
            })
            .collect();
        GridIndex { tree: RTree::bulk_load(boxes), rings }
    }

    pub fn contains(&self, g: u32, p: P) -> bool {
        in_ring(&self.rings[g as usize], p)
    }

    /// The grid holding `p` (lon/lat), the lowest index if a boundary point hits two.
    pub fn locate(&self, p: P) -> Option<u32> {
        self.tree.locate_all_at_point(&p).map(|e| e.data).filter(|&g| self.contains(g, p)).min()
    }

    /// Like [`Self::locate`], trying the grids of the lattice cell the point was aimed at first,
    /// which settles nearly every component without touching the tree.
    pub fn locate_hinted(&self, p: P, hints: [u32; 2]) -> Option<u32> {
        let a = hints[0] != NONE && self.contains(hints[0], p);
        let b = hints[1] != NONE && self.contains(hints[1], p);
        match (a, b) {
            (true, false) => Some(hints[0]),
            (false, true) => Some(hints[1]),
            _ => self.locate(p),
        }
    }
}
