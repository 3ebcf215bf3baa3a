//! 一键联动 through the real router on both stores: plans and their versions, a one-click start
//! with tasks for several departments, each department's reports and who may make them,
//! escalation of late tasks, closing, resources around the place, an alarm starting its plan by
//! itself (once per sensor while open), and signed calls to a real local HTTP receiver that
//! fails some of them, retried until it answers and resumed after a restart.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use common::broker::free_port;
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, TokenSpec};
use serde_json::{Value, json};

const SECRET: &str = "test-signals-secret-0001";

/// A real HTTP receiver of outside calls on 127.0.0.1: it answers 503 to the first `fail` calls
/// and 204 after, and keeps every call's headers and body.
/// One call as received: its headers and body.
type Call = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    fail: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(port: u16, fail: usize) -> Receiver {
        let r = Receiver { fail: Arc::new(Mutex::new(fail)), ..Default::default() };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/signals",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    state.calls.lock().unwrap().push((headers, body.to_vec()));
                    let mut fail = state.fail.lock().unwrap();
                    if *fail > 0 {
                        *fail -= 1;
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn calls(&self) -> Vec<(HeaderMap, Value)> {
        self.calls.lock().unwrap().iter().map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap())).collect()
    }

    /// Every call carries the event, the idempotency key and a valid signature of its body.
    fn check_signed(&self) {
        for (h, body) in self.calls.lock().unwrap().iter() {
            let sig = h["x-onemap-signature"].to_str().unwrap();
            assert_eq!(sig, onemap::linkage::hooks::signature(SECRET.as_bytes(), body), "signature of the body");
            assert!(h.contains_key("idempotency-key") && h.contains_key("x-onemap-event"));
            assert_eq!(h["content-type"], "application/json");
        }
    }
}

async fn token(st: &onemap::AppState, role: Role, dept: Option<&str>) -> String {
    let spec = TokenSpec { dept_code: dept.map(str::to_string), ..Default::default() };
    onemap::auth::create_with(&*st.store, role, &spec).await.unwrap()
}

async fn post(app: &axum::Router, uri: &str, token: &str, body: Value) -> Resp {
    post_as(app, uri, Some(token), body.to_string().into_bytes()).await
}

/// Polls incident `id` until `done` holds (the timers run in the background), at most 20 s.
async fn until(app: &axum::Router, token: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let v = get_as(app, &format!("/api/v1/incidents/{id}"), token).await.json();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("incident {id}: {what} did not happen within 20 s");
}

/// A unit grid's inner point and the street office (territorial body) it belongs to.
fn place(city: &onemap::model::City) -> (geo::Point<f64>, String) {
    let grid = &city.grids[city.grids.len() / 3];
    let street = city
        .departments
        .iter()
        .find(|d| d.kind == "street" && d.region_code.as_deref() == grid.code.get(..9))
        .expect("a street office for the grid");
    (grid.geom.interior_point().unwrap(), street.code.to_string())
}

fn city_depts(city: &onemap::model::City) -> (String, String, String) {
    let city_level: Vec<_> = city.departments.iter().filter(|d| d.kind == "city").collect();
    (city_level[0].code.to_string(), city_level[1].code.to_string(), city_level[2].code.to_string())
}

fn settings() -> onemap::linkage::Settings {
    onemap::linkage::Settings { tick_ms: 200, give_up_min: 60.0, timeout_s: 5.0 }
}

