//! `GET /tiles/{layers}/{z}/{x}/{y}` (MVT, one layer per collection) and `GET /tiles/{layers}`
//! (TileJSON 3.0.0), with the items' property filters, ETag revalidation and gzip.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::{Caller, scope_of};
use super::error::{ApiError, ApiResult};
use super::features::{base_url, props_of, tile_props_of, unknown_collection, with_collection};
use super::params::{Params, PathParams};
use crate::geo::tile::{MAX_ZOOM, TileCoord};
use crate::index::CityIndex;
use crate::model::Collection;
use crate::tiles::cache::{Rendered, source_bit};
use crate::tiles::{self, TileLayer};

pub const MVT_TYPE: &str = "application/vnd.mapbox-vector-tile";
pub use crate::tiles::mlt::MLT_TYPE;

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
    with_collection!(index, id, |layer| Ok(props_of(layer)))
}

pub async fn tile(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
    PathParams((layers, z, x, y)): PathParams<(String, String, String, String)>,
    mut p: Params,
) -> ApiResult<Response> {
    let format = TileFormat::of(&mut p, &headers)?;
    let num = |name: &str, v: &str| -> ApiResult<u32> {
        v.parse::<u32>()
            .map_err(|_| ApiError::bad_request("invalid-tile", format!("{name}={v:?} is not a tile coordinate")))
    };
    // MapLibre and QGIS templates often end in .pbf or .mvt.
    let y = y.strip_suffix(".pbf").or_else(|| y.strip_suffix(".mvt")).unwrap_or(&y);
    let coord = TileCoord::new(num("z", &z)?, num("x", &x)?, num("y", y)?)?;
    // The analysis overlays are drawn from the analysis results, not the index or its cache.
    match layers.as_str() {
        "hotspots" => {
            if let Some(k) = p.0.keys().next() {
                return Err(ApiError::bad_request(
                    "unknown-parameter",
                    format!("{k:?}: the hotspots layer takes no filters; run the analysis with them"),
                ));
            }
            let body = super::analysis::hotspots_tile(&st, coord).await?;
            return respond(&Rendered::new(format.encode(body)?), format, &headers, false);
        }
        "density" => {
            let body = super::analysis::density_tile(&st, &who, coord, &p).await?;
            return respond(&Rendered::new(format.encode(body)?), format, &headers, false);
        }
        _ => {}
    }
    let ids = parse_layers(&layers)?;
    let props = ids.iter().map(|l| properties_of(&st.index, l.source)).collect::<ApiResult<Vec<_>>>()?;
    let mut filters = parse_filters(&p, &ids, &props)?;
    // A department's or an area's tiles draw its own cases: the scope joins the filters of every
    // case layer.
    let scope = scope_of(&who).filters();
    scope_cases(&ids, &mut filters, &scope);
    // The cache key beyond z/x/y: layers in request order (the MVT layer order), the filters in
    // their canonical (sorted) order, the scope, so scoped tiles are cached apart, and the
    // encoding (the generation bump that drops a changed collection's tiles drops both).
    let variant = format!(
        "{}?{}#{}{}",
        ids.iter().map(|l| l.id).collect::<Vec<_>>().join(","),
        serde_urlencoded::to_string(&p.0).unwrap_or_default(),
        serde_urlencoded::to_string(&scope).unwrap_or_default(),
        format.cache_suffix()
    );
    let cache = &st.live.tiles;
    let (tile, hit) = match cache.get(coord, &variant) {
        Some(t) => (t, true),
        None => {
            let generation = cache.generation();
            let sources = ids.iter().fold(0, |m, l| m | source_bit(l.source));
            let small = format == TileFormat::Mvt && tiles::is_small(&st.index, coord, &ids, &filters);
            let index = st.index.clone();
            let draw =
                move || format.encode(tiles::render(&index, coord, &ids, &filters)).map(|t| Arc::new(Rendered::new(t)));
            // A small MVT tile is drawn here; MLT's second encoding and large tiles go to a
            // blocking thread.
            let rendered =
                if small { draw()? } else { tokio::task::spawn_blocking(draw).await.map_err(ApiError::internal)?? };
            cache.put(coord, &variant, sources, rendered.clone(), generation);
            (rendered, false)
        }
    };
    respond(&tile, format, &headers, hit)
}

/// The encoding a tile request asks for: MVT unless `?f=mlt` or `Accept` names MLT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileFormat {
    Mvt,
    Mlt,
}

impl TileFormat {
    /// `?f=mvt|mlt` (taken out of `p`: it is no property filter), else the `Accept` header.
    pub fn of(p: &mut Params, headers: &HeaderMap) -> ApiResult<TileFormat> {
        match p.0.remove("f").as_deref() {
            Some("mlt") => Ok(TileFormat::Mlt),
            Some("mvt" | "pbf") => Ok(TileFormat::Mvt),
            Some(f) => Err(ApiError::bad_request("invalid-format", format!("f={f:?}: tiles come as mvt or mlt"))),
            None => {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
                Ok(if accept.contains(MLT_TYPE) { TileFormat::Mlt } else { TileFormat::Mvt })
            }
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            TileFormat::Mvt => MVT_TYPE,
            TileFormat::Mlt => MLT_TYPE,
        }
    }

    /// The tile in this encoding from the renderer's MVT (`None`: an empty tile).
    pub fn encode(self, mvt: Option<Vec<u8>>) -> ApiResult<Option<Vec<u8>>> {
        match (self, mvt) {
            (TileFormat::Mlt, Some(m)) => Ok(Some(crate::tiles::mlt::from_mvt(&m).map_err(ApiError::internal)?)),
            (_, t) => Ok(t),
        }
    }

