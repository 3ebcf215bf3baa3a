//! Sensors (运行监测, city lifelines): the kind dictionary with its default thresholds, sensor
//! registration, readings ingest over HTTP and MQTT ([`ingest`], [`crate::mqtt`]), the alarm rules
//! ([`rules`]) and alarm to case.

pub mod ingest;
pub mod rules;
pub mod simulate;

use serde::Deserialize;

use crate::events::{Change, Item, Live, bbox_of};
use crate::geo::Crs;
use crate::index::{CityIndex, Record};
use crate::model::{Collection, Sensor};
use crate::store::StoreError;
use crate::store::log::{ChangeRow, Op};
use rules::{Direction, Thresholds};

/// A sensor as the API and the feed show it: its live status, effective thresholds and
/// overrides.
pub fn to_json(s: &Sensor) -> serde_json::Value {
    let mut v = serde_json::Value::Object(s.properties());
    v["lon"] = serde_json::json!(s.geom.x());
    v["lat"] = serde_json::json!(s.geom.y());
    v["thresholds"] = serde_json::json!(thresholds_of(s));
    v["overrides"] = serde_json::json!(s.thresholds);
    v
}

/// Stores a newly registered sensor with its change (`sensor.registered`), then applies the
/// change: the index shows it and the ingest engine takes its readings. Returns the sequence
/// number.
pub async fn commit_register(live: &Live, sensor: &Sensor) -> Result<i64, StoreError> {
    // Not heard from yet.
    sensor.live.0.lock().stale = true;
    let row = ChangeRow {
        bbox: vec![bbox_of(&sensor.envelope())],
        ..ChangeRow::record(
            Collection::Sensors,
            sensor.code.as_str(),
            Op::Upsert,
            Some("sensor.registered"),
            Some(to_json(sensor)),
        )
    };
    let in_flight = live.in_flight();
    let seqs = crate::store::insert(&**live.store(), std::slice::from_ref(sensor), vec![row.clone()]).await?;
    live.commit(vec![Change::committed(seqs[0], row, vec![Item::Sensor(sensor.clone())])], in_flight).await?;
    Ok(seqs[0])
}

/// What can be wrong with a sensor registration or a readings request.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SensorError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown sensor kind {0:?}; one of {1}")]
    UnknownKind(String, String),
    #[error("unknown sensor {0:?}")]
    UnknownSensor(String),
    #[error("a sensor {0:?} is already registered")]
    Exists(String),
    #[error("unknown component {0:?}")]
    UnknownComponent(String),
    #[error("the point ({0}, {1}) is in no unit grid of this city")]
    OutsideCity(f64, f64),
    #[error("unknown alarm {0:?}")]
    UnknownAlarm(String),
}

pub use crate::catalog::{KINDS, Kind, kind};

/// A sensor's threshold overrides (`thresholds` at registration): any field may be absent and
/// then comes from the kind.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub direction: Option<Direction>,
    pub blue: Option<f64>,
    pub yellow: Option<f64>,
    pub orange: Option<f64>,
    pub red: Option<f64>,
    pub hysteresis: Option<f64>,
    pub min_duration_s: Option<i64>,
}

impl Overrides {
    /// The kind's thresholds with these overrides applied.
    pub fn apply(&self, base: Thresholds) -> Thresholds {
        Thresholds {
            direction: self.direction.unwrap_or(base.direction),
            blue: self.blue.or(base.blue),
            yellow: self.yellow.or(base.yellow),
            orange: self.orange.or(base.orange),
            red: self.red.or(base.red),
            hysteresis: self.hysteresis.unwrap_or(base.hysteresis),
            min_duration_s: self.min_duration_s.unwrap_or(base.min_duration_s),
        }
    }
}

/// The thresholds a sensor's alarms follow: its kind's, with its own overrides.
pub fn thresholds_of(sensor: &Sensor) -> Thresholds {
    let base = kind(&sensor.kind).map(|k| k.thresholds).unwrap_or_default();
    let overrides: Overrides =
        sensor.thresholds.as_ref().and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default();
    overrides.apply(base)
}

