//! What the index needs of each model type: a key, an envelope, exact geometry tests, and its
//! properties by name (for filters and GeoJSON), written once per type here.

use chrono::SecondsFormat;
use geo::{Geometry, Intersects, MultiPolygon, Point, Polygon};
use rstar::AABB;
use serde_json::{Map, Value};

use super::geom_intersects;
use crate::model::*;

/// A property value borrowed from a record, for filtering without allocating.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue<'a> {
    Str(&'a str),
    Owned(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Null,
}

impl PropValue<'_> {
    /// Equality with a query-string value: strings compare exactly, numbers numerically.
    pub fn matches(&self, wanted: &str) -> bool {
        match self {
            PropValue::Str(s) => *s == wanted,
            PropValue::Owned(s) => s == wanted,
            PropValue::Num(n) => wanted.parse::<f64>().is_ok_and(|w| w == *n),
            PropValue::Int(n) => wanted.parse::<i64>().is_ok_and(|w| w == *n),
            PropValue::Bool(b) => wanted.parse::<bool>().is_ok_and(|w| w == *b),
            PropValue::Null => false,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            PropValue::Str(s) => Value::String(s.to_string()),
            PropValue::Owned(s) => Value::String(s.clone()),
            PropValue::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
            PropValue::Int(n) => Value::from(*n),
            PropValue::Bool(b) => Value::Bool(*b),
            PropValue::Null => Value::Null,
        }
    }
}

/// A record's geometry, borrowed: what renderers read without copying coordinates.
#[derive(Debug, Clone, Copy)]
pub enum GeomRef<'a> {
    Point(&'a Point<f64>),
    Polygon(&'a Polygon<f64>),
    MultiPolygon(&'a MultiPolygon<f64>),
    Other(&'a Geometry<f64>),
}

impl GeomRef<'_> {
    pub fn to_geometry(self) -> Geometry<f64> {
        match self {
            GeomRef::Point(p) => (*p).into(),
            GeomRef::Polygon(p) => p.clone().into(),
            GeomRef::MultiPolygon(mp) => mp.clone().into(),
            GeomRef::Other(g) => g.clone(),
        }
    }
}

impl<'a> From<&'a Geometry<f64>> for GeomRef<'a> {
    /// The specific variant where there is one, so a polygon in a `Geometry` is drawn as one.
    fn from(g: &'a Geometry<f64>) -> GeomRef<'a> {
        match g {
            Geometry::Point(p) => GeomRef::Point(p),
            Geometry::Polygon(p) => GeomRef::Polygon(p),
            Geometry::MultiPolygon(mp) => GeomRef::MultiPolygon(mp),
            other => GeomRef::Other(other),
        }
    }
}

impl<'a> From<&'a Polygon<f64>> for GeomRef<'a> {
    fn from(p: &'a Polygon<f64>) -> GeomRef<'a> {
        GeomRef::Polygon(p)
    }
}

impl<'a> From<&'a MultiPolygon<f64>> for GeomRef<'a> {
    fn from(mp: &'a MultiPolygon<f64>) -> GeomRef<'a> {
        GeomRef::MultiPolygon(mp)
    }
}

/// A record that can live in a [`super::Layer`].
pub trait Record: Send + Sync + 'static {
    /// The collection the records belong to.
    const KIND: crate::model::Collection;
    /// The zoom below which the layer is drawn as counts per cell rather than single features
    /// (point layers of millions of records); the index keeps a count pyramid for those.
    const AGGREGATE_BELOW: Option<u8> = None;
    /// The collection id in the API (`grids`, `components`, ...).
    const COLLECTION: &'static str;
    /// Property names, in output order; `code`/`id` first.
    const PROPERTIES: &'static [&'static str];
    /// The properties vector tiles carry: what a map styles, labels and filters on. Long text
    /// stays out (a click fetches the feature), which keeps dense tiles light.
    const TILE_PROPERTIES: &'static [&'static str] = Self::PROPERTIES;

    /// The feature id, unique in the layer.
    fn key(&self) -> Str;
    /// `key() == k` without building the key, for lookups on hot paths.
    fn has_key(&self, k: &str) -> bool {
        self.key() == k
    }
    /// The feature id of vector tiles: the key where it is a number.
    fn tile_id(&self) -> Option<u64> {
        self.key().parse().ok()
    }
    fn envelope(&self) -> AABB<[f64; 2]>;
    fn geom_ref(&self) -> GeomRef<'_>;
    fn geometry(&self) -> Geometry<f64> {
        self.geom_ref().to_geometry()
    }
    fn intersects(&self, g: &Geometry<f64>) -> bool;
    fn intersects_point(&self, p: &Point<f64>) -> bool;
    /// Distance in metres from a point to the record (0 inside a polygon).
    fn distance_m(&self, lon: f64, lat: f64) -> f64;
    fn prop(&self, name: &str) -> Option<PropValue<'_>>;
    /// Property number `k` of [`Record::TILE_PROPERTIES`]: layers of millions of records answer
    /// by position, without comparing names, as every feature of a tile asks for each.
    fn tile_prop(&self, k: usize) -> Option<PropValue<'_>> {
        self.prop(Self::TILE_PROPERTIES.get(k)?)
    }
    /// Two codes the layer counts records by without visiting them (class and status of
    /// components), kept beside the record's envelope in the R-tree; `None` for layers that do
    /// not need it.
    fn tag(&self) -> Option<[&str; 2]> {
        None
    }
    /// The record's time for `datetime=` filters, where it has one.
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// True when every `(property, value)` filter matches exactly.
    fn matches(&self, filters: &[(String, String)]) -> bool {
        filters.iter().all(|(k, v)| self.prop(k).is_some_and(|pv| pv.matches(v)))
    }

    fn properties(&self) -> Map<String, Value> {
        Self::PROPERTIES.iter().map(|&n| (n.to_string(), self.prop(n).unwrap_or(PropValue::Null).to_json())).collect()
    }
}

