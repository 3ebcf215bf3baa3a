//! The case workflow over HTTP on both stores: the happy path with each role's token, every
//! action from every status (the new status or 422), the role and department matrix (403),
//! optimistic concurrency (two dispatchers racing: one wins, one gets 409), and histories that
//! replay to the current status.

mod common;

use axum::Router;
use common::*;
use geo::InteriorPoint;
use onemap::auth::{Role, create};
use onemap::cases::workflow::{ACTIONS, STATUSES, replay, transition};
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
        assert_eq!(replay(actions.iter().copied()).unwrap(), full["status"].as_str().unwrap(), "{full}");
        assert_eq!(steps.len() as i64, full["version"].as_i64().unwrap(), "one step per version");
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s["seq"], i + 1);
        }
    }
}

/// The shortest action path from `reported` to every status, found through the workflow itself.
fn paths() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = vec![("reported", vec![])];
    let mut i = 0;
    while i < out.len() {
        let (status, path) = out[i].clone();
        for &a in ACTIONS {
            if let Ok(next) = transition(status, a, Role::Admin) {
                if !out.iter().any(|(s, _)| *s == next) {
                    let mut p = path.clone();
                    p.push(a);
                    out.push((next, p));
                }
            }
        }
        i += 1;
    }
    assert_eq!(out.len(), STATUSES.len());
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
            app: onemap::app(st.clone()),
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
        // The index follows: the closed case is closed in the features API too.
        let item = get(&ctx.app, &format!("/collections/cases/items/{}", case["id"])).await.json();
        assert_eq!(item["properties"]["status"], "closed");

        // Every action from every status: the new status, or 422, nothing else.
        for (status, path) in paths() {
            let mut stuck = ctx.case_at(&path).await;
            assert_eq!(stuck["status"], status);
            for &action in ACTIONS {
                match transition(status, action, Role::Admin) {
                    Ok(next) => {
                        let fresh = ctx.case_at(&path).await;
                        let r = ctx.act(&ctx.admin, &fresh, action).await;
                        assert_eq!(r.status, 200, "{label} {status} --{action}: {}", String::from_utf8_lossy(&r.body));
                        assert_eq!(r.json()["status"], next, "{label} {status} --{action}");
                        ctx.history_replays(&fresh["id"]).await;
                    }
                    Err(_) => {
                        ctx.act(&ctx.admin, &stuck, action).await.problem(422);
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
        // Postponement needs hours; granting it moves the deadline.
        let dispatched = ctx.case_at(&["accept", "file", "dispatch", "request_postpone"]).await;
        let r = ctx.act(&dispatcher, &dispatched, "approve_postpone").await;
        assert_eq!(r.status, 200);
        let granted = r.json();
        let d = |v: &Value| chrono::DateTime::parse_from_rfc3339(v["deadline_at"].as_str().unwrap()).unwrap();
        assert_eq!((d(&granted) - d(&dispatched)).num_hours(), 24);
    }
}
