//! 一键联动 (joint response): emergency plans (预案) as versioned data, incidents that dispatch
//! several departments at once, each with its own wall-clock deadlines, escalation of late tasks
//! to the shift leader, resources around the place, and signed calls to outside systems.
//!
//! An incident is one stored document (its tasks and deliveries included) replaced as a whole
//! under a version guard, with its change logged in the same transaction: every replica's feed
//! announces it, and whichever process holds the singleton lease runs the timers (escalation,
//! retries) and the automatic starts, so nothing happens twice.

pub mod hooks;
pub mod plans;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::events::{Change, Follower, Live};
use crate::index::Dictionaries;
use crate::model::{CaseScope, Collection, Component, Level, Str, rfc3339_ms};
use crate::sensors::ingest::Ingest;
use crate::store::log::{ChangeRow, Op};
use crate::store::schema::{Filter, INCIDENTS, Val};
use crate::store::{StoreError, is_duplicate};
use hooks::{Delivery, DeliveryStatus};
use plans::{PartyRole, Plan, Stored, Trigger};

/// What can go wrong with plans and incidents.
#[derive(Debug, thiserror::Error)]
pub enum LinkageError {
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    #[error("no plan {0:?}")]
    UnknownPlan(String),
    #[error("{0}")]
    InvalidPlace(String),
    #[error("no incident {0:?}")]
    UnknownIncident(String),
    #[error("incident {incident} has no task for department {dept:?}")]
    UnknownTask { incident: String, dept: String },
    #[error("{0}")]
    InvalidTransition(String),
    #[error("incident {0} is closed")]
    Closed(String),
    #[error("{0} is open already")]
    AlreadyOpen(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the incident changed under too many writers at once; try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `[linkage]` of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How often late tasks are looked for (ms).
    pub tick_ms: u64,
    /// How long a delivery is retried before it is given up (minutes).
    pub give_up_min: f64,
    /// How long one outside call may take (seconds).
    pub timeout_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { tick_ms: 15_000, give_up_min: 1440.0, timeout_s: 10.0 }
    }
}

impl Settings {
    /// Refuses settings that would make no sense (a sweep every microsecond, never giving up).
    pub fn check(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.tick_ms) {
            return Err(format!("[linkage] tick_ms must be 100 to 3600000, not {}", self.tick_ms));
        }
        if !(self.give_up_min.is_finite() && self.give_up_min > 0.0 && self.give_up_min <= 10_080.0) {
            return Err(format!("[linkage] give_up_min must be above 0 and at most 10080, not {}", self.give_up_min));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 120.0) {
            return Err(format!("[linkage] timeout_s must be above 0 and at most 120, not {}", self.timeout_s));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Closed,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Closed => "closed",
        }
    }
}

/// Whether a department leads the response or assists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskRole {
    Lead,
    Assist,
}

/// Where a department's task stands; each step is later than the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Dispatched,
    Acked,
    Arrived,
    Done,
}

/// What a department reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskAction {
    /// 签收: the task is seen and taken.
    Ack,
    /// 到场: the crew is on site.
    Arrive,
    /// 处置完毕: its part is done.
    Done,
}

impl TaskAction {
    pub fn parse(s: &str) -> Option<TaskAction> {
        serde_json::from_value(json!(s)).ok()
    }

    fn target(self) -> TaskStatus {
        match self {
            TaskAction::Ack => TaskStatus::Acked,
            TaskAction::Arrive => TaskStatus::Arrived,
            TaskAction::Done => TaskStatus::Done,
        }
    }
}

/// Which deadline a task missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lateness {
    Ack,
    Arrive,
}

/// A line in a task's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub at: DateTime<Utc>,
    pub by: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One department's part of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub dept_code: String,
    pub dept_name: String,
    pub role: TaskRole,
    /// How the department was found: `named` in the plan, or the role it was resolved by.
    pub basis: String,
    pub task: Option<String>,
    pub status: TaskStatus,
    pub dispatched_at: DateTime<Utc>,
    pub ack_due_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub arrived_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    /// The deadlines missed and escalated to the shift leader.
    pub late: Vec<Lateness>,
    pub notes: Vec<Note>,
}

/// The plan version an incident follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRef {
    pub code: String,
    pub version: i64,
    pub name: String,
}

/// A joint-response incident (联动事件).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub plan: PlanRef,
    pub status: IncidentStatus,
    /// CGCS2000.
    pub lon: f64,
    pub lat: f64,
    pub grid_code: Option<String>,
    pub case_id: Option<i64>,
    pub alarm_id: Option<i64>,
    pub sensor_code: Option<String>,
    /// What makes an automatic start unique while the incident is open (sensor and plan).
    pub auto_key: Option<String>,
    /// The supervisor on duty nearest the place, sent to verify (核实) before crews arrive.
    pub verifier: Option<String>,
    pub tasks: Vec<Task>,
    /// Roles of the plan no department could be found for at the place.
    pub unresolved: Vec<String>,
    pub deliveries: Vec<Delivery>,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub version: i64,
}

/// What starts an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub plan: String,
    /// CGCS2000.
    pub lon: f64,
    pub lat: f64,
    pub case_id: Option<i64>,
    pub alarm_id: Option<i64>,
    pub by: String,
    pub auto_key: Option<String>,
}

/// A change heard on the log that may start a plan by itself.
#[derive(Debug)]
enum Heard {
    Alarm(Value),
    Case(i64),
}

