//! The case workflow over HTTP on both stores: the happy path with each role's token, every
//! action from every status (the new status or 422), the role and department matrix (403),
//! optimistic concurrency (two dispatchers racing: one wins, one gets 409), and histories that
//! replay to the current status.

mod common;

use axum::Router;
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, create};
use onemap::cases::workflow::{Action, Status, replay, transition};
use serde_json::{Value, json};

struct Ctx {
    app: Router,
    admin: String,
    dept: String,
    point: (f64, f64),
    class: String,
}

impl Ctx {
    async fn report(&self, token: &str) -> Value {
        let body = json!({"class_code": self.class, "lon": self.point.0, "lat": self.point.1, "crs": "cgcs2000",
            "description": "流程测试", "source": "supervisor"});
        let r = post_as(&self.app, "/api/v1/cases", Some(token), body.to_string().into_bytes()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    async fn act(&self, token: &str, case: &Value, action: &str) -> Resp {
        let body = json!({"action": action, "expected_version": case["version"], "dept_code": self.dept, "hours": 24,
            "note": format!("{action} by test")});
        let uri = format!("/api/v1/cases/{}/actions", case["id"]);
        post_as(&self.app, &uri, Some(token), body.to_string().into_bytes()).await
    }

    /// A new case walked by the admin along `path`.
    async fn case_at(&self, path: &[&str]) -> Value {
        let mut case = self.report(&self.admin).await;
        for a in path {
            let r = self.act(&self.admin, &case, a).await;
            assert_eq!(r.status, 200, "{a}: {}", String::from_utf8_lossy(&r.body));
            case = r.json();
        }
        case
    }

    async fn history_replays(&self, id: &Value) {
        let full = get(&self.app, &format!("/api/v1/cases/{id}")).await.json();
        let steps = full["history"].as_array().unwrap();
        assert_eq!(steps[0]["action"], "report");
        let actions: Vec<&str> = steps[1..].iter().map(|s| s["action"].as_str().unwrap()).collect();
        assert_eq!(replay(actions.iter().copied()).unwrap().as_str(), full["status"].as_str().unwrap(), "{full}");
        assert_eq!(steps.len() as i64, full["version"].as_i64().unwrap(), "one step per version");
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s["seq"], i + 1);
        }
    }
}

