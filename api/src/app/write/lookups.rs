//! Looking up used keys for the replay path, many at a time.
//!
//! A replay is answered from one indexed read of its key, and concurrent reads share one query.
//! Where that query runs decides what a replay costs: each time a request's answer crosses
//! from one thread to another, a thread is woken and the other may sleep, and on a small
//! machine these hand-offs cost more than the query. So each HTTP worker thread looks keys up
//! on a connection of its own ([`serve_worker`]): the request, its look-up and its answer stay
//! on the thread that read the request. A look-up made anywhere else (a worker's thread not
//! yet connected, a task of the shared runtime, SQLite) goes through the shared queue,
//! [`AppState::key_lookups`], whose writer tasks answer a batch per query the same way.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use domain::idempotency::Operation;
use persistence::idempotency::{self, ReplayRow};
use persistence::{PersistenceError, Pool};
use tokio::sync::{Notify, oneshot};

use crate::app::{AppError, AppState};
use crate::engine::group_commit::{Batch, Job, Overlap, Unanswered};

/// A look-up of one key's committed record, batched with the look-ups queued beside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyLookup {
    pub org_id: i64,
    pub operation: Operation,
    pub key: String,
}

/// What a look-up finds: the key's committed record, if it has one.
pub type Found = Option<Arc<ReplayRow>>;

/// The most look-ups one query carries.
const MOST: usize = 256;

/// The committed record of `lookup`'s key, if it has one: looked up on this thread's own
/// connection when it has one, else through the shared queue.
pub async fn find(state: &AppState, lookup: KeyLookup) -> Result<Found, AppError> {
    match queue_here(state, lookup) {
        Ok(answer) => answer
            .await
            .map_err(|_| AppError::from(Unanswered("the look-up ended without an answer")))?,
        Err(lookup) => state.key_lookups.submit(lookup).await,
    }
}

/// The records of `lookups`' keys (each asked once), by look-up, in one query on `conn`.
async fn look_up(
    conn: &Pool,
    lookups: impl Iterator<Item = &KeyLookup>,
) -> Result<HashMap<KeyLookup, Arc<ReplayRow>>, PersistenceError> {
    let mut seen = HashSet::new();
    let wanted: Vec<(i64, Operation, &str)> = lookups
        .filter(|l| seen.insert(*l))
        .map(|l| (l.org_id, l.operation, l.key.as_str()))
        .collect();
    Ok(idempotency::replay_keys(conn, &wanted)
        .await?
        .into_iter()
        .filter_map(|r| {
            let lookup = KeyLookup {
                org_id: r.org_id,
                operation: Operation::parse(&r.operation)?,
                key: r.key.clone(),
            };
            Some((lookup, Arc::new(r)))
        })
        .collect())
}

/// The same error for each request of a failed look-up batch.
fn copy_error(e: &PersistenceError) -> AppError {
    AppError::from(if e.is_transient() {
        PersistenceError::Unavailable(e.to_string())
    } else {
        PersistenceError::Other(e.to_string())
    })
}

/// The shared queue's batches: one query on the shared pool.
impl Batch for KeyLookup {
    type Context = AppState;
    type Error = AppError;
    type Answer = Found;

    async fn run(state: Arc<AppState>, jobs: Vec<Job<Self>>, _: Overlap) -> Vec<Job<Self>> {
        match look_up(state.db.conn(), jobs.iter().map(|j| &j.request)).await {
            Ok(found) => {
                for job in jobs {
                    let record = found.get(&job.request).cloned();
                    job.answer(Ok(record));
                }
            }
            Err(e) => {
                for job in jobs {
                    job.answer(Err(copy_error(&e)));
                }
            }
        }
        Vec::new()
    }
}

/// A look-up waiting on this thread, with where its answer goes.
type Waiting = (KeyLookup, oneshot::Sender<Result<Found, AppError>>);

/// The look-ups of one thread: its queue and the task that answers it.
struct Local {
    /// The application it serves (its address), should a thread ever serve two.
    state: usize,
    waiting: RefCell<Vec<Waiting>>,
    wake: Notify,
}

thread_local! {
    static HERE: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
}

/// Queues `lookup` on this thread, if it looks keys up itself for `state`; otherwise gives it
/// back. Nothing is held across an `.await`, so the caller's future stays `Send`.
fn queue_here(
    state: &AppState,
    lookup: KeyLookup,
) -> Result<oneshot::Receiver<Result<Found, AppError>>, KeyLookup> {
    let here = HERE.with(|h| h.borrow().clone());
    match here {
        Some(local) if local.state == std::ptr::from_ref(state) as usize => {
            let (reply, answer) = oneshot::channel();
            local.waiting.borrow_mut().push((lookup, reply));
            local.wake.notify_one();
            Ok(answer)
        }
        _ => Err(lookup),
    }
}

/// This thread's registration, undone when the task that answers its look-ups ends (its
/// runtime stops): look-ups go to the shared queue again, and those still waiting here are
/// dropped, which answers them 503.
struct Registered(Rc<Local>);

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = HERE.try_with(|h| h.borrow_mut().take());
        self.0.waiting.borrow_mut().clear();
    }
}

/// Looks keys up for the requests of this thread, on a connection opened here, until the
/// thread's runtime ends. Spawned once on each HTTP worker thread (a single-threaded runtime);
/// until its connection is open, and on SQLite, this thread's look-ups use the shared queue.
pub async fn serve_worker(state: Arc<AppState>) {
    // Unreachable at start: tried again after 1 s, 2 s, 4 s … up to 30 s, so an outage does
    // not write a warning a second per worker.
    let mut pause = std::time::Duration::from_secs(1);
    let pool = loop {
        match state.db.open_reads(1).await {
            Ok(Some(pool)) => break pool,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "a worker's look-up connection failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
        }
    };
    let local = Rc::new(Local {
        state: Arc::as_ptr(&state) as usize,
        waiting: RefCell::new(Vec::new()),
        wake: Notify::new(),
    });
    HERE.with(|h| *h.borrow_mut() = Some(local.clone()));
    let _registered = Registered(local.clone());
    let deadline = state.settings.batch_deadline();
    loop {
        local.wake.notified().await;
        loop {
            let batch: Vec<Waiting> = {
                let mut waiting = local.waiting.borrow_mut();
                let n = waiting.len().min(MOST);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let found =
                tokio::time::timeout(deadline, look_up(&pool, batch.iter().map(|(l, _)| l))).await;
            for (lookup, reply) in batch {
                let answer = match &found {
                    Ok(Ok(found)) => Ok(found.get(&lookup).cloned()),
                    Ok(Err(e)) => Err(copy_error(e)),
                    Err(_) => Err(AppError::from(PersistenceError::Unavailable(
                        "a key look-up passed its deadline".into(),
                    ))),
                };
                let _ = reply.send(answer);
            }
        }
    }
}
