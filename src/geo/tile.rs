//! Web-mercator (EPSG:3857) tile math in the XYZ scheme used by MapLibre and
//! OpenStreetMap: tile 0/0/0 is the whole world, y grows southwards.

use std::f64::consts::PI;
use std::fmt;

/// Highest zoom level accepted; 2^24 tiles per axis is well under a metre per
/// tile, far beyond any data this server holds.
pub const MAX_ZOOM: u8 = 24;

/// Latitude (degrees) at which web mercator is cut off so that the world is square.
pub const MAX_MERCATOR_LAT: f64 = 85.051_128_779_806_59;

/// Radius of the web-mercator sphere (the WGS84 semi-major axis), in metres.
const MERCATOR_RADIUS_M: f64 = 6_378_137.0;

/// Half the width of the web-mercator world, in metres (π · radius).
pub const MERCATOR_HALF_WORLD_M: f64 = PI * MERCATOR_RADIUS_M;

/// Fractional tile positions this close to a tile edge count as on the edge,
/// so that float noise in a bbox built from tile bounds does not pull in a
/// neighbour. 1e-9 of a tile is under 3 µm even at zoom 24.
const EDGE_SNAP_TILES: f64 = 1e-9;

/// Errors for tile addresses; the messages are shown to API users as 400 responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The zoom level is above [`MAX_ZOOM`].
    #[error("zoom level {z} is not supported: zoom must be between 0 and {max}", max = MAX_ZOOM)]
    ZoomOutOfRange {
        /// The requested zoom.
        z: u32,
    },
    /// x or y is outside the 2^z × 2^z grid of the zoom level.
    #[error("tile {z}/{x}/{y} does not exist: at zoom {z}, x and y must be between 0 and {max}")]
    TileOutOfRange {
        /// The requested zoom.
        z: u8,
        /// The requested column.
        x: u32,
        /// The requested row.
        y: u32,
        /// The largest valid x or y at this zoom (2^z − 1).
        max: u32,
    },
}

/// An XYZ tile address: zoom, column (from the west), row (from the north).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    /// Zoom level, 0..=[`MAX_ZOOM`].
    pub z: u8,
    /// Column, 0..2^z, counted eastwards from the antimeridian.
    pub x: u32,
    /// Row, 0..2^z, counted southwards from [`MAX_MERCATOR_LAT`].
    pub y: u32,
}

/// Number of tiles along each axis at zoom `z` (z ≤ [`MAX_ZOOM`]).
fn tiles_per_axis(z: u8) -> u32 {
    1u32 << z
}

impl TileCoord {
    /// Validates a tile address from user input (such as a `/{z}/{x}/{y}` path).
    ///
    /// Rejects z > [`MAX_ZOOM`] and x or y ≥ 2^z.
    pub fn new(z: u32, x: u32, y: u32) -> Result<TileCoord, TileError> {
        let z = u8::try_from(z).ok().filter(|&z| z <= MAX_ZOOM).ok_or(TileError::ZoomOutOfRange { z })?;
        let n = tiles_per_axis(z);
        if x >= n || y >= n {
            return Err(TileError::TileOutOfRange { z, x, y, max: n - 1 });
        }
        Ok(TileCoord { z, x, y })
    }

    /// The tile's extent as longitude/latitude degrees: `[minlon, minlat, maxlon, maxlat]`.
    pub fn bounds(&self) -> [f64; 4] {
        let n = f64::from(tiles_per_axis(self.z));
        let lon = |x: u32| f64::from(x) / n * 360.0 - 180.0;
        let lat = |y: u32| (PI * (1.0 - 2.0 * f64::from(y) / n)).sinh().atan().to_degrees();
        [lon(self.x), lat(self.y + 1), lon(self.x + 1), lat(self.y)]
    }

    /// The tile's extent in EPSG:3857 metres: `[minx, miny, maxx, maxy]`.
    pub fn bounds_mercator(&self) -> [f64; 4] {
        let size = 2.0 * MERCATOR_HALF_WORLD_M / f64::from(tiles_per_axis(self.z));
        let min_x = -MERCATOR_HALF_WORLD_M + f64::from(self.x) * size;
        let max_y = MERCATOR_HALF_WORLD_M - f64::from(self.y) * size;
        [min_x, max_y - size, min_x + size, max_y]
    }
}

