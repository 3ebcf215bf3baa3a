//! MQTT ingest against a real Mosquitto broker, started by the test on a free port (and
//! restarted mid-test), on both stores: a published reading crosses a threshold, the alarm is
//! raised, a case is opened and routed owner first, the SSE feed says so; malformed payloads are
//! rejected and counted without stopping the loop; after the broker restarts, ingest resumes.
//! Two replicas on one database share the subscription and take each reading once.

mod common;

use std::process::Command;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use common::broker::{Broker, free_port};
use common::*;
use onemap::auth::Role;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

const CODE: &str = "T-WL-0001";

/// A Mosquitto broker on `port` that takes anonymous local clients and keeps nothing on disk.
/// A publishing client whose event loop runs in the background.
fn publisher(port: u16, id: &str) -> AsyncClient {
    let (client, mut events) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

async fn publish(client: &AsyncClient, topic: &str, payload: impl Into<Vec<u8>>) {
    client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.unwrap();
}

fn topic(code: &str) -> String {
    format!("onemap/sensors/{code}/readings")
}

fn counter(metrics: &str, needle: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// Publishes `value` with a fresh time every 200 ms until the feed shows an event `name` that
/// satisfies `pred` (the first messages may go before the subscription is in place).
async fn publish_until(
    client: &AsyncClient,
    feed: &mut EventStream,
    value: f64,
    name: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..100 {
        let body = json!({"at": Utc::now().to_rfc3339(), "value": value}).to_string();
        publish(client, &topic(CODE), body).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some((n, data))) = tokio::time::timeout_at(deadline, feed.next(Duration::from_millis(200))).await {
            if n == name && pred(&data) {
                return data;
            }
        }
    }
    panic!("no {name} event after 20 s of publishing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_readings_raise_alarms_and_open_cases_and_survive_a_broker_restart() {
    let city = small_city();
    let (comp, p) = owned_point_component(city);
    for (label, location) in [("gpkg", fresh_gpkg("mqtt")), ("postgis", fresh_pg("onemap_t_mqtt").await)] {
        let port = free_port();
        let mut broker = Broker::start(port);
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone().with_public_read());
        let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
        let body = json!({"code": CODE, "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "component_code": comp.code, "thresholds": {"min_duration_s": 0}});
        let r = post_as(&app, "/api/v1/sensors", Some(&admin), body.to_string().into_bytes()).await;
        assert_eq!(r.status, 201, "{label}: {}", String::from_utf8_lossy(&r.body));

        let url: onemap::mqtt::BrokerUrl =
            format!("mqtt://127.0.0.1:{port}?client_id=onemap-test-{label}").parse().unwrap();
        let ingest = onemap::mqtt::spawn(url, st.sensors.clone(), st.staff.clone()).unwrap();
        let mut feed = EventStream::open(&app).await;
        let client = publisher(port, &format!("pub-{label}-1"));

        // Below every threshold: the reading lands and goes out on the feed.
        let ev = publish_until(&client, &mut feed, 0.05, "sensor.reading", |d| d["sensor"] == CODE).await;
        assert!(ev["level"].is_null(), "{label}");

        // Yellow (0.25 m of water): alarm, case, routed to the drain cover's owner.
        publish(&client, &topic(CODE), json!({"at": Utc::now().to_rfc3339(), "value": 0.3}).to_string()).await;
        let raised = feed.wait_for("alarm.raised", |d| d["sensor"] == CODE).await;
        assert_eq!(raised["level"], "yellow", "{label}");
        let case_id = raised["case_id"].as_i64().expect("a case");
        let case = get(&app, &format!("/api/v1/cases/{case_id}")).await.json();
        assert_eq!((case["source"].as_str(), case["class_code"].as_str()), (Some("sensor"), Some("0506")), "{label}");
        assert_eq!(case["suggested_dept"]["code"], comp.owner_dept.as_deref().unwrap(), "{label}");
        assert_eq!(case["suggested_dept"]["basis"], "owner");

        // Malformed payloads are counted and skipped; the loop goes on.
        for (t, payload) in [
            (topic(CODE), "not json".to_string()),
            (topic(CODE), r#"{"value": NaN}"#.to_string()),
            (topic(CODE), r#"{"value": "high"}"#.to_string()),
            (topic(CODE), r#"{"value": 1e999}"#.to_string()),
            (topic(CODE), json!({"at": "2999-01-01T00:00:00Z", "value": 1.0}).to_string()),
            (topic("NO-SUCH-SENSOR"), json!({"value": 1.0}).to_string()),
        ] {
            publish(&client, &t, payload).await;
        }
        // (An array of readings, the batched form; repeated, as the feed shows a sensor's
        // readings at most once a second.)
        publish(&client, &topic(CODE), json!([{"at": Utc::now().to_rfc3339(), "value": 0.31}]).to_string()).await;
        publish_until(&client, &mut feed, 0.31, "sensor.reading", |d| d["value"] == 0.31).await;
        let m = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
        let rejected = |reason: &str| {
            counter(&m, &format!("onemap_sensor_readings_rejected_total{{transport=\"mqtt\",reason=\"{reason}\"}}"))
        };
        assert_eq!(
            (
                rejected("malformed"),
                rejected("not_a_number"),
                rejected("not_finite"),
                rejected("future"),
                rejected("unknown_sensor")
            ),
            (2.0, 1.0, 1.0, 1.0, 1.0),
            "{label}: {m}"
        );

        // The broker restarts: onemap reconnects, subscribes again and ingest resumes.
        broker.stop();
        broker = Broker::start(port);
        let client = publisher(broker.port, &format!("pub-{label}-2"));
        let red = publish_until(&client, &mut feed, 0.6, "alarm.raised", |d| d["level"] == "red").await;
        assert_eq!(
            (red["case_id"].as_i64(), red["escalated_from"].as_str()),
            (Some(case_id), Some("yellow")),
            "{label}"
        );
        assert!(st.metrics.mqtt_connects.get() >= 2, "{label}: reconnected");
        let sensor_cases = st.index.cases.read().iter().filter(|c| c.source == "sensor").count();
        assert_eq!(sensor_cases, 1, "{label}: escalation notes the case, it opens no other");

        ingest.abort();
        drop(broker);
        st.store.close().await;
    }
}

/// Two replicas on one PostgreSQL subscribed to one broker: the shared subscription hands each
/// message to one of them, so every reading is taken in once, and both see the sensor's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_subscription_and_take_each_reading_once() {
    let city = small_city();
    let (comp, p) = owned_point_component(city);
    let location = fresh_pg("onemap_t_mqtt_shared").await;
    let port = free_port();
    let _broker = Broker::start(port);
    let a = seeded_state(&location, city).await;
    let b = onemap::server::start(&location, false, 16).await.expect("second replica");
    let app = onemap::app(a.clone().with_public_read());
    let admin = onemap::auth::create(&*a.store, Role::Admin, None, None).await.unwrap();
    let body = json!({"code": CODE, "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
        "component_code": comp.code});
    let r = post_as(&app, "/api/v1/sensors", Some(&admin), body.to_string().into_bytes()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let seq: i64 = r.headers["onemap-seq"].to_str().unwrap().parse().unwrap();
    assert!(b.live.wait_applied(seq, Duration::from_secs(5)).await, "the second replica learns of the sensor");

    let mut ingests = Vec::new();
    for (i, st) in [&a, &b].into_iter().enumerate() {
        let url: onemap::mqtt::BrokerUrl =
            format!("mqtt://127.0.0.1:{port}?client_id=onemap-replica-{i}").parse().unwrap();
        ingests.push(onemap::mqtt::spawn(url, st.sensors.clone(), st.staff.clone()).unwrap());
    }
    // Both connected and subscribed (a SUBACK follows the CONNACK within milliseconds).
    for _ in 0..100 {
        if a.metrics.mqtt_connects.get() >= 1 && b.metrics.mqtt_connects.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = publisher(port, "pub-shared");
    let n = 60;
    // Whole seconds: readings are kept to the millisecond, and the count below starts at t0.
    let t0 = (Utc::now() - chrono::Duration::minutes(10)).trunc_subsecs(0);
    for i in 0..n {
        let at = t0 + chrono::Duration::seconds(i);
        publish(&client, &topic(CODE), json!({"at": at.to_rfc3339(), "value": 0.01 + i as f64 / 1000.0}).to_string())
            .await;
    }
    let taken = |st: &onemap::AppState| {
        (st.metrics.reading("mqtt", "accepted").get(), st.metrics.reading("mqtt", "duplicate").get())
    };
    let mut got = (0, 0);
    for _ in 0..200 {
        let (ta, tb) = (taken(&a), taken(&b));
        got = (ta.0 + tb.0, ta.1 + tb.1);
        if got.0 >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ta, tb) = (taken(&a), taken(&b));
    assert_eq!((ta.0 + tb.0, ta.1 + tb.1), (n as u64, 0), "every message once, none twice (was {got:?})");
    assert!(ta.0 > 0 && tb.0 > 0, "the broker shared the messages: {ta:?} {tb:?}");
    let stored = a.store.count_readings(CODE, t0, t0 + chrono::Duration::seconds(n)).await.unwrap();
    assert_eq!(stored, n);
    // Both replicas show the newest value, whichever took it in.
    let last = 0.01 + (n - 1) as f64 / 1000.0;
    for st in [&a, &b] {
        let mut value = None;
        for _ in 0..100 {
            value = st.index.sensors.read().get(CODE).and_then(|s| s.live.0.lock().value);
            if value == Some(last) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(value, Some(last));
    }
    for i in ingests {
        i.abort();
    }
    a.store.close().await;
    b.store.close().await;
}

/// Runs a command, failing the test with its output when it fails.
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 made with openssl, a password file and an ACL
/// like `scripts/mosquitto/onemap.acl.example`: onemap's ingest user reads every sensor's
/// readings; a gateway writes its own sensor's topic only.
fn tls_broker_files(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let f = |name: &str| dir.join(name).display().to_string();
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]).args([
        "-keyout",
        &f("ca.key"),
        "-out",
        &f("ca.pem"),
        "-subj",
        "/CN=onemap test CA",
    ]));
    run(Command::new("openssl").args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]).args([
        "-keyout",
        &f("server.key"),
        "-out",
        &f("server.csr"),
    ]));
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl").args(["x509", "-req", "-days", "2", "-CAcreateserial"]).args([
        "-in",
        &f("server.csr"),
        "-CA",
        &f("ca.pem"),
        "-CAkey",
        &f("ca.key"),
        "-out",
        &f("server.pem"),
        "-extfile",
        &f("san.ext"),
    ]));
    run(Command::new("mosquitto_passwd").args(["-c", "-b", &f("passwd"), "onemap", "ingest-secret"]));
    run(Command::new("mosquitto_passwd").args(["-b", &f("passwd"), "gw-1", "gw-secret"]));
    std::fs::write(
        dir.join("acl"),
        "user onemap\ntopic read onemap/sensors/+/readings\n\nuser gw-1\ntopic write onemap/sensors/TLS-1/readings\n",
    )
    .unwrap();
    // The broker may drop root for its own user: everything readable.
    for entry in std::fs::read_dir(dir).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
        f("ca.pem"),
        f("server.pem"),
        f("server.key"),
        f("passwd"),
        f("acl")
    )
}

