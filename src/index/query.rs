//! The items query model of OGC API - Features (`bbox`, `within`, `near`, `datetime`, property
//! filters, paging, `crs`): parsed from query parameters into a validated [`ItemQuery`] and run
//! against a layer. The features API, tiles' filters and exports (HTTP and `onemap export`) share
//! it; its errors name a stable problem type that the HTTP layer maps in one place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use geo::{Geometry, MapCoords};
use geozero::ToGeo;

use super::{Layer, Record};
use crate::geo::{Crs, CrsError, check_lon_lat};

/// Query parameters by name.
pub type Params = BTreeMap<String, String>;

/// A query parameter the rules refuse: `kind` is the stable problem type (`invalid-bbox`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct QueryError {
    pub kind: &'static str,
    pub detail: String,
}

impl QueryError {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> QueryError {
        QueryError { kind, detail: detail.into() }
    }
}

impl From<CrsError> for QueryError {
    fn from(e: CrsError) -> Self {
        let kind = match e {
            CrsError::OutOfRange { .. } => "coordinates-out-of-range",
            _ => "invalid-crs",
        };
        QueryError::new(kind, e.to_string())
    }
}

/// Default and maximum page sizes (api.md).
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

fn get<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).map(String::as_str)
}

/// A finite number, or an error naming the parameter.
pub fn parse_f64(k: &str, v: &str) -> Result<f64, QueryError> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(QueryError::new("invalid-parameter", format!("{k}={v:?} is not a finite number"))),
    }
}

pub fn f64_of(p: &Params, k: &str) -> Result<Option<f64>, QueryError> {
    get(p, k).map(|v| parse_f64(k, v)).transpose()
}

pub fn usize_of(p: &Params, k: &str) -> Result<Option<usize>, QueryError> {
    get(p, k)
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| QueryError::new("invalid-parameter", format!("{k}={v:?} is not a non-negative integer")))
        })
        .transpose()
}

/// The `crs` parameter, WGS84 when absent.
pub fn crs_of(p: &Params) -> Result<Crs, QueryError> {
    let crs = get(p, "crs").map(str::parse::<Crs>).transpose()?.unwrap_or(Crs::Wgs84);
    // Honoured or refused: a projected CRS (EPSG:3857) would otherwise be answered in degrees.
    if let Crs::Epsg(code) = crs.canonical() {
        return Err(crate::geo::CrsError::Unsupported(code).into());
    }
    Ok(crs)
}

/// Converts a lon/lat in `crs` to storage CGCS2000, checking range first.
pub fn to_storage(crs: &Crs, lon: f64, lat: f64) -> Result<(f64, f64), QueryError> {
    check_lon_lat(lon, lat)?;
    Ok(crs.to_cgcs2000(lon, lat)?)
}

