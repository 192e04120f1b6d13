//! Keyed writes group-committed: many single writes (allocations, redemptions), each with its
//! own key, claimed together, decided under the lock order and committed in one transaction.
//! This is the batch form of [`super::execute`]: the same steps (claim or replay, decide, effect
//! with its stored answer, commit), and each request answered exactly what it would have been
//! answered alone.

use std::sync::Arc;

use crate::app::write::Outcome;
use crate::app::{AppError, AppState};
use crate::engine::group_commit::{Batch, Job, Overlap, footprint_of};

/// What a batch of single keyed writes (allocations, redemptions) leaves in each slot: the
/// request's answer, once decided.
pub type Slot = Option<Result<Outcome, AppError>>;

/// A single write with one idempotency key, which runs as a batch by [`run_keyed`].
pub trait KeyedWrite: Sized + Send + Sync + 'static {
    /// The organisation and key: two requests with the same never share a batch.
    fn scope(&self) -> (i64, domain::idempotency::IdempotencyKey);

    /// What the request means, compared with what its key was first used for.
    fn meaning(&self) -> &domain::idempotency::RequestMeaning;

    /// The account whose balance row the request locks, as the request names it
    /// (organisation, program, customer), if it locks one.
    fn account(&self) -> Option<(i64, i64, &domain::customer::CustomerRef)> {
        None
    }

    /// What the request locks, hashed (see [`Batch::footprint`]): its key and its account.
    fn locks(&self) -> Vec<u64> {
        let key = footprint_of(self.scope());
        match self.account() {
            Some(account) => vec![key, footprint_of(account)],
            None => vec![key],
        }
    }

    /// One attempt at the batch in one transaction, filling `answers` as they are decided
    /// (refusals and replays before the commit, effects after it), and telling `overlap` when
    /// only its commit is left.
    fn run_batch<'a>(
        state: &'a AppState,
        requests: &'a [&'a Self],
        answers: &'a mut [Slot],
        overlap: &'a Overlap,
    ) -> impl Future<Output = Result<(), persistence::PersistenceError>> + Send + 'a;

    /// The request in a transaction of its own.
    fn alone<'a>(
        state: &'a AppState,
        request: &'a Self,
    ) -> impl Future<Output = Result<Outcome, AppError>> + Send + 'a;
}

/// A single keyed write that may be group-committed, as each of them runs: while replays are
/// common lately (`recent`, see [`super::recent`]) a key used before is replayed (or refused)
/// from the replay path, without a transaction; otherwise the request joins the next batch of
/// `queue` when group commit is on and `batched` allows it (a request that writes other rows
/// than a batch does runs alone), or runs alone, and a used key is answered there from its
/// record.
pub async fn submit<R: KeyedWrite>(
    state: &AppState,
    operation: domain::idempotency::Operation,
    (queue, recent): (
        &crate::engine::group_commit::Queue<R>,
        &super::recent::RecentReplays,
    ),
    request: R,
    batched: impl AsyncFnOnce(&R) -> Result<bool, AppError>,
) -> Result<Outcome, AppError> {
    if recent.look_up_first() {
        let (org_id, key) = request.scope();
        let replayed =
            super::replay_if_used(state, org_id, operation, &key, request.meaning()).await?;
        if let Some(replayed) = replayed {
            recent.record(true);
            return Ok(replayed);
        }
    }
    let outcome = if state.settings.group_commit_max > 1 && batched(&request).await? {
        queue.submit(request).await
    } else {
        R::alone(state, &request).await
    };
    recent.record(matches!(outcome, Ok(Outcome::Replayed(_))));
    outcome
}

/// Every keyed write runs in batches by [`run_keyed`].
impl<R: KeyedWrite> Batch for R {
    type Context = AppState;
    type Error = AppError;
    type Answer = Outcome;

    fn footprint(&self) -> Vec<u64> {
        self.locks()
    }

    async fn run(state: Arc<AppState>, jobs: Vec<Job<Self>>, overlap: Overlap) -> Vec<Job<Self>> {
        run_keyed(state, jobs, overlap).await
    }
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
    Fut: Future<Output = Result<Result<P, AppError>, persistence::PersistenceError>>,
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
                    super::replay_or_refuse(record, operation, &k.key, k.meaning)
                        .map(Outcome::Replayed),
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

/// The records a batch inserts its keys with (the allocation batch on PostgreSQL writes each
/// key once, with its answer).
pub use persistence::idempotency::{KnownOutcome, OrgKey};

/// The close of a keyed batch, in its transaction before the commit: each created request's
/// answer stored on its key record (`(record, answer, resource id)`, 201), and the keys of the
/// requests refused after their claim released.
pub async fn store_and_release(
    tx: &persistence::Tx,
    stored: &[(i64, serde_json::Value, Option<String>)],
    released: &[i64],
) -> Result<(), persistence::PersistenceError> {
    use persistence::idempotency;
    idempotency::complete_many(tx, 201, stored).await?;
    idempotency::release_many(tx, released).await
}

/// The records of keys of `operation` a batch found used, by organisation and key, each
/// answered by [`super::replay_or_refuse`] unless the retention forgets it (`forget_before`).
pub async fn used_records(
    tx: &persistence::Tx,
    operation: domain::idempotency::Operation,
    used: &[(i64, &str)],
) -> Result<
    std::collections::HashMap<(i64, String), persistence::idempotency::RecordRow>,
    persistence::PersistenceError,
> {
    let wanted: Vec<(i64, domain::idempotency::Operation, &str)> = used
        .iter()
        .map(|(org_id, key)| (*org_id, operation, *key))
        .collect();
    Ok(persistence::idempotency::get_keys(tx, &wanted)
        .await?
        .into_iter()
        .map(|r| ((r.org_id, r.key.clone()), r))
        .collect())
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
pub async fn run_keyed<R>(state: Arc<AppState>, jobs: Vec<Job<R>>, overlap: Overlap) -> Vec<Job<R>>
where
    R: KeyedWrite + Batch<Context = AppState, Answer = Outcome, Error = AppError>,
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
        match R::run_batch(&state, &requests, &mut answers, &overlap).await {
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
                *answer = Some(Err(AppError::from(match &e {
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
    R: KeyedWrite + Batch<Context = AppState, Answer = Outcome, Error = AppError>,
{
    for job in jobs {
        let state = state.clone();
        tokio::spawn(async move {
            let answer = match state.alone_runs.clone().acquire_owned().await {
                Ok(_permit) => R::alone(&state, &job.request).await,
                Err(_) => Err(AppError::Unavailable("shutting down".into())),
            };
            job.answer(answer);
        });
    }
}
