//! MapLibre Tiles (MLT), the opt-in columnar successor of MVT: encoded from the MVT the renderer
//! builds, with `mlt-core`, so both formats carry the same features and properties and one
//! renderer stays the single source of what a tile holds.

use mlt_core::encoder::EncoderConfig;

/// The media type of an MLT tile.
pub const MLT_TYPE: &str = "application/vnd.maplibre-tile";

/// Why an MVT could not be re-encoded (a bug, never the client's doing: the MVT is our own).
#[derive(Debug, thiserror::Error)]
#[error("MLT encoding: {0}")]
pub struct MltError(String);

/// No sort trials: the renderer emits features in R-tree order, already spatially grouped, so
/// trying Morton, Hilbert and id orders changed sizes by under 3% on the Shigatse city while
/// taking a third to half again as long (BENCHMARKS.md).
fn config() -> EncoderConfig {
    EncoderConfig::default().with_spatial_morton_sort(false).with_spatial_hilbert_sort(false).with_id_sort(false)
}

/// The MLT tile of an encoded MVT: each MVT layer one MLT layer, in the same order, its features
/// in the MVT's order; per-stream encodings and shared dictionaries are chosen by `mlt-core` for
/// the smallest size; polygons are not tessellated (MapLibre tessellates what it draws).
pub fn from_mvt(mvt: &[u8]) -> Result<Vec<u8>, MltError> {
    let layers = mlt_core::mvt::mvt_to_tile_layers(mvt).map_err(|e| MltError(e.to_string()))?;
    let mut out = Vec::with_capacity(mvt.len() / 2);
    for layer in layers {
        out.extend(layer.encode(config()).map_err(|e| MltError(e.to_string()))?);
    }
    Ok(out)
}
