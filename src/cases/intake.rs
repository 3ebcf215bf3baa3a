//! Taking in a new report (信息收集): the rules a report must pass before it becomes a case,
//! as a pure function of the request, the live index and the time.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::auth::Principal;
use crate::geo::Crs;
use crate::index::CityIndex;
use crate::model::{Case, CaseStep, Milestones, Status, Str, check_text};

/// Where reports come from (`domain.md`): patrollers, the public (随手拍 app), the 12345
/// hotline, video AI and sensor alarms.
pub const SOURCES: &[&str] = &["supervisor", "public", "hotline", "video", "sensor"];
pub const URGENCIES: &[&str] = &["normal", "urgent"];
/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION: usize = 2000;

/// The body of `POST /api/v1/cases`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub class_code: String,
    pub lon: f64,
    pub lat: f64,
    #[serde(default)]
    pub crs: Option<String>,
    pub description: String,
    pub source: String,
    #[serde(default)]
    pub component_code: Option<String>,
    #[serde(default)]
    pub urgency: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown class code {0:?}: not an event or component class of this city")]
    UnknownClass(String),
    #[error("unknown component {0:?}")]
    UnknownComponent(String),
    #[error("component {component} is of class {actual}, not {given}")]
    ClassMismatch { component: String, actual: String, given: String },
    #[error("the point ({0}, {1}) is in no unit grid of this city")]
    OutsideCity(f64, f64),
}

/// Checks a report and builds the new case (id 0 until the store assigns one) and its first
/// history step.
pub fn take_in(
    req: &NewCase,
    index: &CityIndex,
    deadlines: &super::Deadlines,
    who: &Principal,
    now: DateTime<Utc>,
) -> Result<(Case, CaseStep), IntakeError> {
    let invalid = |m: String| IntakeError::Invalid(m);
    let source =
        pick(SOURCES, &req.source).ok_or_else(|| invalid(format!("source {:?}: one of {SOURCES:?}", req.source)))?;
    let urgency = pick(URGENCIES, req.urgency.as_deref().unwrap_or("normal")).ok_or_else(|| {
        invalid(format!("urgency {:?}: one of {}", req.urgency.as_deref().unwrap_or(""), URGENCIES.join(", ")))
    })?;
    let description = req.description.trim();
    if description.is_empty() || description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(format!("description must have 1 to {MAX_DESCRIPTION} characters")));
    }
    check_text("description", description).map_err(invalid)?;
    let crs: Crs =
        req.crs.as_deref().unwrap_or("wgs84").parse().map_err(|e: crate::geo::CrsError| invalid(e.to_string()))?;
    crate::geo::check_lon_lat(req.lon, req.lat).map_err(|e| invalid(e.to_string()))?;
    let (lon, lat) = crs.to_cgcs2000(req.lon, req.lat).map_err(|e| invalid(e.to_string()))?;

    // A component class without a linked component is allowed: a damaged facility not yet in
    // the census is still a component case.
    let kind = class_kind(index, &req.class_code).ok_or_else(|| IntakeError::UnknownClass(req.class_code.clone()))?;
    if let Some(code) = &req.component_code {
        let components = index.components.read();
        let c = components.get(code).ok_or_else(|| IntakeError::UnknownComponent(code.clone()))?;
        if c.class_code != req.class_code {
            return Err(IntakeError::ClassMismatch {
                component: code.clone(),
                actual: c.class_code.to_string(),
                given: req.class_code.clone(),
            });
        }
    }
    let grid_code = crate::grids::grid_code_at(index, lon, lat).ok_or(IntakeError::OutsideCity(req.lon, req.lat))?;

    let deadline = deadlines.due(&req.class_code, urgency, now);
    let case = Case {
        id: 0,
        class_code: req.class_code.as_str().into(),
        kind,
        component_code: req.component_code.as_deref().map(Into::into),
        description: description.to_string(),
        source: source.into(),
        status: Status::Reported,
        urgency: urgency.into(),
        grid_code: Some(grid_code),
        reported_at: now,
        closed_at: None,
        deadline_at: Some(deadline),
        dept_code: None,
        version: 1,
        geom: geo::Point::new(lon, lat),
        milestones: Milestones { warn_at: Some(deadlines.warn_at(now, deadline)), ..Default::default() },
        light: None,
        assignee: None,
        assigned_at: None,
    };
    let step = CaseStep {
        case_id: 0,
        seq: 1,
        action: "report".into(),
        actor: who.actor.clone(),
        role: who.role.as_str().into(),
        dept_code: who.dept_code.clone(),
        status_from: None,
        status_to: Status::Reported,
        at: now,
        note: None,
    };
    Ok((case, step))
}

fn pick(options: &[&'static str], v: &str) -> Option<&'static str> {
    options.iter().copied().find(|o| *o == v)
}

/// `event` or `component` for a known class code.
pub fn class_kind(index: &CityIndex, code: &str) -> Option<Str> {
    let dict = index.dict.read();
    if dict.event_classes.iter().any(|c| c.code == code) {
        Some("event".into())
    } else if dict.component_classes.iter().any(|c| c.code == code) {
        Some("component".into())
    } else {
        None
    }
}
