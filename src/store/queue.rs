//! Group commit for workflow steps. Concurrent `update_case` calls queue here and one task writes
//! whatever has queued in one transaction, so a burst of N steps costs one commit (one fsync,
//! one round of transaction bookkeeping) instead of N. Each caller is answered only after the
//! commit that holds its step, so nothing is acknowledged before it is durable.

use std::collections::HashSet;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::log::ChangeRow;
use crate::model::{Case, CaseStep};

/// One workflow step to write: the case at its new version, the version it must still be at,
/// the history step and the change that announces it.
pub struct StepWrite {
    pub case: Case,
    pub expected: i32,
    pub step: CaseStep,
    pub change: ChangeRow,
}

struct Pending {
    write: StepWrite,
    reply: oneshot::Sender<Result<Option<i64>, String>>,
}

/// Most steps in one transaction: enough to amortise a commit, small enough that the first
/// caller in a batch does not wait long for the last.
const MAX_BATCH: usize = 256;

pub struct StepQueue {
    tx: mpsc::Sender<Pending>,
}

impl StepQueue {
    /// Starts the writer task. `write` stores a batch in one transaction and says, per step,
    /// the sequence number of its change when the case was still at its expected version (the
    /// step was applied), else None.
    pub fn start<F, Fut>(write: F) -> StepQueue
    where
        F: Fn(Vec<StepWrite>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Option<i64>>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut waiting: Vec<Pending> = Vec::new();
            loop {
                if waiting.is_empty() {
                    match rx.recv().await {
                        Some(p) => waiting.push(p),
                        None => return,
                    }
                }
                while waiting.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => waiting.push(p),
                        Err(_) => break,
                    }
                }
                // One step per case in a batch: a second step on the same case goes in the next
                // one, so it is checked against the first one's outcome, as if written alone.
                let mut cases = HashSet::new();
                let (batch, later): (Vec<Pending>, Vec<Pending>) =
                    waiting.drain(..).partition(|p| cases.insert(p.write.case.id));
                waiting = later;
                let (writes, replies): (Vec<StepWrite>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.reply)).unzip();
                let n = writes.len();
                match write(writes).await {
                    Ok(applied) if applied.len() == n => {
                        for (reply, ok) in replies.into_iter().zip(applied) {
                            let _ = reply.send(Ok(ok));
                        }
                    }
                    Ok(applied) => {
                        let e = format!("a batch of {n} steps reported {} outcomes", applied.len());
                        replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                    Err(e) => {
                        let e = e.to_string();
                        replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                }
            }
        });
        StepQueue { tx }
    }

    /// Queues one step and waits for the commit that holds it.
    pub async fn submit(&self, write: StepWrite) -> Result<Option<i64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Pending { write, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::Batch)
    }
}
