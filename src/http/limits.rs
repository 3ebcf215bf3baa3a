//! Per-client rate limits on the expensive routes (analyses, exports, density tiles): a token
//! bucket per caller (its token id, or its address when anonymous), so one client cannot queue
//! up work that crowds out the rest. The work itself is bounded by the cost limits of each
//! analysis; this bounds how often a client may ask.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use crate::config::RateQuotas;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Token(String),
    Address(IpAddr),
    Unknown,
}

/// The expensive route classes, each with its own bucket per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `/api/v1/analysis/*` and `/api/v1/export/*`.
    Heavy,
    /// `/tiles/density/*`: a map view asks for a few dozen at once.
    DensityTiles,
}

fn class_of(path: &str) -> Option<Class> {
    if path.starts_with("/api/v1/analysis/") || path.starts_with("/api/v1/export/") {
        Some(Class::Heavy)
    } else if path.starts_with("/tiles/density/") {
        Some(Class::DensityTiles)
    } else {
        None
    }
}

/// The buckets; `None` where the limit is off.
pub struct RateLimits {
    heavy: Option<DefaultKeyedRateLimiter<Client>>,
    density: Option<DefaultKeyedRateLimiter<Client>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(RateQuotas::default())
    }
}

impl RateLimits {
    pub fn new(q: RateQuotas) -> Self {
        let keyed = |burst: u32, per_s: u32| {
            let (burst, per_s) = (NonZeroU32::new(burst)?, NonZeroU32::new(per_s)?);
            Some(RateLimiter::keyed(Quota::per_second(per_s).allow_burst(burst)))
        };
        RateLimits { heavy: keyed(q.heavy_burst, q.heavy_per_s), density: keyed(q.density_burst, q.density_per_s) }
    }

    /// Takes one request of `client` on `path`'s bucket; the seconds to wait when it is empty.
    /// A client the server cannot tell apart (an in-process caller) is not limited.
    fn take(&self, path: &str, client: &Client) -> Result<(), u64> {
        let limiter = match class_of(path) {
            _ if *client == Client::Unknown => return Ok(()),
            None => return Ok(()),
            Some(Class::Heavy) => &self.heavy,
            Some(Class::DensityTiles) => &self.density,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.check_key(client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })?;
        // Forget clients that have been quiet long enough to have a full bucket again.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}

/// The middleware: 429 with `Retry-After` when the caller's bucket for the route is empty.
pub async fn rate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let client = match (req.extensions().get::<Caller>(), req.extensions().get::<ConnectInfo<SocketAddr>>()) {
        (Some(c), _) => Client::Token(c.0.id.to_string()),
        (None, Some(ConnectInfo(addr))) => Client::Address(addr.ip()),
        (None, None) => Client::Unknown,
    };
    if let Err(wait) = st.rate_limits.take(req.uri().path(), &client) {
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("too many expensive requests from this client; retry in {wait} s"),
        )
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
        return resp;
    }
    next.run(req).await
}

/// Shared by every clone of the state.
pub type Shared = Arc<RateLimits>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_with_a_wait_per_client_and_route() {
        let limits = RateLimits::default();
        let me = Client::Token("a".into());
        for _ in 0..RateQuotas::default().heavy_burst {
            assert!(limits.take("/api/v1/analysis/hotspots", &me).is_ok());
        }
        let wait = limits.take("/api/v1/export/cases", &me).unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        // Another client, another route class, and cheap routes are not affected.
        assert!(limits.take("/api/v1/analysis/hotspots", &Client::Token("b".into())).is_ok());
        assert!(limits.take("/tiles/density/12/1/1", &me).is_ok());
        assert!(limits.take("/collections/cases/items", &me).is_ok());
        // Off: no limit.
        let off = RateLimits::new(RateQuotas { heavy_burst: 0, ..RateQuotas::default() });
        assert!((0..100).all(|_| off.take("/api/v1/analysis/hotspots", &me).is_ok()));
    }
}
