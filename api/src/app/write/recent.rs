//! How often a keyed write was a replay lately, which decides the way the next one takes.
//!
//! A group-committed write can find out in two ways that its key was used before: from the
//! replay path ([`replay_if_used`](super::replay_if_used): one indexed read, batched with the
//! look-ups beside it, outside any transaction), or inside its batch, which meets every key
//! anyway (the allocation batch's opening statement on PostgreSQL, the batch's key claim
//! otherwise) and answers a used one from its record. Looking up first costs
//! every new key a round trip through the replay path's queue and the database: measured on
//! the allocation bench, a tenth to a fifth of an allocation's CPU, and 0.2–0.4 ms of its
//! latency at one client.
//! Going to the batch first costs a replay twice what the replay path does (a transaction, and
//! a place in a batch of writes).
//!
//! So each operation keeps the share of replays among its recent requests (an exponentially
//! decaying average over about the last [`WINDOW`] requests), and looks keys up first only
//! while that share is above [`LOOK_UP_FIRST`]: in a retry storm, when most requests are
//! replays, replays take the cheap path; in ordinary traffic, where a replay is rare, new keys
//! take the short one. Either way every request gets the same answer, since both paths decide
//! a used key from its committed record; only the cost differs. The share is this instance's
//! own, kept without locks: a lost update shifts it by one request.

use std::sync::atomic::{AtomicU32, Ordering};

/// The share of replays as a fraction of this.
const ONE: u32 = 1 << 16;

/// About how many recent requests the share is taken over (the weight of each is 1/WINDOW).
pub const WINDOW: u32 = 64;

/// Above this share of replays (a quarter), keys are looked up before their batch.
pub const LOOK_UP_FIRST: u32 = ONE / 4;

/// The share of replays among an operation's recent requests (see the module's documentation).
#[derive(Debug, Default)]
pub struct RecentReplays(AtomicU32);

impl RecentReplays {
    /// Whether replays are common enough lately that a key is best looked up first.
    pub fn look_up_first(&self) -> bool {
        self.0.load(Ordering::Relaxed) > LOOK_UP_FIRST
    }

    /// Counts one request's outcome in: whether it was a replay.
    pub fn record(&self, replayed: bool) {
        let old = self.0.load(Ordering::Relaxed);
        let new = old - old / WINDOW + if replayed { ONE / WINDOW } else { 0 };
        self.0.store(new.min(ONE), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_turn_the_look_up_on_and_new_keys_turn_it_off() {
        let recent = RecentReplays::default();
        assert!(!recent.look_up_first(), "no replay seen yet");
        for _ in 0..WINDOW / 2 {
            recent.record(true);
        }
        assert!(recent.look_up_first(), "a run of replays");
        for _ in 0..WINDOW {
            recent.record(false);
        }
        assert!(!recent.look_up_first(), "a window of new keys after them");
    }

    #[test]
    fn rare_replays_do_not_turn_it_on() {
        let recent = RecentReplays::default();
        for i in 0..10 * WINDOW {
            recent.record(i % 10 == 0);
        }
        assert!(!recent.look_up_first(), "one replay in ten");
        for _ in 0..10 * WINDOW {
            recent.record(true);
        }
        assert!(recent.look_up_first(), "only replays");
        assert!(recent.0.load(Ordering::Relaxed) <= ONE);
    }
}
