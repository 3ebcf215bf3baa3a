//! All layers of one city behind per-layer locks, plus the small dictionaries (departments,
//! responsibilities, classes) that locate and dispatch read on every request.

use parking_lot::RwLock;
use std::collections::HashMap;

use crate::model::*;

use super::{Layer, Record};

/// Departments, responsibilities and class dictionaries, indexed for lookups by code.
#[derive(Default)]
pub struct Dictionaries {
    pub departments: HashMap<Str, Department>,
    /// Responsibilities keyed by their target (a region code or a class code).
    pub by_target: HashMap<Str, Vec<Responsibility>>,
    pub component_classes: Vec<ComponentClass>,
    pub event_classes: Vec<EventClass>,
}

impl Dictionaries {
    pub fn new(
        departments: Vec<Department>,
        responsibilities: Vec<Responsibility>,
        component_classes: Vec<ComponentClass>,
        event_classes: Vec<EventClass>,
    ) -> Self {
        let mut by_target: HashMap<Str, Vec<Responsibility>> = HashMap::new();
        for r in responsibilities {
            by_target.entry(r.target.clone()).or_default().push(r);
        }
        // The same order whichever store the rows came from.
        for rs in by_target.values_mut() {
            rs.sort_by(|a, b| (&a.role, &a.dept_code, &a.scope).cmp(&(&b.role, &b.dept_code, &b.scope)));
        }
        Dictionaries {
            departments: departments.into_iter().map(|d| (d.code.clone(), d)).collect(),
            by_target,
            component_classes,
            event_classes,
        }
    }
}

/// The live index of a whole city. Each layer has its own lock so a burst of case writes never
/// stalls locate or tile reads of the other layers.
#[derive(Default)]
pub struct CityIndex {
    pub districts: RwLock<Layer<District>>,
    pub streets: RwLock<Layer<Street>>,
    pub communities: RwLock<Layer<Community>>,
    pub grids: RwLock<Layer<Grid>>,
    pub components: RwLock<Layer<Component>>,
    pub cases: RwLock<Layer<Case>>,
    pub sensors: RwLock<Layer<Sensor>>,
    pub staff: RwLock<Layer<Staff>>,
    pub cameras: RwLock<Layer<Camera>>,
    pub dict: RwLock<Dictionaries>,
    /// Rendered locate answers per unit grid (grid, parents, responsible parties as a JSON
    /// object without its closing brace). A location depends only on the grid, and a batch of
    /// 100,000 random points meets tens of thousands of grids, so rendering each once per
    /// process rather than once per request is most of the batch cost. Whoever changes grids,
    /// the hierarchy or the dictionaries must call [`CityIndex::hierarchy_changed`].
    pub location_cache: RwLock<LocationCache>,
}

/// Rendered locate answers and the generation they belong to. A batch that rendered answers
/// while the hierarchy changed sees a newer generation and does not store them, so no stale
/// answer outlives a change.
#[derive(Default)]
pub struct LocationCache {
    pub generation: u64,
    pub answers: HashMap<Str, std::sync::Arc<str>>,
    /// The same locations as codes only, for batches that ask for some `fields`.
    pub codes: HashMap<Str, std::sync::Arc<LocationCodes>>,
}

/// The codes of a unit grid's parents and the departments responsible there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocationCodes {
    pub community: Option<Str>,
    pub street: Option<Str>,
    pub district: Option<Str>,
    pub responsible: Vec<Str>,
}

impl CityIndex {
    /// Bulk-loads every layer; consumes the city so nothing is held twice.
    pub fn from_city(city: City) -> Self {
        let City {
            districts,
            streets,
            communities,
            grids,
            departments,
            responsibilities,
            component_classes,
            event_classes,
            components,
            cases,
            case_steps: _,
            sensors,
            staff,
            cameras,
        } = city;
        CityIndex {
            districts: RwLock::new(Layer::bulk(districts)),
            streets: RwLock::new(Layer::bulk(streets)),
            communities: RwLock::new(Layer::bulk(communities)),
            grids: RwLock::new(Layer::bulk(grids)),
            components: RwLock::new(Layer::bulk(components)),
            cases: RwLock::new(Layer::bulk(cases)),
            sensors: RwLock::new(Layer::bulk(sensors)),
            staff: RwLock::new(Layer::bulk(staff)),
            cameras: RwLock::new(Layer::bulk(cameras)),
            dict: RwLock::new(Dictionaries::new(departments, responsibilities, component_classes, event_classes)),
            location_cache: RwLock::new(LocationCache::default()),
        }
    }

    /// Forgets every rendered location: call after (not before) any change to grids,
    /// communities, streets, districts, departments or responsibilities.
    pub fn hierarchy_changed(&self) {
        let mut cache = self.location_cache.write();
        cache.answers.clear();
        cache.codes.clear();
        cache.generation += 1;
    }

    /// Feature counts per collection, as `/health` reports them.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("districts", self.districts.read().len()),
            ("streets", self.streets.read().len()),
            ("communities", self.communities.read().len()),
            ("grids", self.grids.read().len()),
            ("components", self.components.read().len()),
            ("cases", self.cases.read().len()),
            ("sensors", self.sensors.read().len()),
            ("staff", self.staff.read().len()),
            ("cameras", self.cameras.read().len()),
        ]
    }
}

/// Which layer of the index holds records of a model type.
pub trait Layered: Record + Sized {
    fn layer(index: &CityIndex) -> &RwLock<Layer<Self>>;
}

macro_rules! layered {
    ($($ty:ty => $field:ident),*) => {
        $(impl Layered for $ty {
            fn layer(index: &CityIndex) -> &RwLock<Layer<Self>> {
                &index.$field
            }
        })*
    };
}
layered!(District => districts, Street => streets, Community => communities, Grid => grids,
    Component => components, Case => cases, Sensor => sensors, Staff => staff, Camera => cameras);
