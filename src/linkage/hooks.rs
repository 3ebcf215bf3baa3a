//! Calls to outside systems (traffic signals, SMS, the 12345 hotline): a signed JSON POST per
//! delivery, retried with growing pauses until a 2xx answer or the configured give-up time.
//! Deliveries live in the incident's stored state, so a restart resumes them.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Given up after the configured time without a 2xx answer.
    Failed,
}

/// One try at a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The answer's status code; none when no answer came (refused, timed out).
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// One call to make: a webhook of the incident's plan version and the event it announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `Idempotency-Key`: the same on every retry, so the receiver can drop repeats.
    pub key: String,
    /// Which webhook of the plan version (its secret is read from there at each try).
    pub webhook: usize,
    pub url: String,
    pub event: String,
    pub body: Value,
    pub status: DeliveryStatus,
    pub created_at: DateTime<Utc>,
    pub next_at: DateTime<Utc>,
    pub attempts: Vec<Attempt>,
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`, the `X-Onemap-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The pause after `tries` failed tries: 1 s, doubling, at most 5 minutes.
pub fn backoff(tries: usize) -> Duration {
    Duration::from_secs(1u64 << tries.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// The HTTP client of outside calls (TLS through rustls with ring, as MQTT's).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        // An outside system's redirect is not followed: the signature was made for this URL.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("onemap/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client without custom TLS roots builds")
}

/// Makes one try of `d`, signed with `secret`.
pub async fn call(client: &reqwest::Client, d: &Delivery, secret: &str) -> Attempt {
    let body = serde_json::to_vec(&d.body).expect("JSON serialises");
    let at = Utc::now();
    let started = Instant::now();
    let sent = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("idempotency-key", &d.key)
        .header("x-onemap-event", &d.event)
        .header("x-onemap-signature", signature(secret.as_bytes(), &body))
        .body(body)
        .send()
        .await;
    let ms = started.elapsed().as_millis() as u64;
    match sent {
        Ok(r) if r.status().is_success() => Attempt { at, status: Some(r.status().as_u16()), error: None, ms },
        Ok(r) => Attempt { at, status: Some(r.status().as_u16()), error: Some(format!("answered {}", r.status())), ms },
        Err(e) => Attempt { at, status: None, error: Some(describe(e)), ms },
    }
}

/// A short reason for a failed call, without the URL (already on the delivery).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.without_url().to_string()
    }
}

impl Delivery {
    /// Records `a` and decides what comes next: delivered on a 2xx, else another try after the
    /// backoff, or failed once `give_up` has passed since the delivery was made.
    pub fn record(&mut self, a: Attempt, give_up: chrono::Duration) {
        let ok = a.status.is_some_and(|s| (200..300).contains(&s));
        let at = a.at;
        self.attempts.push(a);
        if ok {
            self.status = DeliveryStatus::Delivered;
        } else {
            let next = at + chrono::Duration::from_std(backoff(self.attempts.len())).expect("small");
            if next - self.created_at > give_up {
                self.status = DeliveryStatus::Failed;
            } else {
                self.next_at = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let s: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn a_delivery_retries_then_gives_up() {
        let t0 = Utc::now();
        let mut d = Delivery {
            key: "k".into(),
            webhook: 0,
            url: "http://127.0.0.1:9/".into(),
            event: "incident.created".into(),
            body: Value::Null,
            status: DeliveryStatus::Pending,
            created_at: t0,
            next_at: t0,
            attempts: vec![],
        };
        let fail = |at| Attempt { at, status: Some(503), error: None, ms: 1 };
        d.record(fail(t0), chrono::Duration::seconds(10));
        assert_eq!((d.status, d.next_at), (DeliveryStatus::Pending, t0 + chrono::Duration::seconds(1)));
        d.record(fail(t0 + chrono::Duration::seconds(9)), chrono::Duration::seconds(10));
        assert_eq!(d.status, DeliveryStatus::Failed);
        let mut ok = d.clone();
        ok.status = DeliveryStatus::Pending;
        ok.record(Attempt { at: t0, status: Some(204), error: None, ms: 1 }, chrono::Duration::seconds(10));
        assert_eq!(ok.status, DeliveryStatus::Delivered);
    }
}