/// Over TLS with passwords and an ACL: onemap connects with its credentials and checks the
/// broker's certificate against the given CA; a gateway's reading on its own topic is taken in,
/// one on another sensor's topic never reaches onemap; a client without credentials is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_over_tls_with_passwords_and_an_acl() {
    let city = small_city();
    let (comp, p) = owned_point_component(city);
    let dir = std::env::temp_dir().join(format!("onemap-mqtt-tls-{}", std::process::id()));
    let port = free_port();
    let _broker = Broker::start_with(port, &tls_broker_files(&dir));
    let st = seeded_state(&fresh_gpkg("mqtt-tls"), city).await;
    let app = onemap::app(st.clone());
    let admin = onemap::auth::create(&*st.store, Role::Admin, None, None).await.unwrap();
    for code in ["TLS-1", "TLS-2"] {
        let body = json!({"code": code, "kind": "water_level", "lon": p.x(), "lat": p.y(), "crs": "cgcs2000",
            "component_code": comp.code});
        let r = post_as(&app, "/api/v1/sensors", Some(&admin), body.to_string().into_bytes()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let ca = dir.join("ca.pem").display().to_string();
    let url: onemap::mqtt::BrokerUrl =
        format!("mqtts://onemap:ingest-secret@127.0.0.1:{port}?client_id=onemap-tls&ca={ca}").parse().unwrap();
    let _ingest = onemap::mqtt::spawn(url, st.sensors.clone(), st.staff.clone()).unwrap();
    for _ in 0..100 {
        if st.metrics.mqtt_connects.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(st.metrics.mqtt_connects.get() >= 1, "onemap connected over TLS with its password");

    // The gateway, over TLS with its own password.
    let tls = onemap::mqtt::tls_config(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut opts = MqttOptions::new("gw-1-client", "127.0.0.1", port);
    opts.set_credentials("gw-1", "gw-secret");
    opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(
        tls,
    ))));
    let (gw, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = || st.metrics.reading("mqtt", "accepted").get();
    let t0 = Utc::now() - chrono::Duration::seconds(30);
    // Its own sensor first, then another's (dropped by the broker's ACL), then its own again:
    // the second own reading arriving proves the foreign one had its chance.
    publish(&gw, &topic("TLS-1"), json!({"at": t0.to_rfc3339(), "value": 0.05}).to_string()).await;
    publish(&gw, &topic("TLS-2"), json!({"at": t0.to_rfc3339(), "value": 0.05}).to_string()).await;
    let t1 = t0 + chrono::Duration::seconds(1);
    publish(&gw, &topic("TLS-1"), json!({"at": t1.to_rfc3339(), "value": 0.06}).to_string()).await;
    for _ in 0..200 {
        if accepted() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted(), 2, "the gateway's own readings, and only those");
    let stored = st.store.count_readings("TLS-2", t0 - chrono::Duration::minutes(1), Utc::now()).await.unwrap();
    assert_eq!(stored, 0, "the ACL kept the gateway off another sensor's topic");

    // Without credentials the broker refuses the connection.
    let mut anon = MqttOptions::new("anonymous", "127.0.0.1", port);
    let tls = onemap::mqtt::tls_config(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    anon.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(
        tls,
    ))));
    let (_c, mut events) = AsyncClient::new(anon, 8);
    let refused = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await.expect("an answer within 5 s") {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break false,
            Ok(_) => continue,
            Err(_) => break true,
        }
    };
    assert!(refused, "a client without credentials is refused");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Staff positions published on `onemap/staff/{code}/positions` (one object or an array) move
