//! OGC API - Features, Part 1 core, over the live index: landing page, conformance, collections,
//! items with bbox / datetime / property filters / `within` / `near`, and single items, as
//! GeoJSON that QGIS and GDAL's OAPIF driver read directly.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use geo::MapCoords;
use geozero::ToJson;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, out_of_scope, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{Params, PathParams};
use crate::geo::Crs;
use crate::index::{Layer, Record};

pub use crate::index::query::{DEFAULT_LIMIT, ItemQuery, MAX_LIMIT, Near, TimeRange, parse_polygon, parse_polygon_as};

use crate::model::Collection;

/// [`crate::index::with_layer`] for a collection id from a URL, unknown ones answered by a 404
/// problem.
macro_rules! with_collection {
    ($index:expr, $id:expr, |$layer:ident| $body:expr) => {{
        let id: &str = $id;
        match $crate::model::Collection::feature(id) {
            Some(c) => $crate::index::with_layer!($index, c, |$layer| $body, unreachable!("a feature collection")),
            None => Err($crate::http::features::unknown_collection(id)),
        }
    }};
}

pub(crate) use with_collection;

pub fn unknown_collection(id: &str) -> ApiError {
    let known: Vec<&str> = Collection::FEATURES.iter().map(|c| c.as_str()).collect();
    ApiError::not_found("unknown-collection", format!("no collection {id:?}; collections are {}", known.join(", ")))
}

/// `http://host` of the request, so links work behind whatever name the client used.
/// Only a well-formed `host[:port]` is echoed into links; anything else falls back to the default.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
        .unwrap_or("127.0.0.1:8080");
    let proto = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}")
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn geojson_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/geo+json")], body).into_response()
}

pub async fn landing(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    json_response(json!({
        "title": "onemap 城市运行管理服务平台 一张图",
        "description": "Unit grids, components, cases and sensors of one city, live, as OGC API - Features.",
        "links": [
            {"href": format!("{base}/"), "rel": "self", "type": "application/json", "title": "This document"},
            // QGIS refuses a landing page without the OpenAPI link, and GDAL reads the page size
            // limit from the document.
            {"href": format!("{base}/api"), "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0", "title": "OpenAPI definition"},
            {"href": format!("{base}/api"), "rel": "service-doc", "type": "application/vnd.oai.openapi+json;version=3.0", "title": "API documentation"},
            {"href": format!("{base}/conformance"), "rel": "conformance", "type": "application/json", "title": "Conformance"},
            {"href": format!("{base}/collections"), "rel": "data", "type": "application/json", "title": "Collections"},
            {"href": format!("{base}/tileMatrixSets"), "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", "type": "application/json", "title": "Tiling schemes"},
            {"href": format!("{base}/tiles"), "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", "type": "application/json", "title": "Vector tiles of the whole dataset"},
        ]
    }))
}

pub async fn conformance() -> Response {
    let features = [
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    ];
    let all: Vec<&str> = features.into_iter().chain(super::ogc_tiles::CONFORMANCE.iter().copied()).collect();
    json_response(json!({ "conformsTo": all }))
}

fn collection_json(st: &AppState, base: &str, id: &str, title: &str, description: &str) -> ApiResult<Value> {
    let bbox = with_collection!(st.index, id, |layer| Ok(layer.bbox()))?;
    let mut c = json!({
        "id": id,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
        "storageCrs": "http://www.opengis.net/def/crs/EPSG/0/4490",
        "links": [
            {"href": format!("{base}/collections/{id}"), "rel": "self", "type": "application/json", "title": title},
            {"href": format!("{base}/collections/{id}/items"), "rel": "items", "type": "application/geo+json", "title": title},
            {"href": format!("{base}/collections/{id}/tiles"), "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", "type": "application/json", "title": title},
        ]
    });
    if let Some(b) = bbox {
        c["extent"] = json!({"spatial": {"bbox": [b], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}});
    }
    Ok(c)
}

