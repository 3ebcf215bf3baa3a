//! Coordinate reference systems at the API edge and tile math: the Chinese map
//! offsets (GCJ-02, BD-09), the `crs=` parameter and its conversion to storage
//! CGCS2000, distances for search radii, and web-mercator XYZ tiles.
//!
//! The external `geo` crate shares this module's name; refer to it as `::geo`.

pub mod china;
pub mod crs;
pub mod gauss_kruger;
pub mod tile;

pub use china::{bd09_to_gcj02, bd09_to_wgs84, gcj02_to_bd09, gcj02_to_wgs84, wgs84_to_bd09, wgs84_to_gcj02};
pub use crs::{Crs, CrsError, EARTH_MEAN_RADIUS_M, check_lon_lat, haversine_m, metres_to_degrees};
pub use tile::{
    MAX_MERCATOR_LAT, MAX_ZOOM, MERCATOR_HALF_WORLD_M, TileCoord, TileError, lonlat_to_mercator, mercator_to_lonlat,
    tiles_covering,
};

/// The smallest `[west, south, east, north]` box holding boxes `a` and `b`.
pub fn bbox_union(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}