fn s(v: &Str) -> PropValue<'_> {
    PropValue::Str(v.as_str())
}
/// The first `n` digits of a grid code: its district (6) or street (9).
fn grid_prefix(grid: &Option<Str>, n: usize) -> PropValue<'_> {
    grid.as_deref().and_then(|g| g.get(..n)).map(PropValue::Str).unwrap_or(PropValue::Null)
}

fn os(v: &Option<Str>) -> PropValue<'_> {
    v.as_deref().map(PropValue::Str).unwrap_or(PropValue::Null)
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> PropValue<'static> {
    t.map(|t| PropValue::Owned(t.to_rfc3339_opts(SecondsFormat::Secs, true))).unwrap_or(PropValue::Null)
}

fn envelope_geom(g: &Geometry<f64>) -> AABB<[f64; 2]> {
    envelope_rect(geo::BoundingRect::bounding_rect(g))
}

/// A bounding rectangle as an envelope (read in place: copying a polygon to ask for its box
/// cost more than the box).
fn envelope_rect(r: Option<geo::Rect<f64>>) -> AABB<[f64; 2]> {
    // Empty geometries cannot come out of the store (columns are NOT NULL and validated on
    // write); an inverted box would only make the record unfindable, never crash.
    r.map_or_else(
        || AABB::from_corners([f64::MAX, f64::MAX], [f64::MAX, f64::MAX]),
        |r| AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
    )
}

fn point_distance_m(p: &Point<f64>, lon: f64, lat: f64) -> f64 {
    crate::geo::haversine_m((p.x(), p.y()), (lon, lat))
}

/// Distance to an areal or general geometry: 0 when the point touches it, otherwise the
/// great-circle distance to the geometry's closest point. The closest point is searched on the
/// sphere too: searched in raw degrees it would be off by cos(latitude) east-west.
fn geom_distance_m(g: &Geometry<f64>, lon: f64, lat: f64) -> f64 {
    use geo::{Closest, HaversineClosestPoint};
    let p = Point::new(lon, lat);
    if g.intersects(&p) {
        return 0.0;
    }
    match g.haversine_closest_point(&p) {
        Closest::Intersection(c) | Closest::SinglePoint(c) => point_distance_m(&c, lon, lat),
        Closest::Indeterminate => f64::INFINITY,
    }
}

