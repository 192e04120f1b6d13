//! Group commit: concurrent single writes gathered into one transaction.
//!
//! A commit is the expensive part of a write (a WAL flush, and a round trip per statement
//! before it). Bulk issuance already makes one commit carry a thousand items with set-based
//! statements; this gives single writes the same. A handler parses and checks its request,
//! then [`Queue::submit`]s it and waits for its answer. One writer task per operation takes
//! whatever is queued (up to `LOYALTY_GROUP_COMMIT_MAX`), runs it as one batch (one multi-row
//! key claim, one statement per table, one commit; see [`Batch::run`]) and answers every request
//! through its own channel. There is no timer: a request that arrives while the writer is idle
//! is taken at once, alone; requests that arrive while a batch commits form the next one.
//!
//! What a batch must keep (each [`Batch`] implementation says how it does):
//! - every request answered exactly what it would have been answered alone;
//! - a definite failure of one request removes only that request (its key stays unclaimed);
//! - the same key twice in a batch: the second waits for the next batch, where it replays;
//! - an unknown commit outcome answers 503 (retryable) to every request of the batch;
//! - a batch that passes its deadline (a connection that stopped answering) is abandoned and
//!   answers 503 (retryable, outcome unknown) to every request it had not answered, so a
//!   stalled connection costs one batch, not every write of the instance.
//!
//! Several instances each run their own writers: the database's unique indexes and
//! conditional writes stay the arbiters, exactly as for single transactions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::ApiError;
use crate::startup::AppState;

/// A request waiting in a queue, with the channel its answer goes back on.
pub struct Job<R: Batch> {
    pub request: R,
    reply: oneshot::Sender<Result<R::Answer, ApiError>>,
}

impl<R: Batch> Job<R> {
    /// Sends the answer; a client that went away meanwhile is not an error.
    pub fn answer(self, result: Result<R::Answer, ApiError>) {
        let _ = self.reply.send(result);
    }
}

/// How one kind of request runs as a batch.
pub trait Batch: Sized + Send + 'static {
    /// What each request is answered (on success).
    type Answer: Send + 'static;

    /// Runs `jobs` and answers each of them, except those that must wait for the next batch
    /// (a key already in this one), which it returns.
    fn run(
        state: Arc<AppState>,
        jobs: Vec<Job<Self>>,
    ) -> impl Future<Output = Vec<Job<Self>>> + Send;
}

/// The queue of one kind of request, and its worker tasks.
pub struct Queue<R: Batch> {
    sender: mpsc::Sender<Job<R>>,
}

impl<R: Batch> Queue<R> {
    /// Starts `workers` tasks taking batches of at most `max_batch` from one queue, each batch
    /// abandoned after `deadline`. They hold the application weakly and stop when it is gone
    /// and the queue is empty.
    pub fn spawn(
        state: Weak<AppState>,
        max_batch: usize,
        workers: usize,
        deadline: Duration,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let (sender, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tokio::spawn(worker(receiver.clone(), state.clone(), max_batch, deadline));
        }
        Self { sender }
    }

    /// Queues `request` and waits for its answer.
    pub async fn submit(&self, request: R) -> Result<R::Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job { request, reply })
            .await
            .map_err(|_| ApiError::Unavailable("the writer has stopped".into()))?;
        // The worker dropped the job without answering: it panicked, possibly after a commit,
        // so the outcome is unknown. A retry with the same key finds out.
        answer
            .await
            .map_err(|_| ApiError::Unavailable("the batch ended without an answer".into()))?
    }
}

