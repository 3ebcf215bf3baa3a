//! OGC API - Features, Part 1 core, over the live index: landing page, conformance, collections,
//! items with bbox / datetime / property filters / `within` / `near`, and single items, as
//! GeoJSON that QGIS and GDAL's OAPIF driver read directly.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use geo::{Geometry, MapCoords};
use geozero::{ToGeo, ToJson};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{Params, PathParams, parse_numbers, to_storage};
use crate::geo::Crs;
use crate::index::{Layer, Record};

/// Default and maximum page sizes (api.md).
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

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
        ]
    }))
}

pub async fn conformance() -> Response {
    json_response(json!({
        "conformsTo": [
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
        ]
    }))
}

/// A compact OpenAPI 3.0 definition of the Features API: enough for QGIS and GDAL, which read the
/// `limit` bounds from it.
pub async fn openapi(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let limit = json!({"name": "limit", "in": "query", "required": false, "style": "form", "explode": false,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}});
    let param = |name: &str, desc: &str| json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}});
    let items_params = json!([
        {"$ref": "#/components/parameters/collectionId"},
        {"$ref": "#/components/parameters/limit"},
        {"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"$ref": "#/components/parameters/bbox"},
        param("datetime", "RFC 3339 instant or interval (cases: reported_at)"),
        param("crs", "wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:4326 | EPSG:4490"),
        param("within", "WKT or GeoJSON polygon: features intersecting it"),
        param("near", "lon,lat with radius (metres) or k (count)"),
    ]);
    let ok = |desc: &str, media: &str| json!({"200": {"description": desc, "content": {media: {"schema": {"type": "object"}}}}});
    let mut body = json!({
        "openapi": "3.0.3",
        "info": {"title": "onemap OGC API - Features", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": base}],
        "paths": {
            "/": {"get": {"operationId": "getLandingPage", "responses": ok("landing page", "application/json")}},
            "/conformance": {"get": {"operationId": "getConformance", "responses": ok("conformance classes", "application/json")}},
            "/collections": {"get": {"operationId": "getCollections", "responses": ok("collections", "application/json")}},
            "/collections/{collectionId}": {"get": {"operationId": "describeCollection",
                "parameters": [{"$ref": "#/components/parameters/collectionId"}], "responses": ok("collection", "application/json")}},
            "/collections/{collectionId}/items": {"get": {"operationId": "getFeatures",
                "parameters": items_params, "responses": ok("features", "application/geo+json")}},
            "/collections/{collectionId}/items/{featureId}": {"get": {"operationId": "getFeature",
                "parameters": [{"$ref": "#/components/parameters/collectionId"},
                    {"name": "featureId", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": ok("feature", "application/geo+json")}},
        },
        "components": {"parameters": {
            "limit": limit,
            "bbox": {"name": "bbox", "in": "query", "required": false, "style": "form", "explode": false,
                "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
            "collectionId": {"name": "collectionId", "in": "path", "required": true,
                "schema": {"type": "string", "enum": Collection::FEATURES.iter().map(|c| c.as_str()).collect::<Vec<_>>()}},
        }},
    });
    body["info"]["description"] =
        json!("Unit grids, components, cases and sensors of one city (城市运行管理服务平台 一张图).");
    ([(header::CONTENT_TYPE, "application/vnd.oai.openapi+json;version=3.0")], body.to_string()).into_response()
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

/// `near=lon,lat` with either `radius` (metres) or `k` (count).
#[derive(Debug, Clone, Copy)]
pub enum Near {
    Radius { lon: f64, lat: f64, m: f64 },
    K { lon: f64, lat: f64, k: usize },
}

/// A parsed, validated items query.
#[derive(Debug)]
pub struct ItemQuery {
    pub bbox: Option<[f64; 4]>,
    pub within: Option<Geometry<f64>>,
    pub near: Option<Near>,
    pub datetime: Option<TimeRange>,
    pub filters: Vec<(String, String)>,
    pub limit: usize,
    pub offset: usize,
    pub crs: Crs,
}

/// Parameters that are part of the protocol rather than property filters.
const RESERVED: &[&str] =
    &["bbox", "bbox-crs", "limit", "offset", "datetime", "crs", "f", "within", "near", "radius", "k"];

/// Largest `near` radius accepted, in metres: a whole city fits well inside it.
const MAX_RADIUS_M: f64 = 200_000.0;

impl ItemQuery {
    pub fn parse(p: &Params, properties: &[&str]) -> ApiResult<Self> {
        let crs = p.crs()?;
        if let Some(f) = p.get("f")
            && !matches!(f, "json" | "geojson")
        {
            return Err(ApiError::bad_request("invalid-parameter", format!("f={f:?}: only json is served")));
        }
        if let Some(bc) = p.get("bbox-crs") {
            let c: Crs = bc.parse()?;
            if !matches!(c, Crs::Wgs84 | Crs::Cgcs2000) {
                return Err(ApiError::bad_request(
                    "invalid-crs",
                    format!("bbox-crs {bc:?}: only CRS84, EPSG:4326 and EPSG:4490"),
                ));
            }
        }
        let bbox = p.get("bbox").map(|v| parse_bbox(v, &crs)).transpose()?;
        let within = p.get("within").map(|v| parse_polygon(v, &crs)).transpose()?;
        let near = p.get("near").map(|v| parse_near(v, p, &crs)).transpose()?;
        if near.is_none() && (p.get("radius").is_some() || p.get("k").is_some()) {
            return Err(ApiError::bad_request("invalid-parameter", "radius and k go with near=lon,lat"));
        }
        let datetime = p.get("datetime").map(parse_datetime).transpose()?;
        let limit = p.usize("limit")?.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request("invalid-limit", format!("limit={limit}: must be 1 to {MAX_LIMIT}")));
        }
        let offset = p.usize("offset")?.unwrap_or(0);
        let mut filters = Vec::new();
        for (k, v) in &p.0 {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            if !properties.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    "unknown-property",
                    format!(
                        "{k:?} is neither a query parameter nor a property; properties are {}",
                        properties.join(", ")
                    ),
                ));
            }
            filters.push((k.clone(), v.clone()));
        }
        Ok(ItemQuery { bbox, within, near, datetime, filters, limit, offset, crs })
    }

    /// Every record matching the query in the layer's stable order (nearest first with `near`),
    /// with its distance in metres when `near` is given. Lazy, so counting a large match never
    /// materialises it.
    pub fn run<'a, T: Record>(&'a self, layer: &'a Layer<T>) -> Box<dyn Iterator<Item = (&'a T, Option<f64>)> + 'a> {
        let keeps = move |(r, _): &(&T, Option<f64>)| self.keeps(*r);
        match self.near {
            Some(Near::Radius { lon, lat, m }) => {
                Box::new(layer.within_radius(lon, lat, m).into_iter().map(|(r, d)| (r, Some(d))).filter(keeps))
            }
            // Filters apply inside the nearest search, so k counts matching records.
            Some(Near::K { lon, lat, k }) => {
                Box::new(layer.nearest_where(lon, lat, k, |r| self.keeps(r)).into_iter().map(|(r, d)| (r, Some(d))))
            }
            None => match (&self.within, self.bbox) {
                (Some(g), _) => Box::new(layer.intersecting(g).into_iter().map(|r| (r, None)).filter(keeps)),
                (None, Some(b)) => Box::new(layer.in_bbox(b).into_iter().map(|r| (r, None)).filter(keeps)),
                (None, None) => Box::new(layer.iter().map(|r| (r, None)).filter(keeps)),
            },
        }
    }

    /// True when nothing narrows the layer: the match is the whole layer, counted for free.
    fn is_plain(&self) -> bool {
        self.filters.is_empty()
            && self.datetime.is_none()
            && self.bbox.is_none()
            && self.within.is_none()
            && self.near.is_none()
    }

    /// The filters that are not the primary spatial search.
    fn keeps<T: Record>(&self, r: &T) -> bool {
        if (self.near.is_some() || self.within.is_some())
            && let Some(b) = self.bbox
        {
            let rect: Geometry<f64> = geo::Rect::new((b[0], b[1]), (b[2], b[3])).into();
            if !r.intersects(&rect) {
                return false;
            }
        }
        if self.near.is_some()
            && let Some(g) = &self.within
            && !r.intersects(g)
        {
            return false;
        }
        if let Some((from, to)) = self.datetime {
            // Layers without a time dimension are not filtered by datetime (OGC API Features).
            if let Some(t) = r.time()
                && (from.is_some_and(|f| t < f) || to.is_some_and(|e| t > e))
            {
                return false;
            }
        }
        r.matches(&self.filters)
    }
}

