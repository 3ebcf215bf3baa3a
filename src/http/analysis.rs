//! `/api/v1/analysis/*`: hotspots (counts, Gi*, local Moran), kernel density, emerging hotspots,
//! rankings, the peak-time profile and box-select statistics, plus the `hotspots` and `density`
//! overlay tiles. Parameters are parsed here into the analysis module's types; the work runs on
//! the blocking pool, since a city-wide analysis takes tens to hundreds of milliseconds.

use rayon::prelude::*;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, scope_of};
use super::error::{ApiError, ApiResult};
use super::params::{JsonBody, Params};
use crate::analysis::density::{self, kernel_density_until};
use crate::analysis::emerging::{self, Step, Steps};
use crate::analysis::memo::Cancel;
use crate::analysis::ranking::{self, RankBy};
use crate::analysis::units::UnitKind;
use crate::analysis::{self, AnalysisError, Filter, Hotspots, Method, Source, boxstats, stats};
use crate::auth::Role;
use crate::model::{Alarm, Collection, Str};
use crate::store::log::{ChangeRow, Op};

/// The parameters every analysis takes.
const COMMON: &[&str] = &["layer", "class_code", "status", "source", "level", "from", "to"];

/// The layer and filters of a request; any parameter outside `COMMON` and `extra` is a 400, and
/// so is a class code prefix no class of the layer has, or `level` on a layer without levels.
/// The caller's scope narrows what is counted: a department counts its cases, an area its
/// area's cases and alarms.
fn common(st: &AppState, who: &Option<Caller>, p: &Params, extra: &[&str]) -> ApiResult<(Source, Filter)> {
    let city = st.deadlines.calendar.offset();
    if let Some(k) = p.0.keys().find(|k| !COMMON.contains(&k.as_str()) && !extra.contains(&k.as_str())) {
        let mut known: Vec<&str> = COMMON.to_vec();
        known.extend(extra);
        return Err(ApiError::bad_request(
            "unknown-parameter",
            format!("unknown parameter {k:?}; this analysis takes {}", known.join(", ")),
        ));
    }
    let source = Source::parse(p.get("layer").unwrap_or("cases"))?;
    let from = p.get("from").map(|v| instant("from", v, city, false)).transpose()?;
    let to = p.get("to").map(|v| instant("to", v, city, true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(AnalysisError::EmptyRange {
            from: p.get("from").unwrap_or_default().to_string(),
            to: p.get("to").unwrap_or_default().to_string(),
        }
        .into());
    }
    let text = |k: &str| p.get(k).filter(|v| !v.is_empty()).map(str::to_string);
    let filter = Filter {
        class: text("class_code"),
        status: text("status"),
        source: text("source"),
        level: text("level"),
        from,
        to,
        scope: scope_of(who),
    };
    if let Some(c) = filter.class.as_deref() {
        if !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::bad_request(
                "invalid-parameter",
                "class_code: digits (a class code prefix) or a sensor kind",
            ));
        }
        if !analysis::class_known(&st.index, source, c) {
            return Err(ApiError::bad_request(
                "unknown-class",
                format!("no class of {} starts with {c:?}", source.as_str()),
            ));
        }
    }
    if filter.level.is_some() && source != Source::Alarms {
        return Err(ApiError::bad_request("invalid-parameter", "level filters alarms (layer=alarms)"));
    }
    Ok((source, filter))
}

/// A city date `YYYY-MM-DD` (its start, or with `end` the start of the next day, so `to` is
/// inclusive) or an RFC 3339 instant.
fn instant(k: &str, v: &str, city: FixedOffset, end: bool) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v)
        && (1900..=2999).contains(&t.year())
    {
        return Ok(t.with_timezone(&Utc));
    }
    let d = city_date(k, v)?;
    Ok(crate::cases::calendar::midnight(if end { d + Duration::days(1) } else { d }, city))
}

fn city_date(k: &str, v: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().filter(|d| (1900..=2999).contains(&d.year())).ok_or_else(|| {
        ApiError::bad_request(
            "invalid-parameter",
            format!("{k} must be a date YYYY-MM-DD (1900-2999) or an RFC 3339 time, not {v:?}"),
        )
    })
}