/// Takes what is queued (waiting only when nothing is), runs it, and again. With several
/// workers, one gathers the next batch while another's is with the database.
async fn worker<R: Batch>(
    receiver: Arc<Mutex<mpsc::Receiver<Job<R>>>>,
    state: Weak<AppState>,
    max_batch: usize,
    deadline: Duration,
) {
    let mut jobs: Vec<Job<R>> = Vec::new();
    loop {
        // A worker with jobs carried from its last batch must not wait for the queue: another
        // worker may hold it, waiting for requests that will not come while these wait. It adds
        // what is queued only if the queue is free.
        let queue = if jobs.is_empty() {
            Some(receiver.lock().await)
        } else {
            receiver.try_lock().ok()
        };
        if let Some(mut receiver) = queue {
            if jobs.is_empty() {
                match receiver.recv().await {
                    Some(job) => jobs.push(job),
                    None => return,
                }
            }
            while jobs.len() < max_batch {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let Some(state) = state.upgrade() else {
            for job in jobs.drain(..) {
                job.answer(Err(ApiError::Unavailable("shutting down".into())));
            }
            return;
        };
        let batch = std::mem::take(&mut jobs);
        tracing::debug!(size = batch.len(), "group commit");
        // A panic inside a batch drops its jobs (their submitters answer 503) and nothing
        // else: the writer goes on with the next batch. So does a batch past its deadline
        // (a connection that stopped answering: a paused server, a half-open socket), which
        // is abandoned; its requests' outcome is unknown, as after a cut COMMIT, and their
        // retries find out.
        let running = tokio::spawn(R::run(state, batch));
        let abandon = running.abort_handle();
        match tokio::time::timeout(deadline, running).await {
            Ok(Ok(carried)) => jobs = carried,
            Ok(Err(e)) => tracing::error!(error = %e, "a group commit batch panicked"),
            Err(_) => {
                abandon.abort();
                crate::metrics::batch_abandoned();
                tracing::warn!(
                    deadline_ms = deadline.as_millis(),
                    "a group commit batch passed its deadline and was abandoned"
                );
            }
        }
    }
}

/// What a batch of single keyed writes (allocations, redemptions) leaves in each slot: the
/// request's answer, once decided.
pub type Slot = Option<Result<crate::idempotent::Outcome, ApiError>>;

/// A single write with one idempotency key, which runs as a batch by [`run_keyed`].
pub trait KeyedWrite: Sized + Send + Sync + 'static {
    /// The organisation and key: two requests with the same never share a batch.
    fn scope(&self) -> (i64, domain::idempotency::IdempotencyKey);

    /// What the request means, compared with what its key was first used for.
    fn meaning(&self) -> &domain::idempotency::RequestMeaning;

    /// One attempt at the batch in one transaction, filling `answers` as they are decided
    /// (refusals and replays before the commit, effects after it).
    fn run_batch<'a>(
        state: &'a AppState,
        requests: &'a [&'a Self],
        answers: &'a mut [Slot],
    ) -> impl Future<Output = Result<(), persistence::PersistenceError>> + Send + 'a;

    /// The request in a transaction of its own.
    fn alone<'a>(
        state: &'a AppState,
        request: &'a Self,
    ) -> impl Future<Output = Result<crate::idempotent::Outcome, ApiError>> + Send + 'a;
}

