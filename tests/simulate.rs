//! The living demo (`serve --simulate`): on a demo city the simulated supervisors come on duty
//! and walk, report cases with photos, citizens report through Open311 with photos, the desks
//! accept, file and dispatch, departments handle with an after-photo, supervisors verify and
//! check the tasks sent to them, all through the router with tokens; the simulator refuses a
//! store that is not a demo city (the real binary).

mod common;

use common::*;
use onemap::demo::simulate::{Pace, Simulation, is_demo};
use serde_json::Value;

#[tokio::test]
async fn the_simulation_brings_a_demo_city_to_life_through_the_api() {
    let store_path = fresh_gpkg("simulate");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["demo", "--scale", "0.05", "--store", &store_path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = onemap::server::start(&store_path, false, 0).await.unwrap();
    assert!(is_demo(&*st.store).await.unwrap(), "onemap demo marks its city");
    let app = onemap::app(st.clone());
    let client = onemap::server::router_client(app.clone());
    let cases_before = st.index.cases.read().iter().map(|c| c.id).max().unwrap_or(0);
    // Everyone reports at every step, and nobody pauses.
    let pace = Pace { tick_s: 5.0, walkers: 40, reports_per_walker_hour: 720.0, public_per_hour: 720.0, pauses: 0.0 };
    let mut sim = Simulation::new(client, st.index.clone(), st.store.clone(), pace, 7).await.unwrap();
    let walkers = sim.walkers();
    assert!(walkers >= 2, "the demo's supervisors walk: {walkers}");
    let viewer = onemap::auth::create(&*st.store, onemap::auth::Role::Viewer, None, None).await.unwrap();
    let start: Vec<Value> =
        get_as(&app, "/api/v1/staff?on_duty=true", &viewer).await.json()["staff"].as_array().unwrap().clone();
    assert!(start.is_empty(), "nobody on duty before the simulation");

    for round in 0..6 {
        sim.step().await;
        // The lease holder's task sweep, which a server runs every few seconds.
        onemap::staff::tasks::assign(&st.live, chrono::Utc::now(), chrono::Duration::minutes(30)).await.unwrap();
        if round == 0 {
            let on_duty = get_as(&app, "/api/v1/staff?on_duty=true", &viewer).await.json();
            assert_eq!(on_duty["on_duty"].as_u64(), Some(walkers as u64), "every walker on duty: {on_duty}");
        }
    }
    // They moved along their beats.
    let moved = get_as(&app, "/api/v1/staff?on_duty=true", &viewer).await.json();
    for s in moved["staff"].as_array().unwrap() {
        let track = get_as(&app, &format!("/api/v1/staff/{}/track", s["code"].as_str().unwrap()), &viewer).await.json();
        assert!(track["properties"]["points"].as_u64().unwrap() >= 6, "{track}");
        assert!(track["properties"]["distance_m"].as_f64().unwrap() > 10.0, "{}", track["properties"]);
    }

    let new: Vec<onemap::model::Case> = st.index.cases.read().iter().filter(|c| c.id > cases_before).cloned().collect();
    let by_supervisors = new.iter().filter(|c| c.source == "supervisor").count();
    let by_public = new.iter().filter(|c| c.source == "public").count();
    // Every step while not riding to a task.
    assert!(by_supervisors >= walkers * 3, "supervisors reported {by_supervisors}");
    assert!(by_public >= 5, "citizens reported {by_public}");
    // Every new case has its report photo, stamped where it was taken.
    for c in new.iter().take(20) {
        let media = st.media.of_case(&*st.store, c.id).await.unwrap();
        let report = media.iter().find(|m| m.step == onemap::model::MediaStep::Report);
        let report = report.unwrap_or_else(|| panic!("case {} has no report photo", c.id));
        assert!(report.place.unwrap().distance_m < 5.0, "{report:?}");
    }
    // The workflow moved: dispatched to a department, handled with an after-photo; public
    // reports verified and handled cases checked by the supervisors sent to them.
    let status = |s: &str| new.iter().filter(|c| c.status.as_str() == s).count();
    let past_dispatch = new.iter().filter(|c| c.milestones.handled_at.is_some()).count();
    assert!(
        past_dispatch > 0,
        "nothing handled; statuses: {:?}",
        new.iter().map(|c| c.status.as_str()).collect::<Vec<_>>()
    );
    let handled = new.iter().find(|c| c.milestones.handled_at.is_some()).unwrap();
    let photos = st.media.of_case(&*st.store, handled.id).await.unwrap();
    assert!(photos.iter().any(|m| m.step == onemap::model::MediaStep::Handle && m.role == "department"), "{photos:?}");
    let history = get_as(&app, &format!("/api/v1/cases/{}", handled.id), &viewer).await.json();
    let actions: Vec<&str> =
        history["history"].as_array().unwrap().iter().filter_map(|s| s["action"].as_str()).collect();
    assert!(
        actions.starts_with(&["report", "accept", "file", "dispatch", "handle"]) || actions.contains(&"verify"),
        "{actions:?}"
    );
    // A handled case's check went to a walking supervisor, who rides to it.
    let sent = new.iter().filter(|c| c.status.as_str() == "handled" && c.assignee.is_some()).count();
    assert!(sent > 0, "no check task for the walkers ({} handled)", status("handled"));

    // Nobody reports any more: the walkers ride to their checks, photograph and pass (or fail)
    // them, and the desk closes what passed.
    sim.set_pace(Pace { reports_per_walker_hour: 0.0, public_per_hour: 0.0, ..pace });
    let checked = |st: &onemap::AppState| {
        st.index
            .cases
            .read()
            .iter()
            .filter(|c| c.id > cases_before && matches!(c.status.as_str(), "checked" | "closed"))
            .count()
    };
    for _ in 0..200 {
        if checked(&st) > 0 {
            break;
        }
        sim.step().await;
        onemap::staff::tasks::assign(&st.live, chrono::Utc::now(), chrono::Duration::minutes(30)).await.unwrap();
    }
    let done = st.index.cases.read().iter().find(|c| c.id > cases_before && c.status.as_str() == "closed").cloned();
    let done = done.expect("a checked case closed");
    let photos = st.media.of_case(&*st.store, done.id).await.unwrap();
    let check = photos.iter().find(|m| m.step == onemap::model::MediaStep::Check).expect("a check photo");
    assert!(check.place.unwrap().distance_m <= 30.0, "checked on site: {check:?}");
    assert_eq!(check.role, "supervisor");
}

#[tokio::test]
async fn serve_simulate_refuses_a_city_that_is_not_a_demo() {
    let location = fresh_gpkg("simulate_refused");
    let store = onemap::store::open(&location).await.unwrap();
    store.write_city(small_city(), &|_, _| {}).await.unwrap();
    assert!(!is_demo(&*store).await.unwrap());
    store.close().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--simulate", "--store", &location])
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve --simulate ran on a city that is not a demo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--simulate moves only a demo city"), "{err}");
}
