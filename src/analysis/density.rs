//! Kernel density with the quartic (biweight) kernel, as ArcGIS's Kernel Density tool computes
//! it, on a metric grid in the city's Gauss-Krüger zone:
//!
//! D(c) = Σ_i 3 / (π r²) · (1 − (d_i / r)²)², over the points within r of the cell centre c,
//!
//! reported per km². Cells are computed row by row in parallel, each row from the points of its
//! strip (points sorted by northing), so no two threads write one cell.

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use super::memo::Cancel;
use super::{AnalysisError, Filter, Source};
use crate::geo::gauss_kruger::GaussKruger;

/// The most cells one density grid may have (about a 1,700 km² city at 20 m).
pub const MAX_CELLS: usize = 5_000_000;

/// What a density grid is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub source: Source,
    pub filter: Filter,
    pub cell_m: f64,
    pub bandwidth_m: f64,
    /// The box covered, lon/lat.
    pub extent: [f64; 4],
}

/// A density grid, north up: row 0 is the northernmost, column 0 the westernmost.
#[derive(Debug, Clone)]
pub struct Grid {
    pub projection: GaussKruger,
    /// Easting and northing of the grid's south-west corner.
    pub origin: (f64, f64),
    pub cell_m: f64,
    pub bandwidth_m: f64,
    pub cols: usize,
    pub rows: usize,
    /// Points per km², row-major.
    pub values: Vec<f64>,
    pub points: usize,
    pub max: f64,
    pub computed_at: DateTime<Utc>,
}

impl Grid {
    /// The cell centre of column `c`, row `r` (row 0 at the top) in metres.
    pub fn centre(&self, c: usize, r: usize) -> (f64, f64) {
        let x = self.origin.0 + (c as f64 + 0.5) * self.cell_m;
        let y = self.origin.1 + (self.rows as f64 - r as f64 - 0.5) * self.cell_m;
        (x, y)
    }

    /// The value of the cell holding the point (easting, northing), 0 outside the grid.
    pub fn at(&self, x: f64, y: f64) -> f64 {
        let c = ((x - self.origin.0) / self.cell_m).floor();
        let from_bottom = ((y - self.origin.1) / self.cell_m).floor();
        if c < 0.0 || from_bottom < 0.0 || c >= self.cols as f64 || from_bottom >= self.rows as f64 {
            return 0.0;
        }
        self.values[(self.rows - 1 - from_bottom as usize) * self.cols + c as usize]
    }
}

/// Quartic kernel density of `points` (lon, lat) over the box `extent` (lon/lat), in the
/// Gauss-Krüger zone of the box's centre.
/// The most kernel evaluations one density grid may cost by default (points times the cells
/// each one reaches): some seconds of both cores.
pub const MAX_WORK: f64 = 4e9;

/// [`kernel_density_until`] that is never cancelled, within the default work limit.
pub fn kernel_density(
    points: &[(f64, f64)],
    extent: [f64; 4],
    cell_m: f64,
    bandwidth_m: f64,
) -> Result<Grid, AnalysisError> {
    kernel_density_until(points, extent, cell_m, bandwidth_m, MAX_WORK, &Cancel::default())
}

