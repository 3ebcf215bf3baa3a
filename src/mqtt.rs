//! MQTT ingest (`--mqtt mqtt://host:port`): readings published as JSON `{"at","value"}` (or an
//! array of them) on `onemap/sensors/{code}/readings` go through the same [`Ingest`] as HTTP
//! batches, and staff positions `{"at","lon","lat"}` on `onemap/staff/{code}/positions` through
//! the same [`Positions`] engine. Messages are taken at QoS 1 and acknowledged to the broker only after the store has
//! committed them, so a crash redelivers rather than loses. The session is persistent and the
//! subscription is renewed on every connection, so a broker restart loses neither.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use crate::model::{Position, Reading, Transport};
use crate::sensors::ingest::{Ingest, Rejection, parse_reading};
use crate::staff::positions::{self, Positions, parse_position};

/// The topic filter readings arrive on.
pub const TOPIC: &str = "onemap/sensors/+/readings";
/// The same filter as a shared subscription of the group `onemap` (MQTT 5, and Mosquitto 2 for
/// MQTT 3.1.1 clients): with several replicas subscribed, the broker hands each message to one
/// of them, so every reading is ingested once. Each replica needs its own `client_id`.
pub const SHARED_TOPIC: &str = "$share/onemap/onemap/sensors/+/readings";
/// The shared subscription staff positions arrive on (`onemap/staff/{code}/positions`).
pub const SHARED_STAFF_TOPIC: &str = "$share/onemap/onemap/staff/+/positions";

/// Most messages ingested in one batch (one store transaction): big enough that a batch's fixed
/// cost (a transaction, a change, an fsync) is spread over thousands of positions.
const BATCH: usize = 16_384;

/// A broker address: `mqtt://host[:port][?client_id=ID]` (`tcp://` too); port 1883 by default.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// `mqtts://`: TLS, checked against `ca` (a PEM file) or the system's CA bundle.
    pub tls: bool,
    pub ca: Option<std::path::PathBuf>,
    /// `mqtt://user:password@host`; the password may instead come from `ONEMAP_MQTT_PASSWORD`,
    /// which keeps it out of the process list.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Where TLS looks for CAs when the URL names none (Debian's bundle).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl FromStr for BrokerUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--mqtt {s:?}: {why}; expected mqtt[s]://[user[:password]@]host[:port][?client_id=ID&ca=FILE]")
        };
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://").or_else(|| s.strip_prefix("ssl://")) {
            (true, r)
        } else {
            (
                false,
                s.strip_prefix("mqtt://")
                    .or_else(|| s.strip_prefix("tcp://"))
                    .ok_or_else(|| bad("unsupported scheme"))?,
            )
        };
        let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
        let addr = addr.trim_end_matches('/');
        let (credentials, addr) = match addr.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, addr),
        };
        let (username, password) = match credentials.map(|c| c.split_once(':').unwrap_or((c, ""))) {
            Some(("", _)) => return Err(bad("empty user name")),
            Some((u, p)) => (Some(u.to_string()), (!p.is_empty()).then(|| p.to_string())),
            None => (None, None),
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => (addr, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let mut client_id = "onemap".to_string();
        let mut ca = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("client_id", v)) if !v.is_empty() => client_id = v.to_string(),
                Some(("ca", v)) if tls && !v.is_empty() => ca = Some(v.into()),
                _ => return Err(bad(&format!("unknown option {pair:?}"))),
            }
        }
        Ok(BrokerUrl { host: host.to_string(), port, client_id, tls, ca, username, password })
    }
}

impl BrokerUrl {
    /// The connection options: keep-alive, credentials and TLS as the URL says.
    fn options(&self) -> Result<MqttOptions, String> {
        let mut opts = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        if let Some(user) = &self.username {
            let password =
                self.password.clone().or_else(|| std::env::var("ONEMAP_MQTT_PASSWORD").ok()).unwrap_or_default();
            opts.set_credentials(user.clone(), password);
        }
        if self.tls {
            let path = self.ca.clone().unwrap_or_else(|| SYSTEM_CAS.into());
            let pem = std::fs::read(&path).map_err(|e| format!("MQTT CA file {}: {e}", path.display()))?;
            opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(
                tls_config(&pem).map_err(|e| format!("MQTT CA file {}: {e}", path.display()))?,
            ))));
        }
        Ok(opts)
    }
}

