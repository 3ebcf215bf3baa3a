//! Emergency plans (预案) as data: what a plan says, the checks a new version must pass, and
//! their storage, one row per version, so an incident keeps the version it was started from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LinkageError;
use crate::index::Dictionaries;
use crate::model::{Collection, Level, rfc3339_ms};
use crate::store::log::{ChangeRow, Op};
use crate::store::schema::{Filter, PLANS, Val};
use crate::store::{Store, StoreError};

/// What starts a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Trigger {
    /// An alarm of this sensor kind reaching `level` (or a more severe one).
    Sensor { sensor_kind: String, level: Level },
    /// A case of this class (only urgent ones with `urgency: "urgent"`).
    Class {
        class_code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgency: Option<String>,
    },
    /// Only a click (`"manual"`).
    Manual(Manual),
}

/// The one word of a manual trigger.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manual {
    Manual,
}

/// A responder named by its place in the city rather than by code, resolved where the incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartyRole {
    /// 权属单位: the owner of the component at the place (its maintainer, its competent body
    /// when the census names no owner).
    Owner,
    /// 属地街道: the street office of the unit grid.
    Street,
    /// 主管部门: the competent department of the component or of the case's class.
    Competent,
}

impl PartyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PartyRole::Owner => "owner",
            PartyRole::Street => "street",
            PartyRole::Competent => "competent",
        }
    }
}

/// One responding department of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<PartyRole>,
    /// What the department does (到场封控, 关阀抢修, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Minutes from dispatch to arrival on site, on the wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_min: Option<f64>,
    /// Minutes from dispatch to acknowledgement (default: the lesser of 5 and the deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_min: Option<f64>,
}

/// An outside system a plan calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// The HMAC-SHA256 key of `X-Onemap-Signature`; never shown by the API.
    pub secret: String,
}

/// A plan as posted (and stored, secrets included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub code: String,
    pub name: String,
    pub trigger: Trigger,
    pub lead: Party,
    #[serde(default)]
    pub assist: Vec<Party>,
    /// How far around the place resources are listed (default 500 m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    /// Component classes listed as resources (hydrants, valves, shelters).
    #[serde(default)]
    pub resource_classes: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// A stored version of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub plan: Plan,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// Minutes a department has to arrive when the plan says nothing.
pub const DEFAULT_DEADLINE_MIN: f64 = 30.0;
/// Minutes to acknowledge at most, when the plan says nothing.
pub const DEFAULT_ACK_MIN: f64 = 5.0;
/// Resources are listed this far around the place when the plan says nothing.
pub const DEFAULT_RADIUS_M: f64 = 500.0;
/// The most a plan may say: a day to arrive, 5 km of resources, 30 departments, 10 outside calls.
const MAX_DEADLINE_MIN: f64 = 1440.0;
const MAX_RADIUS_M: f64 = 5000.0;
const MAX_ASSIST: usize = 30;
const MAX_WEBHOOKS: usize = 10;
const MAX_RESOURCE_CLASSES: usize = 50;

impl Party {
    /// Minutes to arrive.
    pub fn deadline(&self) -> f64 {
        self.deadline_min.unwrap_or(DEFAULT_DEADLINE_MIN)
    }

    /// Minutes to acknowledge.
    pub fn ack(&self) -> f64 {
        self.ack_min.unwrap_or(DEFAULT_ACK_MIN.min(self.deadline()))
    }
}

impl Plan {
    pub fn radius(&self) -> f64 {
        self.radius_m.unwrap_or(DEFAULT_RADIUS_M)
    }

    /// Every responder, the lead first.
    pub fn parties(&self) -> impl Iterator<Item = &Party> {
        std::iter::once(&self.lead).chain(&self.assist)
    }