/// The parts every areal administrative layer shares: code, name, one parent code, a geometry.
macro_rules! areal_record {
    ($ty:ty, $kind:ident, [$($pname:literal => $field:ident),*], $geom:ident) => {
        impl Record for $ty {
            const KIND: crate::model::Collection = crate::model::Collection::$kind;
            const COLLECTION: &'static str = Self::KIND.as_str();
            const PROPERTIES: &'static [&'static str] = &["code", "name" $(, $pname)*];
            fn key(&self) -> Str { self.code.clone() }
            fn has_key(&self, k: &str) -> bool { self.code == k }
            fn envelope(&self) -> AABB<[f64; 2]> { envelope_rect(geo::BoundingRect::bounding_rect(&self.$geom)) }
            fn geom_ref(&self) -> GeomRef<'_> { (&self.$geom).into() }
            fn intersects(&self, g: &Geometry<f64>) -> bool { geom_intersects(&self.$geom, g) }
            fn intersects_point(&self, p: &Point<f64>) -> bool { self.$geom.intersects(p) }
            fn distance_m(&self, lon: f64, lat: f64) -> f64 { geom_distance_m(&self.geometry(), lon, lat) }
            fn prop(&self, name: &str) -> Option<PropValue<'_>> {
                match name {
                    "code" => Some(s(&self.code)),
                    "name" => Some(s(&self.name)),
                    $($pname => Some(record_value(&self.$field)),)*
                    _ => None,
                }
            }
        }
    };
}

/// The geometry methods of a record whose `geom` is a point (cases, sensors).
macro_rules! point_record {
    () => {
        fn envelope(&self) -> AABB<[f64; 2]> {
            AABB::from_point([self.geom.x(), self.geom.y()])
        }
        fn geom_ref(&self) -> GeomRef<'_> {
            GeomRef::Point(&self.geom)
        }
        fn intersects(&self, g: &Geometry<f64>) -> bool {
            geom_intersects(&self.geom, g)
        }
        fn intersects_point(&self, p: &Point<f64>) -> bool {
            self.geom == *p
        }
        fn distance_m(&self, lon: f64, lat: f64) -> f64 {
            point_distance_m(&self.geom, lon, lat)
        }
    };
}

/// Converts a field to a property value; implemented for the field types the layers use.
trait ToProp {
    fn to_prop(&self) -> PropValue<'_>;
}
impl ToProp for Str {
    fn to_prop(&self) -> PropValue<'_> {
        s(self)
    }
}
impl ToProp for f64 {
    fn to_prop(&self) -> PropValue<'_> {
        PropValue::Num(*self)
    }
}
fn record_value<T: ToProp>(v: &T) -> PropValue<'_> {
    v.to_prop()
}

areal_record!(District, Districts, [], geom);
areal_record!(Street, Streets, ["district_code" => district_code], geom);
areal_record!(Community, Communities, ["street_code" => street_code], geom);
areal_record!(Grid, Grids, ["community_code" => community_code, "area_m2" => area_m2], geom);

impl Record for Component {
    const KIND: crate::model::Collection = crate::model::Collection::Components;
    const COLLECTION: &'static str = Self::KIND.as_str();
    const AGGREGATE_BELOW: Option<u8> = Some(16);
    const PROPERTIES: &'static [&'static str] = &[
        "code",
        "name",
        "class_code",
        "status",
        "competent_dept",
        "owner_dept",
        "maint_dept",
        "grid_code",
        "survey_date",
        "change_date",
        "source",
    ];
    const TILE_PROPERTIES: &'static [&'static str] = &["code", "name", "class_code", "status", "grid_code"];
    fn tile_prop(&self, k: usize) -> Option<PropValue<'_>> {
        Some(match k {
            0 => s(&self.code),
            1 => s(&self.name),
            2 => s(&self.class_code),
            3 => s(&self.status),
            4 => os(&self.grid_code),
            _ => return None,
        })
    }
    fn key(&self) -> Str {
        self.code.clone()
    }
    fn tag(&self) -> Option<[&str; 2]> {
        Some([&self.class_code, &self.status])
    }
    fn has_key(&self, k: &str) -> bool {
        self.code == k
    }
    fn envelope(&self) -> AABB<[f64; 2]> {
        match &self.geom {
            Shape::Point(p) => AABB::from_point([p.x(), p.y()]),
            Shape::Other(g) => envelope_geom(g),
        }
    }
    fn geom_ref(&self) -> GeomRef<'_> {
        match &self.geom {
            Shape::Point(p) => GeomRef::Point(p),
            Shape::Other(g) => (&**g).into(),
        }
    }
    fn intersects(&self, g: &Geometry<f64>) -> bool {
        match &self.geom {
            Shape::Point(p) => geom_intersects(p, g),
            Shape::Other(own) => geom_intersects(&**own, g),
        }
    }
    fn intersects_point(&self, p: &Point<f64>) -> bool {
        match &self.geom {
            Shape::Point(own) => own == p,
            Shape::Other(own) => own.intersects(p),
        }
    }
    fn distance_m(&self, lon: f64, lat: f64) -> f64 {
        match &self.geom {
            Shape::Point(p) => point_distance_m(p, lon, lat),
            Shape::Other(g) => geom_distance_m(g, lon, lat),
        }
    }
    fn prop(&self, name: &str) -> Option<PropValue<'_>> {
        Some(match name {
            "code" => s(&self.code),
            "name" => s(&self.name),
            "class_code" => s(&self.class_code),
            "status" => s(&self.status),
            "competent_dept" => os(&self.competent_dept),
            "owner_dept" => os(&self.owner_dept),
            "maint_dept" => os(&self.maint_dept),
            "grid_code" => os(&self.grid_code),
            "survey_date" => self.survey_date.map(|d| PropValue::Owned(d.to_string())).unwrap_or(PropValue::Null),
            "change_date" => self.change_date.map(|d| PropValue::Owned(d.to_string())).unwrap_or(PropValue::Null),
            "source" => s(&self.source),
            _ => return None,
        })
    }
}

