//! A living demo city (`serve --simulate`): about 40 supervisors walk their beats along the grid
//! edges (the demo's streets), post their positions from their own phones' tokens, report what
//! they find with a photo, verify and check the cases sent to them; citizens report through
//! Open311 with a photo; the command centre's roles accept, file, dispatch and close, and the
//! departments handle with an after-photo, each after a pause of the domain's pace.
//!
//! Everything goes through the public HTTP API (the router, with tokens, exactly as clients
//! send it): the simulator never writes the store or the index itself. It runs only on a demo
//! city ([`is_demo`]), on the replica that holds the singleton lease.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use geo::{Coord, InteriorPoint};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::auth::{self, Role, TokenSpec};
use crate::index::CityIndex;
use crate::model::{StaffRole, Str};
use crate::store::Store;

/// The client the simulator talks through: one request in, its response out (the router).
pub type Client = Arc<dyn Fn(Request<Body>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// The `imports` source that marks a store seeded by `onemap demo` or `serve --demo`.
pub const DEMO_SOURCE: &str = "onemap demo";

/// Marks `store` as a demo city (an empty import recorded under [`DEMO_SOURCE`]).
pub async fn mark(store: &dyn Store) -> Result<(), crate::store::StoreError> {
    store.import(&crate::store::schema::DISTRICTS, Vec::new(), DEMO_SOURCE, &|_, _| {}).await.map(|_| ())
}

/// Whether `store` holds a demo city: the only kind a simulator may move.
pub async fn is_demo(store: &dyn Store) -> Result<bool, crate::store::StoreError> {
    let rows = store
        .select(
            &crate::store::schema::IMPORTS,
            crate::store::schema::Filter::Eq("source", crate::store::schema::Val::Text(Some(DEMO_SOURCE.into()))),
        )
        .await?;
    Ok(!rows.is_empty())
}

/// How the simulation runs.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Seconds between two steps of the walkers.
    pub tick_s: f64,
    /// Supervisors walking.
    pub walkers: usize,
    /// Reports per walker per hour, and Open311 reports per hour.
    pub reports_per_walker_hour: f64,
    pub public_per_hour: f64,
    /// Multiplies every pause of the command centre and the departments (1: the domain's pace,
    /// 0: at once, for tests).
    pub pauses: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace { tick_s: 5.0, walkers: 40, reports_per_walker_hour: 1.0, public_per_hour: 8.0, pauses: 1.0 }
    }
}

/// Walking and riding speeds, metres a second (patrolling on foot, going to a task by e-bike).
const WALK_MPS: f64 = 1.3;
const RIDE_MPS: f64 = 5.0;
/// Close enough to a case to photograph it.
const ON_SITE_M: f64 = 25.0;

struct Walker {
    code: Str,
    token: String,
    /// The corners of the beat's grids in walking order, and the next one.
    route: Vec<(f64, f64)>,
    next: usize,
    at: (f64, f64),
    /// The case the member was sent to (verify or check), and where it is.
    task: Option<(i64, (f64, f64))>,
}

/// What the command centre's roles and each department act with.
struct Desk {
    acceptor: String,
    leader: String,
    dispatcher: String,
    public: String,
    departments: HashMap<Str, String>,
}

pub struct Simulation {
    client: Client,
    index: Arc<CityIndex>,
    store: Arc<dyn Store>,
    pace: Pace,
    walkers: Vec<Walker>,
    desk: Desk,
    /// When each case was first seen in its current status (the pauses count from there).
    seen: HashMap<i64, (String, DateTime<Utc>)>,
    rng: rand_chacha::ChaCha8Rng,
    ticks: u64,
}

