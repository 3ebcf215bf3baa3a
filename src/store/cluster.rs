//! What several servers over one PostgreSQL need from it beyond the tables: a wake-up when
//! another process commits (`LISTEN/NOTIFY` on the log's channel) and one holder of the singleton
//! lease (a session-level advisory lock on a connection of its own). Both run as background tasks
//! that reconnect by themselves, so a PostgreSQL restart or failover needs no restart here.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::log::CHANNEL;

/// The singleton lease's advisory lock key (the bytes spell "onemapsg").
const LEASE_KEY: i64 = 0x6f6e_656d_6170_7367;
/// How often a candidate asks for the lease, and the holder checks it still has its session:
/// a dead holder's lease moves within about this long (its session ends with its socket).
const LEASE_EVERY: Duration = Duration::from_secs(1);
/// A holder whose session does not answer within this long steps down: it can no longer tell
/// whether PostgreSQL still counts it as the holder.
const LEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The background tasks of one store, stopped when it closes.
#[derive(Default)]
pub(crate) struct Tasks(parking_lot::Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.lock().push(tokio::spawn(task));
    }

    pub fn stop(&self) {
        for t in self.0.lock().drain(..) {
            t.abort();
        }
    }
}

/// Listens on the log's channel and publishes the highest sequence number announced. Missed
/// notifications (while reconnecting) cost nothing but latency: followers poll the log as well.
pub(crate) async fn listen(pool: PgPool, tx: Arc<watch::Sender<i64>>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection failed; retrying");
                tokio::time::sleep(LEASE_EVERY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(LEASE_EVERY).await;
            continue;
        }
        loop {
            // recv reconnects by itself after a lost connection; an error means it could not.
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(seq) = n.payload().parse::<i64>() {
                        tx.send_if_modified(|s| {
                            let newer = seq > *s;
                            if newer {
                                *s = seq;
                            }
                            newer
                        });
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                    tokio::time::sleep(LEASE_EVERY).await;
                    break;
                }
            }
        }
    }
}

/// Competes for the singleton lease until the store closes, publishing whether this process
/// holds it. PostgreSQL releases a session-level advisory lock when the session ends, so a
/// holder that dies (or loses its connection) frees it at once; a holder that cannot reach its
/// session steps down before anyone else could take over.
pub(crate) async fn lease(opts: PgConnectOptions, tx: Arc<watch::Sender<bool>>) {
    loop {
        tx.send_if_modified(|held| std::mem::replace(held, false));
        let mut conn = match tokio::time::timeout(LEASE_TIMEOUT, PgConnection::connect_with(&opts)).await {
            Ok(Ok(c)) => c,
            _ => {
                tokio::time::sleep(LEASE_EVERY).await;
                continue;
            }
        };
        // Ask until granted, or until the session fails.
        let granted = loop {
            let ask = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(LEASE_KEY);
            match tokio::time::timeout(LEASE_TIMEOUT, ask.fetch_one(&mut conn)).await {
                Ok(Ok(true)) => break true,
                Ok(Ok(false)) => tokio::time::sleep(LEASE_EVERY).await,
                _ => break false,
            }
        };
        if granted {
            tracing::info!("holding the singleton lease: this replica runs the periodic jobs");
            tx.send_replace(true);
            loop {
                tokio::time::sleep(LEASE_EVERY).await;
                let alive = tokio::time::timeout(LEASE_TIMEOUT, conn.ping()).await;
                if !matches!(alive, Ok(Ok(()))) {
                    tracing::warn!("lost the session that holds the singleton lease: stepping down");
                    break;
                }
            }
        }
        // Closing the session (or dropping a dead one) releases the lock on PostgreSQL's side.
        tx.send_replace(false);
        let _ = tokio::time::timeout(LEASE_TIMEOUT, conn.close()).await;
    }
}
