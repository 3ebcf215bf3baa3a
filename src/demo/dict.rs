//! The hand-made dictionaries in `data/`, compiled into the binary so a demo city (and the
//! class tables a real import starts from) needs no files at run time.
//!
//! The CSV files are tiny and never quoted: one record per line, `#` starts a comment line.

const DEPARTMENTS: &str = include_str!("../../data/departments.csv");
const COMPONENT_PROFILE: &str = include_str!("../../data/demo_component_profile.csv");
const EVENT_PROFILE: &str = include_str!("../../data/demo_event_profile.csv");

use crate::catalog::records;
pub use crate::catalog::{MajorClass, component_classes, event_classes, major_classes};

pub(super) struct DeptSeed {
    pub key: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub reg: &'static str,
    pub tag: &'static str,
}

pub(super) fn department_seeds() -> Vec<DeptSeed> {
    records(DEPARTMENTS, "departments.csv", 5)
        .map(|f| DeptSeed { key: f[0], name: f[1], kind: f[2], reg: f[3], tag: f[4] })
        .collect()
}

pub(super) struct ComponentProfile {
    pub code: &'static str,
    pub weight: f64,
    pub competent: &'static str,
    pub owners: Vec<&'static str>,
    pub maintainers: Vec<&'static str>,
}

pub(super) fn component_profile() -> Vec<ComponentProfile> {
    records(COMPONENT_PROFILE, "demo_component_profile.csv", 5)
        .map(|f| ComponentProfile {
            code: f[0],
            weight: f[1].parse().expect("demo_component_profile.csv: weight"),
            competent: f[2],
            owners: f[3].split('|').collect(),
            maintainers: f[4].split('|').collect(),
        })
        .collect()
}

pub(super) struct EventProfile {
    pub code: &'static str,
    pub weight: f64,
    pub default_dept: &'static str,
    pub urgent_share: f64,
}

pub(super) fn event_profile() -> Vec<EventProfile> {
    records(EVENT_PROFILE, "demo_event_profile.csv", 4)
        .map(|f| EventProfile {
            code: f[0],
            weight: f[1].parse().expect("demo_event_profile.csv: weight"),
            default_dept: f[2],
            urgent_share: f[3].parse().expect("demo_event_profile.csv: urgent_share"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_hold_the_domain_classes() {
        let cc = component_classes();
        for code in [
            "0101", "0102", "0103", "0104", "0111", "0113", "0118", "0201", "0203", "0205", "0208", "0209", "0301",
            "0305", "0307", "0401", "0402", "0405", "0501", "0601", "0602",
        ] {
            assert!(cc.iter().any(|c| c.code == code), "component class {code}");
        }
        assert_eq!(cc.iter().find(|c| c.code == "0405").unwrap().geom_type, "polygon");
        assert!(cc.windows(2).all(|w| w[0].code < w[1].code), "sorted and unique");
        let ec = event_classes();
        for code in ["0110", "0112", "0136", "0201", "0302", "0405", "0406", "0409", "0410", "0501", "0502"] {
            assert!(ec.iter().any(|c| c.code == code), "event class {code}");
        }
        assert!(ec.windows(2).all(|w| w[0].code < w[1].code), "sorted and unique");
        let majors = major_classes();
        for c in &cc {
            assert_eq!(&c.code[..2], c.major.as_str());
            assert!(majors.iter().any(|m| m.kind == "component" && m.code == c.major));
        }
        for c in &ec {
            assert_eq!(&c.code[..2], c.major.as_str());
            assert!(majors.iter().any(|m| m.kind == "event" && m.code == c.major));
        }
    }

    #[test]
    fn profiles_cover_every_class() {
        let cp = component_profile();
        let cc = component_classes();
        assert_eq!(cp.len(), cc.len());
        for (p, c) in cp.iter().zip(&cc) {
            assert_eq!(p.code, c.code.as_str());
            assert!(p.weight > 0.0);
        }
        let ep = event_profile();
        let ec = event_classes();
        assert_eq!(ep.len(), ec.len());
        for (p, c) in ep.iter().zip(&ec) {
            assert_eq!(p.code, c.code.as_str());
            assert!(p.weight > 0.0 && (0.0..=1.0).contains(&p.urgent_share));
        }
    }
}