/// A bearer token request of `method` on `uri` with a JSON `body`.
fn request(method: &str, uri: &str, token: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {token}"));
    match body {
        Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("a well-formed request")
}

/// A multipart body of text `fields` and one JPEG part `file_part`.
fn multipart(fields: &[(&str, String)], file_part: &str, jpeg: Vec<u8>) -> (String, Vec<u8>) {
    let boundary = format!("onemap-sim-{:016x}", rand::random::<u64>());
    let mut body = Vec::with_capacity(jpeg.len() + 512);
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_part}\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&jpeg);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A phone photo of something at `at`, stamped with the time and place (640 x 480).
fn snapshot(rng: &mut impl Rng, at: (f64, f64)) -> Vec<u8> {
    let (r, g, b) = (rng.random_range(40..200u8), rng.random_range(40..200u8), rng.random_range(40..200u8));
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        // A street scene in spirit: sky, a wall, the ground, and the date band of a watermark camera.
        if y > 440 {
            image::Rgb([20, 20, 20])
        } else if y < 160 {
            image::Rgb([150, 190, 230])
        } else if y < 330 {
            image::Rgb([r, g.saturating_add((x / 40 % 2) as u8 * 25), b])
        } else {
            image::Rgb([110, 105, 100])
        }
    });
    crate::media::photo::stamp(&image::DynamicImage::ImageRgb8(img), Utc::now(), Some(at), crate::model::city_tz())
}

/// Metres between two points (small distances, local flat Earth).
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let k = 111_320.0 * a.1.to_radians().cos();
    ((b.0 - a.0) * k).hypot((b.1 - a.1) * 110_540.0)
}

/// `m` metres from `a` towards `b` (or `b` when nearer).
fn towards(a: (f64, f64), b: (f64, f64), m: f64) -> (f64, f64) {
    let d = metres(a, b);
    if d <= m || d == 0.0 {
        return b;
    }
    let f = m / d;
    (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
}

/// Seconds to read a JSON response, or the status it failed with.
async fn json_of(resp: Response<Body>) -> Result<Value, StatusCode> {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024).await.map_err(|_| status)?;
    if !status.is_success() {
        tracing::debug!(%status, body = %String::from_utf8_lossy(&bytes), "simulated request refused");
        return Err(status);
    }
    serde_json::from_slice(&bytes).map_err(|_| status)
}

