//! OGC API - Tiles 1.0 over the same vector tiles as `/tiles/{layers}/{z}/{x}/{y}`: the
//! WebMercatorQuad tiling scheme, a tileset per feature collection (geodata tilesets) and one over
//! all of them (the dataset tileset), their metadata with the tile-matrix limits of the data, and
//! tiles addressed `{tileMatrix}/{tileRow}/{tileCol}`. GDAL's OGCAPI driver and QGIS read them.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::features::base_url;
use super::params::{Params, PathParams};
use crate::geo::tile::{MAX_ZOOM, tile_range};
use crate::model::Collection;

/// The one tiling scheme served.
pub const TMS: &str = "WebMercatorQuad";
const TMS_URI: &str = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad";
const CRS_3857: &str = "http://www.opengis.net/def/crs/EPSG/0/3857";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const MVT: &str = "application/vnd.mapbox-vector-tile";
const REL_SCHEME: &str = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme";
/// Half the web-mercator world's width, metres.
const HALF_WORLD: f64 = 20_037_508.342_789_244;
/// The scale denominator of zoom 0 (0.28 mm pixels, 256-pixel tiles).
const SCALE_0: f64 = 559_082_264.028_717_8;

/// The conformance classes of OGC API - Tiles this server implements.
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/dataset-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
];

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn unknown_tms(id: &str) -> ApiError {
    ApiError::not_found("unknown-tiling-scheme", format!("no tiling scheme {id:?}; this server tiles in {TMS}"))
}

/// `GET /tileMatrixSets`.
pub async fn tile_matrix_sets(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    json_response(json!({
        "tileMatrixSets": [{
            "id": TMS, "title": "Google Maps Compatible for the World", "uri": TMS_URI, "crs": CRS_3857,
            "links": [{"rel": "self", "type": "application/json", "href": format!("{base}/tileMatrixSets/{TMS}")}],
        }],
    }))
}

/// `GET /tileMatrixSets/{id}`: the OGC 2D Tile Matrix Set definition, zooms 0 to 24.
pub async fn tile_matrix_set(headers: HeaderMap, PathParams(id): PathParams<String>) -> ApiResult<Response> {
    if id != TMS {
        return Err(unknown_tms(&id));
    }
    let base = base_url(&headers);
    let matrices: Vec<Value> = (0..=MAX_ZOOM)
        .map(|z| {
            let n = 1u64 << z;
            json!({
                "id": z.to_string(), "scaleDenominator": SCALE_0 / n as f64,
                "cellSize": 2.0 * HALF_WORLD / 256.0 / n as f64, "cornerOfOrigin": "topLeft",
                "pointOfOrigin": [-HALF_WORLD, HALF_WORLD], "tileWidth": 256, "tileHeight": 256,
                "matrixWidth": n, "matrixHeight": n,
                // TMS 1.0 names of the same (see below).
                "identifier": z.to_string(), "topLeftCorner": [-HALF_WORLD, HALF_WORLD],
            })
        })
        .collect();
    // TMS 2.0, with TMS 1.0's names of the same members beside them (`type`, `identifier`,
    // `supportedCRS`, and per matrix `identifier`, `topLeftCorner`): GDAL up to 3.6 reads only
    // those, and takes a document without `type` for the name of a built-in scheme.
    Ok(json_response(json!({
        "type": "TileMatrixSetType", "identifier": TMS, "supportedCRS": CRS_3857,
        "id": TMS, "title": "Google Maps Compatible for the World", "uri": TMS_URI, "crs": CRS_3857,
        "orderedAxes": ["X", "Y"], "wellKnownScaleSet": "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
        "tileMatrices": matrices,
        "links": [{"rel": "self", "type": "application/json", "href": format!("{base}/tileMatrixSets/{TMS}")}],
    })))
}

/// Where a tileset lives: `{base}/collections/{id}/tiles` or `{base}/tiles` (the dataset).
fn tiles_root(base: &str, collection: Option<Collection>) -> String {
    match collection {
        Some(c) => format!("{base}/collections/{}/tiles", c.as_str()),
        None => format!("{base}/tiles"),
    }
}

/// The collections a tileset draws: one, or every feature collection.
fn members(collection: Option<Collection>) -> Vec<Collection> {
    collection.map_or_else(|| Collection::FEATURES.to_vec(), |c| vec![c])
}

fn tileset_links(base: &str, collection: Option<Collection>) -> Vec<Value> {
    let root = tiles_root(base, collection);
    vec![
        json!({"rel": "self", "type": "application/json", "href": format!("{root}/{TMS}")}),
        json!({"rel": REL_SCHEME, "type": "application/json", "href": format!("{base}/tileMatrixSets/{TMS}")}),
        json!({"rel": "item", "type": MVT, "templated": true,
            "href": format!("{root}/{TMS}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}")}),
    ]
}

/// A tilesets list (`GET /collections/{id}/tiles`, `GET /tiles`).
fn tilesets(base: &str, collection: Option<Collection>) -> Value {
    let title = collection.map_or("onemap 一张图", |c| c.title());
    json!({
        "links": [{"rel": "self", "type": "application/json", "href": tiles_root(base, collection)}],
        "tilesets": [{
            "title": title, "dataType": "vector", "crs": CRS_3857, "tileMatrixSetURI": TMS_URI,
            "links": tileset_links(base, collection),
        }],
    })
}

