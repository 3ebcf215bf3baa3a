//! `GET` and batch `POST /api/v1/locate`: which unit grid is a phone in, and who answers there.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params, to_storage};
use crate::geo::Crs;
use crate::grids;
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
    write_result(&mut out, &fragment, &crs, (lon, lat), (clon, clat));
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
                to_storage(&crs, lon, lat).map_err(|e| ApiError { detail: format!("points[{i}]: {}", e.detail), ..e })
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

fn render_batch(index: &crate::index::CityIndex, crs: &Crs, input: &[[f64; 2]], storage: &[(f64, f64)]) -> String {
    // A location depends only on the grid, so each grid's JSON is rendered once per request.
    let mut fragments: HashMap<Str, String> = HashMap::new();
    let mut out = String::with_capacity(input.len() * 200 + 16);
    out.push_str("{\"results\":[");
    for (chunk_no, chunk) in storage.chunks(CHUNK).enumerate() {
        let mut new_heads = Vec::new();
        let codes: Vec<Option<Str>> = {
            let grids = index.grids.read();
            chunk
                .iter()
                .map(|&(x, y)| {
                    grids.at_point(x, y).map(|g| {
                        fragments.entry(g.code.clone()).or_insert_with(|| {
                            new_heads.push(grids::GridHead::of(g));
                            String::new()
                        });
                        g.code.clone()
                    })
                })
                .collect()
        };
        for head in new_heads {
            let code = head.info.code.clone();
            fragments.insert(code, location_fragment(&grids::describe(index, head)));
        }
        for (j, code) in codes.iter().enumerate() {
            let i = chunk_no * CHUNK + j;
            if i > 0 {
                out.push(',');
            }
            match code {
                None => out.push_str("null"),
                Some(c) => {
                    let [lon, lat] = input[i];
                    write_result(&mut out, &fragments[c], crs, (lon, lat), storage[i]);
                }
            }
        }
    }
    out.push_str("]}");
    out
}

/// The location object without its closing brace, ready for the per-point fields.
fn location_fragment(loc: &grids::Location) -> String {
    let mut s = serde_json::to_string(loc).expect("a Location always serialises");
    s.pop();
    s
}

fn write_result(out: &mut String, fragment: &str, crs: &Crs, input: (f64, f64), storage: (f64, f64)) {
    out.push_str(fragment);
    let _ = write!(
        out,
        ",\"input\":{{\"lon\":{},\"lat\":{},\"crs\":\"{}\"}},\"cgcs2000\":{{\"lon\":{},\"lat\":{}}}}}",
        input.0,
        input.1,
        crs.name(),
        storage.0,
        storage.1
    );
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
