//! Results kept by their parameters for a short while, and computed once however many identical
//! requests arrive together: the second caller of a running computation waits for it rather than
//! starting its own (ten big screens asking for the same heat tile cost one kernel density).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::OnceCell;

type Slot<V> = Arc<OnceCell<Arc<V>>>;

/// The few most recent results by key, each good for `ttl`.
pub struct Memo<K, V> {
    entries: Mutex<VecDeque<(K, Instant, Slot<V>)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: PartialEq + Clone, V> Memo<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Memo { entries: Mutex::new(VecDeque::new()), ttl, capacity }
    }

    /// The result for `key`: a fresh one, the one a concurrent caller is computing, or the one
    /// `compute` makes. A failed or abandoned computation is not kept: the next caller tries
    /// again (and a waiting caller takes over when the first one's client went away).
    pub async fn get_or_compute<E, F>(&self, key: K, compute: F) -> Result<Arc<V>, E>
    where
        F: Future<Output = Result<Arc<V>, E>>,
    {
        let slot = {
            let mut entries = self.entries.lock();
            // The ttl counts from the first request: a result is never older than that plus its
            // computation.
            entries.retain(|(_, at, _)| at.elapsed() < self.ttl);
            match entries.iter().find(|(k, _, _)| *k == key) {
                Some((_, _, s)) => s.clone(),
                None => {
                    let s: Slot<V> = Arc::new(OnceCell::new());
                    entries.push_front((key, Instant::now(), s.clone()));
                    entries.truncate(self.capacity);
                    s
                }
            }
        };
        slot.get_or_try_init(|| compute).await.cloned()
    }
}

/// Set when the request that started a computation goes away (its future is dropped): long
/// loops check it and stop, so a client that leaves does not keep both cores busy.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Stops a computation between its steps once cancelled.
    pub fn check(&self) -> Result<(), super::AnalysisError> {
        if self.is_cancelled() { Err(super::AnalysisError::Cancelled) } else { Ok(()) }
    }

    /// A guard that cancels when dropped: held by the async side while the blocking work runs.
    pub fn guard(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped.
pub struct CancelOnDrop(Cancel);

impl CancelOnDrop {
    /// The work finished: dropping the guard no longer cancels anything that matters.
    pub fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn identical_concurrent_requests_compute_once() {
        let memo: Arc<Memo<u32, u32>> = Arc::new(Memo::new(Duration::from_secs(60), 4));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (memo, runs) = (memo.clone(), runs.clone());
                tokio::spawn(async move {
                    memo.get_or_compute(7, async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(Arc::new(49))
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 49);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Kept: a later request is answered without computing; another key computes.
        let never = async { Err::<Arc<u32>, _>("computed again") };
        assert_eq!(*memo.get_or_compute(7, never).await.unwrap(), 49);
        assert!(memo.get_or_compute(8, async { Err::<Arc<u32>, _>("computed") }).await.is_err());
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_results_expire() {
        let memo: Memo<u32, u32> = Memo::new(Duration::from_millis(30), 4);
        assert!(memo.get_or_compute(1, async { Err::<Arc<u32>, _>("no") }).await.is_err());
        assert_eq!(*memo.get_or_compute(1, async { Ok::<_, ()>(Arc::new(2)) }).await.unwrap(), 2);
        assert_eq!(*memo.get_or_compute(1, async { Ok::<_, ()>(Arc::new(9)) }).await.unwrap(), 2, "kept");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(*memo.get_or_compute(1, async { Ok::<_, ()>(Arc::new(3)) }).await.unwrap(), 3, "expired");
    }

    #[test]
    fn a_dropped_guard_cancels() {
        let c = Cancel::default();
        c.guard().disarm();
        assert!(!c.is_cancelled());
        drop(c.guard());
        assert!(c.is_cancelled());
    }
}