/// `true`/`false` (or absent: `default`).
fn flag(p: &Params, k: &str, default: bool) -> ApiResult<bool> {
    match p.get(k) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(ApiError::bad_request("invalid-parameter", format!("{k}={v:?}: true or false"))),
    }
}

/// The alarms, which the index does not hold, when the analysis counts them.
async fn alarms_for(st: &AppState, source: Source) -> ApiResult<Vec<Alarm>> {
    Ok(if source == Source::Alarms { st.store.alarms(false, i64::MAX).await? } else { Vec::new() })
}

/// Runs blocking analysis work that checks its [`Cancel`] between steps (and in long loops): when
/// the request's future is dropped (its client left, and no identical request waits on the same
/// computation), the work stops rather than keep a core busy for nobody.
async fn cancellable<T: Send + 'static>(
    f: impl FnOnce(&Cancel) -> Result<T, AnalysisError> + Send + 'static,
) -> ApiResult<T> {
    let cancel = Cancel::default();
    let guard = cancel.guard();
    let result = blocking(move || f(&cancel)).await;
    guard.disarm();
    result
}

/// Runs blocking analysis work off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, AnalysisError> + Send + 'static) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)??)
}

fn json_response(body: String, media: &'static str) -> Response {
    ([(header::CONTENT_TYPE, media)], body).into_response()
}

/// A finite number as JSON, `null` otherwise.
fn num(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
}

/// The hotspot result for a request's parameters (which must be a complete query: `key` is its
/// canonical form): recent results are reused, identical concurrent requests share one run.
async fn hotspot_result(st: &AppState, who: &Option<Caller>, p: &Params) -> ApiResult<Arc<Hotspots>> {
    let (source, filter) = common(st, who, p, &["unit", "method", "fdr", "geometry"])?;
    let kind = UnitKind::parse(p.get("unit").unwrap_or("grid"))?;
    let method = Method::parse(p.get("method").unwrap_or("gi_star"))?;
    let fdr = flag(p, "fdr", false)?;
    let key = scoped_key(hotspot_key(p), &filter.scope);
    st.analysis
        .hotspots
        .get_or_compute(key, async {
            let alarms = alarms_for(st, source).await?;
            let state = st.clone();
            cancellable(move |cancel| {
                let units = state.analysis.units(&state.index, kind)?;
                cancel.check()?;
                let (counts, outside) = analysis::count(&state.index, &units, source, &alarms, &filter);
                cancel.check()?;
                Ok(Arc::new(analysis::hotspots(units, source, method, counts, outside, fdr)))
            })
            .await
        })
        .await
}

/// A memo key with the caller's scope, which is part of what was computed.
fn scoped_key(key: String, scope: &crate::model::CaseScope) -> String {
    format!("{key}#{}", serde_urlencoded::to_string(scope.filters()).unwrap_or_default())
}

/// A hotspot request's parameters in canonical form, without the answer's shape (`geometry`).
fn hotspot_key(p: &Params) -> String {
    let mut m = p.0.clone();
    m.remove("geometry");
    serde_urlencoded::to_string(&m).unwrap_or_default()
}

/// `GET /api/v1/analysis/hotspots?layer&unit&method=count|gi_star|local_moran&fdr&geometry&filters`:
/// the analysis, changing nothing anyone else sees (publishing the overlay is the POST).
pub async fn hotspots(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let geometry = flag(&p, "geometry", true)?;
    let h = hotspot_result(&st, &who, &p).await?;
    hotspots_answer(&st, h, geometry).await
}

/// The answer, refused beyond the configured answer size before it is written (an H3
/// resolution-13 cover of a city with geometry was 784 MB).
async fn hotspots_answer(st: &AppState, h: Arc<Hotspots>, geometry: bool) -> ApiResult<Response> {
    let limit = st.analysis.limits.read().answer_bytes;
    let estimate: f64 = if geometry {
        (0..h.units.len()).map(|i| h.units.geom_json(i).len() as f64 + 150.0).sum()
    } else {
        h.units.len() as f64 * 150.0
    };
    if estimate > limit {
        return Err(AnalysisError::TooCostly {
            what: "the answer (bytes)",
            estimate,
            limit,
            hint: "ask with geometry=false, or use a coarser unit",
        }
        .into());
    }
    let body = blocking(move || Ok(hotspots_json(&h, geometry))).await?;
    Ok(json_response(body, "application/geo+json"))
}