#[tokio::test]
async fn plans_start_incidents_that_departments_work_and_outside_systems_hear_on_both_stores() {
    let city = small_city();
    let (p, street) = place(city);
    let (lead, assist, other) = city_depts(city);
    for (label, location) in [("gpkg", fresh_gpkg("linkage")), ("postgis", fresh_pg("onemap_t_linkage").await)] {
        let port = free_port();
        let receiver = Receiver::start(port, 2).await;
        let st = seeded_state(&location, city).await.with_linkage_settings(settings());
        let jobs = tokio::spawn(st.linkage.clone().run());
        let app = onemap::app(st.clone());
        let admin = token(&st, Role::Admin, None).await;
        let leader = token(&st, Role::ShiftLeader, None).await;
        let dispatcher = token(&st, Role::Dispatcher, None).await;
        let viewer = token(&st, Role::Viewer, None).await;
        let lead_t = token(&st, Role::Department, Some(&lead)).await;
        let street_t = token(&st, Role::Department, Some(&street)).await;
        let other_t = token(&st, Role::Department, Some(&other)).await;
        let mut feed = EventStream::open_with(&app, &admin).await;

        // The demo's plans are valid plans here too (their department keys made codes).
        for demo in onemap::server::demo_plans(&city.departments) {
            let r = post(&app, "/api/v1/plans", &admin, serde_json::to_value(&demo).unwrap()).await;
            assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
        }
        let plans = get_as(&app, "/api/v1/plans", &viewer).await.json();
        let codes: Vec<&str> = plans["plans"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["burst-main", "gas-leak", "park-fire", "tunnel-flood"], "{label}");
        assert!(!plans.to_string().contains("demo-signals-secret"), "{label}: secrets stay in the store");

        // A plan and its refusals.
        let url = format!("http://127.0.0.1:{port}/signals");
        let plan = |name: &str, lead_dept: &str| {
            json!({
                "code": "t-tunnel", "name": name, "trigger": "manual",
                "lead": {"dept_code": lead_dept, "task": "封闭隧道", "deadline_min": 30, "ack_min": 10},
                "assist": [{"role": "street", "task": "疏散群众", "deadline_min": 0.02, "ack_min": 0.01},
                           {"dept_code": assist, "deadline_min": 30}],
                "radius_m": 2000, "resource_classes": ["0113"],
                "webhooks": [{"url": url, "secret": SECRET}],
            })
        };
        post(&app, "/api/v1/plans", &viewer, plan("隧道", &lead)).await.problem(403);
        post(&app, "/api/v1/plans", &dispatcher, plan("隧道", &lead)).await.problem(403);
        let bad = post(&app, "/api/v1/plans", &admin, plan("隧道", "NO-SUCH-DEPT")).await.problem(422);
        assert!(bad["detail"].as_str().unwrap().contains("unknown department"), "{label}: {bad}");
        post_as(&app, "/api/v1/plans", Some(&admin), b"{\"code\": ".to_vec()).await.problem(400);
        let mut unknown_field = plan("隧道", &lead);
        unknown_field["colour"] = json!("red");
        post(&app, "/api/v1/plans", &admin, unknown_field).await.problem(400);
        let v1 = post(&app, "/api/v1/plans", &admin, plan("隧道积水 v1", &lead)).await;
        assert_eq!(v1.status, 201, "{label}: {}", String::from_utf8_lossy(&v1.body));
        assert_eq!(v1.json()["version"], 1);
        assert!(!String::from_utf8_lossy(&v1.body).contains(SECRET), "{label}: the secret never leaves");
        let v2 = post(&app, "/api/v1/plans", &admin, plan("隧道积水 v2", &lead)).await.json();
        assert_eq!(v2["version"], 2);
        let got = get_as(&app, "/api/v1/plans/t-tunnel", &viewer).await.json();
        assert_eq!((got["version"].clone(), got["versions"].clone()), (json!(2), json!([1, 2])));
        assert_eq!(get_as(&app, "/api/v1/plans/t-tunnel?version=1", &viewer).await.json()["name"], "隧道积水 v1");
        get_as(&app, "/api/v1/plans/nope", &viewer).await.problem(404);

        // One click, and its refusals.
        let start = |plan: &str, lon: f64, lat: f64| json!({"plan": plan, "lon": lon, "lat": lat, "crs": "cgcs2000"});
        post(&app, "/api/v1/incidents", &viewer, start("t-tunnel", p.x(), p.y())).await.problem(403);
        post(&app, "/api/v1/incidents", &lead_t, start("t-tunnel", p.x(), p.y())).await.problem(403);
        post(&app, "/api/v1/incidents", &dispatcher, start("nope", p.x(), p.y())).await.problem(422);
        post(&app, "/api/v1/incidents", &dispatcher, start("t-tunnel", 10.0, 10.0)).await.problem(422);
        post(&app, "/api/v1/incidents", &dispatcher, start("t-tunnel", 200.0, 10.0)).await.problem(400);
        let mut with_case = start("t-tunnel", p.x(), p.y());
        with_case["case_id"] = json!(999_999_999);
        post(&app, "/api/v1/incidents", &dispatcher, with_case).await.problem(422);
        let before = get_as(&app, "/api/v1/incidents", &admin).await.json()["incidents"].as_array().unwrap().len();
        assert_eq!(before, 0, "{label}: refusals changed nothing");
        let r = post(&app, "/api/v1/incidents", &dispatcher, start("t-tunnel", p.x(), p.y())).await;
        assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));
        let inc = r.json();
        let id = inc["id"].as_str().unwrap().to_string();
        assert_eq!((inc["status"].as_str(), inc["plan_version"].as_i64()), (Some("open"), Some(2)));
        let tasks = inc["tasks"].as_array().unwrap();
        let depts: Vec<(&str, &str, &str)> = tasks
            .iter()
            .map(|t| (t["dept_code"].as_str().unwrap(), t["role"].as_str().unwrap(), t["basis"].as_str().unwrap()))
            .collect();
        assert_eq!(
            depts,
            [
                (lead.as_str(), "lead", "named"),
                (street.as_str(), "assist", "street"),
                (assist.as_str(), "assist", "named")
            ],
            "{label}: one task per department, the street office resolved at the place"
        );
        assert!(tasks.iter().all(|t| t["status"] == "dispatched" && t["deadline_at"].is_string()));
        assert_eq!(inc["webhooks"][0]["url"], url.as_str());
        let created = feed.wait_for("incident.created", |d| d["id"] == id.as_str()).await;
        assert_eq!(created["tasks"].as_array().unwrap().len(), 3);

        // The call, retried past two failures until the receiver answers 2xx.
        let done = until(&app, &admin, &id, "the created call", |v| v["webhooks"][0]["status"] == "delivered").await;
        assert_eq!(done["webhooks"][0]["attempts"], 3, "{label}: two failures, then success");
        let log: Vec<Value> =
            done["webhooks"][0]["log"].as_array().unwrap().iter().map(|a| a["status"].clone()).collect();
        assert_eq!(log, [json!(503), json!(503), json!(204)], "{label}: each attempt logged");
        let calls = receiver.calls();
        assert_eq!(calls.len(), 3);
        receiver.check_signed();
        let keys: Vec<&str> = calls.iter().map(|(h, _)| h["idempotency-key"].to_str().unwrap()).collect();
        assert!(keys.iter().all(|k| *k == keys[0]), "{label}: one idempotency key for every retry");
        assert_eq!(
            (calls[0].1["incident"].as_str(), calls[0].1["event"].as_str()),
            (Some(id.as_str()), Some("incident.created"))
        );

        // The street office had 0.6 s to acknowledge and 1.2 s to arrive: both escalate, once
        // each, to the shift leader; the others' minutes are not up.
        let esc =
            until(&app, &admin, &id, "the escalations", |v| v["tasks"][1]["late"].as_array().unwrap().len() == 2).await;
        assert_eq!(esc["tasks"][1]["late"], json!(["ack", "arrive"]), "{label}");
        assert!(
            esc["tasks"][0]["late"].as_array().unwrap().is_empty()
                && esc["tasks"][2]["late"].as_array().unwrap().is_empty()
        );
        let escalated = feed.wait_for("incident.escalated", |d| d["id"] == id.as_str()).await;
        assert_eq!(escalated["change"]["late"][0]["dept_code"], street.as_str());

        // Each department reports on its own task only.
        let act = |dept: &str, action: &str| {
            (format!("/api/v1/incidents/{id}/tasks/{dept}/actions"), json!({"action": action}))
        };
        let (u, b) = act(&lead, "ack");
        post(&app, &u, &street_t, b.clone()).await.problem(403);
        post(&app, &u, &dispatcher, b.clone()).await.problem(403);
        let acked = post(&app, &u, &lead_t, json!({"action": "ack", "note": "收到"})).await;
        assert_eq!(acked.status, 200, "{label}: {}", String::from_utf8_lossy(&acked.body));
        assert!(acked.headers.contains_key("onemap-seq"));
        assert_eq!(acked.json()["tasks"][0]["status"], "acked");
        post(&app, &u, &lead_t, b).await.problem(409);
        let (u, _) = act(&lead, "arrive");
        post(&app, &u, &lead_t, json!({"action": "fly"})).await.problem(400);
        post(&app, &u, &lead_t, json!({})).await.problem(400);
        let arrived = post(&app, &u, &lead_t, json!({"action": "arrive"})).await.json();
        assert_eq!(arrived["tasks"][0]["status"], "arrived");
        assert!(arrived["tasks"][0]["arrived_at"].is_string());
        let (u, b) = act(&other, "ack");
        post(&app, &u, &admin, b).await.problem(404);
        // The street office skips ahead: arriving acknowledges.
        let (u, b) = act(&street, "done");
        let done = post(&app, &u, &street_t, b).await.json();
        assert!(done["tasks"][1]["acked_at"].is_string() && done["tasks"][1]["arrived_at"].is_string());

        // Who sees it: a department without a task sees nothing of it.
        let theirs = get_as(&app, "/api/v1/incidents?open=true", &other_t).await.json();
        assert!(theirs["incidents"].as_array().unwrap().is_empty(), "{label}: {theirs}");
        get_as(&app, &format!("/api/v1/incidents/{id}"), &other_t).await.problem(404);
        let mine = get_as(&app, "/api/v1/incidents?open=true", &street_t).await.json();
        assert_eq!(mine["incidents"][0]["id"], id.as_str());

        // Resources around the place, nearest first, within the plan's radius.
        let res = get_as(&app, &format!("/api/v1/incidents/{id}/resources"), &leader).await.json();
        for kind in ["cameras", "components"] {
            let d: Vec<f64> = res[kind].as_array().unwrap().iter().map(|c| c["distance_m"].as_f64().unwrap()).collect();
            assert!(!d.is_empty(), "{label}: {kind} within 2 km");
            assert!(d.windows(2).all(|w| w[0] <= w[1]) && d.iter().all(|x| *x <= 2000.0), "{label}: {kind} {d:?}");
        }
        assert!(res["components"].as_array().unwrap().iter().all(|c| c["class_code"] == "0113"));

        // A new plan version leaves the running incident alone.
        post(&app, "/api/v1/plans", &admin, plan("隧道积水 v3", &lead)).await;
        assert_eq!(get_as(&app, &format!("/api/v1/incidents/{id}"), &admin).await.json()["plan_name"], "隧道积水 v2");

        // The evaluation by department reports each one's response.
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
        let eval = get_as(&app, &format!("/api/v1/evaluation?by=dept&from={today}&to={today}"), &leader).await.json();
        let row = |d: &str| eval["response"].as_array().unwrap().iter().find(|r| r["dept_code"] == d).cloned().unwrap();
        let l = row(&lead);
        assert_eq!(
            (l["tasks"].as_u64(), l["acked_on_time"].as_u64(), l["arrived_on_time"].as_u64()),
            (Some(1), Some(1), Some(1))
        );
        assert!(l["median_arrive_min"].as_f64().unwrap() < 1.0, "{label}: {l}");
        let s = row(&street);
        assert_eq!((s["ack_rate"].as_f64(), s["arrive_rate"].as_f64()), (Some(0.0), Some(0.0)), "{label}: late twice");
        let theirs =
            get_as(&app, &format!("/api/v1/evaluation?by=dept&from={today}&to={today}"), &street_t).await.json();
        assert_eq!(theirs["response"].as_array().unwrap().len(), 1, "{label}: a department sees its own figures");

        // Closing: not by an assisting department; by the lead; then nothing more.
        let close = format!("/api/v1/incidents/{id}/close");
        post(&app, &close, &street_t, json!({})).await.problem(403);
        post(&app, &close, &viewer, json!({})).await.problem(403);
        let closed = post(&app, &close, &lead_t, json!({"note": "险情解除"})).await.json();
        assert_eq!((closed["status"].as_str(), closed["closed_by"].is_string()), (Some("closed"), true));
        post(&app, &close, &leader, json!({})).await.problem(409);
        let (u, b) = act(&assist, "ack");
        let assist_t = token(&st, Role::Department, Some(&assist)).await;
        post(&app, &u, &assist_t, b).await.problem(409);
        until(&app, &admin, &id, "the closed call", |v| {
            v["webhooks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["event"] == "incident.closed" && w["status"] == "delivered")
        })
        .await;
        assert_eq!(receiver.calls().last().unwrap().1["event"], "incident.closed");
        receiver.check_signed();
        let open = get_as(&app, "/api/v1/incidents?open=true", &admin).await.json();
        assert!(open["incidents"].as_array().unwrap().is_empty(), "{label}");
        jobs.abort();
    }
}

