//! Group commit. Concurrent writes of one kind (workflow steps, new cases) queue here and one
//! task writes whatever has queued in one transaction, so a burst of N writes costs one commit
//! (one fsync, one turn at the change log's lock) instead of N. Each caller is answered only
//! after the commit that holds its write, so nothing is acknowledged before it is durable.

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

/// One new case to write: the case, its first history step and its change (the store gives
/// the id and names the change after it).
pub struct NewCase {
    pub case: Case,
    pub first: CaseStep,
    pub change: ChangeRow,
}

/// A write the queue takes, and the one key a batch may hold once (a second write with the
/// same key goes in the next batch, so it is checked against the first one's outcome).
pub trait Batched: Send + 'static {
    /// What the caller is answered.
    type Out: Send + 'static;
    fn key(&self) -> Option<i64>;
}

impl Batched for StepWrite {
    /// The sequence number of the step's change, or None when the case had moved on.
    type Out = Option<i64>;
    fn key(&self) -> Option<i64> {
        Some(self.case.id)
    }
}

impl Batched for NewCase {
    /// The new case's id and the sequence number of its change.
    type Out = (i64, i64);
    fn key(&self) -> Option<i64> {
        None
    }
}

/// Why a batch failed, as each of its writers hears it.
#[derive(Clone)]
struct BatchFailure {
    detail: String,
    unavailable: bool,
}

struct Pending<W: Batched> {
    write: W,
    reply: oneshot::Sender<Result<W::Out, BatchFailure>>,
}

/// Most writes in one transaction: enough to amortise a commit, small enough that the first
/// caller in a batch does not wait long for the last.
const MAX_BATCH: usize = 256;

pub struct Queue<W: Batched> {
    tx: mpsc::Sender<Pending<W>>,
}

/// The group commits of a store's case writes: workflow steps and new cases, each in its
/// batches, so both backends answer `create_case` and `update_case` the same way.
pub struct CaseWrites {
    steps: Queue<StepWrite>,
    cases: Queue<NewCase>,
}

impl CaseWrites {
    /// Starts both writer tasks over the backend's batch writers.
    pub fn start<S, SF, C, CF>(steps: S, cases: C) -> CaseWrites
    where
        S: Fn(Vec<StepWrite>) -> SF + Send + 'static,
        SF: Future<Output = Result<Vec<Option<i64>>, StoreError>> + Send,
        C: Fn(Vec<NewCase>) -> CF + Send + 'static,
        CF: Future<Output = Result<Vec<(i64, i64)>, StoreError>> + Send,
    {
        CaseWrites { steps: Queue::start(steps), cases: Queue::start(cases) }
    }

    /// See `Store::create_case`.
    pub async fn create(&self, case: &Case, first: &CaseStep, change: ChangeRow) -> Result<(i64, i64), StoreError> {
        self.cases.submit(NewCase { case: case.clone(), first: first.clone(), change }).await
    }

    /// See `Store::update_case`.
    pub async fn step(
        &self,
        case: &Case,
        expected: i32,
        step: &CaseStep,
        change: ChangeRow,
    ) -> Result<Option<i64>, StoreError> {
        self.steps.submit(StepWrite { case: case.clone(), expected, step: step.clone(), change }).await
    }
}

impl<W: Batched> Queue<W> {
    /// Starts the writer task. `write` stores a batch in one transaction and answers each write
    /// in order.
    pub fn start<F, Fut>(write: F) -> Queue<W>
    where
        F: Fn(Vec<W>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<W::Out>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Pending<W>>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut waiting: Vec<Pending<W>> = Vec::new();
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
                let mut keys = HashSet::new();
                let (batch, later): (Vec<Pending<W>>, Vec<Pending<W>>) =
                    waiting.drain(..).partition(|p| p.write.key().is_none_or(|k| keys.insert(k)));
                waiting = later;
                let (writes, replies): (Vec<W>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.reply)).unzip();
                let n = writes.len();
                match write(writes).await {
                    Ok(outs) if outs.len() == n => {
                        for (reply, out) in replies.into_iter().zip(outs) {
                            let _ = reply.send(Ok(out));
                        }
                    }
                    Ok(outs) => {
                        let detail = format!("a batch of {n} writes reported {} outcomes", outs.len());
                        let e = BatchFailure { detail, unavailable: false };
                        replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                    Err(e) => {
                        let e = BatchFailure { detail: e.to_string(), unavailable: e.is_unavailable() };
                        replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                }
            }
        });
        Queue { tx }
    }

    /// Queues one write and waits for the commit that holds it.
    pub async fn submit(&self, write: W) -> Result<W::Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Pending { write, reply }).await.map_err(|_| StoreError::Closed)?;
        answer
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|f| StoreError::Batch { detail: f.detail, unavailable: f.unavailable })
    }
}