/// A TLS client configuration trusting the CAs of `pem` (ring's provider: no C toolchain
/// beyond what the crate builds itself).
pub fn tls_config(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The sensor code of a readings topic, `onemap/sensors/{code}/readings`.
pub fn topic_sensor(topic: &str) -> Option<&str> {
    let code = topic.strip_prefix("onemap/sensors/")?.strip_suffix("/readings")?;
    (!code.is_empty() && !code.contains('/')).then_some(code)
}

/// The staff code of a positions topic, `onemap/staff/{code}/positions`.
pub fn topic_staff(topic: &str) -> Option<&str> {
    let code = topic.strip_prefix("onemap/staff/")?.strip_suffix("/positions")?;
    (!code.is_empty() && !code.contains('/')).then_some(code)
}

/// The positions of one message: a position object or an array of them.
pub fn parse_positions(topic: &str, payload: &[u8], engine: &Positions) -> Vec<Result<Position, positions::Rejection>> {
    let malformed = |detail: String| vec![Err(positions::reject(positions::Reject::Malformed, detail))];
    let Some(code) = topic_staff(topic) else { return malformed(format!("topic {topic:?}")) };
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return malformed(format!("not JSON: {e}")),
    };
    let (now, slack) = (Utc::now(), engine.future_slack());
    match value {
        serde_json::Value::Array(items) => items.iter().map(|v| parse_position(v, Some(code), now, slack)).collect(),
        v => vec![parse_position(&v, Some(code), now, slack)],
    }
}

/// The readings of one message: a reading object or an array of them.
pub fn parse_message(topic: &str, payload: &[u8], ingest: &Ingest) -> Vec<Result<Reading, Rejection>> {
    let malformed = |detail: String| vec![Err(Rejection { reason: crate::sensors::ingest::Reject::Malformed, detail })];
    let Some(code) = topic_sensor(topic) else { return malformed(format!("topic {topic:?}")) };
    let Ok(text) = std::str::from_utf8(payload) else { return malformed("payload is not UTF-8".into()) };
    let (now, slack) = (Utc::now(), ingest.future_slack());
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
            Ok(items) => items.iter().map(|r| parse_reading(r.get(), Some(code), now, slack)).collect(),
            Err(e) => malformed(format!("not a JSON array of readings: {e}")),
        }
    } else {
        vec![parse_reading(text, Some(code), now, slack)]
    }
}