/// Roles that publish analysis overlays to every big screen.
const PUBLISHERS: &[Role] = &[Role::Admin, Role::Analyst, Role::ShiftLeader];

/// `POST /api/v1/analysis/hotspots?...` (Gi* only): runs the analysis and publishes it as the
/// shared 热点 overlay. The publication is a change in the log, so every replica draws it and
/// every big screen hears `hotspots.published` and redraws; the answer is the analysis.
pub async fn publish_hotspots(State(st): State<AppState>, Caller(who): Caller, p: Params) -> ApiResult<Response> {
    who.require(PUBLISHERS, "publish the hotspot overlay")?;
    // The overlay is the city's: every screen draws it, so it is counted over every case.
    if !who.case_scope().is_all() {
        return Err(super::auth::out_of_scope(Some(&who), "publish the city's hotspot overlay".into()));
    }
    if p.get("method").is_some_and(|m| m != "gi_star") {
        return Err(ApiError::bad_request("invalid-parameter", "the overlay shows Gi* (method=gi_star)"));
    }
    let geometry = flag(&p, "geometry", true)?;
    let h = hotspot_result(&st, &None, &p).await?;
    // The answer first: one refused for its size publishes nothing. The overlay is this
    // server's only once the publication is logged.
    let mut resp = hotspots_answer(&st, h.clone(), geometry).await?;
    let key = hotspot_key(&p);
    let data = json!({"params": key, "by": who.actor.as_str(), "units": h.units.len()});
    let row = ChangeRow::record(Collection::Overlays, "hotspots", Op::Touch, Some("hotspots.published"), Some(data));
    let seq = st.live.log(row).await?;
    *st.analysis.latest.write() = Some((key, h));
    if let Ok(v) = axum::http::HeaderValue::from_str(&seq.to_string()) {
        resp.headers_mut().insert(super::SEQ_HEADER, v);
    }
    Ok(resp)
}