    /// What the tile cache's key adds for this encoding (nothing for MVT, as before MLT).
    fn cache_suffix(self) -> &'static str {
        match self {
            TileFormat::Mvt => "",
            TileFormat::Mlt => "#mlt",
        }
    }
}

/// Joins a caller's scope to the filters of every case layer among `layers` (tiles and offline
/// packages draw a department's own cases, an area's its area's).
pub(super) fn scope_cases(layers: &[TileLayer], filters: &mut [Vec<(String, String)>], scope: &[(String, String)]) {
    for (layer, f) in layers.iter().zip(filters.iter_mut()) {
        if layer.source == Collection::Cases.as_str() {
            f.extend(scope.iter().cloned());
        }
    }
}

/// The response for a rendered tile: 204 when empty, 304 when the client holds this version,
/// otherwise the bytes, pre-gzipped when the client accepts gzip.
fn respond(tile: &Rendered, format: TileFormat, headers: &HeaderMap, hit: bool) -> ApiResult<Response> {
    let kind = format.content_type();
    let mut resp = if tile.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &tile.etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        ([(header::CONTENT_TYPE, kind), (header::CONTENT_ENCODING, "gzip")], tile.gzip.clone()).into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], tile.raw.clone()).into_response()
    };
    let hs = resp.headers_mut();
    if !tile.is_empty() {
        hs.insert(header::ETAG, HeaderValue::from_str(&tile.etag).map_err(ApiError::internal)?);
        // The encoding follows Accept as well as Accept-Encoding.
        hs.insert(header::VARY, HeaderValue::from_static("accept-encoding, accept"));
    }
    // Live data: clients may keep tiles but must revalidate (cheap with the ETag).
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    hs.insert("x-tile-cache", HeaderValue::from_static(if hit { "hit" } else { "miss" }));
    Ok(resp)
}

/// The fields of an analysis overlay layer (`hotspots`, `density`), `None` for other layers.
fn overlay_fields(layers: &str) -> Option<&'static [&'static str]> {
    match layers {
        "hotspots" => Some(crate::analysis::overlay::HOTSPOT_FIELDS),
        "density" => Some(&["density", "weight"]),
        _ => None,
    }
}

/// `If-None-Match` holds `*` or a list of tags, possibly weak (`W/`).
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Whether `Accept-Encoding` allows gzip (not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let name = it.next().unwrap_or("");
        let refused = it.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

pub async fn tilejson(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams(layers): PathParams<String>,
    mut p: Params,
) -> ApiResult<Response> {
    let format = TileFormat::of(&mut p, &headers)?;
    let base = base_url(&headers);
    if let Some(fields) = overlay_fields(&layers) {
        let fields: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|f| (f.to_string(), json!(if matches!(*f, "code" | "name") { "String" } else { "Number" })))
            .collect();
        let layer = json!({"id": layers, "fields": fields, "minzoom": 0, "maxzoom": MAX_ZOOM});
        return Ok(tilejson_response(&base, &layers, format, st.index.grids.read().bbox(), vec![layer]));
    }
    let ids = parse_layers(&layers)?;
    let mut bounds: Option<[f64; 4]> = None;
    let mut vector_layers = Vec::new();
    for tl in &ids {
        if let Some(b) = layer_bounds(&st, tl.source)? {
            bounds = Some(bounds.map_or(b, |a| crate::geo::bbox_union(a, b)));
        }
        let mut fields: serde_json::Map<String, serde_json::Value> =
            layer_fields(&st, tl.source)?.into_iter().map(|p| (p, json!("String"))).collect();
        if tl.derived || tiles::aggregate_below(tl.id).is_some() {
            fields.insert("count".into(), json!("Number"));
        }
        vector_layers.push(json!({"id": tl.id, "description": tl.title, "fields": fields,
            "minzoom": tiles::min_zoom(tl.id), "maxzoom": MAX_ZOOM}));
    }
    Ok(tilejson_response(&base, &layers, format, bounds, vector_layers))
}

/// The extent of a collection's records (lon/lat), none when it is empty.
pub fn layer_bounds(st: &AppState, collection: &str) -> ApiResult<Option<[f64; 4]>> {
    with_collection!(st.index, collection, |layer| Ok::<_, ApiError>(layer.bbox()))
}

/// The properties a collection's tiles carry.
pub fn layer_fields(st: &AppState, collection: &str) -> ApiResult<Vec<String>> {
    let props = with_collection!(st.index, collection, |layer| Ok::<_, ApiError>(tile_props_of(layer)))?;
    Ok(props.iter().map(|p| p.to_string()).collect())
}

/// A TileJSON 3.0.0 document for the tile layers `layers` (the path segment) within `bounds`.
fn tilejson_response(
    base: &str,
    layers: &str,
    format: TileFormat,
    bounds: Option<[f64; 4]>,
    vector_layers: Vec<serde_json::Value>,
) -> Response {
    let b = bounds.unwrap_or([-180.0, -85.0511, 180.0, 85.0511]);
    let mut body = json!({
        "tilejson": "3.0.0",
        "name": layers,
        "tiles": [format!("{base}/tiles/{layers}/{{z}}/{{x}}/{{y}}")],
        "minzoom": 0,
        "maxzoom": MAX_ZOOM,
        "bounds": b,
        "center": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, 12],
        "vector_layers": vector_layers,
    });
    if format == TileFormat::Mlt {
        // MapLibre's vector source reads the encoding from here and asks for MLT tiles.
        body["tiles"] = json!([format!("{base}/tiles/{layers}/{{z}}/{{x}}/{{y}}?f=mlt")]);
        body["encoding"] = json!("mlt");
    }
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
