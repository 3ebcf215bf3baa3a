//! Box-select statistics (一框统计): for a drawn polygon, the components and cases inside by
//! class, the open cases by status and light, the unit grids it touches with their area and the
//! area of them inside, and the green space inside. Areas are geodesic square metres.

use std::collections::BTreeMap;

use geo::{BooleanOps, Contains, GeodesicArea, MultiPolygon, Validation};
use serde_json::{Value, json};

use super::AnalysisError;
use crate::index::CityIndex;
use crate::model::{Shape, Str};

/// The component class of green space (绿地, GB/T 30428.2 0405), whose polygons give the green
/// area inside.
pub const GREEN_SPACE_CLASS: &str = "0405";

/// A checked selection polygon: valid (no self-intersection, closed rings) and no larger than
/// the city's extent.
pub fn check(g: &MultiPolygon<f64>, index: &CityIndex) -> Result<f64, AnalysisError> {
    if g.0.is_empty() {
        return Err(AnalysisError::Geometry("the polygon is empty".into()));
    }
    if let Err(e) = g.check_validation() {
        return Err(AnalysisError::Geometry(e.to_string()));
    }
    let area = g.geodesic_area_unsigned();
    let city = index.grids.read().bbox().map_or(0.0, |b| {
        geo::Rect::new((b[0], b[1]), (b[2], b[3])).to_polygon().geodesic_area_unsigned()
    });
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

/// The statistics of a checked polygon (see [`check`]) of `area_m2`.
pub fn stats(index: &CityIndex, sel: &MultiPolygon<f64>, area_m2: f64) -> Value {
    let g: geo::Geometry<f64> = sel.clone().into();
    let (mut comp_classes, mut comp_status) = (BTreeMap::<Str, u64>::new(), BTreeMap::<Str, u64>::new());
    let mut green_m2 = 0.0;
    let components = index.components.read();
    let comps = components.intersecting(&g);
    for c in &comps {
        *comp_classes.entry(c.class_code.clone()).or_default() += 1;
        *comp_status.entry(c.status.clone()).or_default() += 1;
        if c.class_code == GREEN_SPACE_CLASS {
            if let Shape::Other(geom) = &c.geom {
                let mp = match &**geom {
                    geo::Geometry::Polygon(p) => MultiPolygon(vec![p.clone()]),
                    geo::Geometry::MultiPolygon(mp) => mp.clone(),
                    _ => continue,
                };
                green_m2 += area_inside(sel, &mp, mp.geodesic_area_unsigned());
            }
        }
    }
    let n_components = comps.len();
    drop(comps);
    drop(components);
    let now = crate::cases::light_clock();
    let (mut case_classes, mut open_status, mut open_light) =
        (BTreeMap::<Str, u64>::new(), BTreeMap::<Str, u64>::new(), BTreeMap::<Str, u64>::new());
    let cases = index.cases.read();
    let inside = cases.intersecting(&g);
    let mut open = 0u64;
    for c in &inside {
        *case_classes.entry(c.class_code.clone()).or_default() += 1;
        if crate::cases::is_open(c) {
            open += 1;
            *open_status.entry(c.status.clone()).or_default() += 1;
            let light = crate::cases::light(c, now).map_or("none", |l| l.as_str());
            *open_light.entry(Str::from(light)).or_default() += 1;
        }
    }
    let n_cases = inside.len();
    drop(inside);
    drop(cases);
    let grids = index.grids.read();
    let touched = grids.intersecting(&g);
    let grid_area: f64 = touched.iter().map(|gr| gr.area_m2).sum();
    let grid_inside: f64 =
        touched.iter().map(|gr| area_inside(sel, &MultiPolygon(vec![gr.geom.clone()]), gr.area_m2)).sum();
    let grid_codes: Vec<&str> = touched.iter().map(|gr| gr.code.as_str()).collect();
    let classes = |m: BTreeMap<Str, u64>, source| {
        m.into_iter()
            .map(|(code, count)| {
                json!({"class_code": code.as_str(), "name": super::class_name(index, source, &code), "count": count})
            })
            .collect::<Vec<_>>()
    };
    json!({
        "area_m2": area_m2,
        "components": {
            "total": n_components,
            "by_class": classes(comp_classes, super::Source::Components),
            "by_status": comp_status,
        },
        "cases": {
            "total": n_cases,
            "by_class": classes(case_classes, super::Source::Cases),
            "open": open,
            "open_by_status": open_status,
            "open_by_light": open_light,
        },
        "grids": {
            "count": touched.len(),
            "area_m2": grid_area,
            "area_inside_m2": grid_inside,
            "codes": grid_codes,
        },
        "green_space_m2": green_m2,
    })
}