/// A comma-separated list of numbers such as `bbox` or `near`.
pub fn parse_numbers(k: &str, v: &str) -> Result<Vec<f64>, QueryError> {
    v.split(',').map(|p| parse_f64(k, p)).collect()
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
    pub fn parse(p: &Params, properties: &[&str]) -> Result<Self, QueryError> {
        let crs = crs_of(p)?;
        if let Some(f) = get(p, "f")
            && !matches!(f, "json" | "geojson")
        {
            return Err(QueryError::new("invalid-parameter", format!("f={f:?}: only json is served")));
        }
        if let Some(bc) = get(p, "bbox-crs") {
            let c: Crs = bc.parse()?;
            if !matches!(c, Crs::Wgs84 | Crs::Cgcs2000) {
                return Err(QueryError::new(
                    "invalid-crs",
                    format!("bbox-crs {bc:?}: only CRS84, EPSG:4326 and EPSG:4490"),
                ));
            }
        }
        let bbox = get(p, "bbox").map(|v| parse_bbox(v, &crs)).transpose()?;
        let within = get(p, "within").map(|v| parse_polygon(v, &crs)).transpose()?;
        let near = get(p, "near").map(|v| parse_near(v, p, &crs)).transpose()?;
        if near.is_none() && (get(p, "radius").is_some() || get(p, "k").is_some()) {
            return Err(QueryError::new("invalid-parameter", "radius and k go with near=lon,lat"));
        }
        let datetime = get(p, "datetime").map(parse_datetime).transpose()?;
        let limit = usize_of(p, "limit")?.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(QueryError::new("invalid-limit", format!("limit={limit}: must be 1 to {MAX_LIMIT}")));
        }
        let offset = usize_of(p, "offset")?.unwrap_or(0);
        let mut filters = Vec::new();
        for (k, v) in p {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            if !properties.contains(&k.as_str()) {
                return Err(QueryError::new(
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
    pub fn is_plain(&self) -> bool {
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

fn parse_bbox(v: &str, crs: &Crs) -> Result<[f64; 4], QueryError> {
    let n = parse_numbers("bbox", v)?;
    let (a, b, c, d) = match n.as_slice() {
        [a, b, c, d] => (*a, *b, *c, *d),
        // A 3D bbox: minx, miny, minz, maxx, maxy, maxz; heights are ignored.
        [a, b, _, c, d, _] => (*a, *b, *c, *d),
        _ => {
            return Err(QueryError::new(
                "invalid-bbox",
                format!("bbox={v:?}: four numbers minLon,minLat,maxLon,maxLat"),
            ));
        }
    };
    if a > c || b > d {
        return Err(QueryError::new("invalid-bbox", format!("bbox={v:?}: min must not exceed max")));
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
pub fn parse_polygon(v: &str, crs: &Crs) -> Result<Geometry<f64>, QueryError> {
    parse_polygon_as("within", v, crs)
}

/// [`parse_polygon`] for the parameter or field `name`, which problems name.
pub fn parse_polygon_as(name: &str, v: &str, crs: &Crs) -> Result<Geometry<f64>, QueryError> {
    let t = v.trim();
    if t.len() > MAX_POLYGON_TEXT {
        return Err(QueryError::new("invalid-geometry", format!("{name}: more than {MAX_POLYGON_TEXT} bytes")));
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
    let g = parsed.map_err(|e| QueryError::new("invalid-geometry", format!("{name}: {e}")))?;
    if !matches!(g, Geometry::Polygon(_) | Geometry::MultiPolygon(_)) {
        return Err(QueryError::new("invalid-geometry", format!("{name}: a Polygon or MultiPolygon is required")));
    }
    use geo::CoordsIter;
    let n = g.coords_count();
    if !(4..=MAX_POLYGON_VERTICES).contains(&n) {
        return Err(QueryError::new(
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
        return Err(QueryError::new("invalid-geometry", format!("{name}: invalid polygon: {problem}")));
    }
    // Either ring orientation is valid OGC (a Shapefile winds its outer rings clockwise);
    // geodesic areas read a clockwise ring as the rest of the globe, so every polygon is wound
    // the one way here: outer rings counter-clockwise, holes clockwise.
    use geo::orient::{Direction, Orient};
    Ok(match g {
        Geometry::Polygon(p) => Geometry::Polygon(p.orient(Direction::Default)),
        Geometry::MultiPolygon(m) => Geometry::MultiPolygon(m.orient(Direction::Default)),
        other => other,
    })
}

fn parse_near(v: &str, p: &Params, crs: &Crs) -> Result<Near, QueryError> {
    let n = parse_numbers("near", v)?;
    let [lon, lat] = n.as_slice() else {
        return Err(QueryError::new("invalid-parameter", format!("near={v:?}: two numbers lon,lat")));
    };
    if !(-90.0..=90.0).contains(lat) || !lon.is_finite() {
        return Err(QueryError::new(
            "invalid-parameter",
            format!("near={v:?}: latitude -90 to 90, a finite longitude"),
        ));
    }
    // Longitudes wrap: 190 is -170.
    let lon = (lon + 180.0).rem_euclid(360.0) - 180.0;
    let (lon, lat) = to_storage(crs, lon, *lat)?;
    match (f64_of(p, "radius")?, usize_of(p, "k")?) {
        (Some(m), None) if m > 0.0 && m <= MAX_RADIUS_M => Ok(Near::Radius { lon, lat, m }),
        (Some(m), None) => Err(QueryError::new(
            "invalid-parameter",
            format!("radius={m}: must be above 0 and at most {MAX_RADIUS_M} m"),
        )),
        (None, Some(k)) if (1..=MAX_LIMIT).contains(&k) => Ok(Near::K { lon, lat, k }),
        (None, Some(k)) => Err(QueryError::new("invalid-parameter", format!("k={k}: must be 1 to {MAX_LIMIT}"))),
        _ => Err(QueryError::new("invalid-parameter", "near needs exactly one of radius (metres) or k (count)")),
    }
}

/// An OGC `datetime` interval: open ends are `None`.
pub type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An RFC 3339 instant or an interval `start/end` where either side may be `..` or empty; both
/// ends are inclusive. A bare date `YYYY-MM-DD` is a whole city day (China Standard Time, as
/// the analyses and the evaluation count days): from its first instant as a start, to its last
/// as an end, so `2026-10-01/2026-10-31` holds all of October.
fn parse_datetime(v: &str) -> Result<TimeRange, QueryError> {
    let one = |s: &str, end: bool| -> Result<Option<DateTime<Utc>>, QueryError> {
        if s.is_empty() || s == ".." {
            return Ok(None);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| QueryError::new("invalid-datetime", format!("datetime {s:?}: RFC 3339 or YYYY-MM-DD")))?;
        let day = if end { day.succ_opt().unwrap_or(day) } else { day };
        let midnight = day
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(crate::model::city_tz()).single())
            .ok_or_else(|| QueryError::new("invalid-datetime", format!("datetime {s:?}: out of range")))?
            .with_timezone(&Utc);
        Ok(Some(if end { midnight - chrono::Duration::nanoseconds(1) } else { midnight }))
    };
    match v.split_once('/') {
        Some((a, b)) => {
            let (from, to) = (one(a, false)?, one(b, true)?);
            if let (Some(f), Some(t)) = (from, to)
                && f > t
            {
                return Err(QueryError::new("invalid-datetime", format!("datetime={v:?}: start after end")));
            }
            Ok((from, to))
        }
        None => {
            let (from, to) = (one(v, false)?, one(v, true)?);
            if from.is_none() {
                return Err(QueryError::new("invalid-datetime", "datetime: an instant or an interval"));
            }
            Ok((from, to))
        }
    }
}