/// The body of `POST /api/v1/sensors`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSensor {
    pub code: String,
    pub kind: String,
    pub lon: f64,
    pub lat: f64,
    #[serde(default)]
    pub crs: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub component_code: Option<String>,
    #[serde(default)]
    pub thresholds: Option<serde_json::Value>,
}

pub use crate::model::{MAX_CODE, valid_code};

/// Checks a registration against the city and builds the sensor.
pub fn register(req: &NewSensor, index: &CityIndex) -> Result<Sensor, SensorError> {
    let invalid = |m: String| SensorError::Invalid(m);
    if !valid_code(&req.code) {
        return Err(invalid(format!("code {:?}: 1 to {MAX_CODE} letters, digits, '-', '_', '.' or ':'", req.code)));
    }
    let kind = kind(&req.kind).ok_or_else(|| {
        SensorError::UnknownKind(req.kind.clone(), KINDS.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
    })?;
    if let Some(t) = &req.thresholds {
        let o: Overrides = serde_json::from_value(t.clone()).map_err(|e| invalid(format!("thresholds: {e}")))?;
        o.apply(kind.thresholds).check().map_err(|e| invalid(format!("thresholds: {e}")))?;
    }
    let name = req.name.as_deref().map(str::trim).unwrap_or("");
    if name.chars().count() > 200 {
        return Err(invalid("name longer than 200 characters".into()));
    }
    crate::model::check_text("name", name).map_err(invalid)?;
    let crs: Crs =
        req.crs.as_deref().unwrap_or("wgs84").parse().map_err(|e: crate::geo::CrsError| invalid(e.to_string()))?;
    crate::geo::check_lon_lat(req.lon, req.lat).map_err(|e| invalid(e.to_string()))?;
    let (lon, lat) = crs.to_cgcs2000(req.lon, req.lat).map_err(|e| invalid(e.to_string()))?;
    if let Some(c) = &req.component_code
        && index.components.read().get(c).is_none()
    {
        return Err(SensorError::UnknownComponent(c.clone()));
    }
    let grid = crate::grids::grid_code_at(index, lon, lat).ok_or(SensorError::OutsideCity(req.lon, req.lat))?;
    if index.sensors.read().get(&req.code).is_some() {
        return Err(SensorError::Exists(req.code.clone()));
    }
    Ok(Sensor {
        code: req.code.as_str().into(),
        kind: kind.kind.clone(),
        name: if name.is_empty() { format!("{}{}", kind.label, req.code).into() } else { name.into() },
        component_code: req.component_code.as_deref().map(Into::into),
        grid_code: Some(grid),
        thresholds: req.thresholds.clone(),
        geom: geo::Point::new(lon, lat),
        live: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_dictionary_covers_the_domain_kinds_and_is_consistent() {
        for k in ["water_level", "flow", "gas_lel", "pressure", "leak_noise", "strain", "tilt", "smoke", "temperature"]
        {
            assert!(kind(k).is_some(), "{k}");
        }
        let classes = crate::catalog::event_classes();
        for k in KINDS.values() {
            k.thresholds.check().unwrap();
            assert!(classes.iter().any(|c| c.code == k.case_class), "{} maps to a known class", k.kind);
            assert!(k.thresholds.yellow.is_some(), "{} can open cases", k.kind);
        }
        assert_eq!(kind("pressure").unwrap().thresholds.direction, Direction::Below);
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let base = kind("water_level").unwrap().thresholds;
        let o: Overrides = serde_json::from_value(serde_json::json!({"red": 0.8, "min_duration_s": 0})).unwrap();
        let t = o.apply(base);
        assert_eq!((t.red, t.yellow, t.min_duration_s), (Some(0.8), base.yellow, 0));
        assert!(serde_json::from_value::<Overrides>(serde_json::json!({"purple": 1})).is_err());
    }

    #[test]
    fn codes_are_safe_topic_levels() {
        assert!(valid_code("SEN-WL-0001"));
        for bad in ["", "a/b", "a+b", "#", "有", &"x".repeat(65)] {
            assert!(!valid_code(bad), "{bad:?}");
        }
    }
}