impl Record for Case {
    const KIND: crate::model::Collection = crate::model::Collection::Cases;
    const COLLECTION: &'static str = Self::KIND.as_str();
    const AGGREGATE_BELOW: Option<u8> = Some(15);
    const PROPERTIES: &'static [&'static str] = &[
        "id",
        "class_code",
        "kind",
        "component_code",
        "description",
        "source",
        "status",
        "urgency",
        "grid_code",
        "reported_at",
        "closed_at",
        "deadline_at",
        "light",
        "dept_code",
        "version",
        "assignee",
        "assigned_at",
    ];
    const TILE_PROPERTIES: &'static [&'static str] =
        &["id", "class_code", "kind", "source", "status", "urgency", "grid_code", "reported_at", "light"];
    fn key(&self) -> Str {
        Str::from(self.id.to_string())
    }
    fn tile_id(&self) -> Option<u64> {
        u64::try_from(self.id).ok()
    }
    fn has_key(&self, k: &str) -> bool {
        k.parse::<i64>().is_ok_and(|id| id == self.id) && !k.starts_with('+') && !(k.starts_with('0') && k.len() > 1)
    }
    point_record!();
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(self.reported_at)
    }
    fn tile_prop(&self, k: usize) -> Option<PropValue<'_>> {
        Some(match k {
            0 => PropValue::Int(self.id),
            1 => s(&self.class_code),
            2 => s(&self.kind),
            3 => s(&self.source),
            4 => PropValue::Str(self.status.as_str()),
            5 => s(&self.urgency),
            6 => os(&self.grid_code),
            7 => time(Some(self.reported_at)),
            8 => self.light.map(|l| PropValue::Str(l.as_str())).unwrap_or(PropValue::Null),
            _ => return None,
        })
    }
    fn prop(&self, name: &str) -> Option<PropValue<'_>> {
        Some(match name {
            "id" => PropValue::Int(self.id),
            "class_code" => s(&self.class_code),
            "kind" => s(&self.kind),
            "component_code" => os(&self.component_code),
            "description" => PropValue::Str(&self.description),
            "source" => s(&self.source),
            "status" => PropValue::Str(self.status.as_str()),
            "urgency" => s(&self.urgency),
            "grid_code" => os(&self.grid_code),
            // Not listed in PROPERTIES: derived from the grid code for area scopes
            // (`model::CaseScope::filters`).
            "district_code" => grid_prefix(&self.grid_code, 6),
            "street_code" => grid_prefix(&self.grid_code, 9),
            "reported_at" => time(Some(self.reported_at)),
            "closed_at" => time(self.closed_at),
            "deadline_at" => time(self.deadline_at),
            "dept_code" => os(&self.dept_code),
            // Set at the live view's light clock, never read at the wall clock: see `events::Live`.
            "light" => self.light.map(|l| PropValue::Str(l.as_str())).unwrap_or(PropValue::Null),
            "version" => PropValue::Int(self.version as i64),
            "assignee" => os(&self.assignee),
            "assigned_at" => time(self.assigned_at),
            _ => return None,
        })
    }
}