    /// Checks the plan against the dictionaries: known codes, sensible minutes and radius,
    /// callable URLs. The first problem found is the error.
    pub fn validate(&self, dict: &Dictionaries) -> Result<(), LinkageError> {
        let bad = |m: String| Err(LinkageError::InvalidPlan(m));
        let code_ok = |c: &str| {
            !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        };
        if !code_ok(&self.code) {
            return bad(format!("code {:?} must be 1 to 64 letters, digits, '-', '_' or '.'", self.code));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return bad("name must be 1 to 200 characters".into());
        }
        match &self.trigger {
            Trigger::Sensor { sensor_kind, .. } if crate::catalog::kind(sensor_kind).is_none() => {
                return bad(format!("unknown sensor kind {sensor_kind:?}"));
            }
            Trigger::Class { class_code, urgency } => {
                let known = dict.event_classes.iter().any(|c| c.code == class_code.as_str())
                    || dict.component_classes.iter().any(|c| c.code == class_code.as_str());
                if !known {
                    return bad(format!("unknown class code {class_code:?}"));
                }
                if urgency.as_deref().is_some_and(|u| !matches!(u, "normal" | "urgent")) {
                    return bad("urgency must be normal or urgent".into());
                }
            }
            _ => {}
        }
        if self.assist.len() > MAX_ASSIST {
            return bad(format!("at most {MAX_ASSIST} assisting departments"));
        }
        for (i, p) in self.parties().enumerate() {
            let which = if i == 0 { "lead".to_string() } else { format!("assist[{}]", i - 1) };
            match (&p.dept_code, p.role) {
                (Some(d), None) if !dict.departments.contains_key(d.as_str()) => {
                    return bad(format!("{which}: unknown department {d:?}"));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => return bad(format!("{which}: give either dept_code or role (owner, street, competent)")),
            }
            let minutes = |m: f64| m.is_finite() && m > 0.0 && m <= MAX_DEADLINE_MIN;
            if !minutes(p.deadline()) || !minutes(p.ack()) {
                return bad(format!("{which}: minutes must be above 0 and at most {MAX_DEADLINE_MIN}"));
            }
            if p.ack() > p.deadline() {
                return bad(format!("{which}: ack_min must not exceed deadline_min"));
            }
            if p.task.as_ref().is_some_and(|t| t.chars().count() > 500) {
                return bad(format!("{which}: task must be at most 500 characters"));
            }
        }
        if !(self.radius() > 0.0 && self.radius() <= MAX_RADIUS_M) {
            return bad(format!("radius_m must be above 0 and at most {MAX_RADIUS_M}"));
        }
        if self.resource_classes.len() > MAX_RESOURCE_CLASSES {
            return bad(format!("at most {MAX_RESOURCE_CLASSES} resource classes"));
        }
        if let Some(c) =
            self.resource_classes.iter().find(|c| !dict.component_classes.iter().any(|k| k.code == c.as_str()))
        {
            return bad(format!("unknown component class {c:?} in resource_classes"));
        }
        if self.webhooks.len() > MAX_WEBHOOKS {
            return bad(format!("at most {MAX_WEBHOOKS} webhooks"));
        }
        for w in &self.webhooks {
            let url =
                reqwest::Url::parse(&w.url).map_err(|e| LinkageError::InvalidPlan(format!("{:?}: {e}", w.url)))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return bad(format!("webhook {:?} must be an http or https URL", w.url));
            }
            if w.secret.len() < 16 {
                return bad(format!("webhook {:?}: the secret must be at least 16 characters", w.url));
            }
        }
        Ok(())
    }
}

impl Stored {
    /// The plan as the API shows it: webhooks by URL only, their secrets never leave the store.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.plan).expect("plans serialise");
        v["webhooks"] = json!(self.plan.webhooks.iter().map(|w| json!({"url": w.url})).collect::<Vec<_>>());
        v["version"] = json!(self.version);
        v["created_at"] = json!(rfc3339_ms(self.created_at));
        v["created_by"] = json!(self.created_by);
        v
    }

    fn from_row(row: Vec<Val>) -> Result<Stored, StoreError> {
        let bad = |column: &'static str, detail: String| StoreError::Value { table: "plans", column, detail };
        match <[Val; 6]>::try_from(row) {
            Ok([_, Val::Int(version), _, Val::Json(Some(body)), Val::Time(Some(created_at)), Val::Text(by)]) => {
                Ok(Stored {
                    plan: serde_json::from_value(body).map_err(|e| bad("body", e.to_string()))?,
                    version,
                    created_at,
                    created_by: by.map(|b| b.to_string()).unwrap_or_default(),
                })
            }
            _ => Err(bad("*", "a plans row".into())),
        }
    }
}