/// The opening of a keyed batch, in `tx`: claims every request's key of `operation` at once;
/// answers the requests whose key was used before (replayed or refused) and those `prepare`
/// refuses (whose records are returned, to be released); returns the claimed requests
/// `(index, record id, what prepare made of them)`, in request order.
pub async fn claim_and_prepare<'r, R, P, F, Fut>(
    state: &AppState,
    tx: &persistence::Tx,
    operation: domain::idempotency::Operation,
    requests: &[&'r R],
    answers: &mut [Slot],
    now: chrono::DateTime<chrono::Utc>,
    mut prepare: F,
) -> Result<(Vec<(usize, i64, P)>, Vec<i64>), persistence::PersistenceError>
where
    R: KeyedWrite,
    F: FnMut(&'r R) -> Fut,
    Fut: Future<Output = Result<Result<P, ApiError>, persistence::PersistenceError>>,
{
    use persistence::idempotency::{self, Claim, OrgKey};
    let keys: Vec<OrgKey> = requests
        .iter()
        .map(|r| {
            let (org_id, key) = r.scope();
            OrgKey {
                org_id,
                key,
                meaning: r.meaning(),
                outcome: None,
            }
        })
        .collect();
    let claims = idempotency::claim_keys(tx, operation, &keys, now, state.forget_before()).await?;
    let mut released = Vec::new();
    let mut work = Vec::with_capacity(requests.len());
    for (i, (r, k)) in requests.iter().zip(&keys).enumerate() {
        match claims.get(&(k.org_id, k.key.as_str().to_owned())) {
            Some(Claim::Existing(record)) => {
                answers[i] = Some(
                    crate::idempotent::replay_or_refuse(record, operation, &k.key, k.meaning)
                        .map(crate::idempotent::Outcome::Replayed),
                );
            }
            Some(Claim::Claimed { id }) => match prepare(r).await? {
                Ok(p) => work.push((i, *id, p)),
                Err(refused) => {
                    answers[i] = Some(Err(refused));
                    released.push(*id);
                }
            },
            None => {
                return Err(persistence::PersistenceError::Other(
                    "a key of the batch was neither claimed nor found".into(),
                ));
            }
        }
    }
    Ok((work, released))
}

/// The course of a batch of keyed writes: a key already in the batch waits for the next one
/// (where it replays, or is evaluated afresh if the first failed definitely, as a concurrent
/// duplicate would); a deadlock or serialization failure retries the batch (twice); an
/// unreachable database or an unknown commit answers 503 to every request not yet decided.
/// Any other failure cannot be pinned on one request (a lock held elsewhere past the batch's
/// short lock wait, a balance past the largest `BIGINT`), so each request not yet decided
/// runs alone, as does a request the batch left undecided (a key forgotten by the retention
/// while the batch read it). Requests run alone off the writer ([`run_alone`]), so a request
/// that waits costs only itself.
///
/// What a batch answers before its commit must not count anything the batch itself writes
/// (replays of committed keys, refusals by the catalog, unknown customers): such an answer is
/// what the request gets alone, whatever becomes of the batch. An answer that does count the
/// batch's own effects (a redemption short of points after the debits before it) is given
/// only once the batch committed.
pub async fn run_keyed<R>(state: Arc<AppState>, jobs: Vec<Job<R>>) -> Vec<Job<R>>
where
    R: KeyedWrite + Batch<Answer = crate::idempotent::Outcome>,
{
    use persistence::PersistenceError;
    let mut seen = std::collections::HashSet::new();
    let (mut batch, mut carried) = (Vec::new(), Vec::new());
    for job in jobs {
        if seen.insert(job.request.scope()) {
            batch.push(job);
        } else {
            carried.push(job);
        }
    }
    let requests: Vec<&R> = batch.iter().map(|j| &j.request).collect();
    let mut answers: Vec<Slot> = Vec::new();
    let mut conflicts = 0;
    let outcome = loop {
        answers.clear();
        answers.resize_with(requests.len(), || None);
        match R::run_batch(&state, &requests, &mut answers).await {
            Err(PersistenceError::Conflict(_)) if conflicts < 2 => conflicts += 1,
            other => break other,
        }
    };
    match outcome {
        Ok(()) => {}
        Err(e @ (PersistenceError::Unavailable(_) | PersistenceError::CommitUnknown(_)))
        | Err(e @ PersistenceError::Conflict(_)) => {
            tracing::warn!(error = %e, size = requests.len(), "group commit failed");
            let message = e.to_string();
            for answer in answers.iter_mut().filter(|a| a.is_none()) {
                *answer = Some(Err(ApiError::from(match &e {
                    PersistenceError::CommitUnknown(_) => {
                        PersistenceError::CommitUnknown(message.clone())
                    }
                    _ => PersistenceError::Unavailable(message.clone()),
                })));
            }
        }
        Err(e) => {
            tracing::info!(error = %e, size = requests.len(), "group commit: deciding each request alone");
        }
    }
    let mut alone = Vec::new();
    for (job, answer) in batch.into_iter().zip(answers) {
        match answer {
            Some(answer) => job.answer(answer),
            None => alone.push(job),
        }
    }
    run_alone(&state, alone);
    carried
}

/// Runs each of `jobs` in a transaction of its own, off the writer: the writer goes on with
/// the next batch while they wait (for a lock held elsewhere, say). At most
/// `AppState::alone_runs` of them run at once, so they never take more than their share of
/// the pool.
fn run_alone<R>(state: &Arc<AppState>, jobs: Vec<Job<R>>)
where
    R: KeyedWrite + Batch<Answer = crate::idempotent::Outcome>,
{
    for job in jobs {
        let state = state.clone();
        tokio::spawn(async move {
            let answer = match state.alone_runs.clone().acquire_owned().await {
                Ok(_permit) => R::alone(&state, &job.request).await,
                Err(_) => Err(ApiError::Unavailable("shutting down".into())),
            };
            job.answer(answer);
        });
    }
}