fn parse_bbox(v: &str, crs: &Crs) -> ApiResult<[f64; 4]> {
    let n = parse_numbers("bbox", v)?;
    let (a, b, c, d) = match n.as_slice() {
        [a, b, c, d] => (*a, *b, *c, *d),
        // A 3D bbox: minx, miny, minz, maxx, maxy, maxz; heights are ignored.
        [a, b, _, c, d, _] => (*a, *b, *c, *d),
        _ => {
            return Err(ApiError::bad_request(
                "invalid-bbox",
                format!("bbox={v:?}: four numbers minLon,minLat,maxLon,maxLat"),
            ));
        }
    };
    if a > c || b > d {
        return Err(ApiError::bad_request("invalid-bbox", format!("bbox={v:?}: min must not exceed max")));
    }
    // A zoomed-out desktop GIS asks for more than the world: clamp instead of refusing.
    let (a, c) = (a.clamp(-180.0, 180.0), c.clamp(-180.0, 180.0));
    let (b, d) = (b.clamp(-90.0, 90.0), d.clamp(-90.0, 90.0));
    let (x0, y0) = to_storage(crs, a, b)?;
    let (x1, y1) = to_storage(crs, c, d)?;
    Ok([x0, y0, x1, y1])
}

/// Largest polygon vertex count accepted in a query: validity checking is quadratic in it.
const MAX_POLYGON_VERTICES: usize = 10_000;
/// Largest polygon text accepted, before any parsing.
const MAX_POLYGON_TEXT: usize = 1 << 20;

