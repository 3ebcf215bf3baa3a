//! Dispatch routing, owner first then territory (先属主后属地): the one department a case should go
//! to, suggested on filing; the dispatcher may override it.

use crate::index::Dictionaries;
use crate::model::{Case, Component, Str};

/// Why a department was suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// 权属单位: the linked component's owner.
    Owner,
    /// 养护单位: its maintenance unit.
    Maintenance,
    /// 主管部门: its competent department.
    Competent,
    /// The event class's default department.
    EventClass,
    /// The component class's competent department (a component not in the census).
    ComponentClass,
    /// The street (then district) holding the unit grid.
    Territory,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Owner => "owner",
            Basis::Maintenance => "maintenance",
            Basis::Competent => "competent",
            Basis::EventClass => "event_class",
            Basis::ComponentClass => "component_class",
            Basis::Territory => "territory",
        }
    }
}

/// The department to dispatch `case` to, and why; `None` only when not even the territory has a
/// body on record.
pub fn suggest(dict: &Dictionaries, case: &Case, component: Option<&Component>) -> Option<(Str, Basis)> {
    let known = |code: &Option<Str>| code.as_ref().filter(|c| dict.departments.contains_key(*c)).cloned();
    if let Some(c) = component {
        for (code, basis) in
            [(&c.owner_dept, Basis::Owner), (&c.maint_dept, Basis::Maintenance), (&c.competent_dept, Basis::Competent)]
        {
            if let Some(d) = known(code) {
                return Some((d, basis));
            }
        }
    }
    let (scope, basis) = if case.kind == "component" {
        ("component_class", Basis::ComponentClass)
    } else {
        ("event_class", Basis::EventClass)
    };
    if let Some(d) = by_class(dict, &case.class_code, scope) {
        return Some((d, basis));
    }
    territory(dict, case.grid_code.as_deref()?).map(|d| (d, Basis::Territory))
}

/// The department a class names (`scope`: `component_class` or `event_class`), if it is on record.
pub fn by_class(dict: &Dictionaries, class_code: &str, scope: &str) -> Option<Str> {
    let r = dict.by_target.get(class_code).and_then(|rs| rs.iter().find(|r| r.scope == scope))?;
    dict.departments.contains_key(&r.dept_code).then(|| r.dept_code.clone())
}

/// The territorial body of a unit grid: the street office of its street, else its district's.
pub fn territory(dict: &Dictionaries, grid: &str) -> Option<Str> {
    [grid.get(..9), grid.get(..6)].into_iter().flatten().find_map(|region| {
        let mut bodies: Vec<&Str> = dict
            .departments
            .values()
            .filter(|d| d.region_code.as_deref() == Some(region) && matches!(d.kind.as_str(), "street" | "district"))
            .map(|d| &d.code)
            .collect();
        bodies.sort();
        bodies.first().map(|d| (*d).clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::CityIndex;

    #[test]
    fn owner_first_then_class_then_territory() {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.05));
        let comp = city.components.iter().find(|c| c.owner_dept.is_some()).unwrap().clone();
        let case = |kind: &str, class: &str| {
            let mut c = crate::cases::sample(1, "filed", chrono::Utc::now(), 10);
            c.kind = kind.into();
            c.class_code = class.into();
            c.grid_code = Some(city.grids[0].code.clone());
            c
        };
        let index = CityIndex::from_city(city.clone());
        let dict = index.dict.read();
        let (d, b) = suggest(&dict, &case("component", &comp.class_code), Some(&comp)).unwrap();
        assert_eq!((d, b), (comp.owner_dept.clone().unwrap(), Basis::Owner));
        let mut no_owner = comp.clone();
        no_owner.owner_dept = None;
        let (_, b) = suggest(&dict, &case("component", &comp.class_code), Some(&no_owner)).unwrap();
        assert!(matches!(b, Basis::Maintenance | Basis::Competent), "{b:?}");
        // An event class with a default department goes there.
        let ev = city.responsibilities.iter().find(|r| r.scope == "event_class").expect("demo class defaults");
        let (d, b) = suggest(&dict, &case("event", &ev.target), None).unwrap();
        assert_eq!((d, b), (ev.dept_code.clone(), Basis::EventClass));
        // An unknown class falls to the street of the grid.
        let (d, b) = suggest(&dict, &case("event", "9999"), None).unwrap();
        assert_eq!(b, Basis::Territory);
        let street = &city.grids[0].code[..9];
        assert_eq!(dict.departments[&d].region_code.as_deref(), Some(street));
    }
}