/// Unit `i` as a GeoJSON Feature with `props`, its geometry (pre-rendered) or null.
fn write_unit_feature(out: &mut String, units: &analysis::units::Units, i: usize, geometry: bool, props: &Value) {
    let _ = write!(out, r#"{{"type":"Feature","id":{},"geometry":"#, json!(units.codes[i].as_str()));
    out.push_str(if geometry { units.geom_json(i) } else { "null" });
    let _ = write!(out, r#","properties":{props}}}"#);
}

/// A hotspot result as a FeatureCollection, one feature per unit, written directly: a 65,000
/// grid answer is tens of megabytes of JSON.
fn hotspots_json(h: &Hotspots, geometry: bool) -> String {
    let units = &h.units;
    let mut out = String::with_capacity(units.len() * if geometry { 400 } else { 150 });
    let n = units.len() as f64;
    let mean = h.counts.iter().sum::<f64>() / n.max(1.0);
    let meta = json!({
        "unit": units.kind.as_str(),
        "layer": h.source.as_str(),
        "method": h.method.as_str(),
        "units": units.len(),
        "total": h.counts.iter().sum::<f64>(),
        "outside": h.outside,
        "mean": mean,
        "computed_at": h.computed_at.to_rfc3339(),
        "fdr": h.q.is_some(),
        "global_moran": h.global.map(|g| json!({"i": g.i, "e": g.e, "v": g.v, "z": num(g.z), "p": num(g.p)})),
    });
    out.push_str(r#"{"type":"FeatureCollection","#);
    let _ = write!(
        out,
        r#""analysis":{meta},"numberMatched":{},"numberReturned":{},"features":["#,
        units.len(),
        units.len()
    );
    // Features written in parallel, a few thousand units to a piece, joined in unit order: a
    // grid answer is 65,000 features and 15 MB.
    let pieces: Vec<String> = (0..units.len())
        .into_par_iter()
        .chunks(4096)
        .map(|ids| {
            let mut piece = String::with_capacity(ids.len() * if geometry { 400 } else { 150 });
            for i in ids {
                if !piece.is_empty() {
                    piece.push(',');
                }
                write_unit_feature(&mut piece, units, i, geometry, &unit_props(h, i));
            }
            piece
        })
        .collect();
    for (k, piece) in pieces.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push_str(piece);
    }
    out.push_str("]}");
    out
}

/// The properties of unit `i` in a hotspot answer.
fn unit_props(h: &Hotspots, i: usize) -> Value {
    let units = &h.units;
    let mut props = serde_json::Map::new();
    props.insert("code".into(), json!(units.codes[i].as_str()));
    props.insert("name".into(), json!(units.names[i].as_str()));
    props.insert("count".into(), json!(h.counts[i]));
    props.insert("area_m2".into(), num(Some(units.area_m2[i])));
    if let (Some(gi), Some(bins)) = (&h.gi, &h.bins) {
        props.insert("z".into(), num(gi[i].z));
        props.insert("p".into(), num(gi[i].p));
        props.insert("bin".into(), json!(bins[i]));
        if let Some(q) = &h.q {
            props.insert("p_fdr".into(), num(q[i]));
        }
    }
    if h.method == Method::LocalMoran {
        match &h.local {
            Some(l) => {
                let l = &l[i];
                props.insert("i".into(), num(Some(l.i)));
                props.insert("e".into(), num(Some(l.e)));
                props.insert("v".into(), num(Some(l.v)));
                props.insert("z".into(), num(l.z));
                props.insert("p".into(), num(l.p));
                props.insert("quadrant".into(), json!(l.quadrant()));
                let significant = l.p.is_some_and(|p| p <= 0.05);
                props.insert("cluster".into(), json!(if significant { l.quadrant() } else { "ns" }));
            }
            None => {
                for k in ["i", "z", "p", "quadrant"] {
                    props.insert(k.into(), Value::Null);
                }
                props.insert("cluster".into(), json!("ns"));
            }
        }
    }
    Value::Object(props)
}

/// The box a density grid covers: `bbox` (lon/lat) or the city's extent.
fn density_extent(st: &AppState, p: &Params) -> ApiResult<[f64; 4]> {
    if let Some(v) = p.get("bbox") {
        let n = super::params::parse_numbers("bbox", v)?;
        let [a, b, c, d] = n.as_slice() else {
            return Err(ApiError::bad_request("invalid-bbox", "bbox: four numbers minLon,minLat,maxLon,maxLat"));
        };
        crate::geo::check_lon_lat(*a, *b)?;
        crate::geo::check_lon_lat(*c, *d)?;
        if a >= c || b >= d {
            return Err(ApiError::bad_request("invalid-bbox", "bbox: min must be below max"));
        }
        return Ok([*a, *b, *c, *d]);
    }
    st.index.grids.read().bbox().ok_or_else(|| ApiError::not_found("no-city", "the store holds no unit grid yet"))
}

/// The density parameters of a request, checked.
fn density_params(st: &AppState, p: &Params, source: Source, filter: Filter) -> ApiResult<density::Params> {
    let cell_m = p.f64("cell_m")?.unwrap_or(100.0);
    let bandwidth_m = p.f64("bandwidth_m")?.unwrap_or(500.0);
    if !(1.0..=10_000.0).contains(&cell_m) {
        return Err(ApiError::bad_request("invalid-parameter", format!("cell_m={cell_m}: 1 to 10,000 metres")));
    }
    if !(cell_m..=50_000.0).contains(&bandwidth_m) {
        return Err(ApiError::bad_request(
            "invalid-parameter",
            format!("bandwidth_m={bandwidth_m}: from cell_m ({cell_m}) to 50,000 metres"),
        ));
    }
    Ok(density::Params { source, filter, cell_m, bandwidth_m, extent: density_extent(st, p)? })
}

/// The density grid for the request's parameters over `extent`: a recent one, the one an
/// identical request is computing, or a new one, which stops if every client asking for it
/// goes away.
async fn density_grid(st: &AppState, params: density::Params) -> ApiResult<Arc<density::Grid>> {
    st.analysis
        .density
        .get_or_compute(params.clone(), async {
            let alarms = alarms_for(st, params.source).await?;
            let state = st.clone();
            let max_work = st.analysis.limits.read().density_work;
            cancellable(move |cancel| {
                let mut points = Vec::new();
                analysis::for_each(&state.index, params.source, &alarms, &params.filter, |it| {
                    points.push((it.lon, it.lat))
                });
                let g =
                    kernel_density_until(&points, params.extent, params.cell_m, params.bandwidth_m, max_work, cancel)?;
                Ok(Arc::new(g))
            })
            .await
        })
        .await
}

/// `GET /api/v1/analysis/density?layer&cell_m&bandwidth_m&bbox&format=grid|geojson&filters`
pub async fn density(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let (source, filter) = common(&st, &who, &p, &["cell_m", "bandwidth_m", "bbox", "format"])?;
    let params = density_params(&st, &p, source, filter)?;
    let format = p.get("format").unwrap_or("grid");
    if !matches!(format, "grid" | "geojson") {
        return Err(ApiError::bad_request("invalid-parameter", format!("format={format:?}: grid or geojson")));
    }
    let g = density_grid(&st, params).await?;
    let geojson = format == "geojson";
    let body = blocking(move || Ok(density_json(&g, geojson))).await?;
    Ok(json_response(body, if geojson { "application/geo+json" } else { "application/json" }))
}

/// Most cells a GeoJSON density answer lists (the grid format has no limit).
const MAX_DENSITY_FEATURES: usize = 200_000;

fn density_json(g: &density::Grid, geojson: bool) -> String {
    let meta = json!({
        "crs": g.projection.epsg().map(|c| format!("EPSG:{c}")),
        "central_meridian": g.projection.central_meridian,
        "kernel": "quartic",
        "unit": "points per km²",
        "cell_m": g.cell_m,
        "bandwidth_m": g.bandwidth_m,
        "cols": g.cols,
        "rows": g.rows,
        "origin": [g.origin.0, g.origin.1],
        "points": g.points,
        "max": g.max,
        "computed_at": g.computed_at.to_rfc3339(),
    });
    let mut out = String::with_capacity(g.values.len() * 8);
    if geojson {
        let _ = write!(out, r#"{{"type":"FeatureCollection","density":{meta},"features":["#);
        let mut n = 0;
        'rows: for r in 0..g.rows {
            for c in 0..g.cols {
                let v = g.values[r * g.cols + c];
                if v <= 0.0 {
                    continue;
                }
                if n == MAX_DENSITY_FEATURES {
                    break 'rows;
                }
                let (x, y) = g.centre(c, r);
                let (lon, lat) = g.projection.inverse(x, y);
                let _ = write!(
                    out,
                    r#"{}{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{lon:.7},{lat:.7}]}},"properties":{{"row":{r},"col":{c},"density":{}}}}}"#,
                    if n == 0 { "" } else { "," },
                    ryu::Buffer::new().format(v)
                );
                n += 1;
            }
        }
        out.push_str("]}");
    } else {
        // The metadata object, opened again for the values.
        let head = meta.to_string();
        out.push_str(&head[..head.len() - 1]);
        out.push_str(r#","values":["#);
        for (i, v) in g.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(ryu::Buffer::new().format(*v));
        }
        out.push_str("]}");
    }
    out
}

/// `GET /api/v1/analysis/emerging?layer&unit&step=day|week|month&from&to&series&filters`
pub async fn emerging(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let city = st.deadlines.calendar.offset();
    let (source, mut filter) = common(&st, &who, &p, &["unit", "step", "series", "geometry"])?;
    let kind = UnitKind::parse(p.get("unit").unwrap_or("grid"))?;
    let step = Step::parse(p.get("step").unwrap_or("month"))?;
    let series = flag(&p, "series", false)?;
    let geometry = flag(&p, "geometry", false)?;
    // The steps: city days from..to; by default the last twelve steps up to today.
    let today = Utc::now().with_timezone(&city).date_naive();
    // `to` is exclusive: a city date `to` (its next midnight) ends the day before that midnight.
    let to_day = filter.to.map_or(today, |t| (t - Duration::nanoseconds(1)).with_timezone(&city).date_naive());
    let from_day = filter.from.map_or_else(
        || match step {
            Step::Day => to_day - Duration::days(29),
            Step::Week => to_day - Duration::days(7 * 11),
            Step::Month => to_day.checked_sub_months(chrono::Months::new(11)).unwrap_or(to_day),
        },
        |t| t.with_timezone(&city).date_naive(),
    );
    let steps = Steps::new(step, from_day, to_day, city);
    filter.from = steps.starts.first().copied();
    filter.to = Some(steps.end);
    // The key: the parameters as resolved (the default range moves with the date) and the scope.
    let query = serde_urlencoded::to_string(&p.0).unwrap_or_default();
    let key = scoped_key(format!("{query}|{:?}|{:?}", filter.from, filter.to), &filter.scope);
    let state = st.clone();
    let body = st
        .analysis
        .emerging
        .get_or_compute(key, emerging_answer(state, source, filter, kind, steps, series, geometry))
        .await?;
    Ok(json_response(body.to_string(), "application/geo+json"))
}

/// Computes an emerging hotspot answer (see [`emerging`]).
async fn emerging_answer(
    st: AppState,
    source: Source,
    filter: analysis::Filter,
    kind: UnitKind,
    steps: Steps,
    series: bool,
    geometry: bool,
) -> ApiResult<Arc<String>> {
    let alarms = alarms_for(&st, source).await?;
    let step = steps.step;
    let body = cancellable(move |cancel| {
        let state = st;
        let units = state.analysis.units(&state.index, kind)?;
        cancel.check()?;
        let t = steps.len();
        let bins = units.len().saturating_mul(t);
        if bins > emerging::MAX_BINS {
            return Err(AnalysisError::TooManyBins { bins });
        }
        if t < 2 {
            return Err(AnalysisError::Invalid(format!(
                "the range holds {t} {} step: at least two are needed",
                step.as_str()
            )));
        }
        let mut cube = vec![0.0; bins];
        let (assigned, mut outside) = analysis::assign(&state.index, &units, source, &alarms, &filter);
        cancel.check()?;
        for (u, at) in assigned {
            match at.and_then(|a| steps.index_of(a)) {
                Some(s) => cube[u as usize * t + s] += 1.0,
                None => outside += 1,
            }
        }
        let gi = emerging::space_time_gi_star(&cube, t, units.neighbours());
        cancel.check()?;
        Ok(emerging_json(&units, &steps, &cube, &gi, outside, series, geometry, source))
    })
    .await?;
    Ok(Arc::new(body))
}

#[allow(clippy::too_many_arguments)]
fn emerging_json(
    units: &analysis::units::Units,
    steps: &Steps,
    cube: &[f64],
    gi: &[stats::GiStar],
    outside: usize,
    series: bool,
    geometry: bool,
    source: Source,
) -> String {
    let t = steps.len();
    let mut tally: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut features = String::new();
    for u in 0..units.len() {
        let zs: Vec<f64> = gi[u * t..(u + 1) * t].iter().map(|g| g.z.unwrap_or(0.0)).collect();
        let bins: Vec<i8> = zs.iter().map(|&z| stats::bin_of_z(z)).collect();
        let mk = stats::mann_kendall(&zs);
        let category = emerging::category(&bins, mk.as_ref());
        *tally.entry(category.unwrap_or("none")).or_default() += 1;
        let mut props = json!({
            "code": units.codes[u].as_str(),
            "name": units.names[u].as_str(),
            "category": category.unwrap_or("none"),
            "count": cube[u * t..(u + 1) * t].iter().sum::<f64>(),
            "hot_steps": bins.iter().filter(|&&b| b > 0).count(),
            "cold_steps": bins.iter().filter(|&&b| b < 0).count(),
            "final_z": num(zs.last().copied()),
            "final_bin": bins.last(),
            "trend": mk.map(|m| json!({"tau": m.tau, "s": m.s, "var_s": m.var_s, "z": m.z, "p": m.p})),
        });
        if series {
            props["series"] = json!({
                "count": &cube[u * t..(u + 1) * t],
                "z": gi[u * t..(u + 1) * t].iter().map(|g| num(g.z)).collect::<Vec<_>>(),
                "bin": bins,
            });
        }
        if u > 0 {
            features.push(',');
        }
        write_unit_feature(&mut features, units, u, geometry, &props);
    }
    let meta = json!({
        "unit": units.kind.as_str(),
        "layer": source.as_str(),
        "step": steps.step.as_str(),
        "steps": steps.starts.iter().map(|s| s.to_rfc3339()).collect::<Vec<_>>(),
        "end": steps.end.to_rfc3339(),
        "time_neighbours": 1,
        "confidence": 0.90,
        "outside": outside,
        "categories": tally,
    });
    format!(r#"{{"type":"FeatureCollection","emerging":{meta},"features":[{features}]}}"#)
}

/// `GET /api/v1/analysis/ranking?layer&by=grid|community|street|district|class&top&from&to&filters`
pub async fn ranking(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let (source, filter) = common(&st, &who, &p, &["by", "top"])?;
    let by = p.get("by").unwrap_or("grid");
    let (rank_by, kind) = match by {
        "class" => (RankBy::Class, None),
        other => (RankBy::Units, Some(UnitKind::parse(other)?)),
    };
    let top = p.usize("top")?.unwrap_or(10);
    if !(1..=1000).contains(&top) {
        return Err(ApiError::bad_request("invalid-parameter", format!("top={top}: 1 to 1,000")));
    }
    // The period: from..to, by default the 30 days to now.
    let to = filter.to.unwrap_or_else(Utc::now);
    let from = filter.from.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(AnalysisError::EmptyRange { from: from.to_rfc3339(), to: to.to_rfc3339() }.into());
    }
    let alarms = alarms_for(&st, source).await?;
    let state = st.clone();
    let by_name = by.to_string();
    let body = blocking(move || {
        let index = &state.index;
        let each = |f: &Filter, g: &mut dyn FnMut(&analysis::Item<'_>)| analysis::for_each(index, source, &alarms, f, g);
        let (rows, units) = match (rank_by, kind) {
            (RankBy::Units, Some(kind)) => {
                let units = state.analysis.units(index, kind)?;
                (ranking::rank(&filter, from, to, top, ranking::unit_key(&units), each), Some(units))
            }
            _ => (ranking::rank(&filter, from, to, top, |it| Some(Str::from(it.class)), each), None),
        };
        let (prev_from, _) = ranking::previous_period(from, to);
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                let name = match &units {
                    Some(u) => u.index_of(&r.code).map(|i| u.names[i].to_string()),
                    None => analysis::class_name(index, source, &r.code).map(|n| n.to_string()),
                };
                json!({"rank": r.rank, "code": r.code.as_str(), "name": name, "count": r.count,
                    "previous": r.previous, "change": r.count as i64 - r.previous as i64, "change_rate": num(r.change_rate())})
            })
            .collect();
        Ok(json!({
            "layer": source.as_str(), "by": by_name, "top": top,
            "from": from.to_rfc3339(), "to": to.to_rfc3339(),
            "previous": {"from": prev_from.to_rfc3339(), "to": from.to_rfc3339()},
            "rows": rows,
        })
        .to_string())
    })
    .await?;
    Ok(json_response(body, "application/json"))
}

/// `GET /api/v1/analysis/peaks?layer&from&to&filters`: counts by day of week and hour of day.
pub async fn peaks(State(st): State<AppState>, who: Option<Caller>, p: Params) -> ApiResult<Response> {
    let city = st.deadlines.calendar.offset();
    let (source, filter) = common(&st, &who, &p, &[])?;
    let alarms = alarms_for(&st, source).await?;
    let state = st.clone();
    let body = blocking(move || {
        let m = ranking::peak_profile(city, |g| analysis::for_each(&state.index, source, &alarms, &filter, g));
        let by_hour: Vec<u64> = (0..24).map(|h| m.iter().map(|d| d[h]).sum()).collect();
        let by_weekday: Vec<u64> = m.iter().map(|d| d.iter().sum()).collect();
        let peak = (0..7).flat_map(|d| (0..24).map(move |h| (d, h))).max_by_key(|&(d, h)| (m[d][h], std::cmp::Reverse((d, h))));
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        Ok(json!({
            "layer": source.as_str(),
            "utc_offset_hours": city.local_minus_utc() / 3600,
            "weekdays": DAYS,
            "matrix": m,
            "by_hour": by_hour,
            "by_weekday": by_weekday,
            "total": by_hour.iter().sum::<u64>(),
            "peak": peak.filter(|&(d, h)| m[d][h] > 0).map(|(d, h)| json!({"weekday": DAYS[d], "hour": h, "count": m[d][h]})),
        })
        .to_string())
    })
    .await?;
    Ok(json_response(body, "application/json"))
}

/// The body of `POST /api/v1/analysis/stats`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsRequest {
    /// A GeoJSON Polygon or MultiPolygon, or WKT text.
    geometry: Value,
    crs: Option<String>,
}

