//! What a background job did with the items it found due, one round at a time, and the run
//! of rounds until nothing is due ([`until_settled`]).

use persistence::PersistenceError;

/// What one round of a background job did with the items due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round<K = ()> {
    /// Items it completed.
    pub done: usize,
    /// Items it left because another transaction held their balance (`SKIP LOCKED`).
    pub busy: usize,
    /// Items it failed on (an error, not a lock held elsewhere): the run's later rounds leave
    /// them out, so that items failing every time cannot keep the job from those behind them.
    pub failed: Vec<K>,
}

impl<K> Default for Round<K> {
    fn default() -> Self {
        Self {
            done: 0,
            busy: 0,
            failed: Vec::new(),
        }
    }
}

/// What a background job did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Completed it.
    Done,
    /// Nothing left to do: another instance or a request already did it.
    Settled,
    /// Another transaction holds its balance; a later round tries again.
    Busy,
}

impl<K: std::fmt::Debug> Round<K> {
    /// Adds one item's step.
    pub fn add(&mut self, step: Step) {
        match step {
            Step::Done => self.done += 1,
            Step::Settled => {}
            Step::Busy => self.busy += 1,
        }
    }

    /// Records that `job` failed on `item`: logged and counted here, once per run, since the
    /// run's later rounds leave the item out; the next run tries it again.
    pub fn fail(&mut self, job: &'static str, item: K, error: &dyn std::fmt::Display) {
        tracing::warn!(job, ?item, error = %error, "a background job failed on an item; skipped until its next run");
        crate::engine::metrics::worker_failure(job);
        self.failed.push(item);
    }
}


/// Rounds in a row that may find only busy items before a run leaves them to the next run.
const BUSY_ROUNDS: u32 = 50;

/// Failed items a run leaves out of its reads at most; past that, the run ends (its reads would
/// grow too long) and the next run starts over.
const MAX_FAILED: usize = 1_000;

/// Runs `round` until a round finds nothing due. A round that found only items held by
/// another transaction is not the end: two instances skipping each other's locked balances
/// could otherwise both stop with an item still due (each holding the lock for an item the
/// other had already settled when the other came to it). Such rounds are retried after a
/// short pause, up to `BUSY_ROUNDS` in a row; an item busy for longer waits for the next run.
/// Each round is given the items that failed in the run so far, to leave out of its read:
/// items that fail every time, read first, would otherwise fill every round and keep the job
/// from the items behind them.
pub async fn until_settled<K, F, Fut>(
    job: &'static str,
    mut round: F,
) -> Result<usize, PersistenceError>
where
    K: Clone,
    F: FnMut(Vec<K>) -> Fut,
    Fut: Future<Output = Result<Round<K>, PersistenceError>>,
{
    let (mut total, mut busy_rounds) = (0, 0);
    let mut failed: Vec<K> = Vec::new();
    loop {
        let r = round(failed.clone()).await?;
        total += r.done;
        let moved_on = r.done > 0 || !r.failed.is_empty();
        failed.extend(r.failed);
        if !moved_on && r.busy == 0 {
            return Ok(total);
        }
        if failed.len() >= MAX_FAILED {
            tracing::warn!(
                job,
                failed = failed.len(),
                "a background job failed on too many items; the rest waits for its next run"
            );
            return Ok(total);
        }
        if moved_on {
            busy_rounds = 0;
        } else {
            busy_rounds += 1;
            if busy_rounds > BUSY_ROUNDS {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

