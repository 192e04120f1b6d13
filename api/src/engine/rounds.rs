//! What a background job did with the items it found due, one round at a time.

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