/// Every version of plan `code`, oldest first.
pub async fn versions(store: &dyn Store, code: &str) -> Result<Vec<Stored>, StoreError> {
    let mut all: Vec<Stored> = store
        .select(&PLANS, Filter::Eq("code", Val::Text(Some(code.into()))))
        .await?
        .into_iter()
        .map(Stored::from_row)
        .collect::<Result<_, _>>()?;
    all.sort_by_key(|s| s.version);
    Ok(all)
}

/// The latest version of every plan, in code order.
pub async fn latest(store: &dyn Store) -> Result<Vec<Stored>, StoreError> {
    let mut all: Vec<Stored> =
        store.select(&PLANS, Filter::All).await?.into_iter().map(Stored::from_row).collect::<Result<_, _>>()?;
    all.sort_by(|a, b| a.plan.code.cmp(&b.plan.code).then(a.version.cmp(&b.version)));
    let mut out: Vec<Stored> = Vec::new();
    for s in all {
        match out.last_mut() {
            Some(last) if last.plan.code == s.plan.code => *last = s,
            _ => out.push(s),
        }
    }
    Ok(out)
}

/// Version `version` of plan `code` (the latest when `None`).
pub async fn get(store: &dyn Store, code: &str, version: Option<i64>) -> Result<Stored, LinkageError> {
    let all = versions(store, code).await?;
    match version {
        None => all.into_iter().last(),
        Some(v) => all.into_iter().find(|s| s.version == v),
    }
    .ok_or_else(|| LinkageError::UnknownPlan(code.to_string()))
}

/// The row and change of a new version of `plan`.
pub fn version_row(plan: &Plan, version: i64, by: &str, at: DateTime<Utc>) -> (Vec<Val>, ChangeRow) {
    let row = vec![
        Val::Text(Some(plan.code.as_str().into())),
        Val::Int(version),
        Val::Text(Some(plan.name.as_str().into())),
        Val::Json(Some(serde_json::to_value(plan).expect("plans serialise"))),
        Val::Time(Some(at)),
        Val::Text(Some(by.into())),
    ];
    let data = json!({"code": plan.code, "version": version, "name": plan.name});
    let change = ChangeRow::record(Collection::Plans, plan.code.as_str(), Op::Upsert, Some("plan.saved"), Some(data));
    (row, change)
}

