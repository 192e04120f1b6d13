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

/// Why a queue could not answer a request: its writer stopped, or dropped the request without
/// an answer (the batch panicked, possibly after its commit, so the outcome is unknown).
#[derive(Debug, Clone, Copy)]
pub struct Unanswered(pub &'static str);

/// A request waiting in a queue, with the channel its answer goes back on.
pub struct Job<R: Batch> {
    pub request: R,
    reply: oneshot::Sender<Result<R::Answer, R::Error>>,
}

impl<R: Batch> Job<R> {
    /// Sends the answer; a client that went away meanwhile is not an error.
    pub fn answer(self, result: Result<R::Answer, R::Error>) {
        let _ = self.reply.send(result);
    }
}

/// How one kind of request runs as a batch.
pub trait Batch: Sized + Send + 'static {
    /// What the batch runs with (the application's state).
    type Context: Send + Sync + 'static;
    /// What each request is answered (on success).
    type Answer: Send + 'static;
    /// What each request is answered on failure.
    type Error: From<Unanswered> + Send + 'static;

    /// Runs `jobs` and answers each of them, except those that must wait for the next batch
    /// (a key already in this one), which it returns.
    fn run(
        context: Arc<Self::Context>,
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
        context: Weak<R::Context>,
        max_batch: usize,
        workers: usize,
        deadline: Duration,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let (sender, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            tokio::spawn(worker(
                receiver.clone(),
                context.clone(),
                max_batch,
                deadline,
            ));
        }
        Self { sender }
    }

    /// Queues `request` and waits for its answer.
    pub async fn submit(&self, request: R) -> Result<R::Answer, R::Error> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job { request, reply })
            .await
            .map_err(|_| Unanswered("the writer has stopped"))?;
        // The worker dropped the job without answering: it panicked, possibly after a commit,
        // so the outcome is unknown. A retry with the same key finds out.
        answer
            .await
            .map_err(|_| Unanswered("the batch ended without an answer"))?
    }
}

/// Takes what is queued (waiting only when nothing is), runs it, and again. With several
/// workers, one gathers the next batch while another's is with the database.
async fn worker<R: Batch>(
    receiver: Arc<Mutex<mpsc::Receiver<Job<R>>>>,
    context: Weak<R::Context>,
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
        let Some(context) = context.upgrade() else {
            for job in jobs.drain(..) {
                job.answer(Err(Unanswered("shutting down").into()));
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
        let running = tokio::spawn(R::run(context, batch));
        let abandon = running.abort_handle();
        match tokio::time::timeout(deadline, running).await {
            Ok(Ok(carried)) => jobs = carried,
            Ok(Err(e)) => tracing::error!(error = %e, "a group commit batch panicked"),
            Err(_) => {
                abandon.abort();
                crate::engine::metrics::batch_abandoned();
                tracing::warn!(
                    deadline_ms = deadline.as_millis(),
                    "a group commit batch passed its deadline and was abandoned"
                );
            }
        }
    }
}
