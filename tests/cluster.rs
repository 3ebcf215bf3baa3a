//! Three replicas behind HAProxy over one PostgreSQL, started by `scripts/cluster` as an operator
//! would: a write through the balancer is readable on every replica (at once with
//! `Onemap-Min-Seq`) and announced with the same SSE id by each; one sensor's readings arriving at
//! two replicas raise one alarm and open one case; SIGKILL of the lease holder under load loses
//! no acknowledged write and the singleton jobs move; a PostgreSQL restart under load leaves every
//! replica serving again without a restart of its own.
//!
//! PostgreSQL here is a private instance (initdb in a temporary directory, on a free port), so
//! restarting it disturbs no other test and no database of the developer's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::remote::{RemoteEvents, report};
use common::*;
use geo::InteriorPoint;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_onemap");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A PostgreSQL server of its own, stopped and removed when dropped.
struct PgInstance {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

/// Runs a PostgreSQL program as the `postgres` user when we are root (the server refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PgInstance {
    fn start() -> PgInstance {
        // The newest installed server with PostGIS (scripts/test installs it for that version).
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql (scripts/test installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        versions.sort();
        let bin = versions.pop().expect("an initdb");
        let dir = std::env::temp_dir().join(format!("onemap-cluster-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status();
        let port = free_port_run(1);
        let out = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let pg = PgInstance { dir, bin, port };
        pg.ctl(&["start"]);
        pg
    }

    fn ctl(&self, what: &[&str]) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .args(what)
            .args(["-w", "-m", "fast", "-t", "60", "-o", &opts, "-l"])
            .arg(self.dir.join("server.log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl {what:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first of `n` consecutive free ports on 127.0.0.1.
fn free_port_run(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 30_000);
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free consecutive ports");
}

/// The cluster `scripts/cluster --detach` started, stopped with `scripts/cluster stop` when
/// dropped.
struct Cluster {
    dir: PathBuf,
    balancer: String,
    replicas: Vec<String>,
}

impl Cluster {
    fn start(pg: &str, dir: &Path) -> Cluster {
        let port = free_port_run(4);
        let out = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/cluster"))
            .args(["--detach", "--pg", pg, "--port", &port.to_string(), "--bin", BIN, "--scale", "0.05", "--dir"])
            .arg(dir)
            // The test reads through the balancer without a token, as the demo does.
            .args(["--", "--public-read"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "scripts/cluster: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let url = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} URL in {stdout}"))
                .to_string()
        };
        Cluster {
            dir: dir.to_path_buf(),
            balancer: url("balancer"),
            replicas: (1..=3).map(|i| url(&format!("replica{i}"))).collect(),
        }
    }

    fn pid(&self, replica: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("replica-{}.pid", replica + 1))).unwrap().trim().to_string()
    }

    fn kill(&self, replica: usize) {
        assert!(Command::new("kill").args(["-KILL", &self.pid(replica)]).status().unwrap().success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/cluster"))
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .status();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// `/ready` of one replica: (status, body); (0, null) when it does not answer.
async fn ready(base: &str) -> (u16, Value) {
    match client().get(format!("{base}/ready")).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// The replicas (by index, among `alive`) that hold the singleton lease.
async fn leaders(c: &Cluster, alive: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for &i in alive {
        if ready(&c.replicas[i]).await.1["leader"] == true {
            out.push(i);
        }
    }
    out
}

/// Polls `check` every 100 ms for up to `limit`; the time it took, or None.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < limit {
        if check().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Reports cases through the balancer from `writers` tasks until `stop`; returns the ids and
/// sequence numbers of those acknowledged (201) and how many were not.
fn load(
    balancer: String,
    token: String,
    at: (f64, f64),
    class: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<(i64, i64)>, usize)> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (balancer, token, class, stop) = (balancer.clone(), token.clone(), class.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut failed) = (Vec::new(), 0usize);
                let http = client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"class_code": class, "lon": at.0, "lat": at.1, "crs": "cgcs2000",
                        "description": "负载", "source": "supervisor"});
                    match http.post(format!("{balancer}/api/v1/cases")).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            let seq: i64 = r.headers()["onemap-seq"].to_str().unwrap().parse().unwrap();
                            acked.push((r.json::<Value>().await.unwrap()["id"].as_i64().unwrap(), seq));
                        }
                        Ok(r) => {
                            // Refused while a replica or the database is going away: never a
                            // write that was acknowledged, and always a clear status.
                            assert!(
                                [502, 503, 504].contains(&r.status().as_u16()),
                                "unexpected status {} under failover: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (acked, failed)
            }));
        }
        let (mut acked, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (a, f) = t.await.unwrap();
            acked.extend(a);
            failed += f;
        }
        (acked, failed)
    })
}