/// Imports the plans of a file (`onemap import plans FILE`): each checked against the store's
/// dictionaries, then stored as a new version, all in one transaction (all or nothing). Returns
/// each plan's code and new version.
pub async fn import(
    store: &dyn Store,
    text: &str,
    json_file: bool,
    by: &str,
) -> Result<Vec<(String, i64)>, LinkageError> {
    use crate::store::select;
    let plans = parse_file(text, json_file)?;
    let dict = Dictionaries::new(
        select(store, Filter::All).await?,
        select(store, Filter::All).await?,
        select(store, Filter::All).await?,
        select(store, Filter::All).await?,
    );
    let now = Utc::now();
    let (mut rows, mut changes, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for p in &plans {
        p.validate(&dict).map_err(|e| LinkageError::InvalidPlan(format!("{}: {e}", p.code)))?;
        let before = out.iter().filter(|(c, _)| c == &p.code).count() as i64;
        let version = versions(store, &p.code).await?.last().map_or(0, |s| s.version) + before + 1;
        let (row, change) = version_row(p, version, by, now);
        rows.push(row);
        changes.push(change);
        out.push((p.code.clone(), version));
    }
    store.insert_rows(&PLANS, rows, changes).await?;
    Ok(out)
}

/// Reads plans from a TOML file (`[[plans]]` tables) or a JSON file (an array, or one plan).
pub fn parse_file(text: &str, json_file: bool) -> Result<Vec<Plan>, LinkageError> {
    let bad = |e: String| LinkageError::InvalidPlan(e);
    if json_file {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if v.is_array() { serde_json::from_value(v) } else { serde_json::from_value(v).map(|p| vec![p]) }
            .map_err(|e| bad(e.to_string()))
    } else {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            plans: Vec<Plan>,
        }
        toml::from_str::<File>(text).map(|f| f.plans).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionaries {
        let city = crate::demo::generate(&crate::demo::DemoParams::scaled(0.02));
        Dictionaries::new(city.departments, city.responsibilities, city.component_classes, city.event_classes)
    }

    fn plan(v: Value) -> Result<Plan, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn triggers_parse_in_their_three_shapes() {
        let p = plan(json!({"code": "a", "name": "n", "trigger": {"sensor_kind": "water_level", "level": "red"},
            "lead": {"role": "street"}}))
        .unwrap();
        assert_eq!(p.trigger, Trigger::Sensor { sensor_kind: "water_level".into(), level: Level::Red });
        let p = plan(json!({"code": "a", "name": "n", "trigger": "manual", "lead": {"role": "owner"}})).unwrap();
        assert_eq!(p.trigger, Trigger::Manual(Manual::Manual));
        let p = plan(json!({"code": "a", "name": "n", "trigger": {"class_code": "0101"}, "lead": {"role": "owner"}}))
            .unwrap();
        assert!(matches!(p.trigger, Trigger::Class { urgency: None, .. }));
        assert!(plan(json!({"code": "a", "name": "n", "trigger": "sometimes", "lead": {"role": "owner"}})).is_err());
        assert!(plan(json!({"code": "a", "name": "n", "trigger": "manual", "lead": {"role": "mayor"}})).is_err());
        assert!(plan(json!({"code": "a", "name": "n", "trigger": "manual", "lead": {}, "colour": 1})).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let d = dict();
        let dept = d.departments.keys().next().unwrap().to_string();
        let ok = json!({"code": "tunnel-1", "name": "隧道积水", "trigger": {"sensor_kind": "water_level", "level": "red"},
            "lead": {"dept_code": dept, "deadline_min": 10}, "assist": [{"role": "street"}],
            "webhooks": [{"url": "http://127.0.0.1:9/signals", "secret": "0123456789abcdef"}]});
        plan(ok.clone()).unwrap().validate(&d).unwrap();
        let fails = |patch: Value, needle: &str| {
            let mut v = ok.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = plan(v).unwrap().validate(&d).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        };
        fails(json!({"code": "has space"}), "code");
        fails(json!({"trigger": {"sensor_kind": "noise", "level": "red"}}), "sensor kind");
        fails(json!({"lead": {"dept_code": "nobody"}}), "unknown department");
        fails(json!({"lead": {"dept_code": dept, "role": "owner"}}), "either");
        fails(json!({"lead": {"role": "owner", "deadline_min": 0}}), "minutes");
        fails(json!({"lead": {"role": "owner", "deadline_min": 3, "ack_min": 4}}), "ack_min");
        fails(json!({"radius_m": 50000}), "radius_m");
        fails(json!({"resource_classes": ["zz"]}), "component class");
        fails(json!({"webhooks": [{"url": "ftp://x/y", "secret": "0123456789abcdef"}]}), "http");
        fails(json!({"webhooks": [{"url": "http://x/y", "secret": "short"}]}), "secret");
    }

    #[test]
    fn files_in_toml_and_json() {
        let toml = r#"
            [[plans]]
            code = "burst-main"
            name = "供水管网爆管"
            trigger = { sensor_kind = "pressure", level = "orange" }
            lead = { role = "owner", deadline_min = 30 }
            assist = [{ role = "street", task = "疏导交通" }]
            resource_classes = []
        "#;
        let plans = parse_file(toml, false).unwrap();
        assert_eq!(plans[0].assist[0].task.as_deref(), Some("疏导交通"));
        let json = r#"{"code": "m", "name": "n", "trigger": "manual", "lead": {"role": "owner"}}"#;
        assert_eq!(parse_file(json, true).unwrap().len(), 1);
        assert!(parse_file("[[plans]]\ncode = 1", false).is_err());
    }
}
