//! `GET /tiles/{layers}/{z}/{x}/{y}` (MVT, one layer per collection) and `GET /tiles/{layers}`
//! (TileJSON 3.0.0), with the items' property filters, ETag revalidation and gzip.

use std::hash::{Hash, Hasher};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::features::{COLLECTIONS, base_url, props_of, unknown_collection, with_layer};
use super::params::{Params, PathParams};
use crate::geo::tile::{MAX_ZOOM, TileCoord};
use crate::index::{CityIndex, Record};
use crate::tiles;

pub const MVT_TYPE: &str = "application/vnd.mapbox-vector-tile";

/// Tile layers that are not collections: (id, the collection they aggregate, title).
const DERIVED: &[(&str, &str, &str)] = &[("case_density", "cases", "案件密度 Case density (count per cell)")];

/// The collection a tile layer draws from.
fn source_of(id: &str) -> &str {
    DERIVED.iter().find(|d| d.0 == id).map(|d| d.1).unwrap_or(id)
}

/// The tile layer ids of a `{layers}` path segment, each known, no repeats.
fn parse_layers(s: &str) -> ApiResult<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for id in s.split(',') {
        let known = COLLECTIONS
            .iter()
            .map(|c| c.0)
            .chain(DERIVED.iter().map(|d| d.0))
            .find(|c| *c == id)
            .ok_or_else(|| unknown_collection(id))?;
        if !out.contains(&known) {
            out.push(known);
        }
    }
    Ok(out)
}

/// A filter must name a property of at least one requested layer; it applies to the layers
/// that have the property and leaves the others alone.
fn parse_filters(p: &Params, layers: &[&str], props: &[&'static [&'static str]]) -> ApiResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in &p.0 {
        if !props.iter().any(|ps| ps.contains(&k.as_str())) {
            return Err(ApiError::bad_request(
                "unknown-property",
                format!("{k:?} is not a property of {}", layers.join(", ")),
            ));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

/// The property names of a collection, from its record type.
fn properties_of(index: &CityIndex, id: &str) -> ApiResult<&'static [&'static str]> {
    with_layer!(index, id, |layer| Ok(props_of(layer)))
}

pub async fn tile(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams((layers, z, x, y)): PathParams<(String, String, String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let num = |name: &str, v: &str| -> ApiResult<u32> {
        v.parse::<u32>()
            .map_err(|_| ApiError::bad_request("invalid-tile", format!("{name}={v:?} is not a tile coordinate")))
    };
    // MapLibre and QGIS templates often end in .pbf or .mvt.
    let y = y.strip_suffix(".pbf").or_else(|| y.strip_suffix(".mvt")).unwrap_or(&y);
    let coord = TileCoord::new(num("z", &z)?, num("x", &x)?, num("y", y)?)?;
    let ids = parse_layers(&layers)?;
    let props = ids.iter().map(|id| properties_of(&st.index, source_of(id))).collect::<ApiResult<Vec<_>>>()?;
    let filters = parse_filters(&p, &ids, &props)?;
    let index = st.index.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (id, props) in ids.iter().zip(&props) {
            // Filters on properties this layer lacks leave the layer alone. Point layers below
            // their aggregation zoom, and derived density layers, are counts per cell.
            let counts = DERIVED.iter().any(|d| d.0 == *id) || tiles::aggregate_below(id).is_some_and(|z| coord.z < z);
            let layer = with_layer!(index, source_of(id), |layer| {
                let keep = |r: &_| {
                    filters
                        .iter()
                        .filter(|(k, _)| props.contains(&k.as_str()))
                        .all(|(k, v)| Record::prop(r, k).is_some_and(|pv| pv.matches(v)))
                };
                Ok::<_, ApiError>(if counts {
                    tiles::encode_counts(layer, coord, id, keep)
                } else {
                    tiles::encode_layer(layer, coord, keep)
                })
            })?;
            out.extend(layer);
        }
        Ok::<_, ApiError>(tiles::encode_tile(out))
    })
    .await
    .map_err(ApiError::internal)??;
    let Some(bytes) = body else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    let etag = format!("\"{:016x}\"", h.finish());
    let mut resp = if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, MVT_TYPE)], bytes).into_response()
    };
    let hs = resp.headers_mut();
    hs.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    // Live data: clients may keep tiles but must revalidate (cheap with the ETag).
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

pub async fn tilejson(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams(layers): PathParams<String>,
) -> ApiResult<Response> {
    let ids = parse_layers(&layers)?;
    let base = base_url(&headers);
    let mut bounds: Option<[f64; 4]> = None;
    let mut vector_layers = Vec::new();
    for id in &ids {
        let env = with_layer!(st.index, source_of(id), |layer| Ok::<_, ApiError>(layer.envelope()))?;
        if let Some(e) = env {
            let b = [e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1]];
            bounds = Some(match bounds {
                None => b,
                Some(a) => [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])],
            });
        }
        let mut fields: serde_json::Map<String, serde_json::Value> =
            properties_of(&st.index, source_of(id))?.iter().map(|p| (p.to_string(), json!("String"))).collect();
        if DERIVED.iter().any(|d| d.0 == *id) || tiles::aggregate_below(id).is_some() {
            fields.insert("count".into(), json!("Number"));
        }
        let title = COLLECTIONS
            .iter()
            .map(|c| (c.0, c.1))
            .chain(DERIVED.iter().map(|d| (d.0, d.2)))
            .find(|c| c.0 == *id)
            .map_or(*id, |c| c.1);
        vector_layers
            .push(json!({"id": id, "description": title, "fields": fields, "minzoom": tiles::min_zoom(id), "maxzoom": MAX_ZOOM}));
    }
    let b = bounds.unwrap_or([-180.0, -85.0511, 180.0, 85.0511]);
    let body = json!({
        "tilejson": "3.0.0",
        "name": layers,
        "tiles": [format!("{base}/tiles/{layers}/{{z}}/{{x}}/{{y}}")],
        "minzoom": 0,
        "maxzoom": MAX_ZOOM,
        "bounds": b,
        "center": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, 12],
        "vector_layers": vector_layers,
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}