/// `POST /api/v1/analysis/stats` `{geometry, crs?}`: box-select statistics (一框统计).
pub async fn box_stats(
    State(st): State<AppState>,
    who: Option<Caller>,
    JsonBody(req): JsonBody<StatsRequest>,
) -> ApiResult<Response> {
    let scope = scope_of(&who);
    let crs = req.crs.as_deref().map(str::parse::<crate::geo::Crs>).transpose()?.unwrap_or(crate::geo::Crs::Wgs84);
    let text = match &req.geometry {
        Value::String(s) => s.clone(),
        v @ Value::Object(_) => v.to_string(),
        _ => return Err(ApiError::bad_request("invalid-geometry", "geometry: a GeoJSON polygon or WKT text")),
    };
    let g = match super::features::parse_polygon_as("geometry", &text, &crs)? {
        geo::Geometry::Polygon(p) => geo::MultiPolygon(vec![p]),
        geo::Geometry::MultiPolygon(mp) => mp,
        _ => return Err(ApiError::bad_request("invalid-geometry", "geometry: a Polygon or MultiPolygon is required")),
    };
    let state = st.clone();
    let body = blocking(move || {
        let area = boxstats::check(&g, &state.index)?;
        Ok(boxstats::stats(&state.index, &g, area, &scope).to_string())
    })
    .await?;
    Ok(json_response(body, "application/json"))
}

