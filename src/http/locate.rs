//! `GET` and batch `POST /api/v1/locate`: which unit grid is a phone in, and who answers there.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, to_storage};
use crate::geo::Crs;
use crate::grids;
use crate::index::CityIndex;
use crate::index::{LocationCache, LocationCodes};
use crate::model::Str;

/// The most points one batch request may carry (api.md).
pub const MAX_BATCH: usize = 100_000;

pub async fn get_locate(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let lon = p.f64("lon")?.ok_or_else(|| p.required("lon").unwrap_err())?;
    let lat = p.f64("lat")?.ok_or_else(|| p.required("lat").unwrap_err())?;
    let crs = p.crs()?;
    let (clon, clat) = to_storage(&crs, lon, lat)?;
    let loc = grids::locate(&st.index, clon, clat).ok_or_else(|| {
        ApiError::not_found("outside-grids", format!("point ({lon}, {lat}) in {} is in no unit grid", crs.name()))
    })?;
    let fragment = location_fragment(&loc);
    let mut out = String::with_capacity(fragment.len() + 128);
    write_result(&mut out, &fragment, &crs.name(), (lon, lat), (clon, clat));
    Ok(json_response(out))
}

#[derive(Deserialize)]
pub struct BatchRequest {
    #[serde(default)]
    crs: Option<String>,
    points: Vec<[f64; 2]>,
    /// Only these codes per point (`grid`, `community`, `street`, `district`, `responsible`):
    /// a field app that needs the grid's code gets a few bytes a point instead of the whole
    /// location.
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// A code a compact batch answer may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Grid,
    Community,
    Street,
    District,
    /// The responsible departments' codes, narrowest region first.
    Responsible,
}

impl Field {
    const ALL: [Field; 5] = [Field::Grid, Field::Community, Field::Street, Field::District, Field::Responsible];

    fn as_str(self) -> &'static str {
        match self {
            Field::Grid => "grid",
            Field::Community => "community",
            Field::Street => "street",
            Field::District => "district",
            Field::Responsible => "responsible",
        }
    }

    /// The fields a request names, in its order, each once; 400 for an unknown or an empty list.
    fn parse_all(names: &[String]) -> ApiResult<Vec<Field>> {
        if names.is_empty() {
            return Err(ApiError::bad_request("invalid-field", "fields is empty; leave it out for whole locations"));
        }
        let mut out: Vec<Field> = Vec::new();
        for n in names {
            let f = Field::ALL.into_iter().find(|f| f.as_str() == n).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid-field",
                    format!("unknown field {n:?}; one of grid, community, street, district, responsible"),
                )
            })?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        Ok(out)
    }
}

