//! Group commit: concurrent single writes gathered into one transaction.
//!
//! A commit is the expensive part of a write (a WAL flush, and a round trip per statement
//! before it). Bulk issuance already makes one commit carry a thousand items with set-based
//! statements; this gives single writes the same. A handler parses and checks its request,
//! then [`Queue::submit`]s it and waits for its answer. One writer task per operation takes
//! whatever is queued (up to `LOYALTY_GROUP_COMMIT_MAX`), runs it as one batch (one multi-row
//! key claim, one statement per table, one commit; see [`Batch::run`]) and answers every request
//! through its own channel. There is no timer: a request that arrives while the writer is idle
//! is taken at once, alone; requests that arrive while a batch runs form the next one.
//!
//! Batches may overlap: once a batch holds every lock it will take (an allocation batch after
//! its first statement, a redemption batch before its commit) it says so
//! ([`Overlap::locked`]) and the writer starts the next batch on another connection while the
//! first one writes and commits: at most `overlap` batches in flight behind the one starting
//! (`LOYALTY_GROUP_COMMIT_OVERLAP`, default 1), and beside one in flight only a batch of at
//! least `overlap_from` requests, since smaller batches cost more per request than overlapping
//! gains (docs/DESIGN.md). The rules stay those of two transactions: the same key in two batches is
//! settled by its unique index, a balance in both by its row lock, and every request is
//! answered only after its own batch committed. So that the next batch does not simply wait for
//! the locks of the one in flight, a request whose [`Batch::footprint`] (its key, its account)
//! meets that of a batch in flight waits for the batch after.
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

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

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

/// How a batch tells its writer that only its commit is left, so the next batch may start.
/// Saying it more than once, or never (a batch that ends without a commit), is harmless: the
/// writer also takes the batch's end for it.
#[derive(Clone, Default)]
pub struct Overlap(Arc<std::sync::Mutex<Option<oneshot::Sender<()>>>>);

impl Overlap {
    fn new() -> (Self, oneshot::Receiver<()>) {
        let (said, heard) = oneshot::channel();
        (Self(Arc::new(std::sync::Mutex::new(Some(said)))), heard)
    }