pub async fn collections(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let base = base_url(&headers);
    let cols = Collection::FEATURES
        .iter()
        .map(|c| collection_json(&st, &base, c.as_str(), c.title(), c.description()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(json_response(json!({
        "links": [{"href": format!("{base}/collections"), "rel": "self", "type": "application/json"}],
        "collections": cols,
    })))
}

pub async fn collection(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let c = Collection::feature(&id).ok_or_else(|| unknown_collection(&id))?;
    Ok(json_response(collection_json(&st, &base_url(&headers), c.as_str(), c.title(), c.description())?))
}

/// Writes one record as a GeoJSON Feature, coordinates in `crs`.
fn write_feature<T: Record>(out: &mut String, r: &T, crs: &Crs, distance: Option<f64>) -> ApiResult<()> {
    let mut g = r.geometry();
    if !matches!(crs, Crs::Wgs84 | Crs::Cgcs2000) {
        g = g.map_coords(|c| {
            let (x, y) = crs.from_cgcs2000(c.x, c.y).unwrap_or((c.x, c.y));
            geo::coord! { x: x, y: y }
        });
    }
    let geom = g.to_json().map_err(ApiError::internal)?;
    let mut props = r.properties();
    if let Some(d) = distance {
        props.insert("distance_m".into(), json!((d * 100.0).round() / 100.0));
    }
    out.push_str("{\"type\":\"Feature\",\"id\":");
    out.push_str(&serde_json::to_string(r.key().as_str()).map_err(ApiError::internal)?);
    out.push_str(",\"geometry\":");
    out.push_str(&geom);
    out.push_str(",\"properties\":");
    out.push_str(&Value::Object(props).to_string());
    out.push('}');
    Ok(())
}

fn items_page<T: Record>(
    layer: &Layer<T>,
    q: &ItemQuery,
    self_url: &str,
    next_url: impl Fn(usize) -> String,
) -> ApiResult<String> {
    let (matched, page): (usize, Vec<(&T, Option<f64>)>) = if q.is_plain() {
        (layer.len(), layer.iter().skip(q.offset).take(q.limit).map(|r| (r, None)).collect())
    } else {
        let mut n = 0;
        let mut page = Vec::new();
        for hit in q.run(layer) {
            if n >= q.offset && page.len() < q.limit {
                page.push(hit);
            }
            n += 1;
        }
        (n, page)
    };
    let mut out = String::with_capacity(page.len() * 400 + 512);
    out.push_str("{\"type\":\"FeatureCollection\",\"features\":[");
    for (i, (r, d)) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_feature(&mut out, *r, &q.crs, *d)?;
    }
    out.push(']');
    let mut links = vec![json!({"href": self_url, "rel": "self", "type": "application/geo+json"})];
    if q.offset + page.len() < matched {
        links.push(json!({"href": next_url(q.offset + q.limit), "rel": "next", "type": "application/geo+json"}));
    }
    if q.offset > 0 {
        links.push(
            json!({"href": next_url(q.offset.saturating_sub(q.limit)), "rel": "prev", "type": "application/geo+json"}),
        );
    }
    out.push_str(&format!(
        ",\"numberMatched\":{},\"numberReturned\":{},\"timeStamp\":{},\"links\":{}}}",
        matched,
        page.len(),
        json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        Value::Array(links)
    ));
    Ok(out)
}

/// The scope filters a caller's items query of collection `id` gets: a department's or an
/// area's cases only.
fn scope_filters(who: &Option<Caller>, id: &str) -> Vec<(String, String)> {
    if id == Collection::Cases.as_str() { scope_of(who).filters() } else { Vec::new() }
}

pub async fn items(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
    let scoped = scope_filters(&who, &id);
    let base = base_url(&headers);
    let path = format!("{base}/collections/{id}/items");
    let self_url = if p.0.is_empty() {
        path.clone()
    } else {
        format!("{path}?{}", serde_urlencoded::to_string(&p.0).unwrap_or_default())
    };
    // Filtering and encoding a page can touch millions of records: off the async executor.
    let index = st.index.clone();
    let body = tokio::task::spawn_blocking(move || {
        let url_with_offset = |offset: usize| {
            let mut m = p.0.clone();
            m.insert("offset".into(), offset.to_string());
            format!("{path}?{}", serde_urlencoded::to_string(&m).unwrap_or_default())
        };
        with_collection!(index, id.as_str(), |layer| {
            let mut q = ItemQuery::parse(&p.0, props_of(layer))?;
            q.filters.extend(scoped);
            items_page(layer, &q, &self_url, url_with_offset)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(geojson_response(body))
}

/// Percent-encodes one path segment.
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn props_of<T: Record>(_: &Layer<T>) -> &'static [&'static str] {
    T::PROPERTIES
}

/// The properties a collection's vector tiles carry.
pub(crate) fn tile_props_of<T: Record>(_: &Layer<T>) -> &'static [&'static str] {
    T::TILE_PROPERTIES
}

pub async fn item(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
    PathParams((id, fid)): PathParams<(String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let base = base_url(&headers);
    let crs = p.crs()?;
    let scope = scope_of(&who);
    if id == Collection::Cases.as_str()
        && !scope.is_all()
        && st.index.cases.read().get(&fid).is_some_and(|c| !scope.sees(c))
    {
        return Err(out_of_scope(who.as_ref().map(|c| &c.0), format!("see case {fid}, which is outside its scope")));
    }
    let body = with_collection!(st.index, id.as_str(), |layer| {
        let r = layer
            .get(&fid)
            .ok_or_else(|| ApiError::not_found("unknown-feature", format!("no feature {fid:?} in {id}")))?;
        let mut out = String::new();
        write_feature(&mut out, r, &crs, None)?;
        // Add the links member required by OGC API Features for a single item.
        let links = json!([
            {"href": format!("{base}/collections/{id}/items/{}", url_segment(&fid)), "rel": "self", "type": "application/geo+json"},
            {"href": format!("{base}/collections/{id}"), "rel": "collection", "type": "application/json"},
        ]);
        out.pop();
        out.push_str(",\"links\":");
        out.push_str(&links.to_string());
        out.push('}');
        Ok(out)
    })?;
    Ok(geojson_response(body))
}