impl fmt::Display for TileCoord {
    /// Formats as `z/x/y`, the path form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// Snaps a fractional tile position to the nearest edge when within float noise of it.
fn snap(t: f64) -> f64 {
    let r = t.round();
    if (t - r).abs() < EDGE_SNAP_TILES { r } else { t }
}

/// The inclusive index range of tiles along one axis overlapped by the
/// interval [a, b] of fractional tile positions (a ≤ b, already within [0, n]).
///
/// A tile that only touches the interval at its edge is left out, so covering
/// a tile's own bounds gives that tile alone; a degenerate interval (a point)
/// gives the tile containing it, the east/south one when on an edge.
fn index_range(a: f64, b: f64, n: u32) -> (u32, u32) {
    let (a, b) = (snap(a), snap(b));
    let last = f64::from(n - 1);
    let lo = a.floor().clamp(0.0, last);
    let hi = if b > a { b.ceil() - 1.0 } else { a.floor() };
    let hi = hi.clamp(lo, last);
    // Both are integral and within [0, n - 1], so the casts are exact.
    (lo as u32, hi as u32)
}

/// A longitude as a fraction of the web-mercator world's width, 0 at the antimeridian.
pub fn world_x(lon: f64) -> f64 {
    (lon + 180.0) / 360.0
}

/// A latitude as a fraction of the web-mercator world's height, 0 at the top (as tile rows
/// count); clamped to the mercator range.
pub fn world_y(lat: f64) -> f64 {
    let y = lonlat_to_mercator(0.0, lat).1;
    (MERCATOR_HALF_WORLD_M - y) / (2.0 * MERCATOR_HALF_WORLD_M)
}

/// The columns and rows of the tiles at zoom `z` that hold a lon/lat bbox
/// `[minlon, minlat, maxlon, maxlat]`: `(min_col, max_col, min_row, max_row)`, rows from the
/// top, clamped to the world (a bbox edge on a tile boundary counts the tile beyond it).
pub fn tile_range(bbox: [f64; 4], z: u8) -> (u64, u64, u64, u64) {
    let n = (1u64 << z) as f64;
    let cell = |f: f64| (f * n).floor().clamp(0.0, n - 1.0) as u64;
    (cell(world_x(bbox[0])), cell(world_x(bbox[2])), cell(world_y(bbox[3])), cell(world_y(bbox[1])))
}

/// Fractional column of a longitude at zoom with `n` tiles per axis.
fn lon_to_tile_x(lon: f64, n: u32) -> f64 {
    world_x(lon) * f64::from(n)
}

/// Fractional row of a latitude at zoom with `n` tiles per axis.
fn lat_to_tile_y(lat: f64, n: u32) -> f64 {
    world_y(lat) * f64::from(n)
}

/// The tiles at zoom `z` that overlap a longitude/latitude bbox
/// `[minlon, minlat, maxlon, maxlat]`, column by column.
///
/// The bbox is clamped to the world and to ±[`MAX_MERCATOR_LAT`], so a bbox
/// beyond the mercator cut-off yields the edge row. Tiles that merely touch
/// the bbox along an edge are left out, so covering a tile's own
/// [`TileCoord::bounds`] gives that tile alone (positions within 1e-9 of a
/// tile of an edge count as on it); a point-sized bbox yields the tile
/// containing the point, the east/south one when it is on an edge.
/// `minlon > maxlon` is read as a bbox crossing the antimeridian, as in
/// GeoJSON. A bbox with a NaN, with `minlat > maxlat`, or a zoom above
/// [`MAX_ZOOM`] yields nothing.
pub fn tiles_covering(bbox: [f64; 4], z: u8) -> impl Iterator<Item = TileCoord> {
    let [min_lon, min_lat, max_lon, max_lat] = bbox;
    let valid = z <= MAX_ZOOM && bbox.iter().all(|v| !v.is_nan()) && min_lat <= max_lat;
    let mut columns: Vec<(u32, u32)> = Vec::with_capacity(2);
    let mut rows = (0, 0);
    if valid {
        let n = tiles_per_axis(z);
        let clamp_lon = |lon: f64| lon.clamp(-180.0, 180.0);
        let clamp_lat = |lat: f64| lat.clamp(-MAX_MERCATOR_LAT, MAX_MERCATOR_LAT);
        let (w, e) = (clamp_lon(min_lon), clamp_lon(max_lon));
        let (xw, xe) = (lon_to_tile_x(w, n), lon_to_tile_x(e, n));
        if min_lon <= max_lon {
            columns.push(index_range(xw, xe, n));
        } else {
            // Crosses the antimeridian: the western part runs to the east edge
            // of the world, the eastern part starts at its west edge.
            let west_part = index_range(xw, f64::from(n), n);
            let east_part = index_range(0.0, xe, n);
            if east_part.1 + 1 >= west_part.0 {
                // The two parts meet or overlap: every column, once.
                columns.push((0, n - 1));
            } else {
                columns.push(east_part);
                columns.push(west_part);
            }
        }
        // Rows count from the north, so the north edge gives the smaller row.
        let (yn, ys) = (lat_to_tile_y(clamp_lat(max_lat), n), lat_to_tile_y(clamp_lat(min_lat), n));
        rows = index_range(yn, ys, n);
    }
    let (y0, y1) = rows;
    columns
        .into_iter()
        .flat_map(move |(x0, x1)| (x0..=x1).flat_map(move |x| (y0..=y1).map(move |y| TileCoord { z, x, y })))
}

/// Projects longitude/latitude degrees to EPSG:3857 metres.
///
/// Latitude is clamped to ±[`MAX_MERCATOR_LAT`] (the projection is infinite
/// at the poles); longitude is not wrapped.
pub fn lonlat_to_mercator(lon: f64, lat: f64) -> (f64, f64) {
    let lat = lat.clamp(-MAX_MERCATOR_LAT, MAX_MERCATOR_LAT);
    let x = MERCATOR_RADIUS_M * lon.to_radians();
    let y = MERCATOR_RADIUS_M * (PI / 4.0 + lat.to_radians() / 2.0).tan().ln();
    (x, y)
}

/// Unprojects EPSG:3857 metres to longitude/latitude degrees; the inverse of
/// [`lonlat_to_mercator`].
pub fn mercator_to_lonlat(x: f64, y: f64) -> (f64, f64) {
    let lon = (x / MERCATOR_RADIUS_M).to_degrees();
    let lat = (y / MERCATOR_RADIUS_M).sinh().atan().to_degrees();
    (lon, lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(bounds: [f64; 4], lon: f64, lat: f64) -> bool {
        bounds[0] <= lon && lon <= bounds[2] && bounds[1] <= lat && lat <= bounds[3]
    }

    fn close(a: [f64; 4], b: [f64; 4], tol: f64) -> bool {
        a.iter().zip(b.iter()).all(|(p, q)| (p - q).abs() < tol)
    }

    #[test]
    fn zoom_zero_is_the_world() {
        let t = TileCoord::new(0, 0, 0).expect("valid tile");
        assert!(close(t.bounds(), [-180.0, -MAX_MERCATOR_LAT, 180.0, MAX_MERCATOR_LAT], 1e-9));
        let h = MERCATOR_HALF_WORLD_M;
        assert!(close(t.bounds_mercator(), [-h, -h, h, h], 1e-6));
        assert!((h - 20_037_508.342_789_244).abs() < 1e-6);
        let all: Vec<_> = tiles_covering([-180.0, -90.0, 180.0, 90.0], 0).collect();
        assert_eq!(all, vec![t]);
    }

    #[test]
    fn known_tile_bounds() {
        // Expected values from the textbook formulas, computed independently.
        let t = TileCoord::new(10, 764, 426).expect("valid tile");
        let [w, s, e, n] = t.bounds();
        assert!((w - 88.593_75).abs() < 1e-9, "{w}"); // 764/1024·360 − 180
        assert!((e - 88.945_312_5).abs() < 1e-9, "{e}");
        assert!((n - 28.921_631_282_421_29).abs() < 1e-9, "{n}");
        assert!((s - 28.613_459_424_004_42).abs() < 1e-9, "{s}");
        // The mercator bounds are the projected lon/lat bounds.
        let [mx0, my0, mx1, my1] = t.bounds_mercator();
        let (px0, py0) = lonlat_to_mercator(w, s);
        let (px1, py1) = lonlat_to_mercator(e, n);
        assert!(close([mx0, my0, mx1, my1], [px0, py0, px1, py1], 1e-6));
        assert_eq!(t.to_string(), "10/764/426");

        // Shigatse (88.88, 29.27) lies two rows further north, in 10/764/424
        // (fractional position x 764.81, y 424.87).
        let t = TileCoord::new(10, 764, 424).expect("valid tile");
        let [w, s, e, n] = t.bounds();
        assert!((n - 29.535_229_562_948_455).abs() < 1e-9 && (s - 29.228_890_030_194_23).abs() < 1e-9);
        assert!((w - 88.593_75).abs() < 1e-9 && (e - 88.945_312_5).abs() < 1e-9);
        assert!(contains(t.bounds(), 88.88, 29.27));
        assert!(!contains(TileCoord { z: 10, x: 764, y: 426 }.bounds(), 88.88, 29.27));
    }

    #[test]
    fn rejects_out_of_range_tiles() {
        assert_eq!(TileCoord::new(25, 0, 0), Err(TileError::ZoomOutOfRange { z: 25 }));
        assert_eq!(TileCoord::new(300, 0, 0), Err(TileError::ZoomOutOfRange { z: 300 }));
        assert_eq!(TileCoord::new(u32::MAX, 0, 0), Err(TileError::ZoomOutOfRange { z: u32::MAX }));
        assert!(matches!(TileCoord::new(0, 1, 0), Err(TileError::TileOutOfRange { .. })));
        assert!(matches!(TileCoord::new(0, 0, 1), Err(TileError::TileOutOfRange { .. })));
        assert!(matches!(TileCoord::new(10, 1024, 0), Err(TileError::TileOutOfRange { .. })));
        assert!(matches!(TileCoord::new(24, 0, 1 << 24), Err(TileError::TileOutOfRange { .. })));
        assert!(TileCoord::new(10, 1023, 1023).is_ok());
        assert!(TileCoord::new(24, (1 << 24) - 1, (1 << 24) - 1).is_ok());
        let msg = TileCoord::new(3, 8, 0).unwrap_err().to_string();
        assert_eq!(msg, "tile 3/8/0 does not exist: at zoom 3, x and y must be between 0 and 7");
        let msg = TileCoord::new(30, 0, 0).unwrap_err().to_string();
        assert_eq!(msg, "zoom level 30 is not supported: zoom must be between 0 and 24");
    }

    #[test]
    fn tiny_bbox_is_one_tile_at_every_zoom() {
        for (lon, lat) in [(88.88, 29.27), (116.397, 39.908), (106.55, 29.56), (-70.0, -33.0)] {
            let bbox = [lon - 1e-9, lat - 1e-9, lon + 1e-9, lat + 1e-9];
            for z in 0..=MAX_ZOOM {
                let tiles: Vec<_> = tiles_covering(bbox, z).collect();
                assert_eq!(tiles.len(), 1, "z={z} at ({lon}, {lat}): {tiles:?}");
                assert!(contains(tiles[0].bounds(), lon, lat), "z={z}: {} misses ({lon}, {lat})", tiles[0]);
                // A degenerate (point) bbox gives the same tile.
                let point: Vec<_> = tiles_covering([lon, lat, lon, lat], z).collect();
                assert_eq!(point, tiles);
            }
        }
        let shigatse: Vec<_> = tiles_covering([88.88, 29.27, 88.88, 29.27], 10).collect();
        assert_eq!(shigatse, vec![TileCoord { z: 10, x: 764, y: 424 }]);
    }

    #[test]
    fn covering_a_tile_bounds_gives_that_tile() {
        for t in [
            TileCoord { z: 1, x: 1, y: 0 },
            TileCoord { z: 10, x: 764, y: 426 },
            TileCoord { z: 18, x: 215_828, y: 99_324 },
            TileCoord { z: 24, x: 13_813_000, y: 6_356_000 },
        ] {
            let tiles: Vec<_> = tiles_covering(t.bounds(), t.z).collect();
            assert_eq!(tiles, vec![t]);
            // One zoom deeper, the four children.
            let children: Vec<_> = tiles_covering(t.bounds(), t.z + 1).collect();
            if t.z < MAX_ZOOM {
                assert_eq!(children.len(), 4, "{t}: {children:?}");
            } else {
                assert!(children.is_empty());
            }
        }
    }

    #[test]
    fn covering_counts_and_clamping() {
        // Beijing's Fifth Ring Road area at zoom 12.
        let bbox = [116.2, 39.75, 116.55, 40.03];
        let tiles: Vec<_> = tiles_covering(bbox, 12).collect();
        let xs: Vec<_> = tiles.iter().map(|t| t.x).collect();
        let ys: Vec<_> = tiles.iter().map(|t| t.y).collect();
        let (x0, x1) = (*xs.iter().min().unwrap(), *xs.iter().max().unwrap());
        let (y0, y1) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
        assert_eq!(tiles.len() as u32, (x1 - x0 + 1) * (y1 - y0 + 1));
        for t in &tiles {
            let [w, s, e, n] = t.bounds();
            assert!(w < bbox[2] && e > bbox[0] && s < bbox[3] && n > bbox[1], "{t} does not overlap");
        }
        // The whole world (and beyond) is every tile once.
        assert_eq!(tiles_covering([-500.0, -90.0, 500.0, 90.0], 3).count(), 64);
        // Beyond the mercator cut-off: the edge row.
        let polar: Vec<_> = tiles_covering([0.0, 86.0, 1.0, 89.0], 4).collect();
        assert_eq!(polar, vec![TileCoord { z: 4, x: 8, y: 0 }]);
    }

    #[test]
    fn covering_rejects_nonsense_without_panicking() {
        assert_eq!(tiles_covering([0.0, 10.0, 1.0, 5.0], 5).count(), 0); // minlat > maxlat
        assert_eq!(tiles_covering([f64::NAN, 0.0, 1.0, 1.0], 5).count(), 0);
        assert_eq!(tiles_covering([0.0, 0.0, 1.0, 1.0], 25).count(), 0);
        assert_eq!(tiles_covering([0.0, 0.0, 1.0, 1.0], u8::MAX).count(), 0);
        let inf: Vec<_> = tiles_covering([f64::NEG_INFINITY, -90.0, f64::INFINITY, 90.0], 1).collect();
        assert_eq!(inf.len(), 4);
    }

    #[test]
    fn covering_across_the_antimeridian() {
        let tiles: Vec<_> = tiles_covering([179.0, -1.0, -179.0, 1.0], 3).collect();
        let mut xs: Vec<_> = tiles.iter().map(|t| t.x).collect();
        xs.dedup();
        assert_eq!(xs, vec![0, 7]);
        assert_eq!(tiles.len(), 4);
        // At zoom 0 the two halves are the same tile, listed once.
        assert_eq!(tiles_covering([179.0, -1.0, -179.0, 1.0], 0).count(), 1);
        // Nearly the whole world the long way round: every column once.
        assert_eq!(tiles_covering([-100.0, -1.0, -110.0, 1.0], 2).filter(|t| t.y == 1).count(), 4);
    }

    #[test]
    fn mercator_round_trip() {
        for (lon, lat) in [(0.0, 0.0), (88.88, 29.27), (116.397, 39.908), (-179.9, -85.0), (180.0, 85.0)] {
            let (x, y) = lonlat_to_mercator(lon, lat);
            let (lon2, lat2) = mercator_to_lonlat(x, y);
            assert!((lon - lon2).abs() < 1e-9 && (lat - lat2).abs() < 1e-9, "({lon}, {lat})");
        }
        let (x, y) = lonlat_to_mercator(180.0, MAX_MERCATOR_LAT);
        assert!((x - MERCATOR_HALF_WORLD_M).abs() < 1e-6 && (y - MERCATOR_HALF_WORLD_M).abs() < 1e-6);
        // Poles are clamped, not infinite.
        assert!(lonlat_to_mercator(0.0, 90.0).1.is_finite());
        assert!(lonlat_to_mercator(0.0, -90.0).1.is_finite());
        // Known values: 45°N is y = 5621521.486192066 m; Beijing (116.397, 39.908)
        // is (12957254.7699, 4852582.0829) m (computed independently).
        assert!((lonlat_to_mercator(0.0, 45.0).1 - 5_621_521.486_192_066).abs() < 1e-6);
        let (x, y) = lonlat_to_mercator(116.397, 39.908);
        assert!((x - 12_957_254.769_864_663).abs() < 1e-4 && (y - 4_852_582.082_864_688).abs() < 1e-4, "({x}, {y})");
    }
}