    /// The batch holds every lock it will take (at the latest: it is about to commit), so a
    /// batch whose requests share none of its footprints may run its statements now.
    pub fn locked(&self) {
        let said = self.0.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some(said) = said {
            let _ = said.send(());
        }
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

    /// What the request locks that a batch running at the same time would wait for (its key,
    /// its account), hashed: a request that shares one with a batch in flight waits for the
    /// next batch. Only a hint: the database's locks and unique indexes decide either way.
    fn footprint(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Runs `jobs` and answers each of them, except those that must wait for the next batch
    /// (a key already in this one), which it returns. Calls `overlap.locked()` when only
    /// its locks are taken.
    fn run(
        context: Arc<Self::Context>,
        jobs: Vec<Job<Self>>,
        overlap: Overlap,
    ) -> impl Future<Output = Vec<Job<Self>>> + Send;
}

/// The hash of `value`, for a [`Batch::footprint`].
pub fn footprint_of(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// The queue of one kind of request, and its worker tasks.
pub struct Queue<R: Batch> {
    sender: mpsc::Sender<Job<R>>,
}

/// How a queue's writers run their batches.
#[derive(Debug, Clone, Copy)]
pub struct Writers {
    /// Requests per batch, at most.
    pub max_batch: usize,
    /// Writer tasks taking batches from the queue.
    pub writers: usize,
    /// Batches that may be in flight (holding their locks, writing, committing) while the next
    /// runs its statements (0: none).
    pub overlap: usize,
    /// The fewest requests a batch starts with while another is in flight.
    pub overlap_from: usize,
    /// How long a batch may take before it is abandoned.
    pub deadline: Duration,
}

impl<R: Batch> Queue<R> {
    /// Starts `how.writers` tasks taking batches from one queue. They hold the application
    /// weakly and stop when it is gone and the queue is empty.
    pub fn spawn(context: Weak<R::Context>, how: Writers) -> Self {
        let how = Writers {
            max_batch: how.max_batch.max(1),
            writers: how.writers.max(1),
            ..how
        };
        let (sender, receiver) = mpsc::channel(how.max_batch.saturating_mul(4));
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..how.writers {
            tokio::spawn(worker(receiver.clone(), context.clone(), how));
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

/// A batch that holds its locks, writing and committing.
struct InFlight<R: Batch> {
    task: JoinHandle<Ran<R>>,
    footprint: HashSet<u64>,
}

/// A request taken from the queue, with its footprint (computed once: the writer looks at it
/// each time it decides whether a batch can start).
struct Taken<R: Batch> {
    job: Job<R>,
    footprint: Vec<u64>,
}

impl<R: Batch> Taken<R> {
    fn new(job: Job<R>) -> Self {
        let footprint = job.request.footprint();
        Self { job, footprint }
    }

    fn all(jobs: Vec<Job<R>>) -> impl Iterator<Item = Self> {
        jobs.into_iter().map(Self::new)
    }
}

/// What a batch's task ends with: the requests it carried to the next batch, or `None` when
/// it passed its deadline and was abandoned.
type Ran<R> = Option<Vec<Job<R>>>;

/// The requests a batch's task carried, after logging how it ended.
fn carried<R: Batch>(
    ended: Result<Ran<R>, tokio::task::JoinError>,
    deadline: Duration,
) -> Vec<Job<R>> {
    match ended {
        Ok(Some(carried)) => carried,
        // A batch past its deadline (a connection that stopped answering: a paused server, a
        // half-open socket) is abandoned: its requests' outcome is unknown, as after a cut
        // COMMIT, and their retries find out.
        Ok(None) => {
            crate::engine::metrics::batch_abandoned();
            tracing::warn!(
                deadline_ms = deadline.as_millis(),
                "a group commit batch passed its deadline and was abandoned"
            );
            Vec::new()
        }
        // A panic inside a batch drops its jobs (their submitters answer 503) and nothing else.
        Err(e) => {
            tracing::error!(error = %e, "a group commit batch panicked");
            Vec::new()
        }
    }
}

/// Takes what is queued (waiting only when nothing can run), runs it, and again; starts the
/// next batch as soon as the last one holds its locks, while at most `how.overlap` are in
/// flight.
async fn worker<R: Batch>(
    receiver: Arc<Mutex<mpsc::Receiver<Job<R>>>>,
    context: Weak<R::Context>,
    how: Writers,
) {
    // Requests taken from the queue and not yet in a batch: carried by a batch (a key twice),
    // or waiting for a batch in flight whose footprint they share.
    let mut jobs: Vec<Taken<R>> = Vec::new();
    let mut in_flight: VecDeque<InFlight<R>> = VecDeque::new();
    // Takes the first request queued (None: the queue is closed) and what follows it.
    let take = |receiver: Arc<Mutex<mpsc::Receiver<Job<R>>>>| async move {
        let mut receiver = receiver.lock().await;
        let first = receiver.recv().await?;
        let mut taken = vec![first];
        while taken.len() < how.max_batch {
            match receiver.try_recv() {
                Ok(job) => taken.push(job),
                Err(_) => break,
            }
        }
        Some(taken)
    };
    loop {
        while in_flight.front().is_some_and(|b| b.task.is_finished()) {
            if let Some(done) = in_flight.pop_front() {
                jobs.extend(Taken::all(carried(done.task.await, how.deadline)));
            }
        }
        let busy: HashSet<u64> = in_flight
            .iter()
            .flat_map(|b| b.footprint.iter().copied())
            .collect();
        let free = |t: &Taken<R>| t.footprint.iter().all(|f| !busy.contains(f));
        // A batch starts alone whatever its size; beside one in flight only with enough
        // requests, since smaller batches cost more per request than the overlap gains.
        let alone = in_flight.is_empty();
        let ready = |jobs: &[Taken<R>]| {
            let n = jobs.iter().filter(|j| free(j)).count();
            n > 0 && (alone || n >= how.overlap_from)
        };
        if ready(&jobs) {
            // A worker with requests to run must not wait for the queue: another worker may
            // hold it, waiting for requests that will not come while these wait. It adds what
            // is queued only if the queue is free.
            if let Ok(mut receiver) = receiver.try_lock() {
                while jobs.len() < how.max_batch {
                    match receiver.try_recv() {
                        Ok(job) => jobs.push(Taken::new(job)),
                        Err(_) => break,
                    }
                }
            }
        } else {
            // Nothing can run until a request comes or a batch in flight ends (with the
            // requests it carried, and freeing those that wait for it).
            let taken = match in_flight.front_mut() {
                None => take(receiver.clone()).await,
                Some(oldest) => tokio::select! {
                    taken = take(receiver.clone()) => taken,
                    ended = &mut oldest.task => {
                        jobs.extend(Taken::all(carried(ended, how.deadline)));
                        in_flight.pop_front();
                        continue;
                    }
                },
            };
            match taken {
                Some(taken) => jobs.extend(Taken::all(taken)),
                // The queue is closed: what is in flight ends, then the worker.
                None => match in_flight.pop_front() {
                    Some(oldest) => {
                        jobs.extend(Taken::all(carried(oldest.task.await, how.deadline)))
                    }
                    None if jobs.is_empty() => return,
                    None => {}
                },
            }
            if !ready(&jobs) {
                continue;
            }
        }
        let Some(context) = context.upgrade() else {
            for t in jobs.drain(..) {
                t.job.answer(Err(Unanswered("shutting down").into()));
            }
            return;
        };
        // A request that would wait for the locks of a batch in flight waits for the next.
        let mut batch = Vec::new();
        let mut footprint = HashSet::new();
        for t in std::mem::take(&mut jobs) {
            if batch.len() < how.max_batch && free(&t) {
                footprint.extend(t.footprint.iter().copied());
                batch.push(t.job);
            } else {
                jobs.push(t);
            }
        }
        tracing::debug!(
            size = batch.len(),
            in_flight = in_flight.len(),
            "group commit"
        );
        let (overlap, locked) = Overlap::new();
        let deadline = how.deadline;
        let mut task = tokio::spawn(async move {
            tokio::time::timeout(deadline, R::run(context, batch, overlap))
                .await
                .ok()
        });
        if how.overlap == 0 {
            jobs.extend(Taken::all(carried(task.await, how.deadline)));
            continue;
        }
        let said = tokio::select! {
            said = locked => said.is_ok(),
            ended = &mut task => {
                jobs.extend(Taken::all(carried(ended, how.deadline)));
                continue;
            }
        };
        if said {
            // It holds its locks: on with the next batch while it writes and commits.
            in_flight.push_back(InFlight { task, footprint });
        } else {
            // It dropped its `Overlap` without a word: it runs to its end alone.
            jobs.extend(Taken::all(carried(task.await, how.deadline)));
        }
        while in_flight.len() > how.overlap {
            if let Some(oldest) = in_flight.pop_front() {
                jobs.extend(Taken::all(carried(oldest.task.await, how.deadline)));
            }
        }
    }
}

#[cfg(test)]
#[path = "group_commit_tests.rs"]
mod tests;