impl Simulation {
    /// Picks the walkers among the demo's supervisors and issues the tokens every simulated
    /// phone and desk acts with (labelled `simulator`, living 30 days).
    pub async fn new(
        client: Client,
        index: Arc<CityIndex>,
        store: Arc<dyn Store>,
        pace: Pace,
        seed: u64,
    ) -> Result<Simulation, auth::AuthError> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let spec = |staff: Option<&str>, dept: Option<&str>| TokenSpec {
            label: Some("simulator".into()),
            expires_in: Some(std::time::Duration::from_secs(30 * 86_400)),
            staff_code: staff.map(String::from),
            dept_code: dept.map(String::from),
            ..TokenSpec::default()
        };
        let mut members: Vec<(Str, Vec<Str>, geo::Point<f64>)> = index
            .staff
            .read()
            .iter()
            .filter(|s| s.role == StaffRole::Supervisor)
            .map(|s| {
                (s.code.clone(), crate::staff::assigned_grids(s, &index).into_iter().collect::<Vec<Str>>(), s.geom)
            })
            .filter(|(_, beat, _)| !beat.is_empty())
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let step = (members.len() / pace.walkers.max(1)).max(1);
        let mut walkers = Vec::new();
        for (code, grids, start) in members.into_iter().step_by(step).take(pace.walkers) {
            let route: Vec<(f64, f64)> = {
                let layer = index.grids.read();
                grids
                    .iter()
                    .filter_map(|g| layer.get(g))
                    .flat_map(|g| g.geom.exterior().coords().map(|c: &Coord<f64>| (c.x, c.y)).collect::<Vec<_>>())
                    .collect()
            };
            if route.is_empty() {
                continue;
            }
            let token = auth::create_with(&*store, Role::Supervisor, &spec(Some(&code), None)).await?;
            let next = rng.random_range(0..route.len());
            walkers.push(Walker { code, token, route, next, at: (start.x(), start.y()), task: None });
        }
        let desk = Desk {
            acceptor: auth::create_with(&*store, Role::Acceptor, &spec(None, None)).await?,
            leader: auth::create_with(&*store, Role::ShiftLeader, &spec(None, None)).await?,
            dispatcher: auth::create_with(&*store, Role::Dispatcher, &spec(None, None)).await?,
            public: auth::create_with(&*store, Role::Public, &spec(None, None)).await?,
            departments: HashMap::new(),
        };
        tracing::info!(walkers = walkers.len(), "field simulation ready");
        Ok(Simulation { client, index, store, pace, walkers, desk, seen: HashMap::new(), rng, ticks: 0 })
    }

    /// Changes the pace of a running simulation.
    pub fn set_pace(&mut self, pace: Pace) {
        self.pace = pace;
    }

    pub fn walkers(&self) -> usize {
        self.walkers.len()
    }

    async fn send(&self, req: Request<Body>) -> Result<Value, StatusCode> {
        json_of((self.client)(req).await).await
    }

    /// One step of everyone: walk, report, take tasks, and the desks' work.
    pub async fn step(&mut self) {
        self.ticks += 1;
        let now = Utc::now();
        self.walk(now).await;
        self.report().await;
        // Tasks are polled every few steps, as a phone app refreshes.
        if self.ticks % 3 == 1 {
            self.take_tasks().await;
        }
        self.desks(now).await;
    }

    async fn walk(&mut self, now: DateTime<Utc>) {
        let tick = self.pace.tick_s;
        let mut arrived = Vec::new();
        for (i, w) in self.walkers.iter_mut().enumerate() {
            match w.task {
                Some((id, site)) => {
                    w.at = towards(w.at, site, RIDE_MPS * tick);
                    if metres(w.at, site) <= ON_SITE_M {
                        arrived.push((i, id));
                    }
                }
                None => {
                    let mut budget = WALK_MPS * tick;
                    // Bounded: a route of repeated corners never uses up the budget.
                    for _ in 0..=w.route.len() {
                        if budget <= 0.0 {
                            break;
                        }
                        let target = w.route[w.next];
                        let d = metres(w.at, target);
                        w.at = towards(w.at, target, budget);
                        budget -= d;
                        if budget >= 0.0 {
                            w.next = (w.next + 1) % w.route.len();
                        }
                    }
                }
            }
        }
        for w in &self.walkers {
            let body = json!({"positions": [{"staff": w.code, "at": now.to_rfc3339(), "lon": w.at.0, "lat": w.at.1, "crs": "cgcs2000"}]});
            let _ = self.send(request("POST", "/api/v1/staff/positions", &w.token, Some(body))).await;
        }
        for (i, id) in arrived {
            self.on_site(i, id).await;
        }
    }

    /// A walker at its task's case: the photo of the step, then the step.
    async fn on_site(&mut self, i: usize, id: i64) {
        let (token, at) = (self.walkers[i].token.clone(), self.walkers[i].at);
        self.walkers[i].task = None;
        let Ok(case) = self.send(request("GET", &format!("/api/v1/cases/{id}"), &token, None)).await else { return };
        let (step, action) = match case["status"].as_str() {
            Some("accepted") => ("verify", "verify"),
            // One check in ten finds the work not done (返工).
            Some("handled") => ("check", if self.rng.random_bool(0.1) { "check_fail" } else { "check_pass" }),
            _ => return,
        };
        let jpeg = snapshot(&mut self.rng, at);
        if self.upload(id, &token, step, jpeg).await.is_err() {
            return;
        }
        let _ = self.act(&token, &case, action, None).await;
    }

    async fn upload(&self, id: i64, token: &str, step: &str, jpeg: Vec<u8>) -> Result<Value, StatusCode> {
        let (kind, body) = multipart(&[("step", step.to_string())], "file", jpeg);
        let req = Request::post(format!("/api/v1/cases/{id}/media"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", kind)
            .body(Body::from(body))
            .expect("a well-formed request");
        self.send(req).await
    }

    async fn act(&self, token: &str, case: &Value, action: &str, dept: Option<&str>) -> Result<Value, StatusCode> {
        let mut body = json!({"action": action, "expected_version": case["version"], "note": "模拟"});
        if let Some(d) = dept {
            body["dept_code"] = json!(d);
        }
        self.send(request("POST", &format!("/api/v1/cases/{}/actions", case["id"]), token, Some(body))).await
    }

    /// A random event class, and one of the city's grids' inner points (for citizens).
    fn class(&mut self) -> Option<Str> {
        let dict = self.index.dict.read();
        let n = dict.event_classes.len();
        (n > 0).then(|| dict.event_classes[self.rng.random_range(0..n)].code.clone())
    }

    async fn report(&mut self) {
        let p = self.pace.reports_per_walker_hour * self.pace.tick_s / 3600.0;
        for i in 0..self.walkers.len() {
            if self.walkers[i].task.is_some() || !self.rng.random_bool(p.clamp(0.0, 1.0)) {
                continue;
            }
            let Some(class) = self.class() else { return };
            let (token, at) = (self.walkers[i].token.clone(), self.walkers[i].at);
            let name =
                self.index.dict.read().event_classes.iter().find(|c| c.code == class).map(|c| c.name.to_string());
            let body = json!({"class_code": class, "lon": at.0, "lat": at.1, "crs": "cgcs2000",
                "description": format!("巡查发现：{}", name.unwrap_or_default()), "source": "supervisor"});
            let Ok(case) = self.send(request("POST", "/api/v1/cases", &token, Some(body))).await else { continue };
            let jpeg = snapshot(&mut self.rng, at);
            if let Some(id) = case["id"].as_i64() {
                let _ = self.upload(id, &token, "report", jpeg).await;
            }
        }
        let q = self.pace.public_per_hour * self.pace.tick_s / 3600.0;
        if self.rng.random_bool(q.clamp(0.0, 1.0)) {
            self.citizen().await;
        }
    }

    /// A citizen's 随手拍 through Open311: a point in a random grid, a photo.
    async fn citizen(&mut self) {
        let Some(class) = self.class() else { return };
        let at = {
            let grids = self.index.grids.read();
            let n = grids.len();
            if n == 0 {
                return;
            }
            let k = self.rng.random_range(0..n);
            grids.iter().nth(k).and_then(|g| g.geom.interior_point()).map(|p| (p.x(), p.y()))
        };
        let Some(at) = at else { return };
        let fields = [
            ("api_key", self.desk.public.clone()),
            ("service_code", class.to_string()),
            ("lat", at.1.to_string()),
            ("long", at.0.to_string()),
            ("description", "市民随手拍".to_string()),
        ];
        let (kind, body) = multipart(&fields, "media", snapshot(&mut self.rng, at));
        let req = Request::post("/open311/v2/requests.json")
            .header("content-type", kind)
            .body(Body::from(body))
            .expect("a well-formed request");
        let _ = self.send(req).await;
    }

    async fn take_tasks(&mut self) {
        for i in 0..self.walkers.len() {
            if self.walkers[i].task.is_some() {
                continue;
            }
            let token = self.walkers[i].token.clone();
            let Ok(tasks) = self.send(request("GET", "/api/v1/tasks", &token, None)).await else { continue };
            if let Some(t) = tasks["tasks"].as_array().and_then(|l| l.first())
                && let (Some(id), Some(lon), Some(lat)) = (t["id"].as_i64(), t["lon"].as_f64(), t["lat"].as_f64())
            {
                self.walkers[i].task = Some((id, (lon, lat)));
            }
        }
    }

    /// Seconds a desk waits before `action`-ing a case that entered its status: a few minutes
    /// for the command centre, hours for a department's work (some cases run late).
    fn pause_s(&self, status: &str, id: i64) -> f64 {
        let spread = (id.unsigned_abs() % 97) as f64 / 97.0;
        let s = match status {
            "reported" => 120.0 + 240.0 * spread,
            "verified" | "accepted" => 300.0 + 300.0 * spread,
            "filed" => 300.0 + 900.0 * spread,
            "dispatched" => 1800.0 + 6.0 * 3600.0 * spread,
            "checked" => 300.0 + 600.0 * spread,
            "return_requested" | "postpone_requested" | "hung" => 600.0,
            _ => f64::INFINITY,
        };
        s * self.pace.pauses
    }

    /// The desks' round: each status's newest cases, stepped once their pause is over.
    async fn desks(&mut self, now: DateTime<Utc>) {
        for status in ["reported", "accepted", "verified", "filed", "dispatched", "checked"] {
            let token = self.desk.leader.clone();
            let uri = format!("/api/v1/cases?status={status}&limit=50");
            let Ok(list) = self.send(request("GET", &uri, &token, None)).await else { continue };
            for case in list["cases"].as_array().cloned().unwrap_or_default() {
                let Some(id) = case["id"].as_i64() else { continue };
                let since = match self.seen.get(&id) {
                    Some((s, t)) if s == status => *t,
                    _ => {
                        self.seen.insert(id, (status.to_string(), now));
                        now
                    }
                };
                if (now - since).num_milliseconds() as f64 / 1000.0 < self.pause_s(status, id) {
                    continue;
                }
                self.desk_step(status, &case).await;
            }
        }
        // Forget what finished.
        let open: std::collections::HashSet<i64> =
            self.index.cases.read().iter().filter(|c| !c.status.is_finished()).map(|c| c.id).collect();
        self.seen.retain(|id, _| open.contains(id));
    }

    async fn desk_step(&mut self, status: &str, case: &Value) {
        let public = case["source"] == "public";
        let (token, action, dept) = match status {
            "reported" => (self.desk.acceptor.clone(), "accept", None),
            // A citizen's report waits for a supervisor's verification (a task); the desk files
            // what a supervisor reported itself, or a public report nobody verified in time.
            "accepted" if public && case["assignee"].is_string() => return,
            "accepted" | "verified" => (self.desk.leader.clone(), "file", None),
            "filed" => (self.desk.dispatcher.clone(), "dispatch", None),
            "dispatched" => {
                let Some(dept) = case["dept_code"].as_str().map(Str::from) else { return };
                let token = self.department(&dept).await;
                let Some(token) = token else { return };
                let at = (case["lon"].as_f64().unwrap_or_default(), case["lat"].as_f64().unwrap_or_default());
                let jpeg = snapshot(&mut self.rng, at);
                let Some(id) = case["id"].as_i64() else { return };
                if self.upload(id, &token, "handle", jpeg).await.is_err() {
                    return;
                }
                (token, "handle", None)
            }
            "checked" => (self.desk.leader.clone(), "close", None),
            _ => return,
        };
        let _ = self.act(&token, case, action, dept).await;
    }

    /// The token of department `dept`'s crew (issued on first use).
    async fn department(&mut self, dept: &Str) -> Option<String> {
        if let Some(t) = self.desk.departments.get(dept) {
            return Some(t.clone());
        }
        let spec = TokenSpec {
            label: Some("simulator".into()),
            expires_in: Some(std::time::Duration::from_secs(30 * 86_400)),
            dept_code: Some(dept.to_string()),
            ..TokenSpec::default()
        };
        let t = auth::create_with(&*self.store, Role::Department, &spec).await.ok()?;
        self.desk.departments.insert(dept.clone(), t.clone());
        Some(t)
    }
}

/// Runs `sim` every `pace.tick_s` for as long as the server runs.
pub async fn run(mut sim: Simulation) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(sim.pace.tick_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sim.step().await;
    }
}