/// Plans, incidents and their timers over the live view.
pub struct Linkage {
    live: Arc<Live>,
    ingest: Arc<Ingest>,
    settings: RwLock<Settings>,
    client: RwLock<reqwest::Client>,
    heard: tokio::sync::mpsc::UnboundedSender<Heard>,
    inbox: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Heard>>,
    /// Whether this process holds the singleton lease (only then are starts heard).
    leader: tokio::sync::watch::Receiver<bool>,
    /// Wakes the delivery loop: a new incident or delivery.
    wake: tokio::sync::Notify,
}

/// Most incidents a list returns.
pub const MAX_LIST: usize = 500;
/// Most records of each kind `resources` returns.
const MAX_RESOURCES: usize = 100;
/// Tries of an optimistic update before giving up.
const TRIES: usize = 8;

impl Linkage {
    /// The engine over `live`, hearing the log as one of its followers.
    pub fn new(live: Arc<Live>, ingest: Arc<Ingest>) -> Arc<Linkage> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let settings = Settings::default();
        let linkage = Arc::new(Linkage {
            leader: live.store().leadership(),
            live: live.clone(),
            ingest,
            client: RwLock::new(hooks::client(std::time::Duration::from_secs_f64(settings.timeout_s))),
            settings: RwLock::new(settings),
            heard: tx,
            inbox: tokio::sync::Mutex::new(rx),
            wake: Default::default(),
        });
        live.add_follower(linkage.clone());
        linkage
    }

    pub fn configure(&self, settings: Settings) {
        *self.client.write() = hooks::client(std::time::Duration::from_secs_f64(settings.timeout_s));
        *self.settings.write() = settings;
    }

    pub fn settings(&self) -> Settings {
        *self.settings.read()
    }

    fn store(&self) -> &dyn crate::store::Store {
        &**self.live.store()
    }

    /// Stores a new version of `plan` (version 1 for a new code); returns it and its change's
    /// sequence number.
    pub async fn save_plan(&self, plan: Plan, by: &str) -> Result<(Stored, i64), LinkageError> {
        plan.validate(&self.live.index.dict.read())?;
        for _ in 0..TRIES {
            let version = plans::versions(self.store(), &plan.code).await?.last().map_or(1, |s| s.version + 1);
            let now = Utc::now();
            let (row, change) = plans::version_row(&plan, version, by, now);
            let in_flight = self.live.in_flight();
            match self.store().insert_rows(&crate::store::schema::PLANS, vec![row], vec![change.clone()]).await {
                Ok(seqs) => {
                    self.live.commit(vec![Change::committed(seqs[0], change, Vec::new())], in_flight).await?;
                    let stored = Stored { plan, version, created_at: now, created_by: by.to_string() };
                    return Ok((stored, seqs[0]));
                }
                // Another save of the same code took this version number: take the next.
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LinkageError::Busy)
    }

    /// Incident `id`.
    pub async fn get(&self, id: &str) -> Result<Incident, LinkageError> {
        let rows = self.store().select(&INCIDENTS, Filter::Eq("id", Val::Text(Some(id.into())))).await?;
        rows.into_iter().next().map(from_row).transpose()?.ok_or_else(|| LinkageError::UnknownIncident(id.into()))
    }

    /// Incidents, the latest opened first: only open ones when `open`, at most [`MAX_LIST`].
    pub async fn list(&self, open: bool) -> Result<Vec<Incident>, LinkageError> {
        let filter = if open { Filter::Eq("status", Val::Text(Some("open".into()))) } else { Filter::All };
        let mut list: Vec<Incident> =
            self.store().select(&INCIDENTS, filter).await?.into_iter().map(from_row).collect::<Result<_, _>>()?;
        list.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then_with(|| b.id.cmp(&a.id)));
        list.truncate(MAX_LIST);
        Ok(list)
    }

    /// Every incident opened in `[start, end)`.
    pub async fn opened_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Incident>, LinkageError> {
        let all = self.store().select(&INCIDENTS, Filter::All).await?;
        let mut out = Vec::new();
        for row in all {
            // The opening time is the tenth column: no need to decode the others' state.
            if matches!(&row[9], Val::Time(Some(t)) if *t >= start && *t < end) {
                out.push(from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Starts the latest version of a plan at a place: one task per responding department,
    /// the calls to its outside systems queued (and the first made at once). An automatic
    /// start whose trigger has an open incident already gets [`LinkageError::AlreadyOpen`].
    pub async fn start(&self, s: Start) -> Result<(Incident, i64), LinkageError> {
        let stored = plans::get(self.store(), &s.plan, None).await?;
        let now = Utc::now();
        let index = &self.live.index;
        let grid_code = index.grids.read().at_point(s.lon, s.lat).map(|g| g.code.to_string());
        let Some(grid_code) = grid_code else {
            return Err(LinkageError::InvalidPlace(format!("({}, {}) is in no unit grid of the city", s.lon, s.lat)));
        };
        let case = match s.case_id {
            Some(id) => Some(
                index
                    .cases
                    .read()
                    .get(&id.to_string())
                    .cloned()
                    .ok_or_else(|| LinkageError::InvalidPlace(format!("no case {id}")))?,
            ),
            None => None,
        };
        let alarm = match s.alarm_id {
            Some(id) => Some(
                self.ingest
                    .alarms(true, 100_000, &CaseScope::all())
                    .await?
                    .into_iter()
                    .find(|a| a["id"].as_i64() == Some(id))
                    .ok_or_else(|| LinkageError::InvalidPlace(format!("no active alarm {id}")))?,
            ),
            None => None,
        };
        let sensor_code = alarm.as_ref().and_then(|a| a["sensor"].as_str()).map(str::to_string);
        let case_id = s.case_id.or_else(|| alarm.as_ref().and_then(|a| a["case_id"].as_i64()));
        let component_code: Option<String> = case
            .as_ref()
            .and_then(|c| c.component_code.as_ref().map(|c| c.to_string()))
            .or_else(|| alarm.as_ref().and_then(|a| a["component_code"].as_str()).map(str::to_string));
        let component = component_code.and_then(|c| index.components.read().get(&c).cloned());
        let place = Place {
            grid: &grid_code,
            component: component.as_ref(),
            class: case.as_ref().map(|c| (c.class_code.clone(), c.kind.clone())),
            case_dept: case.as_ref().and_then(|c| c.dept_code.clone()),
        };
        let (tasks, unresolved) = tasks_for(&index.dict.read(), &stored.plan, &place, now);
        if tasks.first().is_none_or(|t| t.role != TaskRole::Lead) {
            return Err(LinkageError::InvalidPlace(format!(
                "no lead department of plan {} could be found at grid {grid_code}",
                stored.plan.code
            )));
        }
        let verifier =
            crate::staff::nearest(index, s.lon, s.lat, 1, true, true).first().map(|(m, _)| m.code.to_string());
        let id = format!("INC{}-{:04x}", now.format("%Y%m%d%H%M%S"), rand::random::<u16>());
        let mut incident = Incident {
            id,
            plan: PlanRef { code: stored.plan.code.clone(), version: stored.version, name: stored.plan.name.clone() },
            status: IncidentStatus::Open,
            lon: s.lon,
            lat: s.lat,
            grid_code: Some(grid_code),
            case_id,
            alarm_id: s.alarm_id,
            sensor_code,
            auto_key: s.auto_key,
            verifier,
            tasks,
            unresolved,
            deliveries: Vec::new(),
            opened_at: now,
            opened_by: s.by,
            closed_at: None,
            closed_by: None,
            version: 1,
        };
        queue(&mut incident, &stored.plan, "incident.created", now);
        let change = change_row(&incident, "incident.created", None);
        let in_flight = self.live.in_flight();
        let seqs = match self.store().insert_rows(&INCIDENTS, vec![to_row(&incident)], vec![change.clone()]).await {
            Ok(seqs) => seqs,
            Err(e) if is_duplicate(&e) => {
                return Err(LinkageError::AlreadyOpen(incident.auto_key.unwrap_or(incident.id)));
            }
            Err(e) => return Err(e.into()),
        };
        self.live.commit(vec![Change::committed(seqs[0], change, Vec::new())], in_flight).await?;
        self.wake.notify_one();
        Ok((incident, seqs[0]))
    }

    /// Changes incident `id` with `f` (which says whether it changed anything) and stores it
    /// under its version guard, announced as `event`; re-reads and retries when another writer
    /// got there first. Returns the incident as stored and the change's sequence number (none
    /// when `f` changed nothing).
    async fn change(
        &self,
        id: &str,
        event: &str,
        mut f: impl FnMut(&mut Incident) -> Result<Option<Value>, LinkageError>,
    ) -> Result<(Incident, Option<i64>), LinkageError> {
        for _ in 0..TRIES {
            let was = self.get(id).await?;
            let mut now = was.clone();
            let Some(extra) = f(&mut now)? else { return Ok((was, None)) };
            now.version = was.version + 1;
            let change = change_row(&now, event, Some(extra));
            let in_flight = self.live.in_flight();
            let written = self
                .store()
                .update_row(
                    &INCIDENTS,
                    to_row(&now),
                    ("id", Val::Text(Some(id.into()))),
                    ("version", Val::Int(was.version)),
                    vec![change.clone()],
                )
                .await?;
            if let Some(seqs) = written {
                self.live.commit(vec![Change::committed(seqs[0], change, Vec::new())], in_flight).await?;
                return Ok((now, Some(seqs[0])));
            }
        }
        Err(LinkageError::Busy)
    }

    /// A department reports on its task (`ack`, `arrive`, `done`); a later step fills in the
    /// earlier ones it skipped (a crew that arrives has acknowledged).
    pub async fn act(
        &self,
        id: &str,
        dept: &str,
        action: TaskAction,
        note: Option<String>,
        by: &str,
    ) -> Result<(Incident, i64), LinkageError> {
        let (incident, seq) = self
            .change(id, "incident.updated", |inc| {
                if inc.status == IncidentStatus::Closed {
                    return Err(LinkageError::Closed(inc.id.clone()));
                }
                let incident = inc.id.clone();
                let task = inc
                    .tasks
                    .iter_mut()
                    .find(|t| t.dept_code == dept)
                    .ok_or_else(|| LinkageError::UnknownTask { incident, dept: dept.to_string() })?;
                let target = action.target();
                if task.status >= target {
                    return Err(LinkageError::InvalidTransition(format!(
                        "the task of {dept} is {} already",
                        json!(task.status).as_str().unwrap_or_default()
                    )));
                }
                let now = Utc::now();
                for (step, at) in [
                    (TaskStatus::Acked, &mut task.acked_at),
                    (TaskStatus::Arrived, &mut task.arrived_at),
                    (TaskStatus::Done, &mut task.done_at),
                ] {
                    if step <= target && at.is_none() {
                        *at = Some(now);
                    }
                }
                task.status = target;
                task.notes.push(Note {
                    at: now,
                    by: by.to_string(),
                    action: json!(action).as_str().unwrap_or_default().to_string(),
                    text: note.clone(),
                });
                Ok(Some(json!({"dept_code": dept, "action": action})))
            })
            .await?;
        Ok((incident, seq.expect("an action always changes the task")))
    }

    /// Closes incident `id` (the lead department or a shift leader) and queues the plan's
    /// `incident.closed` calls.
    pub async fn close(
        &self,
        id: &str,
        note: Option<String>,
        who: &Principal,
    ) -> Result<(Incident, i64), LinkageError> {
        let plan_of = self.get(id).await?;
        let stored = plans::get(self.store(), &plan_of.plan.code, Some(plan_of.plan.version)).await?;
        let by = who.actor.to_string();
        let (incident, seq) = self
            .change(id, "incident.updated", |inc| {
                if inc.status == IncidentStatus::Closed {
                    return Err(LinkageError::Closed(inc.id.clone()));
                }
                if who.role == crate::auth::Role::Department {
                    let lead = inc.tasks.iter().find(|t| t.role == TaskRole::Lead).map(|t| t.dept_code.as_str());
                    if who.dept_code.as_deref() != lead {
                        return Err(LinkageError::Forbidden(
                            "only the lead department or a shift leader closes an incident".into(),
                        ));
                    }
                }
                let now = Utc::now();
                inc.status = IncidentStatus::Closed;
                inc.closed_at = Some(now);
                inc.closed_by = Some(by.clone());
                queue(inc, &stored.plan, "incident.closed", now);
                Ok(Some(json!({"action": "close", "note": note})))
            })
            .await?;
        self.wake.notify_one();
        Ok((incident, seq.expect("closing always changes the incident")))
    }

    /// Marks the tasks of open incidents that missed their acknowledgement or arrival deadline
    /// (once each) and announces them as `incident.escalated`, for the shift leader. Returns how
    /// many incidents had late tasks.
    pub async fn escalate(&self, now: DateTime<Utc>) -> Result<usize, LinkageError> {
        let mut n = 0;
        for inc in self.list(true).await? {
            if late_now(&inc, now).is_empty() {
                continue;
            }
            let (_, seq) = self
                .change(&inc.id, "incident.escalated", |inc| {
                    let late = late_now(inc, now);
                    if late.is_empty() || inc.status != IncidentStatus::Open {
                        return Ok(None);
                    }
                    let mut list = Vec::new();
                    for (i, what) in late {
                        let t = &mut inc.tasks[i];
                        t.late.push(what);
                        list.push(json!({"dept_code": t.dept_code, "dept_name": t.dept_name, "late": what}));
                    }
                    Ok(Some(json!({"late": list})))
                })
                .await?;
            n += seq.is_some() as usize;
        }
        Ok(n)
    }

    /// Makes every delivery that is due, all at once, and records the attempts. Returns when the
    /// next pending one is due, if any.
    pub async fn deliver_due(&self) -> Result<Option<DateTime<Utc>>, LinkageError> {
        let pending: Vec<Incident> = self
            .store()
            .select(&INCIDENTS, Filter::Eq("pending", Val::Int(1)))
            .await?
            .into_iter()
            .map(from_row)
            .collect::<Result<_, _>>()?;
        let now = Utc::now();
        let client = self.client.read().clone();
        let give_up = Duration::milliseconds((self.settings().give_up_min * 60_000.0) as i64);
        let mut calls = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        // The plan versions whose secrets sign this pass's calls, each read once, and only for
        // incidents with a call due (most passes of a backing-off retry have none).
        let mut secrets: std::collections::HashMap<(String, i64), Vec<plans::Webhook>> = Default::default();
        for inc in &pending {
            for d in inc.deliveries.iter().filter(|d| d.status == DeliveryStatus::Pending) {
                if d.next_at > now {
                    next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
                    continue;
                }
                let key = (inc.plan.code.clone(), inc.plan.version);
                if !secrets.contains_key(&key) {
                    let stored = plans::get(self.store(), &inc.plan.code, Some(inc.plan.version)).await?;
                    secrets.insert(key.clone(), stored.plan.webhooks);
                }
                let secret = secrets[&key].get(d.webhook).map(|w| w.secret.clone()).unwrap_or_default();
                let (client, id, d) = (client.clone(), inc.id.clone(), d.clone());
                calls.push(async move {
                    let a = hooks::call(&client, &d, &secret).await;
                    (id, d.key, a)
                });
            }
        }
        let done = futures::future::join_all(calls).await;
        let mut by_incident: std::collections::BTreeMap<String, Vec<(String, hooks::Attempt)>> = Default::default();
        for (id, key, a) in done {
            by_incident.entry(id).or_default().push((key, a));
        }
        for (id, attempts) in by_incident {
            let (inc, _) = self
                .change(&id, "incident.updated", |inc| {
                    for (key, a) in &attempts {
                        if let Some(d) = inc.deliveries.iter_mut().find(|d| &d.key == key) {
                            d.record(a.clone(), give_up);
                        }
                    }
                    let calls: Vec<Value> =
                        attempts.iter().map(|(k, a)| json!({"key": k, "status": a.status})).collect();
                    Ok(Some(json!({"calls": calls})))
                })
                .await?;
            for d in inc.deliveries.iter().filter(|d| d.status == DeliveryStatus::Pending) {
                next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
            }
        }
        Ok(next)
    }

    /// Starts the plans (of `plans`, the latest versions) an alarm reaches, unless that alarm
    /// already has an incident of the plan.
    async fn on_alarm(&self, alarm: &Value, plans: &[Stored]) -> Result<(), LinkageError> {
        let (Some(id), Some(kind), Some(level), Some(sensor)) = (
            alarm["id"].as_i64(),
            alarm["kind"].as_str(),
            alarm["level"].as_str().and_then(Level::parse),
            alarm["sensor"].as_str(),
        ) else {
            return Ok(());
        };
        if alarm["active"] == json!(false) {
            return Ok(());
        }
        let (Some(lon), Some(lat)) = (alarm["lon"].as_f64(), alarm["lat"].as_f64()) else { return Ok(()) };
        let matching: Vec<&Stored> = plans
            .iter()
            .filter(|p| matches!(&p.plan.trigger, Trigger::Sensor { sensor_kind, level: at } if sensor_kind == kind && level >= *at))
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        let had: Vec<Incident> = self
            .store()
            .select(&INCIDENTS, Filter::Eq("alarm_id", Val::Text(Some(id.to_string().into()))))
            .await?
            .into_iter()
            .map(from_row)
            .collect::<Result<_, _>>()?;
        for p in matching {
            if had.iter().any(|i| i.plan.code == p.plan.code) {
                continue;
            }
            let start = Start {
                plan: p.plan.code.clone(),
                lon,
                lat,
                case_id: None,
                alarm_id: Some(id),
                by: "auto".into(),
                auto_key: Some(format!("sensor:{sensor}:{}", p.plan.code)),
            };
            self.start_quietly(start).await?;
        }
        Ok(())
    }

    /// Starts the plans a new case's class triggers.
    async fn on_case(&self, id: i64) -> Result<(), LinkageError> {
        let Some(case) = self.live.index.cases.read().get(&id.to_string()).cloned() else { return Ok(()) };
        for p in plans::latest(self.store()).await? {
            let Trigger::Class { class_code, urgency } = &p.plan.trigger else { continue };
            if class_code != case.class_code.as_str() || urgency.as_deref().is_some_and(|u| u != case.urgency.as_str())
            {
                continue;
            }
            let start = Start {
                plan: p.plan.code.clone(),
                lon: case.geom.x(),
                lat: case.geom.y(),
                case_id: Some(id),
                alarm_id: None,
                by: "auto".into(),
                auto_key: Some(format!("case:{id}:{}", p.plan.code)),
            };
            self.start_quietly(start).await?;
        }
        Ok(())
    }

    /// An automatic start: one already open, or a place the plan cannot serve, is only logged.
    async fn start_quietly(&self, start: Start) -> Result<(), LinkageError> {
        let plan = start.plan.clone();
        match self.start(start).await {
            Ok((inc, _)) => tracing::info!(incident = %inc.id, plan = %plan, "plan started automatically"),
            Err(LinkageError::AlreadyOpen(_)) => {}
            Err(e @ (LinkageError::InvalidPlace(_) | LinkageError::UnknownPlan(_))) => {
                tracing::warn!(plan = %plan, error = %e, "plan not started")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The periodic jobs, on the process holding the singleton lease: automatic starts heard on
    /// the log, escalation and the active alarms' starts missed while no process led (every
    /// `tick_ms`), and the deliveries.
    pub async fn run(self: Arc<Self>) {
        let deliveries = async {
            loop {
                let next = match self.deliver_due().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(error = %e, "deliveries failed");
                        None
                    }
                };
                // Deliveries other processes queued are heard through the log (see `applied`);
                // a second's poll covers anything missed.
                let pause = next
                    .map(|n| (n - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(std::time::Duration::from_secs(1))
                    .min(std::time::Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.wake.notified() => {}
                }
            }
        };
        let starts = async {
            let mut inbox = self.inbox.lock().await;
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(self.settings().tick_ms.max(100)));
            loop {
                let result = tokio::select! {
                    heard = inbox.recv() => match heard {
                        Some(Heard::Alarm(a)) => match plans::latest(self.store()).await {
                            Ok(plans) => self.on_alarm(&a, &plans).await,
                            Err(e) => Err(e.into()),
                        },
                        Some(Heard::Case(id)) => self.on_case(id).await,
                        None => return,
                    },
                    _ = tick.tick() => self.sweep().await,
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "linkage job failed");
                }
            }
        };
        tokio::join!(deliveries, starts);
    }

    /// Escalation, and the active alarms' plans that no process started (a restart between the
    /// alarm and its incident).
    async fn sweep(&self) -> Result<(), LinkageError> {
        self.escalate(Utc::now()).await?;
        let plans = plans::latest(self.store()).await?;
        if !plans.iter().any(|p| matches!(p.plan.trigger, Trigger::Sensor { .. })) {
            return Ok(());
        }
        for a in self.ingest.alarms(true, 100_000, &CaseScope::all()).await? {
            self.on_alarm(&a, &plans).await?;
        }
        Ok(())
    }

    /// What is around an incident within its plan's radius, nearest first: cameras, field
    /// staff on duty, and components of the plan's resource classes.
    pub async fn resources(&self, inc: &Incident) -> Result<Value, LinkageError> {
        let stored = plans::get(self.store(), &inc.plan.code, Some(inc.plan.version)).await?;
        let radius = stored.plan.radius();
        let index = &self.live.index;
        let (lon, lat) = (inc.lon, inc.lat);
        let tenths = crate::model::tenths;
        let cameras: Vec<Value> = index
            .cameras
            .read()
            .within_radius(lon, lat, radius)
            .into_iter()
            .take(MAX_RESOURCES)
            .map(|(c, d)| {
                json!({"code": c.code, "name": c.name, "stream_url": c.stream_url, "direction": c.direction,
                    "distance_m": tenths(d), "lon": c.geom.x(), "lat": c.geom.y()})
            })
            .collect();
        let staff: Vec<Value> = index
            .staff
            .read()
            .within_radius(lon, lat, radius)
            .into_iter()
            .filter(|(s, _)| s.on_duty)
            .take(MAX_RESOURCES)
            .map(|(s, d)| {
                json!({"code": s.code, "name": s.name, "role": s.role, "distance_m": tenths(d),
                    "last_seen": s.last_seen.map(rfc3339_ms), "lon": s.geom.x(), "lat": s.geom.y()})
            })
            .collect();
        let components: Vec<Value> = if stored.plan.resource_classes.is_empty() {
            Vec::new()
        } else {
            index
                .components
                .read()
                .within_radius(lon, lat, radius)
                .into_iter()
                .filter(|(c, _)| stored.plan.resource_classes.iter().any(|k| k == c.class_code.as_str()))
                .take(MAX_RESOURCES)
                .map(|(c, d)| {
                    let e = rstar::Envelope::center(&crate::index::Record::envelope(c));
                    let (x, y) = (e[0], e[1]);
                    json!({"code": c.code, "class_code": c.class_code, "name": c.name, "distance_m": tenths(d),
                        "lon": x, "lat": y})
                })
                .collect()
        };
        Ok(
            json!({"incident": inc.id, "radius_m": radius, "cameras": cameras, "staff": staff, "components": components}),
        )
    }
}

impl Follower for Linkage {
    fn applied(&self, change: &Change) {
        let row = &change.row;
        if row.collection == Collection::Incidents {
            self.wake.notify_one();
        }
        if !*self.leader.borrow() {
            return;
        }
        let heard = match (row.collection, row.event.as_deref(), &row.data) {
            (Collection::Alarms, Some("alarm.raised"), Some(d)) => Heard::Alarm(d.clone()),
            (Collection::Cases, Some("case.created"), Some(d)) => match d["id"].as_i64() {
                Some(id) => Heard::Case(id),
                None => return,
            },
            _ => return,
        };
        let _ = self.heard.send(heard);
    }
}

/// What roles are resolved against at the place.
struct Place<'a> {
    grid: &'a str,
    component: Option<&'a Component>,
    /// The case's class and kind (`component` or `event`).
    class: Option<(Str, Str)>,
    /// The department the case is dispatched to.
    case_dept: Option<Str>,
}

/// The department a role names at `place`, and how it was found.
fn resolve(dict: &Dictionaries, role: PartyRole, place: &Place) -> Option<(Str, &'static str)> {
    use crate::cases::routing::{by_class, territory};
    let known = |c: &Option<Str>| c.as_ref().filter(|c| dict.departments.contains_key(*c)).cloned();
    let class = || {
        let (code, kind) = place.class.as_ref()?;
        by_class(dict, code, if kind == "component" { "component_class" } else { "event_class" })
    };
    let c = place.component;
    match role {
        PartyRole::Owner => c
            .and_then(|c| known(&c.owner_dept).or_else(|| known(&c.maint_dept)))
            .map(|d| (d, "owner"))
            .or_else(|| known(&place.case_dept).map(|d| (d, "case")))
            .or_else(|| c.and_then(|c| known(&c.competent_dept)).map(|d| (d, "competent"))),
        PartyRole::Street => territory(dict, place.grid).map(|d| (d, "street")),
        PartyRole::Competent => c
            .and_then(|c| known(&c.competent_dept))
            .or_else(|| c.and_then(|c| by_class(dict, &c.class_code, "component_class")))
            .or_else(class)
            .map(|d| (d, "competent")),
    }
}

/// The tasks of `plan` at `place` (one per department, the lead first) and the roles no
/// department was found for.
fn tasks_for(dict: &Dictionaries, plan: &Plan, place: &Place, now: DateTime<Utc>) -> (Vec<Task>, Vec<String>) {
    let mut tasks: Vec<Task> = Vec::new();
    let mut unresolved = Vec::new();
    let minutes = |m: f64| Duration::milliseconds((m * 60_000.0).round() as i64);
    for (i, p) in plan.parties().enumerate() {
        let found = match (&p.dept_code, p.role) {
            (Some(d), _) => Some((Str::from(d.as_str()), "named")),
            (None, Some(role)) => resolve(dict, role, place),
            (None, None) => None,
        };
        let Some((dept, basis)) = found else {
            unresolved.push(p.role.map_or("?", PartyRole::as_str).to_string());
            continue;
        };
        if tasks.iter().any(|t| t.dept_code == dept.as_str()) {
            continue;
        }
        tasks.push(Task {
            dept_name: dict.departments.get(&dept).map(|d| d.name.to_string()).unwrap_or_default(),
            dept_code: dept.to_string(),
            role: if i == 0 { TaskRole::Lead } else { TaskRole::Assist },
            basis: basis.to_string(),
            task: p.task.clone(),
            status: TaskStatus::Dispatched,
            dispatched_at: now,
            ack_due_at: now + minutes(p.ack()),
            deadline_at: now + minutes(p.deadline()),
            acked_at: None,
            arrived_at: None,
            done_at: None,
            late: Vec::new(),
            notes: Vec::new(),
        });
    }
    (tasks, unresolved)
}

/// The tasks of `inc` that are late at `now` and not yet escalated for it: (index, what).
fn late_now(inc: &Incident, now: DateTime<Utc>) -> Vec<(usize, Lateness)> {
    if inc.status != IncidentStatus::Open {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, t) in inc.tasks.iter().enumerate() {
        if t.status < TaskStatus::Acked && now > t.ack_due_at && !t.late.contains(&Lateness::Ack) {
            out.push((i, Lateness::Ack));
        }
        if t.status < TaskStatus::Arrived && now > t.deadline_at && !t.late.contains(&Lateness::Arrive) {
            out.push((i, Lateness::Arrive));
        }
    }
    out
}

/// Queues a call of every webhook of `plan` announcing `event` of `inc`.
fn queue(inc: &mut Incident, plan: &Plan, event: &str, now: DateTime<Utc>) {
    let body = json!({
        "incident": inc.id, "plan": inc.plan.code, "plan_version": inc.plan.version, "plan_name": inc.plan.name,
        "event": event, "at": rfc3339_ms(now), "status": inc.status.as_str(),
        "lon": inc.lon, "lat": inc.lat, "grid_code": inc.grid_code,
        "case_id": inc.case_id, "alarm_id": inc.alarm_id, "sensor_code": inc.sensor_code,
        "tasks": inc.tasks.iter().map(|t| json!({
            "dept_code": t.dept_code, "dept_name": t.dept_name, "role": t.role, "task": t.task,
            "deadline_at": rfc3339_ms(t.deadline_at),
        })).collect::<Vec<_>>(),
    });
    for (i, w) in plan.webhooks.iter().enumerate() {
        inc.deliveries.push(Delivery {
            key: format!("{}:{event}:{i}", inc.id),
            webhook: i,
            url: w.url.clone(),
            event: event.to_string(),
            body: body.clone(),
            status: DeliveryStatus::Pending,
            created_at: now,
            next_at: now,
            attempts: Vec::new(),
        });
    }
}

/// The change announcing `inc` as `event`, with `extra` (what the step did) beside it.
fn change_row(inc: &Incident, event: &str, extra: Option<Value>) -> ChangeRow {
    let mut data = to_json(inc);
    if let Some(extra) = extra {
        data["change"] = extra;
    }
    ChangeRow::record(Collection::Incidents, inc.id.as_str(), Op::Upsert, Some(event), Some(data))
}

fn to_row(inc: &Incident) -> Vec<Val> {
    let text = |s: Option<String>| Val::Text(s.map(Into::into));
    let pending = inc.deliveries.iter().any(|d| d.status == DeliveryStatus::Pending);
    vec![
        text(Some(inc.id.clone())),
        text(Some(inc.plan.code.clone())),
        Val::Int(inc.plan.version),
        text(Some(inc.status.as_str().into())),
        // Only an open incident holds its trigger's key (the store keeps one open per key).
        text(inc.auto_key.clone()),
        text(inc.alarm_id.map(|a| a.to_string())),
        text(inc.case_id.map(|c| c.to_string())),
        Val::Real(inc.lon),
        Val::Real(inc.lat),
        Val::Time(Some(inc.opened_at)),
        Val::Time(inc.closed_at),
        Val::Int(pending as i64),
        Val::Int(inc.version),
        Val::Json(Some(serde_json::to_value(inc).expect("incidents serialise"))),
    ]
}

fn from_row(row: Vec<Val>) -> Result<Incident, StoreError> {
    let bad = |detail: String| StoreError::Value { table: "incidents", column: "state", detail };
    match row.into_iter().nth(13) {
        Some(Val::Json(Some(v))) => serde_json::from_value(v).map_err(|e| bad(e.to_string())),
        _ => Err(bad("no state".into())),
    }
}

/// Each department's response to the incidents (联动响应), in department code order: tasks,
/// acknowledged and arrived within their minutes (a task still open past its deadline at
/// `as_of` counts as late; one not yet due, as neither), the on-time rates, and the median
/// minutes from dispatch to arrival.
pub fn response_figures(incidents: &[Incident], as_of: DateTime<Utc>) -> Vec<Value> {
    #[derive(Default)]
    struct Tally {
        name: String,
        tasks: u64,
        acked_on_time: u64,
        ack_due: u64,
        arrived_on_time: u64,
        arrive_due: u64,
        minutes: Vec<f64>,
    }
    let mut by: std::collections::BTreeMap<&str, Tally> = Default::default();
    for t in incidents.iter().flat_map(|i| &i.tasks) {
        let e = by.entry(t.dept_code.as_str()).or_default();
        e.name = t.dept_name.clone();
        e.tasks += 1;
        // Due: answered, or past its time without an answer.
        if t.acked_at.is_some() || as_of > t.ack_due_at {
            e.ack_due += 1;
            e.acked_on_time += t.acked_at.is_some_and(|a| a <= t.ack_due_at) as u64;
        }
        if t.arrived_at.is_some() || as_of > t.deadline_at {
            e.arrive_due += 1;
            e.arrived_on_time += t.arrived_at.is_some_and(|a| a <= t.deadline_at) as u64;
        }
        if let Some(a) = t.arrived_at {
            e.minutes.push((a - t.dispatched_at).num_milliseconds() as f64 / 60_000.0);
        }
    }
    let rate = |n: u64, d: u64| (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0);
    by.into_iter()
        .map(|(code, mut t)| {
            t.minutes.sort_by(f64::total_cmp);
            let median = match t.minutes.len() {
                0 => None,
                n if n % 2 == 1 => Some(t.minutes[n / 2]),
                n => Some((t.minutes[n / 2 - 1] + t.minutes[n / 2]) / 2.0),
            };
            json!({
                "dept_code": code, "dept_name": t.name, "tasks": t.tasks,
                "acked_on_time": t.acked_on_time, "ack_rate": rate(t.acked_on_time, t.ack_due),
                "arrived_on_time": t.arrived_on_time, "arrive_rate": rate(t.arrived_on_time, t.arrive_due),
                "median_arrive_min": median.map(|m| (m * 10.0).round() / 10.0),
            })
        })
        .collect()
}

/// Whether `scope` may see `inc`: a department one it has a task in, an area one in its area.
pub fn visible(inc: &Incident, scope: &CaseScope) -> bool {
    visible_at(scope, inc.grid_code.as_deref(), inc.tasks.iter().map(|t| t.dept_code.as_str()))
}

/// [`visible`] from an incident's grid and its tasks' departments (what the feed's events carry).
pub fn visible_at<'a>(scope: &CaseScope, grid: Option<&str>, mut depts: impl Iterator<Item = &'a str>) -> bool {
    !scope.nothing && scope.in_area(grid) && scope.dept.as_deref().is_none_or(|d| depts.any(|x| x == d))
}

/// An incident as the API and the feed show it.
pub fn to_json(inc: &Incident) -> Value {
    let t = |t: Option<DateTime<Utc>>| t.map(rfc3339_ms);
    json!({
        "id": inc.id, "plan": inc.plan.code, "plan_version": inc.plan.version, "plan_name": inc.plan.name,
        "status": inc.status.as_str(), "lon": inc.lon, "lat": inc.lat, "grid_code": inc.grid_code,
        "case_id": inc.case_id, "alarm_id": inc.alarm_id, "sensor_code": inc.sensor_code,
        "auto": inc.auto_key.is_some(), "verifier": inc.verifier, "unresolved": inc.unresolved,
        "opened_at": rfc3339_ms(inc.opened_at), "opened_by": inc.opened_by,
        "closed_at": t(inc.closed_at), "closed_by": inc.closed_by, "version": inc.version,
        "tasks": inc.tasks.iter().map(|k| json!({
            "dept_code": k.dept_code, "dept_name": k.dept_name, "role": k.role, "basis": k.basis, "task": k.task,
            "status": k.status, "dispatched_at": rfc3339_ms(k.dispatched_at), "ack_due_at": rfc3339_ms(k.ack_due_at),
            "deadline_at": rfc3339_ms(k.deadline_at), "acked_at": t(k.acked_at), "arrived_at": t(k.arrived_at),
            "done_at": t(k.done_at), "late": k.late,
            "notes": k.notes.iter().map(|n| json!({"at": rfc3339_ms(n.at), "by": n.by, "action": n.action, "text": n.text}))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "webhooks": inc.deliveries.iter().map(|d| json!({
            "url": d.url, "event": d.event, "key": d.key, "status": d.status, "attempts": d.attempts.len(),
            "next_at": (d.status == DeliveryStatus::Pending).then(|| rfc3339_ms(d.next_at)),
            "log": d.attempts.iter().map(|a| json!({"at": rfc3339_ms(a.at), "status": a.status, "error": a.error, "ms": a.ms}))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(dept: &str, status: TaskStatus, now: DateTime<Utc>, ack: i64, arrive: i64) -> Task {
        Task {
            dept_code: dept.into(),
            dept_name: format!("{dept} 局"),
            role: TaskRole::Lead,
            basis: "named".into(),
            task: None,
            status,
            dispatched_at: now,
            ack_due_at: now + Duration::seconds(ack),
            deadline_at: now + Duration::seconds(arrive),
            acked_at: None,
            arrived_at: None,
            done_at: None,
            late: vec![],
            notes: vec![],
        }
    }

    fn incident(tasks: Vec<Task>, now: DateTime<Utc>) -> Incident {
        Incident {
            id: "i".into(),
            plan: PlanRef { code: "p".into(), version: 1, name: "n".into() },
            status: IncidentStatus::Open,
            lon: 0.0,
            lat: 0.0,
            grid_code: None,
            case_id: None,
            alarm_id: None,
            sensor_code: None,
            auto_key: None,
            verifier: None,
            tasks,
            unresolved: vec![],
            deliveries: vec![],
            opened_at: now,
            opened_by: "x".into(),
            closed_at: None,
            closed_by: None,
            version: 1,
        }
    }

    #[test]
    fn late_tasks_escalate_once_per_deadline() {
        let now = Utc::now();
        let mut inc = incident(
            vec![
                task("a", TaskStatus::Dispatched, now, -1, 60),
                task("b", TaskStatus::Acked, now, -10, -1),
                task("c", TaskStatus::Arrived, now, -10, -5),
            ],
            now,
        );
        assert_eq!(late_now(&inc, now), vec![(0, Lateness::Ack), (1, Lateness::Arrive)]);
        inc.tasks[0].late.push(Lateness::Ack);
        assert_eq!(late_now(&inc, now), vec![(1, Lateness::Arrive)]);
        inc.status = IncidentStatus::Closed;
        assert!(late_now(&inc, now).is_empty());
    }

    #[test]
    fn response_figures_count_on_time_answers_and_the_median_arrival() {
        let t0 = Utc::now() - Duration::hours(1);
        let answered = |ack_s: i64, arrive_s: i64| {
            let mut t = task("a", TaskStatus::Arrived, t0, 120, 600);
            t.acked_at = Some(t0 + Duration::seconds(ack_s));
            t.arrived_at = Some(t0 + Duration::seconds(arrive_s));
            t
        };
        let incidents = vec![
            incident(vec![answered(60, 300), task("b", TaskStatus::Dispatched, t0, 120, 600)], t0),
            incident(vec![answered(180, 900)], t0),
            incident(vec![answered(30, 480), task("b", TaskStatus::Dispatched, t0, 7200, 7200)], t0),
        ];
        let rows = response_figures(&incidents, t0 + Duration::hours(1));
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(
            (a["tasks"].as_u64(), a["acked_on_time"].as_u64(), a["arrived_on_time"].as_u64()),
            (Some(3), Some(2), Some(2))
        );
        assert_eq!(a["ack_rate"], 0.6667);
        assert_eq!(a["median_arrive_min"], 8.0, "5, 8 and 15 minutes");
        // b: one task past both deadlines unanswered, one not yet due.
        let b = &rows[1];
        assert_eq!(
            (b["tasks"].as_u64(), b["ack_rate"].as_f64(), b["arrive_rate"].as_f64()),
            (Some(2), Some(0.0), Some(0.0))
        );
        assert!(b["median_arrive_min"].is_null());
    }

    #[test]
    fn actions_and_statuses_are_ordered() {
        assert_eq!(TaskAction::parse("arrive"), Some(TaskAction::Arrive));
        assert_eq!(TaskAction::parse("fly"), None);
        assert!(TaskStatus::Dispatched < TaskStatus::Acked && TaskStatus::Arrived < TaskStatus::Done);
    }
}
