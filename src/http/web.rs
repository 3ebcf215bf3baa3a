//! The big-screen web page (`/map/`, the built `web/dist` folder), the MapLibre styles
//! (`/styles/{name}.json`) and the glyph ranges they label with (`/fonts/{fontstack}/{range}.pbf`):
//! everything a browser on an intranet without internet needs to draw the city.

mod glyphs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::features::base_url;
use super::params::PathParams;

/// The styles, compiled in so the binary serves them from wherever it runs. URLs in them are
/// paths on this server; [`style`] makes them absolute for the requesting client.
const STYLES: &[(&str, &str)] =
    &[("dark", include_str!("../../styles/dark.json")), ("light", include_str!("../../styles/light.json"))];

/// The routes of this module, merged into [`super::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/map", get(|| async { Redirect::permanent("/map/") }))
        .route("/map/", get(page_file))
        .route("/map/{*path}", get(page_file))
        .route("/styles/{file}", get(style))
        .route("/fonts", get(fonts))
        .route("/fonts/{fontstack}/{range}", get(glyph_range))
}

impl AppState {
    /// Serves the big-screen page from `dir` (the output of the web build, `web/dist`).
    pub fn with_web_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.parts_mut().web_dir = Arc::new(dir.into());
        self
    }
}

fn missing_build(dir: &Path) -> ApiError {
    ApiError::not_found(
        "web-build-missing",
        format!(
            "the big-screen page is not built: {} has no index.html; run the web build \
             (`npm ci && npm run build` in web/, which scripts/run and scripts/test do) or point \
             --web-dir / ONEMAP_WEB_DIR at a built folder",
            dir.display()
        ),
    )
}

/// A file of the built page: `/map/` is its `index.html`, `/map/x.js` is `x.js`.
async fn page_file(State(st): State<AppState>, req: Request) -> Response {
    let dir = st.web_dir.clone();
    if !dir.join("index.html").is_file() {
        return missing_build(&dir).into_response();
    }
    let path = req.uri().path().strip_prefix("/map").unwrap_or("/").to_string();
    let (mut parts, body) = req.into_parts();
    parts.uri = match Uri::builder().path_and_query(path.as_str()).build() {
        Ok(uri) => uri,
        Err(_) => return ApiError::bad_request("invalid-path", format!("bad path {path:?}")).into_response(),
    };
    // ServeDir refuses `..` and absolute components, so nothing outside `dir` is served.
    let resp = match ServeDir::new(&*dir).oneshot(Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if resp.status() == StatusCode::NOT_FOUND {
        return ApiError::not_found("unknown-path", format!("no file /map{path} in the web build")).into_response();
    }
    let mut resp = resp.map(Body::new);
    // A screen runs for days: revalidate (cheap, Last-Modified) so a new build is picked up on reload.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /styles/{name}.json`: a MapLibre style whose sources, glyphs and sprite point at this server.
async fn style(headers: HeaderMap, PathParams(file): PathParams<String>) -> ApiResult<Response> {
    let known = || STYLES.iter().map(|s| format!("{}.json", s.0)).collect::<Vec<_>>().join(", ");
    let text =
        file.strip_suffix(".json").and_then(|name| STYLES.iter().find(|s| s.0 == name)).map(|s| s.1).ok_or_else(
            || ApiError::not_found("unknown-style", format!("no style {file:?}; styles are {}", known())),
        )?;
    let mut style: Value = serde_json::from_str(text).map_err(ApiError::internal)?;
    absolutize(&mut style, &base_url(&headers));
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], style.to_string()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Prefixes every server path in a style (source `url` and `tiles`, `glyphs`, `sprite`) with `base`.
fn absolutize(style: &mut Value, base: &str) {
    let fix = |v: &mut Value| {
        if let Some(s) = v.as_str().filter(|s| s.starts_with('/')) {
            *v = Value::String(format!("{base}{s}"));
        }
    };
    if let Some(sources) = style.get_mut("sources").and_then(Value::as_object_mut) {
        for source in sources.values_mut() {
            if let Some(url) = source.get_mut("url") {
                fix(url);
            }
            if let Some(tiles) = source.get_mut("tiles").and_then(Value::as_array_mut) {
                tiles.iter_mut().for_each(fix);
            }
        }
    }
    if let Some(glyphs) = style.get_mut("glyphs") {
        fix(glyphs);
    }
    match style.get_mut("sprite") {
        Some(Value::Array(sprites)) => sprites.iter_mut().filter_map(|s| s.get_mut("url")).for_each(fix),
        Some(sprite) => fix(sprite),
        None => {}
    }
}

/// `GET /fonts`: the font names a style may use in `text-font`.
async fn fonts() -> ApiResult<Response> {
    let names = tokio::task::spawn_blocking(glyphs::names).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json!({ "fonts": names }).to_string()).into_response())
}

/// `GET /fonts/{fontstack}/{start}-{end}.pbf`: one range of 256 code points as SDF glyphs.
async fn glyph_range(PathParams((stack, range)): PathParams<(String, String)>) -> ApiResult<Response> {
    let start = parse_range(&range)?;
    let body = tokio::task::spawn_blocking(move || glyphs::range(&stack, start))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            glyphs::GlyphError::UnknownFont(_) => ApiError::not_found("unknown-font", e.to_string()),
            glyphs::GlyphError::Render(_) => ApiError::internal(e),
        })?;
    let mut resp = ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response();
    // The fonts do not change while the server runs.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    Ok(resp)
}

/// The first code point of a `{start}-{end}.pbf` range: start a multiple of 256, end start + 255.
fn parse_range(s: &str) -> ApiResult<u32> {
    let bad = || {
        ApiError::bad_request(
            "invalid-glyph-range",
            format!("{s:?} is not a glyph range; ranges look like 0-255.pbf, 256-511.pbf, .. up to 65280-65535.pbf"),
        )
    };
    let (a, b) = s.strip_suffix(".pbf").unwrap_or(s).split_once('-').ok_or_else(bad)?;
    let (start, end) = (a.parse::<u32>().map_err(|_| bad())?, b.parse::<u32>().map_err(|_| bad())?);
    if start % 256 != 0 || end != start + 255 || end > 0xFFFF {
        return Err(bad());
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_parse_and_point_at_the_server() {
        for (name, text) in STYLES {
            let mut s: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s["version"], 8, "{name}");
            absolutize(&mut s, "http://127.0.0.1:9");
            assert_eq!(s["glyphs"], "http://127.0.0.1:9/fonts/{fontstack}/{range}.pbf");
            for (id, src) in s["sources"].as_object().unwrap() {
                let url = src["url"].as_str().unwrap_or_else(|| panic!("{name}.{id} has a TileJSON url"));
                assert!(url.starts_with("http://127.0.0.1:9/tiles/"), "{url}");
            }
            // Every layer but the background belongs to a group the page can switch.
            for l in s["layers"].as_array().unwrap() {
                assert!(l["type"] == "background" || l["metadata"]["onemap:group"].is_string(), "{}", l["id"]);
            }
        }
    }

    #[test]
    fn glyph_ranges() {
        assert_eq!(parse_range("0-255.pbf").unwrap(), 0);
        assert_eq!(parse_range("65280-65535.pbf").unwrap(), 65280);
        assert_eq!(parse_range("256-511").unwrap(), 256);
        for bad in ["1-256.pbf", "0-254.pbf", "65536-65791.pbf", "x-255.pbf", "0.pbf", ""] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
