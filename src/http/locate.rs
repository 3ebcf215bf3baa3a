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
}

pub async fn post_locate(State(st): State<AppState>, JsonBody(req): JsonBody<BatchRequest>) -> ApiResult<Response> {
    if req.points.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch-too-large",
            format!("{} points in one request; the limit is {MAX_BATCH}", req.points.len()),
        ));
    }
    let crs: Crs = req.crs.as_deref().map(str::parse).transpose()?.unwrap_or(Crs::Wgs84);
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
        Ok::<_, ApiError>(render_batch(&index, &crs, &req.points, &storage))
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
        let codes: Vec<Option<Str>> = {
            let grids = index.grids.read();
            chunk.iter().map(|&(x, y)| grids.at_point(x, y).map(|g| g.code.clone())).collect()
        };
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

/// The rendered location of each grid code, from the index's cache, rendering the missing ones.
fn cached_fragments(index: &CityIndex, codes: &[Option<Str>]) -> Vec<Option<Arc<str>>> {
    let (generation, mut found, mut missing) = {
        let cache = index.location_cache.read();
        let mut missing = Vec::new();
        let found: Vec<Option<Arc<str>>> = codes
            .iter()
            .map(|c| {
                let hit = c.as_ref().and_then(|c| cache.answers.get(c).cloned());
                if hit.is_none()
                    && let Some(c) = c
                {
                    missing.push(c.clone());
                }
                hit
            })
            .collect();
        (cache.generation, found, missing)
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
    let rendered: HashMap<Str, Arc<str>> = heads
        .into_iter()
        .map(|h| (h.info.code.clone(), Arc::from(location_fragment(&grids::describe(index, h)))))
        .collect();
    for (slot, code) in found.iter_mut().zip(codes) {
        if slot.is_none() {
            *slot = code.as_ref().and_then(|c| rendered.get(c).cloned());
        }
    }
    let mut cache = index.location_cache.write();
    if cache.generation == generation {
        cache.answers.extend(rendered);
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