#[tokio::test]
async fn an_alarm_starts_its_plan_once_and_deliveries_survive_a_restart_on_both_stores() {
    let city = small_city();
    let (p, _) = place(city);
    let (lead, _, _) = city_depts(city);
    for (label, location) in
        [("gpkg", fresh_gpkg("linkage-auto")), ("postgis", fresh_pg("onemap_t_linkage_auto").await)]
    {
        let port = free_port();
        let st = seeded_state(&location, city).await.with_linkage_settings(settings());
        let jobs = tokio::spawn(st.linkage.clone().run());
        let app = onemap::app(st.clone());
        let admin = token(&st, Role::Admin, None).await;
        let device = token(&st, Role::Device, None).await;
        let mut feed = EventStream::open_with(&app, &admin).await;
        // Nothing listens on the port yet: every call is refused and retried.
        let plan = json!({
            "code": "t-flood", "name": "积水红色", "trigger": {"sensor_kind": "water_level", "level": "red"},
            "lead": {"dept_code": lead}, "assist": [{"role": "street"}],
            "webhooks": [{"url": format!("http://127.0.0.1:{port}/signals"), "secret": SECRET}],
        });
        assert_eq!(post(&app, "/api/v1/plans", &admin, plan).await.status, 201);
        let sensor = json!({"code": "T-WL-1", "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "thresholds": {"min_duration_s": 0, "hysteresis": 0.01}});
        assert_eq!(post(&app, "/api/v1/sensors", &admin, sensor).await.status, 201);
        // A supervisor on duty nearby is sent to verify.
        let member = city.staff[0].code.to_string();
        let pos = json!({"positions": [{"staff": member, "lon": p.x() + 0.0003, "lat": p.y(), "crs": "cgcs2000"}]});
        assert_eq!(post(&app, "/api/v1/staff/positions", &admin, pos).await.json()["accepted"], 1);
        let phone = onemap::auth::create_with(
            &*st.store,
            Role::Supervisor,
            &TokenSpec { staff_code: Some(member.clone()), ..Default::default() },
        )
        .await
        .unwrap();
        let now = chrono::Utc::now();
        let reading = |s: i64, v: f64| {
            json!({"sensor": "T-WL-1", "value": v,
                "at": (now - chrono::Duration::seconds(30 - s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
        };
        // Yellow does not reach the plan; red does.
        let r = post(&app, "/api/v1/sensors/readings", &device, json!({"readings": [reading(0, 0.3)]})).await;
        assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
        feed.wait_for("alarm.raised", |d| d["sensor"] == "T-WL-1" && d["level"] == "yellow").await;
        post(&app, "/api/v1/sensors/readings", &device, json!({"readings": [reading(1, 0.6)]})).await;
        let alarm = feed.wait_for("alarm.raised", |d| d["sensor"] == "T-WL-1" && d["level"] == "red").await;
        let inc = feed.wait_for("incident.created", |d| d["sensor_code"] == "T-WL-1").await;
        assert_eq!((inc["alarm_id"].clone(), inc["auto"].clone()), (alarm["id"].clone(), json!(true)), "{label}");
        assert_eq!(inc["case_id"], alarm["case_id"], "{label}: the alarm's case is linked");
        assert_eq!(inc["plan"], "t-flood");
        assert_eq!(inc["verifier"], member.as_str(), "{label}: the nearest supervisor on duty");
        let tasks = get_as(&app, "/api/v1/tasks", &phone).await.json();
        assert_eq!(tasks["incidents"][0]["id"], inc["id"], "{label}: on the supervisor's phone");
        // More red readings, a sweep: still one incident for the sensor.
        post(&app, "/api/v1/sensors/readings", &device, json!({"readings": [reading(2, 0.7)]})).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let open = get_as(&app, "/api/v1/incidents?open=true", &admin).await.json();
        let for_sensor = open["incidents"].as_array().unwrap().iter().filter(|i| i["sensor_code"] == "T-WL-1").count();
        assert_eq!(for_sensor, 1, "{label}: one open incident per sensor and plan");
        // A class trigger: an urgent case of the class starts its plan, a normal one does not.
        let class = city.event_classes[0].code.to_string();
        let plan = json!({"code": "t-class", "name": "紧急事件", "trigger": {"class_code": class, "urgency": "urgent"},
            "lead": {"role": "street"}});
        assert_eq!(post(&app, "/api/v1/plans", &admin, plan).await.status, 201);
        let report = |urgency: &str| {
            json!({"class_code": class, "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "description": "联动测试", "source": "supervisor", "urgency": urgency})
        };
        let normal = post(&app, "/api/v1/cases", &phone, report("normal")).await.json();
        let urgent = post(&app, "/api/v1/cases", &phone, report("urgent")).await.json();
        let by_case = feed.wait_for("incident.created", |d| d["plan"] == "t-class").await;
        assert_eq!(
            (by_case["case_id"].clone(), by_case["auto"].clone()),
            (urgent["id"].clone(), json!(true)),
            "{label}"
        );
        let all = get_as(&app, "/api/v1/incidents", &admin).await.json();
        assert!(!all["incidents"].as_array().unwrap().iter().any(|i| i["case_id"] == normal["id"]), "{label}");

        let id = inc["id"].as_str().unwrap().to_string();
        let failing =
            until(&app, &admin, &id, "a refused call", |v| v["webhooks"][0]["attempts"].as_u64() >= Some(1)).await;
        assert_eq!(failing["webhooks"][0]["status"], "pending");
        assert!(failing["webhooks"][0]["log"][0]["status"].is_null(), "{label}: no answer, no status");

        // A restart: the pending delivery is in the store and resumes when the receiver is up.
        jobs.abort();
        drop(feed);
        st.store.close().await;
        drop((app, st));
        let receiver = Receiver::start(port, 0).await;
        let st = onemap::server::start(&location, false, 0).await.unwrap().with_linkage_settings(settings());
        let jobs = tokio::spawn(st.linkage.clone().run());
        let app = onemap::app(st.clone());
        let after = until(&app, &admin, &id, "the resumed call", |v| v["webhooks"][0]["status"] == "delivered").await;
        assert!(after["webhooks"][0]["attempts"].as_u64().unwrap() >= 2, "{label}: {after}");
        assert_eq!(receiver.calls().len(), 1, "{label}: delivered once");
        receiver.check_signed();
        jobs.abort();
    }
}

#[test]
fn plans_import_from_a_toml_file_on_the_command_line() {
    let store = fresh_gpkg("linkage-cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["import", "plans", "data/demo_plans.toml", "--store", &store])
        .output()
        .unwrap();
    // The demo file names department keys, not codes: refused, and nothing stored.
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown department"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = small_city();
    rt.block_on(async {
        let s = onemap::store::open(&store).await.unwrap();
        s.write_city(city, &|_, _| {}).await.unwrap();
        s.close().await;
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plans.toml");
    let dept = &city.departments[0].code;
    std::fs::write(
        &file,
        format!(
            "[[plans]]\ncode = \"gas\"\nname = \"燃气泄漏\"\ntrigger = {{ sensor_kind = \"gas_lel\", level = \"orange\" }}\n\
             lead = {{ dept_code = \"{dept}\", deadline_min = 15 }}\nassist = [{{ role = \"street\" }}]\n"
        ),
    )
    .unwrap();
    for version in [1, 2] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
            .args(["import", "plans", file.to_str().unwrap(), "--store", &store])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("plan gas: version {version}"));
    }
    rt.block_on(async {
        let s = onemap::store::open(&store).await.unwrap();
        let all = onemap::linkage::plans::versions(&*s, "gas").await.unwrap();
        assert_eq!(all.iter().map(|p| p.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(all[1].plan.lead.deadline_min, Some(15.0));
    });
}
