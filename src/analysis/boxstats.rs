//! Box-select statistics (一框统计): for a drawn polygon, the components and cases inside by
//! class, the open cases by status and light, the unit grids it touches with their area and the
//! area of them inside, and the green space inside. Areas are geodesic square metres.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use geo::{BooleanOps, Contains, GeodesicArea, MultiPolygon};
use serde_json::{Value, json};

use super::AnalysisError;
use crate::index::CityIndex;
use crate::model::{CaseScope, Shape};

/// The component class of green space (绿地, GB/T 30428.2 0405), whose polygons give the green
/// area inside.
pub const GREEN_SPACE_CLASS: &str = "0405";

/// The area (m²) of a selection polygon, refused when larger than the city's extent. Its
/// validity (closed rings, no self-intersection) is the parser's to check, at the HTTP edge.
pub fn check(g: &MultiPolygon<f64>, index: &CityIndex) -> Result<f64, AnalysisError> {
    let area = g.geodesic_area_unsigned();
    let city = index
        .grids
        .read()
        .bbox()
        .map_or(0.0, |b| geo::Rect::new((b[0], b[1]), (b[2], b[3])).to_polygon().geodesic_area_unsigned());
    if area > city {
        return Err(AnalysisError::TooLarge { area_km2: area / 1e6, city_km2: city / 1e6 });
    }
    Ok(area)
}

/// The area of `part` inside `sel` (m²): all of it when `sel` contains it, the geodesic area of
/// the intersection otherwise.
fn area_inside(sel: &MultiPolygon<f64>, part: &MultiPolygon<f64>, whole_m2: f64) -> f64 {
    if sel.contains(part) { whole_m2 } else { sel.intersection(part).geodesic_area_unsigned() }
}

/// The statistics of a checked polygon (see [`check`]) of `area_m2`. Components, cases and
/// grids are counted in parallel, each under its own layer's read lock.
pub fn stats(index: &CityIndex, sel: &MultiPolygon<f64>, area_m2: f64, scope: &CaseScope) -> Value {
    let g: geo::Geometry<f64> = sel.clone().into();
    let ((components, cases), grids) = rayon::join(
        || rayon::join(|| components_json(index, sel, &g), || cases_json(index, &g, scope)),
        || grids_json(index, sel, &g),
    );
    json!({
        "area_m2": area_m2,
        "components": components.0,
        "cases": cases,
        "grids": grids,
        "green_space_m2": components.1,
    })
}

/// Counts by code as `[{class_code, name, count}]`, the codes in order.
fn by_class(index: &CityIndex, source: super::Source, counts: HashMap<&str, u64>) -> Vec<Value> {
    let mut rows: Vec<(&str, u64)> = counts.into_iter().collect();
    rows.sort_unstable();
    rows.into_iter()
        .map(
            |(code, count)| json!({"class_code": code, "name": super::class_name(index, source, code), "count": count}),
        )
        .collect()
}

/// Counts by key as a JSON object with sorted keys.
fn by_key(counts: HashMap<&str, u64>) -> Value {
    Value::Object(
        counts.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<BTreeMap<_, _>>().into_iter().collect(),
    )
}

/// The components inside by class and status, and the green space area inside. A 5 km² box
/// in a dense city holds some 80,000 components: points are counted by their class and status
/// from the R-tree alone (see [`crate::index::Layer::count_tags_part`]), in two strips at once; only areal
/// components are visited, for their exact test and the green area.
fn components_json(index: &CityIndex, sel: &MultiPolygon<f64>, g: &geo::Geometry<f64>) -> (Value, f64) {
    let layer = index.components.read();
    let strip = |part| {
        let mut green_m2 = 0.0;
        let counts = layer.count_tags_part(g, part, 2, |c| {
            if let (true, Shape::Other(geom)) = (c.class_code == GREEN_SPACE_CLASS, &c.geom) {
                let mp = match &**geom {
                    geo::Geometry::Polygon(p) => MultiPolygon(vec![p.clone()]),
                    geo::Geometry::MultiPolygon(mp) => mp.clone(),
                    _ => return,
                };
                green_m2 += area_inside(sel, &mp, mp.geodesic_area_unsigned());
            }
        });
        (counts, green_m2)
    };
    let ((a, green_a), (b, green_b)) = rayon::join(|| strip(0), || strip(1));
    let (mut classes, mut status) = (HashMap::<&str, u64>::new(), HashMap::<&str, u64>::new());
    let mut total = 0;
    for (tag, n) in a.into_iter().chain(b) {
        let [class, st] = layer.tag(tag);
        *classes.entry(class.as_str()).or_default() += n;
        *status.entry(st.as_str()).or_default() += n;
        total += n;
    }
    let v = json!({"total": total, "by_class": by_class(index, super::Source::Components, classes), "by_status": by_key(status)});
    (v, green_a + green_b)
}

/// The cases inside by class, and the open ones by status and light.
/// The cases inside in the caller's scope (a department its own, an area its area's).
fn cases_json(index: &CityIndex, g: &geo::Geometry<f64>, scope: &CaseScope) -> Value {
    let layer = index.cases.read();
    let (mut classes, mut status, mut lights) = (HashMap::<&str, u64>::new(), HashMap::new(), HashMap::new());
    let (mut total, mut open) = (0u64, 0u64);
    layer.for_each_intersecting(g, |c| {
        if !scope.sees(c) {
            return;
        }
        total += 1;
        *classes.entry(c.class_code.as_str()).or_default() += 1;
        if crate::cases::is_open(c) {
            open += 1;
            *status.entry(c.status.as_str()).or_default() += 1;
            *lights.entry(c.light.map_or("none", |l| l.as_str())).or_default() += 1;
        }
    });
    json!({
        "total": total,
        "by_class": by_class(index, super::Source::Cases, classes),
        "open": open,
        "open_by_status": by_key(status),
        "open_by_light": by_key(lights),
    })
}

/// The unit grids touched, their area and the area of them inside.
fn grids_json(index: &CityIndex, sel: &MultiPolygon<f64>, g: &geo::Geometry<f64>) -> Value {
    let layer = index.grids.read();
    let touched = layer.intersecting(g);
    let area: f64 = touched.iter().map(|gr| gr.area_m2).sum();
    let inside: f64 = touched.iter().map(|gr| area_inside(sel, &MultiPolygon(vec![gr.geom.clone()]), gr.area_m2)).sum();
    let codes: Vec<&str> = touched.iter().map(|gr| gr.code.as_str()).collect();
    json!({"count": touched.len(), "area_m2": area, "area_inside_m2": inside, "codes": codes})
}