pub async fn post_locate(State(st): State<AppState>, JsonBody(req): JsonBody<BatchRequest>) -> ApiResult<Response> {
    if req.points.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch-too-large",
            format!("{} points in one request; the limit is {MAX_BATCH}", req.points.len()),
        ));
    }
    let crs: Crs = req.crs.as_deref().map(str::parse).transpose()?.unwrap_or(Crs::Wgs84);
    let fields = req.fields.as_deref().map(Field::parse_all).transpose()?;
    let index = st.index.clone();
    // Converting, locating and rendering 100,000 points is CPU work: off the async executor.
    let body = tokio::task::spawn_blocking(move || {
        // Validate every point before any work, so one bad point fails the batch as a whole.
        let storage = req
            .points
            .iter()
            .enumerate()
            .map(|(i, &[lon, lat])| {
                to_storage(&crs, lon, lat)
                    .map_err(|e| ApiError::bad_request(e.kind, format!("points[{i}]: {}", e.detail)))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok::<_, ApiError>(match &fields {
            Some(fields) => render_codes(&index, fields, &storage),
            None => render_batch(&index, &crs, &req.points, &storage),
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(json_response(body))
}

/// Points located per hold of the grids lock: long enough to amortise it, short enough that a
/// writer waiting for the lock is not starved by a 100,000-point batch.
const CHUNK: usize = 4096;

fn render_batch(index: &CityIndex, crs: &Crs, input: &[[f64; 2]], storage: &[(f64, f64)]) -> String {
    let crs_name = crs.name();
    let mut out = String::with_capacity(input.len() * 480 + 16);
    out.push_str("{\"results\":[");
    for (chunk_no, chunk) in storage.chunks(CHUNK).enumerate() {
        let codes = grid_codes(index, chunk);
        let fragments = cached_fragments(index, &codes);
        for (j, fragment) in fragments.iter().enumerate() {
            let i = chunk_no * CHUNK + j;
            if i > 0 {
                out.push(',');
            }
            match fragment {
                None => out.push_str("null"),
                Some(f) => {
                    let [lon, lat] = input[i];
                    write_result(&mut out, f, &crs_name, (lon, lat), storage[i]);
                }
            }
        }
    }
    out.push_str("]}");
    out
}

/// The grid code of each point, a chunk at a time under the grids lock.
fn grid_codes(index: &CityIndex, chunk: &[(f64, f64)]) -> Vec<Option<Str>> {
    let grids = index.grids.read();
    chunk.iter().map(|&(x, y)| grids.at_point(x, y).map(|g| g.code.clone())).collect()
}

/// A compact batch answer: per point an object of the asked codes, or null outside every grid.
fn render_codes(index: &CityIndex, fields: &[Field], storage: &[(f64, f64)]) -> String {
    let parents = fields.iter().any(|f| *f != Field::Grid);
    let mut out = String::with_capacity(storage.len() * (24 * fields.len() + 4) + 16);
    out.push_str("{\"results\":[");
    let quoted = |out: &mut String, s: Option<&str>| match s {
        // Codes are digits and letters: written as they are, anything else escaped.
        Some(s) if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Some(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
        None => out.push_str("null"),
    };
    for (chunk_no, chunk) in storage.chunks(CHUNK).enumerate() {
        let codes = grid_codes(index, chunk);
        let more = if parents { cached_codes(index, &codes) } else { vec![None; codes.len()] };
        for (j, (grid, more)) in codes.iter().zip(&more).enumerate() {
            if chunk_no + j > 0 {
                out.push(',');
            }
            let Some(grid) = grid else {
                out.push_str("null");
                continue;
            };
            for (k, f) in fields.iter().enumerate() {
                out.push(if k == 0 { '{' } else { ',' });
                out.push('"');
                out.push_str(f.as_str());
                out.push_str("\":");
                let m = more.as_deref();
                match f {
                    Field::Grid => quoted(&mut out, Some(grid)),
                    Field::Community => quoted(&mut out, m.and_then(|m| m.community.as_deref())),
                    Field::Street => quoted(&mut out, m.and_then(|m| m.street.as_deref())),
                    Field::District => quoted(&mut out, m.and_then(|m| m.district.as_deref())),
                    Field::Responsible => {
                        out.push('[');
                        for (r, d) in m.map_or(&[][..], |m| &m.responsible[..]).iter().enumerate() {
                            if r > 0 {
                                out.push(',');
                            }
                            quoted(&mut out, Some(d));
                        }
                        out.push(']');
                    }
                }
            }
            out.push('}');
        }
    }
    out.push_str("]}");
    out
}

/// The rendered location of each grid code, from the index's cache, rendering the missing ones.
fn cached_fragments(index: &CityIndex, codes: &[Option<Str>]) -> Vec<Option<Arc<str>>> {
    cached(index, codes, |c| &c.answers, |c| &mut c.answers, |loc| Arc::from(location_fragment(&loc)))
}

/// The parents' and responsible departments' codes of each grid code, cached as the fragments.
fn cached_codes(index: &CityIndex, codes: &[Option<Str>]) -> Vec<Option<Arc<LocationCodes>>> {
    cached(
        index,
        codes,
        |c| &c.codes,
        |c| &mut c.codes,
        |loc| {
            let code = |n: Option<grids::Named>| n.map(|n| n.code);
            Arc::new(LocationCodes {
                community: code(loc.community),
                street: code(loc.street),
                district: code(loc.district),
                responsible: loc.responsible.into_iter().map(|r| r.dept_code).collect(),
            })
        },
    )
}

/// What `map` (`map_mut`) keeps per grid in the index's location cache, for each grid code (none
/// for none), made by `make` from the grid's location for those not cached yet.
fn cached<T: Clone>(
    index: &CityIndex,
    codes: &[Option<Str>],
    map: impl Fn(&LocationCache) -> &HashMap<Str, T>,
    map_mut: impl Fn(&mut LocationCache) -> &mut HashMap<Str, T>,
    make: impl Fn(grids::Location) -> T,
) -> Vec<Option<T>> {
    let (generation, mut found, mut missing) = {
        let cache = index.location_cache.read();
        let generation = cache.generation;
        let answers = map(&cache);
        let mut missing = Vec::new();
        let found: Vec<Option<T>> = codes
            .iter()
            .map(|c| {
                let hit = c.as_ref().and_then(|c| answers.get(c).cloned());
                if hit.is_none()
                    && let Some(c) = c
                {
                    missing.push(c.clone());
                }
                hit
            })
            .collect();
        (generation, found, missing)
    };
    if missing.is_empty() {
        return found;
    }
    missing.sort_unstable();
    missing.dedup();
    // Heads first under the grids lock alone, then the parents: never two layer locks at once.
    let heads: Vec<grids::GridHead> = {
        let gl = index.grids.read();
        missing.iter().filter_map(|c| gl.get(c).map(grids::GridHead::of)).collect()
    };
    let made: HashMap<Str, T> =
        heads.into_iter().map(|h| (h.info.code.clone(), make(grids::describe(index, h)))).collect();
    for (slot, code) in found.iter_mut().zip(codes) {
        if slot.is_none() {
            *slot = code.as_ref().and_then(|c| made.get(c).cloned());
        }
    }
    let mut cache = index.location_cache.write();
    if cache.generation == generation {
        map_mut(&mut cache).extend(made);
    }
    found
}

/// The location object without its closing brace, ready for the per-point fields.
fn location_fragment(loc: &grids::Location) -> String {
    let mut s = serde_json::to_string(loc).expect("a Location always serialises");
    s.pop();
    s
}

/// Appends one result: the grid's rendered location plus the per-point fields. Numbers go
/// through ryu (shortest round-trip form, as serde_json writes them): with four per point, float
/// formatting is a visible share of a 100,000-point batch.
fn write_result(out: &mut String, fragment: &str, crs_name: &str, input: (f64, f64), storage: (f64, f64)) {
    out.push_str(fragment);
    out.push_str(",\"input\":");
    write_lon_lat(out, input, Some(crs_name));
    out.push_str(",\"cgcs2000\":");
    write_lon_lat(out, storage, None);
    out.push('}');
}

/// `{"lon":..,"lat":..[,"crs":".."]}`.
fn write_lon_lat(out: &mut String, (lon, lat): (f64, f64), crs: Option<&str>) {
    let mut num = ryu::Buffer::new();
    out.push_str("{\"lon\":");
    out.push_str(num.format(lon));
    out.push_str(",\"lat\":");
    out.push_str(num.format(lat));
    if let Some(c) = crs {
        out.push_str(",\"crs\":\"");
        out.push_str(c);
        out.push('"');
    }
    out.push('}');
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{DemoParams, generate};

    #[test]
    fn location_cache_fills_once_and_forgets_on_change() {
        let index = CityIndex::from_city(generate(&DemoParams::scaled(0.02)));
        let code = index.grids.read().iter().next().expect("a grid").code.clone();
        let first = cached_fragments(&index, &[Some(code.clone()), None, Some(code.clone())]);
        assert!(first[0].is_some() && first[1].is_none());
        assert_eq!(first[0], first[2]);
        assert!(first[0].as_deref().unwrap().contains(code.as_str()));
        assert_eq!(index.location_cache.read().answers.len(), 1);
        // A second call is served from the cache: the very same allocation.
        let again = cached_fragments(&index, &[Some(code.clone())]);
        assert!(Arc::ptr_eq(first[0].as_ref().unwrap(), again[0].as_ref().unwrap()));
        index.hierarchy_changed();
        assert!(index.location_cache.read().answers.is_empty());
        assert_eq!(index.location_cache.read().generation, 1);
        let rebuilt = cached_fragments(&index, &[Some(code)]);
        assert!(!Arc::ptr_eq(first[0].as_ref().unwrap(), rebuilt[0].as_ref().unwrap()));
        assert_eq!(first[0], rebuilt[0], "same hierarchy, same answer");
    }
}