/// the member on the live layer and land in the track, on both stores; a position naming another
/// member than its topic is refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_positions_move_staff_and_fill_their_tracks() {
    use geo::InteriorPoint;
    let city = small_city();
    let member = city.staff[0].code.to_string();
    let g = city.grids[0].geom.interior_point().unwrap();
    for (label, location) in [("gpkg", fresh_gpkg("mqtt-staff")), ("postgis", fresh_pg("onemap_t_mqtt_staff").await)] {
        let port = free_port();
        let _broker = Broker::start(port);
        let st = seeded_state(&location, city).await;
        let app = onemap::app(st.clone().with_public_read());
        let url: onemap::mqtt::BrokerUrl =
            format!("mqtt://127.0.0.1:{port}?client_id=onemap-staff-{label}").parse().unwrap();
        let _ingest = onemap::mqtt::spawn(url, st.sensors.clone(), st.staff.clone()).unwrap();
        let mut feed = EventStream::open(&app).await;
        let client = publisher(port, &format!("phone-{label}"));
        let topic = format!("onemap/staff/{member}/positions");
        let t0 = Utc::now().trunc_subsecs(3) - chrono::Duration::seconds(60);
        let mut seen = None;
        // The first messages may go before the subscription is in place: publish until heard.
        for i in 0..100 {
            let body = json!({"at": (t0 + chrono::Duration::milliseconds(i)).to_rfc3339(), "lon": g.x(), "lat": g.y(), "crs": "cgcs2000"});
            publish(&client, &topic, body.to_string()).await;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while let Ok(Some((n, data))) =
                tokio::time::timeout_at(deadline, feed.next(Duration::from_millis(200))).await
            {
                if n == "staff.on_duty" {
                    seen = Some(data);
                }
            }
            if seen.is_some() {
                break;
            }
        }
        let ev = seen.unwrap_or_else(|| panic!("{label}: no staff.on_duty after 20 s of publishing"));
        assert_eq!(ev["staff"], member.as_str(), "{label}");
        assert_eq!(ev["grid_code"], city.grids[0].code.as_str(), "{label}");
        // The batched form, and one that names someone else.
        let later = Utc::now().trunc_subsecs(3);
        let batch = json!([{"at": later.to_rfc3339(), "lon": g.x() + 0.0001, "lat": g.y(), "crs": "cgcs2000"}]);
        publish(&client, &topic, batch.to_string()).await;
        publish(&client, &topic, json!({"staff": "SOMEONE-ELSE", "lon": g.x(), "lat": g.y()}).to_string()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = get(&app, &format!("/api/v1/staff/{member}")).await.json();
            if s["last_seen"] == later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) {
                assert_eq!(s["on_duty"], true);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{label}: the batch never moved the member: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let track = get(&app, &format!("/api/v1/staff/{member}/track?from={}", enc(&t0.to_rfc3339()))).await.json();
        assert!(track["properties"]["points"].as_u64().unwrap() >= 2, "{label}: {track}");
        let m = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
        assert!(
            counter(&m, "onemap_staff_positions_total{transport=\"mqtt\",outcome=\"malformed\"}") >= 1.0,
            "{label}"
        );
        st.store.close().await;
    }
}