/// Connects to the broker and ingests until the process ends; reconnects (every second) when
/// the broker goes away.
pub fn spawn(
    url: BrokerUrl,
    ingest: Arc<Ingest>,
    staff: Arc<Positions>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut opts = url.options()?;
    opts.set_keep_alive(Duration::from_secs(10));
    // A persistent session: the broker keeps the subscription and queues readings while we are
    // away (for as long as it runs itself).
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, BATCH);
    // Unbounded, so the event loop never waits on the ingest task: that task waits on the event
    // loop to take its acknowledgements, and a bounded queue here deadlocked the two under a
    // backlog. What bounds it is the broker's window of unacknowledged messages per client
    // (mosquitto's max_inflight_messages), since nothing is acknowledged before its commit.
    let (tx, rx) = mpsc::unbounded_channel::<Publish>();
    tokio::spawn(ingest_loop(rx, client.clone(), ingest.clone(), staff));
    Ok(tokio::spawn(async move {
        tracing::info!(host = %url.host, port = url.port, tls = url.tls, topic = SHARED_TOPIC, "MQTT ingest starting");
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    ingest.metrics().mqtt_connects.inc();
                    tracing::info!(session_present = ack.session_present, "MQTT connected");
                    // A session kept from a version that subscribed to the plain filter would get
                    // every message a second time through it.
                    if ack.session_present
                        && let Err(e) = client.try_unsubscribe(TOPIC)
                    {
                        tracing::warn!(error = %e, "MQTT unsubscribe of the plain filter failed");
                    }
                    for topic in [SHARED_TOPIC, SHARED_STAFF_TOPIC] {
                        if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                            tracing::error!(error = %e, topic, "MQTT subscribe failed");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    ingest.metrics().mqtt_disconnects.inc();
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

/// Takes whatever messages have arrived (up to [`BATCH`]) as one batch, ingests its readings and
/// its positions (each through its engine) and then acknowledges its messages. A batch the
/// store cannot take is retried, never acknowledged unstored.
async fn ingest_loop(
    mut rx: mpsc::UnboundedReceiver<Publish>,
    client: AsyncClient,
    ingest: Arc<Ingest>,
    staff: Arc<Positions>,
) {
    // Acknowledgements go out from their own task, so the next batch is gathered and stored
    // while the broker hears of the last one (still only after its commit).
    let (acks, mut to_ack) = mpsc::unbounded_channel::<Vec<Publish>>();
    tokio::spawn(async move {
        while let Some(batch) = to_ack.recv().await {
            for p in &batch {
                if let Err(e) = client.ack(p).await {
                    tracing::warn!(error = %e, "MQTT ack failed");
                }
            }
        }
    });
    while let Some(first) = rx.recv().await {
        let mut msgs = vec![first];
        while msgs.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => msgs.push(p),
                Err(_) => break,
            }
        }
        let (placed, read): (Vec<&Publish>, Vec<&Publish>) =
            msgs.iter().partition(|p| p.topic.starts_with("onemap/staff/"));
        let started = std::time::Instant::now();
        if !read.is_empty() {
            let readings: Vec<Result<Reading, Rejection>> =
                read.iter().flat_map(|p| parse_message(&p.topic, &p.payload, &ingest)).collect();
            retry("readings", || ingest.ingest(readings.clone(), Transport::Mqtt)).await;
        }
        if !placed.is_empty() {
            let list: Vec<Result<Position, positions::Rejection>> =
                placed.iter().flat_map(|p| parse_positions(&p.topic, &p.payload, &staff)).collect();
            retry("positions", || staff.ingest(list.clone(), Transport::Mqtt)).await;
        }
        tracing::debug!(messages = msgs.len(), ms = started.elapsed().as_secs_f64() * 1e3, "MQTT batch stored");
        if acks.send(msgs).is_err() {
            return;
        }
    }
}

/// Runs `store` until the store takes the batch, backing off up to 10 s between tries.
async fn retry<T, F, Fut>(what: &str, store: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut wait = Duration::from_millis(100);
    while let Err(e) = store().await {
        tracing::error!(error = %e, what, "storing an MQTT batch failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        let u: BrokerUrl = "mqtt://127.0.0.1:1884?client_id=a1".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.client_id.as_str()), ("127.0.0.1", 1884, "a1"));
        assert_eq!("tcp://broker".parse::<BrokerUrl>().unwrap().port, 1883);
        let t: BrokerUrl = "mqtts://ingest:s3cret@broker?ca=/etc/ca.pem".parse().unwrap();
        assert_eq!(
            (t.tls, t.port, t.username.as_deref(), t.password.as_deref()),
            (true, 8883, Some("ingest"), Some("s3cret"))
        );
        assert_eq!(t.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let u: BrokerUrl = "mqtt://ingest@broker:1883".parse().unwrap();
        assert_eq!((u.username.as_deref(), u.password, u.tls), (Some("ingest"), None, false));
        for bad in ["http://x", "mqtt://", "mqtt://h:99999", "mqtt://h?x=1", "mqtt://h?ca=x.pem", "mqtt://@h"] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_name_one_sensor() {
        assert_eq!(topic_sensor("onemap/sensors/SEN-WL-0001/readings"), Some("SEN-WL-0001"));
        assert_eq!(topic_sensor("onemap/sensors//readings"), None);
        assert_eq!(topic_sensor("onemap/sensors/a/b/readings"), None);
        assert_eq!(topic_sensor("other/SEN/readings"), None);
    }
}