/// The shortest action path from `reported` to every status, found through the workflow itself.
fn paths() -> Vec<(Status, Vec<&'static str>)> {
    let mut out: Vec<(Status, Vec<&'static str>)> = vec![(Status::Reported, vec![])];
    let mut i = 0;
    while i < out.len() {
        let (status, path) = out[i].clone();
        for &a in Action::ALL {
            if let Ok(next) = transition(status, a, Role::Admin)
                && !out.iter().any(|(s, _)| *s == next)
            {
                let mut p = path.clone();
                p.push(a.as_str());
                out.push((next, p));
            }
        }
        i += 1;
    }
    assert_eq!(out.len(), Status::ALL.len());
    out
}

#[tokio::test]
async fn the_workflow_on_both_stores() {
    let city = small_city();
    for (label, st) in both_stores("workflow", city).await {
        let store = &*st.store;
        let g = city.grids[3].geom.interior_point().unwrap();
        let dept = city.departments[0].code.to_string();
        let ctx = Ctx {
            app: onemap::app(st.clone().with_public_read()),
            admin: create(store, Role::Admin, None, None).await.unwrap(),
            dept: dept.clone(),
            point: (g.x(), g.y()),
            class: city.event_classes[0].code.to_string(),
        };
        let token = |role| create(store, role, None, None);
        let (supervisor, acceptor, leader, dispatcher, viewer) = (
            token(Role::Supervisor).await.unwrap(),
            token(Role::Acceptor).await.unwrap(),
            token(Role::ShiftLeader).await.unwrap(),
            token(Role::Dispatcher).await.unwrap(),
            token(Role::Viewer).await.unwrap(),
        );
        let own = create(store, Role::Department, Some(&dept), Some("市政处")).await.unwrap();
        let other_dept = city.departments[1].code.to_string();
        let other = create(store, Role::Department, Some(&other_dept), None).await.unwrap();

        // The happy path, each step by its role, with a rework on the way.
        let mut case = ctx.report(&supervisor).await;
        let steps: [(&str, &str, &str); 10] = [
            (acceptor.as_str(), "accept", "accepted"),
            (supervisor.as_str(), "verify", "verified"),
            (leader.as_str(), "file", "filed"),
            (dispatcher.as_str(), "dispatch", "dispatched"),
            (own.as_str(), "handle", "handled"),
            (supervisor.as_str(), "check_fail", "dispatched"),
            (own.as_str(), "handle", "handled"),
            (supervisor.as_str(), "check_pass", "checked"),
            (leader.as_str(), "close", "closed"),
            (leader.as_str(), "close", "closed"),
        ];
        for (i, (tok, action, want)) in steps.into_iter().enumerate() {
            if i == 9 {
                // Closed is final.
                ctx.act(tok, &case, action).await.problem(422);
                break;
            }
            if action == "handle" && i == 4 {
                // Another department and a viewer may not touch it; roles may not stray.
                ctx.act(&other, &case, "handle").await.problem(403);
                ctx.act(&viewer, &case, "handle").await.problem(403);
                ctx.act(&acceptor, &case, "handle").await.problem(403);
            }
            let r = ctx.act(tok, &case, action).await;
            assert_eq!(r.status, 200, "{label} {action}: {}", String::from_utf8_lossy(&r.body));
            let next = r.json();
            assert_eq!(next["status"], want, "{label} {action}");
            assert_eq!(next["version"], case["version"].as_i64().unwrap() + 1);
            if action == "file" {
                assert!(next["suggested_dept"]["code"].is_string(), "{next}");
            }
            if action == "dispatch" {
                assert_eq!(next["dept_code"], dept.as_str());
            }
            case = next;
        }
        assert!(case["closed_at"].is_string());
        ctx.history_replays(&case["id"]).await;

        // A department sees its own cases only; reads without a token stay open.
        let bearer = |t: &str| format!("Bearer {t}");
        let mine = get_with(&ctx.app, "/api/v1/cases?limit=1000", &[("authorization", &bearer(&own))]).await.json();
        let mine = mine["cases"].as_array().unwrap();
        assert!(!mine.is_empty() && mine.iter().all(|c| c["dept_code"] == dept.as_str()), "{label}");
        let uri = format!("/api/v1/cases/{}", case["id"]);
        assert_eq!(get_with(&ctx.app, &uri, &[("authorization", &bearer(&own))]).await.status, 200);
        get_with(&ctx.app, &uri, &[("authorization", &bearer(&other))]).await.problem(403);
        get_with(&ctx.app, &uri, &[("authorization", "Bearer om_nope")]).await.problem(401);
        assert_eq!(get(&ctx.app, &uri).await.status, 200);
        let all = get(&ctx.app, "/api/v1/cases?limit=1000").await.json();
        assert!(all["cases"].as_array().unwrap().len() > mine.len(), "{label}: others see every case");
        // The index follows: the closed case is closed in the features API too.
        let item = get(&ctx.app, &format!("/collections/cases/items/{}", case["id"])).await.json();
        assert_eq!(item["properties"]["status"], "closed");

        // Every action from every status: the new status, or 422, nothing else.
        for (status, path) in paths() {
            let mut stuck = ctx.case_at(&path).await;
            assert_eq!(stuck["status"], status.as_str());
            for &action in Action::ALL {
                match transition(status, action, Role::Admin) {
                    Ok(next) => {
                        let fresh = ctx.case_at(&path).await;
                        let r = ctx.act(&ctx.admin, &fresh, action.as_str()).await;
                        assert_eq!(r.status, 200, "{label} {status} --{action}: {}", String::from_utf8_lossy(&r.body));
                        assert_eq!(r.json()["status"], next.as_str(), "{label} {status} --{action}");
                        ctx.history_replays(&fresh["id"]).await;
                    }
                    Err(_) => {
                        ctx.act(&ctx.admin, &stuck, action.as_str()).await.problem(422);
                    }
                }
            }
            // Refused actions changed nothing.
            let again = get(&ctx.app, &format!("/api/v1/cases/{}", stuck["id"])).await.json();
            assert_eq!(again["version"], stuck["version"]);
            stuck = again;
            ctx.history_replays(&stuck["id"]).await;
        }

        // Two dispatchers race on one case: exactly one wins, the other gets 409.
        let filed = ctx.case_at(&["accept", "file"]).await;
        let (a, b) = tokio::join!(ctx.act(&dispatcher, &filed, "dispatch"), ctx.act(&dispatcher, &filed, "dispatch"));
        let mut codes = [a.status.as_u16(), b.status.as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 409], "{label}");
        let after = get(&ctx.app, &format!("/api/v1/cases/{}", filed["id"])).await.json();
        assert_eq!(after["version"], filed["version"].as_i64().unwrap() + 1);
        assert_eq!(after["history"].as_array().unwrap().len(), 4, "one dispatch step, not two");
        // A stale version is a conflict; bad requests are problems.
        ctx.act(&dispatcher, &filed, "hang").await.problem(409);
        let uri = format!("/api/v1/cases/{}/actions", filed["id"]);
        let bad = |b: &str| post_as(&ctx.app, &uri, Some(&ctx.admin), b.as_bytes().to_vec());
        bad(r#"{"action":"teleport","expected_version":1}"#).await.problem(400);
        bad(r#"{"action":"hang"}"#).await.problem(400);
        bad(r#"{"action":"hang","expected_version":2,"colour":1}"#).await.problem(400);
        post_as(
            &ctx.app,
            "/api/v1/cases/99999999/actions",
            Some(&ctx.admin),
            br#"{"action":"hang","expected_version":1}"#.to_vec(),
        )
        .await
        .problem(404);
        post_as(&ctx.app, &uri, None, br#"{"action":"hang","expected_version":2}"#.to_vec()).await.problem(401);
        // Postponement needs hours; granting it moves the deadline by that many working hours
        // (the servers run on the default calendar), and the yellow light with it.
        let dispatched = ctx.case_at(&["accept", "file", "dispatch", "request_postpone"]).await;
        let r = ctx.act(&dispatcher, &dispatched, "approve_postpone").await;
        assert_eq!(r.status, 200);
        let granted = r.json();
        let d = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v["deadline_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let calendar = onemap::cases::calendar::WorkCalendar::default();
        // Times on the wire are whole seconds.
        let want = calendar.add_work_hours(d(&dispatched), 24.0);
        assert!((d(&granted) - want).num_seconds().abs() <= 1, "{} != {want}", d(&granted));
    }
}

#[tokio::test]
async fn open311_intake_on_both_stores() {
    let city = small_city();
    for (label, st) in both_stores("open311", city).await {
        let app = onemap::app(st.clone().with_public_read());
        let store = &*st.store;
        let public = create(store, Role::Public, None, Some("随手拍")).await.unwrap();
        let supervisor = create(store, Role::Supervisor, None, None).await.unwrap();
        let admin = create(store, Role::Admin, None, None).await.unwrap();
        let services = get(&app, "/open311/v2/services.json").await.json();
        assert_eq!(services.as_array().unwrap().len(), city.event_classes.len());
        assert_eq!(services[0]["service_code"], city.event_classes[0].code.as_str());

        // WGS84 lat/long, form-encoded as the spec says.
        let p = city.grids[7].geom.interior_point().unwrap();
        let code = city.event_classes[1].code.to_string();
        let form = |key: &str, service: &str, lat: f64| {
            serde_urlencoded::to_string([
                ("api_key", key.to_string()),
                ("service_code", service.to_string()),
                ("lat", lat.to_string()),
                ("long", p.x().to_string()),
                ("description", "路边有垃圾堆放".to_string()),
            ])
            .unwrap()
        };
        let post = |body: String| post_form(&app, "/open311/v2/requests.json", body);
        let r = post(form(&public, &code, p.y())).await;
        assert_eq!(r.status, 200, "{label}: {}", String::from_utf8_lossy(&r.body));
        let id = r.json()[0]["service_request_id"].as_str().unwrap().to_string();
        let case = get(&app, &format!("/api/v1/cases/{id}")).await.json();
        assert_eq!(case["source"], "public");
        assert_eq!(case["class_code"], code.as_str());
        assert_eq!(case["grid_code"], city.grids[7].code.as_str(), "{label}");

        let list = get(&app, &format!("/open311/v2/requests.json?service_code={code}&status=open")).await.json();
        assert!(list.as_array().unwrap().iter().any(|r| r["service_request_id"] == id.as_str()));
        let one = get(&app, &format!("/open311/v2/requests/{id}.json")).await.json();
        assert_eq!(one[0]["status"], "open");

        // Walked to the end, the request is closed with the last note.
        let mut c = case;
        for action in ["accept", "file", "dispatch", "handle", "check_pass", "close"] {
            let body = json!({"action": action, "expected_version": c["version"], "note": format!("{action} 完成")});
            let r = post_as(&app, &format!("/api/v1/cases/{id}/actions"), Some(&admin), body.to_string().into_bytes())
                .await;
            assert_eq!(r.status, 200, "{label} {action}: {}", String::from_utf8_lossy(&r.body));
            c = r.json();
        }
        let one = get(&app, &format!("/open311/v2/requests/{id}.json")).await.json();
        assert_eq!(one[0]["status"], "closed");
        assert_eq!(one[0]["status_notes"], "close 完成");
        let closed = get(&app, "/open311/v2/requests.json?status=closed").await.json();
        assert!(closed.as_array().unwrap().iter().any(|r| r["service_request_id"] == id.as_str()));

        // Bad input: problems, nothing written.
        let before = st.index.cases.read().len();
        post(form("", &code, p.y()).replace("api_key=&", "")).await.problem(401);
        post(form("om_wrong", &code, p.y())).await.problem(401);
        post(form(&supervisor, &code, p.y())).await.problem(403);
        post(form(&public, "9999", p.y())).await.problem(400);
        post(form(&public, &code, 0.0)).await.problem(404);
        post("api_key=x&lat=abc".into()).await.problem(400);
        assert_eq!(st.index.cases.read().len(), before, "{label}");
        get(&app, "/open311/v2/requests/abc.json").await.problem(404);
        get(&app, "/open311/v2/requests.json?status=pending").await.problem(400);
        get(&app, "/open311/v2/requests.json?start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z")
            .await
            .problem(400);
    }
}

/// Steps written concurrently go through the stores' group commit: every step on its own case
/// lands, and of several steps racing from the same version on one case exactly one does, with
/// one history row per applied step.
#[tokio::test]
async fn concurrent_steps_are_batched_without_losing_or_doubling_any() {
    let city = small_city();
    for (label, st) in both_stores("workflow_batch", city).await {
        let store = st.store.clone();
        // The store writes what the workflow decided; which step it is does not matter here.
        let base: Vec<onemap::model::Case> = city.cases.iter().take(40).cloned().collect();
        let step = |c: &onemap::model::Case, actor: &str| onemap::model::CaseStep {
            case_id: c.id,
            seq: c.version + 1,
            action: "note".into(),
            actor: actor.into(),
            role: "admin".into(),
            dept_code: None,
            status_from: Some(c.status),
            status_to: c.status,
            at: chrono::Utc::now(),
            note: None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        // Ten racers on the first case, one step on each of the others.
        for (i, c) in base.iter().enumerate() {
            for racer in 0..if i == 0 { 10 } else { 1 } {
                let (store, c) = (store.clone(), c.clone());
                let s = step(&c, &format!("racer {racer}"));
                tasks.spawn(async move {
                    let next = onemap::model::Case { version: c.version + 1, ..c.clone() };
                    let change = onemap::store::log::ChangeRow::record(
                        onemap::model::Collection::Cases,
                        c.id.to_string(),
                        onemap::store::log::Op::Upsert,
                        Some("case.updated"),
                        None,
                    );
                    (c.id, store.update_case(&next, c.version, &s, change).await.unwrap())
                });
            }
        }
        let mut applied: std::collections::HashMap<i64, usize> = Default::default();
        let mut seqs = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (id, seq) = r.unwrap();
            *applied.entry(id).or_default() += seq.is_some() as usize;
            seqs.extend(seq);
        }
        // Every applied step logged exactly one change, numbered without a gap.
        seqs.sort();
        let (_, head) = store.log_bounds().await.unwrap();
        assert_eq!(seqs, ((head - seqs.len() as i64 + 1)..=head).collect::<Vec<_>>(), "{label}");
        for c in &base {
            assert_eq!(applied[&c.id], 1, "{label}: case {} applied once", c.id);
            let steps: Vec<onemap::model::CaseStep> =
                onemap::store::find(&*store, "case_id", onemap::store::schema::Val::Int(c.id)).await.unwrap();
            let new: Vec<_> = steps.iter().filter(|s| s.seq == c.version + 1).collect();
            assert_eq!(new.len(), 1, "{label}: one history row for case {}", c.id);
            assert_eq!(new[0].action, "note");
            let stored: Vec<onemap::model::Case> =
                onemap::store::find(&*store, "id", onemap::store::schema::Val::Int(c.id)).await.unwrap();
            assert_eq!(stored[0].version, c.version + 1, "{label}");
        }
    }
}