/// The density grid of `points` over `extent`; refused before any work when it would have too
/// many cells or cost more than `max_work` kernel evaluations, and stopped when `cancel` is set.
pub fn kernel_density_until(
    points: &[(f64, f64)],
    extent: [f64; 4],
    cell_m: f64,
    bandwidth_m: f64,
    max_work: f64,
    cancel: &Cancel,
) -> Result<Grid, AnalysisError> {
    let projection = GaussKruger::for_lon((extent[0] + extent[2]) / 2.0);
    // The projected box: its corners and edge midpoints, since meridians converge.
    let mut bx = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for (lon, lat) in [
        (extent[0], extent[1]),
        (extent[2], extent[1]),
        (extent[0], extent[3]),
        (extent[2], extent[3]),
        ((extent[0] + extent[2]) / 2.0, extent[1]),
        ((extent[0] + extent[2]) / 2.0, extent[3]),
    ] {
        let (x, y) = projection.forward(lon, lat);
        bx = [bx[0].min(x), bx[1].min(y), bx[2].max(x), bx[3].max(y)];
    }
    let origin = ((bx[0] / cell_m).floor() * cell_m, (bx[1] / cell_m).floor() * cell_m);
    let cols = (((bx[2] - origin.0) / cell_m).ceil() as usize).max(1);
    let rows = (((bx[3] - origin.1) / cell_m).ceil() as usize).max(1);
    let cells = cols.saturating_mul(rows);
    if cells > MAX_CELLS {
        return Err(AnalysisError::TooManyDensityCells { cells });
    }
    // Each point reaches the cells within the bandwidth: about π (r / cell)², at most all.
    let reach = (std::f64::consts::PI * (bandwidth_m / cell_m).powi(2)).min(cells as f64);
    let work = points.len() as f64 * reach + cells as f64;
    if work > max_work {
        return Err(AnalysisError::TooCostly {
            what: "the kernel density (points × cells within the bandwidth)",
            estimate: work,
            limit: max_work,
            hint: "use a larger cell_m, a smaller bandwidth_m, a smaller bbox or a narrower filter",
        });
    }
    let mut xy: Vec<(f64, f64)> = points.par_iter().map(|&(lon, lat)| projection.forward(lon, lat)).collect();
    xy.par_sort_unstable_by(|a, b| a.1.total_cmp(&b.1));
    let r2 = bandwidth_m * bandwidth_m;
    // Per m², then per km².
    let scale = 3.0 / (std::f64::consts::PI * r2) * 1e6;
    let mut grid = Grid {
        projection,
        origin,
        cell_m,
        bandwidth_m,
        cols,
        rows,
        values: vec![0.0; cells],
        points: points.len(),
        max: 0.0,
        computed_at: Utc::now(),
    };
    let (ox, oy) = origin;
    grid.values.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        if cancel.is_cancelled() {
            return;
        }
        let yc = oy + (rows as f64 - r as f64 - 0.5) * cell_m;
        let lo = xy.partition_point(|p| p.1 <= yc - bandwidth_m);
        let hi = xy.partition_point(|p| p.1 < yc + bandwidth_m);
        for &(px, py) in &xy[lo..hi] {
            let dy2 = (py - yc) * (py - yc);
            if dy2 >= r2 {
                continue;
            }
            let half = (r2 - dy2).sqrt();
            // Columns whose centre x satisfies |x - px| < half.
            let c0 = (((px - half - ox) / cell_m - 0.5).ceil().max(0.0)) as usize;
            let c1 = (((px + half - ox) / cell_m - 0.5).floor()).min(cols as f64 - 1.0);
            if c1 < 0.0 {
                continue;
            }
            for (c, v) in row.iter_mut().enumerate().take(c1 as usize + 1).skip(c0) {
                let dx = ox + (c as f64 + 0.5) * cell_m - px;
                let u = 1.0 - (dx * dx + dy2) / r2;
                if u > 0.0 {
                    *v += u * u;
                }
            }
        }
        for v in row.iter_mut() {
            *v *= scale;
        }
    });
    if cancel.is_cancelled() {
        return Err(AnalysisError::Cancelled);
    }
    grid.max = grid.values.iter().copied().fold(0.0, f64::max);
    Ok(grid)
}

/// How long a density grid serves the heat tiles before it is computed again: a heat overlay
/// that trails new cases by half a minute is still live for a big screen.
pub const TILE_TTL_S: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_integrates_to_one() {
        // The quartic kernel integrates to 1: the sum of a cell's density times its area is the
        // number of points, whatever the cell size (up to the discretisation).
        let (lon, lat) = (106.55, 29.56);
        let g = kernel_density(&[(lon, lat)], [lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02], 10.0, 300.0).unwrap();
        let total: f64 = g.values.iter().sum::<f64>() * (g.cell_m * g.cell_m) / 1e6;
        assert!((total - 1.0).abs() < 1e-3, "{total}");
        // The peak is at the point: 3 / (π r²) per m².
        let (x, y) = g.projection.forward(lon, lat);
        let peak = 3.0 / (std::f64::consts::PI * 300.0 * 300.0) * 1e6;
        assert!((g.at(x, y) - peak).abs() / peak < 1e-3, "{} vs {peak}", g.at(x, y));
        assert!(g.at(x + 301.0, y) == 0.0);
        assert_eq!(g.max, g.values.iter().copied().fold(0.0, f64::max));
    }

    #[test]
    fn a_cell_is_the_kernel_sum_of_its_points() {
        let pts = [(106.55, 29.56), (106.551, 29.5605), (106.56, 29.57)];
        let g = kernel_density(&pts, [106.54, 29.55, 106.57, 29.58], 50.0, 500.0).unwrap();
        let (r, c) = (g.rows / 2, g.cols / 3);
        let (cx, cy) = g.centre(c, r);
        let expected: f64 = pts
            .iter()
            .map(|&(lon, lat)| {
                let (x, y) = g.projection.forward(lon, lat);
                let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                let u = 1.0 - d2 / 250_000.0;
                if u > 0.0 { 3.0 / (std::f64::consts::PI * 250_000.0) * u * u * 1e6 } else { 0.0 }
            })
            .sum();
        assert!((g.values[r * g.cols + c] - expected).abs() < 1e-9 * expected.max(1.0));
        assert!(expected > 0.0);
    }

    #[test]
    fn too_costly_a_kernel_is_refused_and_a_cancelled_one_stops() {
        let pts = vec![(106.55, 29.56); 30_000];
        let extent = [106.4, 29.4, 106.7, 29.7];
        assert!(matches!(kernel_density(&pts, extent, 20.0, 50_000.0), Err(AnalysisError::TooCostly { .. })));
        let cancel = Cancel::default();
        drop(cancel.guard());
        assert!(matches!(
            kernel_density_until(&pts[..10], extent, 100.0, 500.0, MAX_WORK, &cancel),
            Err(AnalysisError::Cancelled)
        ));
    }

    #[test]
    fn too_fine_a_grid_is_refused() {
        assert!(matches!(
            kernel_density(&[], [100.0, 20.0, 110.0, 30.0], 10.0, 100.0),
            Err(AnalysisError::TooManyDensityCells { .. })
        ));
    }
}
