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

/// A tile layer: its id, the collection it draws from, its title, and whether it is a derived
/// (always aggregated) layer.
#[derive(Clone, Copy)]
struct TileLayer {
    id: &'static str,
    source: &'static str,
    title: &'static str,
    derived: bool,
}

impl TileLayer {
    fn find(id: &str) -> Option<TileLayer> {
        let collections = COLLECTIONS.iter().map(|c| TileLayer { id: c.0, source: c.0, title: c.1, derived: false });
        let derived = DERIVED.iter().map(|d| TileLayer { id: d.0, source: d.1, title: d.2, derived: true });
        collections.chain(derived).find(|l| l.id == id)
    }

    /// Whether the layer is drawn as counts per cell at zoom `z`.
    fn counts_at(&self, z: u8) -> bool {
        self.derived || tiles::aggregate_below(self.id).is_some_and(|below| z < below)
    }
}

/// The tile layers of a `{layers}` path segment, each known, no repeats.
fn parse_layers(s: &str) -> ApiResult<Vec<TileLayer>> {
    let mut out: Vec<TileLayer> = Vec::new();
    for id in s.split(',') {
        let known = TileLayer::find(id).ok_or_else(|| unknown_collection(id))?;
        if !out.iter().any(|l| l.id == known.id) {
            out.push(known);
        }
    }
    Ok(out)
}

/// A filter must name a property of at least one requested layer; it applies to the layers
/// that have the property and leaves the others alone.
/// Returns, per layer, the filters that apply to it.
fn parse_filters(
    p: &Params,
    layers: &[TileLayer],
    props: &[&'static [&'static str]],
) -> ApiResult<Vec<Vec<(String, String)>>> {
    for k in p.0.keys() {
        if !props.iter().any(|ps| ps.contains(&k.as_str())) {
            let ids: Vec<&str> = layers.iter().map(|l| l.id).collect();
            return Err(ApiError::bad_request(
                "unknown-property",
                format!("{k:?} is not a property of {}", ids.join(", ")),
            ));
        }
    }
    Ok(props
        .iter()
        .map(|ps| p.0.iter().filter(|(k, _)| ps.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
        .collect())
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
    let props = ids.iter().map(|l| properties_of(&st.index, l.source)).collect::<ApiResult<Vec<_>>>()?;
    let filters = parse_filters(&p, &ids, &props)?;
    let index = st.index.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (tl, filters) in ids.iter().zip(&filters) {
            // Point layers below their aggregation zoom, and derived density layers, are counts
            // per cell. Filters on properties a layer lacks leave that layer alone.
            let counts = tl.counts_at(coord.z);
            let layer = with_layer!(index, tl.source, |layer| {
                let keep = |r: &_| Record::matches(r, filters);
                Ok::<_, ApiError>(if counts {
                    tiles::encode_counts(layer, coord, tl.id, keep)
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
    for tl in &ids {
        if let Some(b) = with_layer!(st.index, tl.source, |layer| Ok::<_, ApiError>(layer.bbox()))? {
            bounds = Some(match bounds {
                None => b,
                Some(a) => [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])],
            });
        }
        let mut fields: serde_json::Map<String, serde_json::Value> =
            properties_of(&st.index, tl.source)?.iter().map(|p| (p.to_string(), json!("String"))).collect();
        if tl.derived || tiles::aggregate_below(tl.id).is_some() {
            fields.insert("count".into(), json!("Number"));
        }
        vector_layers.push(json!({"id": tl.id, "description": tl.title, "fields": fields,
            "minzoom": tiles::min_zoom(tl.id), "maxzoom": MAX_ZOOM}));
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