/// A polygon in WKT or GeoJSON, valid, converted to storage coordinates.
pub fn parse_polygon(v: &str, crs: &Crs) -> ApiResult<Geometry<f64>> {
    parse_polygon_as("within", v, crs)
}

/// [`parse_polygon`] for the parameter or field `name`, which problems name.
pub fn parse_polygon_as(name: &str, v: &str, crs: &Crs) -> ApiResult<Geometry<f64>> {
    let t = v.trim();
    if t.len() > MAX_POLYGON_TEXT {
        return Err(ApiError::bad_request("invalid-geometry", format!("{name}: more than {MAX_POLYGON_TEXT} bytes")));
    }
    let upper = t.get(..12).unwrap_or(t).to_ascii_uppercase();
    let parsed = if t.starts_with('{') {
        // serde_json bounds nesting depth, so hostile GeoJSON cannot exhaust the stack.
        geozero::geojson::GeoJson(t).to_geo().map_err(|e| format!("GeoJSON: {e}"))
    } else if upper.starts_with("POLYGON") || upper.starts_with("MULTIPOLYGON") {
        // The WKT parser recurses without a depth limit: only polygon types (bounded nesting)
        // ever reach it, never GEOMETRYCOLLECTION.
        geozero::wkt::Wkt(t).to_geo().map_err(|e| format!("WKT: {e}"))
    } else {
        Err("expected WKT POLYGON / MULTIPOLYGON or a GeoJSON polygon".to_string())
    };
    let g = parsed.map_err(|e| ApiError::bad_request("invalid-geometry", format!("{name}: {e}")))?;
    if !matches!(g, Geometry::Polygon(_) | Geometry::MultiPolygon(_)) {
        return Err(ApiError::bad_request(
            "invalid-geometry",
            format!("{name}: a Polygon or MultiPolygon is required"),
        ));
    }
    use geo::CoordsIter;
    let n = g.coords_count();
    if !(4..=MAX_POLYGON_VERTICES).contains(&n) {
        return Err(ApiError::bad_request(
            "invalid-geometry",
            format!("{name}: {n} vertices; 4 to {MAX_POLYGON_VERTICES} allowed"),
        ));
    }
    for c in g.coords_iter() {
        to_storage(crs, c.x, c.y)?;
    }
    let g = g.map_coords(|c| {
        let (x, y) = to_storage(crs, c.x, c.y).unwrap_or((c.x, c.y));
        geo::coord! { x: x, y: y }
    });
    use geo::Validation;
    if let Some(problem) = g.validation_errors().into_iter().next() {
        return Err(ApiError::bad_request("invalid-geometry", format!("{name}: invalid polygon: {problem}")));
    }
    Ok(g)
}