/// The JSON at `url` once the replica applied change `seq`.
async fn read_at(url: &str, seq: i64) -> Value {
    let r = client().get(url).header("onemap-min-seq", seq.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url} at {seq}");
    r.json().await.unwrap()
}

/// Every acknowledged case is in the store, read through `base` once it applied the last one.
async fn all_present(base: &str, acked: &[(i64, i64)]) {
    let last = acked.iter().map(|a| a.1).max().unwrap();
    let http = client();
    for (id, _) in acked {
        let r = http
            .get(format!("{base}/collections/cases/items/{id}"))
            .header("onemap-min-seq", last.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged case {id} is missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_converge_and_survive_failures() {
    let pg = PgInstance::start();
    let admin = pg.url("postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query("CREATE DATABASE onemap").execute(&mut conn).await.unwrap();
    drop(conn);
    let store = pg.url("onemap");
    let dir = std::env::temp_dir().join(format!("onemap-cluster-{}", std::process::id()));
    let c = Cluster::start(&store, &dir);
    let token = token_cli(&store, "supervisor");
    let device = token_cli(&store, "device");
    let city = small_city();
    let p = city.grids[3].geom.interior_point().unwrap();
    let class = city.event_classes[0].code.to_string();
    let http = client();

    // 1. A write through the balancer: readable on every replica, at once when the read names
    // the write's sequence number, and announced with the same id by every replica's feed.
    let mut feeds = Vec::new();
    for r in &c.replicas {
        feeds.push(RemoteEvents::open(r, None).await);
    }
    let (id, seq) = report(&c.balancer, &token, p.x(), p.y(), &class).await;
    for r in &c.replicas {
        let got = http
            .get(format!("{r}/api/v1/cases/{id}"))
            .bearer_auth(&token)
            .header("onemap-min-seq", seq.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{r}: case {id} with Onemap-Min-Seq {seq}");
        assert_eq!(got.json::<Value>().await.unwrap()["id"], id);
    }
    for (r, feed) in c.replicas.iter().zip(feeds.iter_mut()) {
        let seen = feed.until("case.created", |d| d["id"] == id).await;
        assert_eq!(seen.last().unwrap().0, Some(seq), "{r}: the same change has the same SSE id everywhere");
    }
    // A browser moved to another replica resumes there from the id it saw.
    let mut moved = RemoteEvents::open(&c.replicas[2], Some(&(seq - 1).to_string())).await;
    let seen = moved.until("case.created", |_| true).await;
    assert_eq!((seen.last().unwrap().0, &seen.last().unwrap().2["id"]), (Some(seq), &json!(id)));
    // Without the header, every replica has it shortly (the figure is in BENCHMARKS.md).
    for r in &c.replicas {
        let url = format!("{r}/collections/cases/items/{id}");
        let took =
            within(Duration::from_secs(5), || async { http.get(&url).send().await.unwrap().status() == 200 }).await;
        assert!(took.is_some(), "{r} never applied case {id}");
    }
    // A sequence number this replica cannot reach: 503 with Retry-After, not a stale answer.
    let far = http
        .get(format!("{}/api/v1/cases/{id}", c.replicas[0]))
        .bearer_auth(&token)
        .query(&[("min_seq", seq + 1_000_000)])
        .send()
        .await
        .unwrap();
    assert_eq!(far.status(), 503);
    assert_eq!(far.headers()["retry-after"], "1");
    let bad = http.get(format!("{}/collections", c.replicas[0])).header("onemap-min-seq", "soon").send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // 2. One sensor's red readings arriving at two replicas at once: one alarm, one case.
    let sensor = http.get(format!("{}/collections/sensors/items?limit=1", c.balancer)).send().await.unwrap();
    let sensor: Value = sensor.json().await.unwrap();
    let code = sensor["features"][0]["properties"]["code"].as_str().unwrap().to_string();
    let th: Value =
        http.get(format!("{}/api/v1/sensors/{code}", c.balancer)).send().await.unwrap().json().await.unwrap();
    let th = &th["thresholds"];
    // Past red by the orange-red step: well inside the kind's plausible range either way.
    let (r, o) = (th["red"].as_f64().unwrap(), th["orange"].as_f64().unwrap());
    let red = if th["direction"] == "below" { r - (r - o).abs() } else { r + (r - o).abs() };
    let hold = th["min_duration_s"].as_i64().unwrap() + 1;
    let now = chrono::Utc::now();
    let sends = (0..2).map(|k| {
        // Each replica its own readings (a millisecond apart), each enough to raise the alarm.
        let readings: Vec<Value> = [now - chrono::Duration::seconds(hold), now]
            .iter()
            .map(|t| json!({"sensor": code, "at": (*t + chrono::Duration::milliseconds(k)).to_rfc3339(), "value": red}))
            .collect();
        http.post(format!("{}/api/v1/sensors/readings", c.replicas[k as usize]))
            .bearer_auth(&device)
            .json(&json!({"readings": readings}))
            .send()
    });
    // Both replicas' answers carry the sequence number to wait for; the larger covers both.
    let mut head = 0;
    for r in futures::future::join_all(sends).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        head = head.max(r.headers()["onemap-seq"].to_str().unwrap().parse::<i64>().unwrap());
    }
    let alarms = read_at(&format!("{}/api/v1/alarms?active=true", c.replicas[1]), head).await;
    let mine: Vec<&Value> =
        alarms["alarms"].as_array().unwrap().iter().filter(|a| a["sensor"] == code.as_str()).collect();
    assert_eq!(mine.len(), 1, "one active alarm for {code}: {mine:?}");
    let cases = read_at(&format!("{}/collections/cases/items?source=sensor&limit=1000", c.replicas[2]), head).await;
    let opened = cases["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["description"].as_str().is_some_and(|d| d.contains(code.as_str())))
        .filter(|f| {
            let at = f["properties"]["reported_at"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            at.is_some_and(|t| t > now - chrono::Duration::minutes(5))
        })
        .count();
    assert_eq!(opened, 1, "the red alarm of {code} opens one case");
    assert!(mine[0]["case_id"].is_i64(), "{:?}", mine[0]);

    // 3. SIGKILL of the lease holder under load: no acknowledged write lost, HAProxy stops
    // sending to it, and the singleton jobs move to another replica.
    let all = [0usize, 1, 2];
    let holders = leaders(&c, &all).await;
    assert_eq!(holders.len(), 1, "exactly one replica holds the lease: {holders:?}");
    let dead = holders[0];
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != dead).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = load(c.balancer.clone(), token.clone(), (p.x(), p.y()), class.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.kill(dead);
    let moved = within(Duration::from_secs(15), || async { leaders(&c, &alive).await.len() == 1 }).await;
    println!("the lease moved {moved:?} after the SIGKILL of replica {}", dead + 1);
    assert!(moved.is_some(), "no replica took over the singleton lease");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writers.await.unwrap();
    println!("under SIGKILL: {} writes acknowledged, {failed} refused", acked.len());
    assert!(acked.len() > 10, "the load wrote next to nothing: {}", acked.len());
    all_present(&c.replicas[alive[0]], &acked).await;
    // The balancer has dropped the dead replica: requests through it succeed again.
    for _ in 0..12 {
        assert_eq!(http.get(format!("{}/collections/grids", c.balancer)).send().await.unwrap().status(), 200);
    }

    // 4. PostgreSQL goes away under load: writes are refused with 503 (never acknowledged),
    // /ready says the store is unreachable, and once it is back every replica serves again
    // without being restarted, no acknowledged write lost.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = load(c.balancer.clone(), token.clone(), (p.x(), p.y()), class.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    pg.ctl(&["stop"]);
    let direct = &c.replicas[alive[0]];
    let body = json!({"class_code": class, "lon": p.x(), "lat": p.y(), "description": "停库", "source": "supervisor"});
    let refused = http.post(format!("{direct}/api/v1/cases")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 503, "a write while PostgreSQL is down");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.json::<Value>().await.unwrap()["type"], "/problems/store-unavailable");
    let (status, body) = ready(direct).await;
    assert_eq!((status, body["store"].as_str()), (503, Some("unreachable")), "{body}");
    assert_eq!(http.get(format!("{direct}/health")).send().await.unwrap().status(), 200, "liveness stays up");
    pg.ctl(&["start"]);
    let back = within(Duration::from_secs(20), || async {
        let mut ok = true;
        for &i in &alive {
            ok &= ready(&c.replicas[i]).await.0 == 200;
        }
        ok
    })
    .await;
    println!("every replica ready {back:?} after PostgreSQL came back");
    assert!(back.is_some(), "replicas not ready within 20 s of PostgreSQL coming back: {:?}", {
        let mut s = Vec::new();
        for &i in &alive {
            s.push(ready(&c.replicas[i]).await);
        }
        s
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writers.await.unwrap();
    println!("across the outage: {} writes acknowledged, {failed} refused", acked.len());
    assert!(!acked.is_empty());
    // Writes go through again, and every one acknowledged is there.
    let (after, _) = report(&c.balancer, &token, p.x(), p.y(), &class).await;
    all_present(&c.replicas[alive[1]], &acked).await;
    assert!(acked.iter().all(|a| a.0 < after));
    let relead = within(Duration::from_secs(15), || async { leaders(&c, &alive).await.len() == 1 }).await;
    assert!(relead.is_some(), "no replica holds the lease after the restart");
}

/// A second process on the same GeoPackage file (`serve --read-only`) follows the writer's log
/// and refuses writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_process_follows_the_geopackage_writer() {
    let store = fresh_gpkg("read-only");
    common::remote::seed(&store);
    let token = token_cli(&store, "supervisor");
    let (mut writer, w) = serve(&["--store", &store, "--public-read"]);
    let (mut reader, r) = serve(&["--store", &store, "--read-only", "--public-read"]);
    let city = small_city();
    let p = city.grids[3].geom.interior_point().unwrap();
    let class = city.event_classes[0].code.to_string();
    let mut feed = RemoteEvents::open(&r, None).await;
    let (id, seq) = report(&w, &token, p.x(), p.y(), &class).await;
    let http = client();
    let got = http.get(format!("{r}/collections/cases/items/{id}?min_seq={seq}")).send().await.unwrap();
    assert_eq!(got.status(), 200, "the read-only process applied the writer's change {seq}");
    let seen = feed.until("case.created", |d| d["id"] == id).await;
    assert_eq!(seen.last().unwrap().0, Some(seq), "the same SSE id as the writer's");
    let body = json!({"class_code": class, "lon": p.x(), "lat": p.y(), "description": "只读", "source": "supervisor"});
    let refused = http.post(format!("{r}/api/v1/cases")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.json::<Value>().await.unwrap()["type"], "/problems/read-only");
    let (status, body) = ready(&r).await;
    assert_eq!((status, body["read_only"].as_bool(), body["leader"].as_bool()), (200, Some(true), Some(false)));
    assert_eq!(ready(&w).await.1["leader"], true, "the writer runs the periodic jobs");
    for c in [&mut writer, &mut reader] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}