/// The `hotspots` overlay tile: the published Gi* analysis (204 before any). A publication
/// another replica logged is computed here on the first tile that needs it.
pub async fn hotspots_tile(st: &AppState, coord: crate::geo::TileCoord) -> ApiResult<Option<Vec<u8>>> {
    let published = st.analysis.published.read().clone();
    let latest = st.analysis.latest.read().clone();
    let h = match (published, latest) {
        (Some(wanted), Some((have, h))) if wanted == have => h,
        (Some(wanted), _) => {
            let p = Params(serde_urlencoded::from_str(&wanted).map_err(ApiError::internal)?);
            let h = hotspot_result(st, &None, &p).await?;
            *st.analysis.latest.write() = Some((wanted, h.clone()));
            h
        }
        (None, Some((_, h))) => h,
        (None, None) => return Ok(None),
    };
    blocking(move || Ok(crate::analysis::overlay::hotspots(&h, coord))).await
}

/// The `density` overlay tile for the density parameters in the query (a grid computed in the
/// last half minute is reused).
pub async fn density_tile(
    st: &AppState,
    who: &Option<Caller>,
    coord: crate::geo::TileCoord,
    p: &Params,
) -> ApiResult<Option<Vec<u8>>> {
    let (source, filter) = common(st, who, p, &["cell_m", "bandwidth_m", "bbox"])?;
    let params = density_params(st, p, source, filter)?;
    let g = density_grid(st, params).await?;
    blocking(move || Ok(crate::analysis::overlay::density(&g, coord))).await
}

/// Takes in overlay publications from the change log (this server's, another replica's): the
/// hotspot tiles then draw the published parameters.
pub struct PublishedOverlays(pub Arc<crate::analysis::Analysis>);

impl crate::events::Follower for PublishedOverlays {
    fn applied(&self, change: &crate::events::Change) {
        if change.row.collection == Collection::Overlays
            && let Some(params) = change.row.data.as_ref().and_then(|d| d["params"].as_str())
        {
            *self.0.published.write() = Some(params.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_analysis_whose_client_left_stops() {
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = stopped.clone();
        let work = cancellable(move |cancel| {
            while cancel.check().is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.store(true, Ordering::SeqCst);
            Err::<(), _>(AnalysisError::Cancelled)
        });
        // The client gives up: the request's future is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(50), work).await.is_err());
        for _ in 0..500 {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the work went on after its client left");
    }

    #[tokio::test]
    async fn an_analysis_that_finishes_is_not_cancelled() {
        let r = cancellable(|cancel| {
            cancel.check()?;
            Ok(7)
        })
        .await;
        assert_eq!(r.ok(), Some(7));
    }
}