fn parse_near(v: &str, p: &Params, crs: &Crs) -> ApiResult<Near> {
    let n = parse_numbers("near", v)?;
    let [lon, lat] = n.as_slice() else {
        return Err(ApiError::bad_request("invalid-parameter", format!("near={v:?}: two numbers lon,lat")));
    };
    let (lon, lat) = to_storage(crs, *lon, *lat)?;
    match (p.f64("radius")?, p.usize("k")?) {
        (Some(m), None) if m > 0.0 && m <= MAX_RADIUS_M => Ok(Near::Radius { lon, lat, m }),
        (Some(m), None) => Err(ApiError::bad_request(
            "invalid-parameter",
            format!("radius={m}: must be above 0 and at most {MAX_RADIUS_M} m"),
        )),
        (None, Some(k)) if (1..=MAX_LIMIT).contains(&k) => Ok(Near::K { lon, lat, k }),
        (None, Some(k)) => Err(ApiError::bad_request("invalid-parameter", format!("k={k}: must be 1 to {MAX_LIMIT}"))),
        _ => Err(ApiError::bad_request("invalid-parameter", "near needs exactly one of radius (metres) or k (count)")),
    }
}

/// An OGC `datetime` interval: open ends are `None`.
pub type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An RFC 3339 instant or an interval `start/end` where either side may be `..` or empty.
fn parse_datetime(v: &str) -> ApiResult<TimeRange> {
    let one = |s: &str| -> ApiResult<Option<DateTime<Utc>>> {
        if s.is_empty() || s == ".." {
            return Ok(None);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        // A bare date means the whole day, UTC.
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
            .map_err(|_| ApiError::bad_request("invalid-datetime", format!("datetime {s:?}: RFC 3339 or YYYY-MM-DD")))
    };
    match v.split_once('/') {
        Some((a, b)) => {
            let (from, to) = (one(a)?, one(b)?);
            if let (Some(f), Some(t)) = (from, to)
                && f > t
            {
                return Err(ApiError::bad_request("invalid-datetime", format!("datetime={v:?}: start after end")));
            }
            Ok((from, to))
        }
        None => {
            let t = one(v)?;
            if t.is_none() {
                return Err(ApiError::bad_request("invalid-datetime", "datetime: an instant or an interval"));
            }
            let end = if v.len() == 10 {
                t.map(|t| t + chrono::Duration::days(1) - chrono::Duration::nanoseconds(1))
            } else {
                t
            };
            Ok((t, end))
        }
    }
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

pub async fn items(
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    p: Params,
) -> ApiResult<Response> {
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
            let q = ItemQuery::parse(&p, props_of(layer))?;
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
    headers: HeaderMap,
    PathParams((id, fid)): PathParams<(String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let base = base_url(&headers);
    let crs = p.crs()?;
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