fn collection_of(id: &str) -> ApiResult<Collection> {
    Collection::feature(id).ok_or_else(|| ApiError::not_found("unknown-collection", format!("no collection {id:?}")))
}

/// `GET /collections/{id}/tiles`.
pub async fn collection_tilesets(headers: HeaderMap, PathParams(id): PathParams<String>) -> ApiResult<Response> {
    Ok(json_response(tilesets(&base_url(&headers), Some(collection_of(&id)?))))
}

/// `GET /tiles`: the dataset's tilesets.
pub async fn dataset_tilesets(headers: HeaderMap) -> Response {
    json_response(tilesets(&base_url(&headers), None))
}

/// The tile-matrix limits of `bbox` (lon/lat) at zooms `min..=MAX_ZOOM`.
pub fn limits(bbox: [f64; 4], min: u8) -> Vec<Value> {
    (min..=MAX_ZOOM)
        .map(|z| {
            let (c0, c1, r0, r1) = tile_range(bbox, z);
            json!({"tileMatrix": z.to_string(), "minTileRow": r0, "maxTileRow": r1, "minTileCol": c0, "maxTileCol": c1})
        })
        .collect()
}

/// A tileset's metadata: its layers with their fields, the limits of its data, its links.
fn tileset(st: &AppState, base: &str, collection: Option<Collection>) -> ApiResult<Value> {
    let mut bbox: Option<[f64; 4]> = None;
    let mut layers = Vec::new();
    let mut min = MAX_ZOOM;
    for c in members(collection) {
        let id = c.as_str();
        if let Some(b) = super::tiles::layer_bounds(st, id)? {
            bbox = Some(bbox.map_or(b, |a| crate::geo::bbox_union(a, b)));
        }
        let z = crate::tiles::min_zoom(id);
        min = min.min(z);
        let fields: serde_json::Map<String, Value> =
            super::tiles::layer_fields(st, id)?.into_iter().map(|f| (f, json!({"type": "string"}))).collect();
        layers.push(json!({
            "id": id, "title": c.title(), "description": c.description(), "dataType": "vector",
            "minTileMatrix": z.to_string(), "maxTileMatrix": MAX_ZOOM.to_string(),
            "propertiesSchema": {"type": "object", "properties": fields},
        }));
    }
    let b = bbox.unwrap_or([-180.0, -85.0511, 180.0, 85.0511]);
    Ok(json!({
        "title": collection.map_or("onemap 一张图", |c| c.title()),
        "dataType": "vector", "crs": CRS_3857, "tileMatrixSetURI": TMS_URI,
        "tileMatrixSetLimits": limits(b, min),
        "boundingBox": {"lowerLeft": [b[0], b[1]], "upperRight": [b[2], b[3]], "crs": CRS84},
        "centerPoint": {"coordinates": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0], "tileMatrix": "14", "crs": CRS84},
        "layers": layers,
        "links": tileset_links(base, collection),
    }))
}

/// `GET /collections/{id}/tiles/{tms}`.
pub async fn collection_tileset(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams((id, tms)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    let c = collection_of(&id)?;
    if tms != TMS {
        return Err(unknown_tms(&tms));
    }
    Ok(json_response(tileset(&st, &base_url(&headers), Some(c))?))
}

/// `GET /tiles/WebMercatorQuad`: the dataset tileset.
pub async fn dataset_tileset(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    Ok(json_response(tileset(&st, &base_url(&headers), None)?))
}

/// `GET /collections/{id}/tiles/{tms}/{tileMatrix}/{tileRow}/{tileCol}`: the tile
/// `/tiles/{id}/{z}/{x}/{y}` serves (row is y, column is x), filters included.
pub async fn collection_tile(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
    PathParams((id, tms, z, row, col)): PathParams<(String, String, String, String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let c = collection_of(&id)?;
    if tms != TMS {
        return Err(unknown_tms(&tms));
    }
    super::tiles::tile(State(st), who, headers, PathParams((c.as_str().to_string(), z, col, row)), p).await
}

/// `GET /tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}`: every feature collection in
/// one tile, a layer each.
pub async fn dataset_tile(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
    PathParams((z, row, col)): PathParams<(String, String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let all: Vec<&str> = Collection::FEATURES.iter().map(|c| c.as_str()).collect();
    super::tiles::tile(State(st), who, headers, PathParams((all.join(","), z, col, row)), p).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_cover_the_bbox_row_by_row_from_the_top() {
        // One degree around Shigatse: at zoom 0 the one tile, at zoom 10 a few.
        let l = limits([88.5, 29.0, 89.5, 29.5], 0);
        assert_eq!(l.len(), MAX_ZOOM as usize + 1);
        assert_eq!((l[0]["minTileRow"].as_u64(), l[0]["maxTileCol"].as_u64()), (Some(0), Some(0)));
        let z10 = &l[10];
        let (r0, r1) = (z10["minTileRow"].as_u64().unwrap(), z10["maxTileRow"].as_u64().unwrap());
        let (c0, c1) = (z10["minTileCol"].as_u64().unwrap(), z10["maxTileCol"].as_u64().unwrap());
        assert!(r0 <= r1 && c0 < c1 && c1 - c0 <= 4, "{z10}");
        // The tile holding Shigatse (88.88, 29.27) at z10, x 764 and y 424, is inside.
        assert!((c0..=c1).contains(&764) && (r0..=r1).contains(&424), "{z10}");
    }
}