impl Record for Sensor {
    const KIND: crate::model::Collection = crate::model::Collection::Sensors;
    const COLLECTION: &'static str = Self::KIND.as_str();
    const PROPERTIES: &'static [&'static str] =
        &["code", "name", "kind", "unit", "component_code", "grid_code", "value", "read_at", "level", "stale"];
    fn key(&self) -> Str {
        self.code.clone()
    }
    fn has_key(&self, k: &str) -> bool {
        self.code == k
    }
    point_record!();
    fn prop(&self, name: &str) -> Option<PropValue<'_>> {
        Some(match name {
            "code" => s(&self.code),
            "name" => s(&self.name),
            "kind" => s(&self.kind),
            "unit" => crate::catalog::kind(&self.kind).map_or(PropValue::Null, |k| PropValue::Str(k.unit.as_str())),
            "component_code" => os(&self.component_code),
            "grid_code" => os(&self.grid_code),
            // The live status: what the latest reading says (see `SensorLive`).
            "value" => self.live.get().value.map_or(PropValue::Null, PropValue::Num),
            "read_at" => time(self.live.get().at),
            "level" => self.live.get().level.map_or(PropValue::Null, |l| PropValue::Str(l.as_str())),
            "stale" => PropValue::Bool(self.live.get().stale),
            _ => return None,
        })
    }
}

impl Record for Staff {
    const KIND: crate::model::Collection = crate::model::Collection::Staff;
    const COLLECTION: &'static str = Self::KIND.as_str();
    const PROPERTIES: &'static [&'static str] =
        &["code", "name", "role", "dept_code", "community_code", "grids", "grid_code", "on_duty", "last_seen"];
    /// What the big screen draws and filters on.
    const TILE_PROPERTIES: &'static [&'static str] = &["code", "name", "role", "grid_code", "on_duty", "last_seen"];
    fn key(&self) -> Str {
        self.code.clone()
    }
    fn has_key(&self, k: &str) -> bool {
        self.code == k
    }
    point_record!();
    fn prop(&self, name: &str) -> Option<PropValue<'_>> {
        Some(match name {
            "code" => s(&self.code),
            "name" => s(&self.name),
            "role" => PropValue::Str(self.role.as_str()),
            "dept_code" => os(&self.dept_code),
            "community_code" => os(&self.community_code),
            // The grids named besides the community's, comma-separated (one text column in
            // every export format).
            "grids" => PropValue::Owned(self.grids.join(",")),
            "grid_code" => os(&self.grid_code),
            "on_duty" => PropValue::Bool(self.on_duty),
            "last_seen" => time(self.last_seen),
            _ => return None,
        })
    }
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.last_seen
    }
}

impl Record for Camera {
    const KIND: crate::model::Collection = crate::model::Collection::Cameras;
    const COLLECTION: &'static str = Self::KIND.as_str();
    const PROPERTIES: &'static [&'static str] = &["code", "name", "stream_url", "direction", "grid_code"];
    fn key(&self) -> Str {
        self.code.clone()
    }
    fn has_key(&self, k: &str) -> bool {
        self.code == k
    }
    point_record!();
    fn prop(&self, name: &str) -> Option<PropValue<'_>> {
        Some(match name {
            "code" => s(&self.code),
            "name" => s(&self.name),
            "stream_url" => os(&self.stream_url),
            "direction" => self.direction.map_or(PropValue::Null, PropValue::Num),
            "grid_code" => os(&self.grid_code),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record answers its tile properties by position as it does by name.
    fn tile_props_agree<T: Record>(records: &[T]) {
        assert!(!records.is_empty(), "{}: no records to check", T::COLLECTION);
        for r in records.iter().take(500) {
            for (k, name) in T::TILE_PROPERTIES.iter().enumerate() {
                assert_eq!(r.tile_prop(k), r.prop(name), "{} {name}", T::COLLECTION);
            }
            assert_eq!(r.tile_prop(T::TILE_PROPERTIES.len()), None);
        }
    }

    #[test]
    fn tile_properties_by_position_are_the_named_ones() {
        let mut city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        // Some cases with a light, so that property is not only ever null.
        for (i, c) in city.cases.iter_mut().enumerate().take(100) {
            c.light = Some([Light::Green, Light::Yellow, Light::Red][i % 3]);
        }
        tile_props_agree(&city.components);
        tile_props_agree(&city.cases);
        tile_props_agree(&city.grids);
        tile_props_agree(&city.sensors);
    }
}
