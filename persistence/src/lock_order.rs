//! The lock order, in the one place every transaction goes through.
//!
//! Every transaction that takes more than one kind of lock takes them in this order, and a path
//! that waits for one holds none of a later kind (docs/DESIGN.md, "The lock order"):
//!
//! 1. idempotency keys ([`Level::Keys`]);
//! 2. existing balances ([`Level::Balances`]);
//! 3. customers enrolled by the transaction ([`Level::Enrolments`]), then their new balances.
//!
//! Each [`Tx`](crate::Tx) carries a [`LockOrder`] that the repository functions taking those
//! locks report to (`idempotency::claim`/`claim_keys`, `ledger::lock_balance`/`lock_balances`/
//! `upsert_balance`/`credit_many`, `customers::find_or_enroll`/`find_or_enroll_many`,
//! `allocations::open_batch`/`post_batch`). A wait for a lock of an earlier kind after one of a
//! later kind is a path that could deadlock with one taking them the other way round: in a debug
//! build (every test) the statement fails with an error that names it, so a new path cannot take
//! another order by accident; in a release build it is logged as an error and let through (the
//! database would break a deadlock anyway). A lock taken without waiting (`SKIP LOCKED`, a key
//! claimed with no wait) cannot be half of a deadlock and is never refused, but it counts for
//! what comes after it. SQLite has one writer and no lock waits, so nothing is checked there.
//!
//! Two deviations are declared where they happen rather than refused: an allocation batch on
//! PostgreSQL inserts its keys after its balances (its wait on a key can only be for a first use
//! in flight, after which it rolls back and retries), and reward issuance claims its keys after
//! enrolling its customers ([`LockOrder::keys_after_enrolments`]). A transfer whose new recipient another
//! transaction enrolled meanwhile takes that customer's balance after the sender's, but enrols
//! nobody itself, so it stays within the order as tracked here.

use std::collections::HashSet;
use std::sync::Mutex;

use uuid::Uuid;

use crate::PersistenceError;
use crate::ledger::{Account, AccountKey};

/// The kinds of lock, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Keys,
    Balances,
    Enrolments,
}

/// What one transaction has locked so far, as far as the order is concerned.
#[derive(Debug)]
pub struct LockOrder {
    /// Whether waits are checked (PostgreSQL).
    enforce: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    highest: Option<Level>,
    balances: HashSet<AccountKey>,
    enrolled: HashSet<(i64, Uuid)>,
    /// The issuance deviation was declared (see [`LockOrder::keys_after_enrolments`]).
    keys_after_enrolments: bool,
}

impl LockOrder {
    pub(crate) fn new(enforce: bool) -> Self {
        Self {
            enforce,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self, what: String) -> Result<(), PersistenceError> {
        tracing::error!(what, "lock order broken");
        if cfg!(debug_assertions) {
            Err(PersistenceError::Other(format!(
                "lock order broken: {what}"
            )))
        } else {
            Ok(())
        }
    }

    /// Idempotency keys are claimed; `waits` when the claim may wait for a transaction holding
    /// a key.
    pub(crate) fn keys(&self, waits: bool) -> Result<(), PersistenceError> {
        let (highest, declared) = {
            let state = self.state();
            (
                state.highest,
                state.keys_after_enrolments && state.balances.is_empty(),
            )
        };
        match highest {
            Some(Level::Enrolments) if declared => Ok(()),
            Some(later) if self.enforce && waits && later > Level::Keys => {
                self.refuse(format!("an idempotency key claimed after {later:?}"))
            }
            _ => Ok(()),
        }
    }

    /// The declared deviation of an allocation batch: its keys inserted after its balances
    /// (see the module's documentation); nothing is checked.
    pub(crate) fn keys_after_balances(&self) {}

    /// The balances of `accounts` are locked (or created); `waits` unless `SKIP LOCKED`. A
    /// balance the transaction locked before, or that of a customer it enrolled, is fine at any
    /// point; another one after an enrolment is not.
    pub(crate) fn balances<'a>(
        &self,
        accounts: impl IntoIterator<Item = &'a Account>,
        waits: bool,
    ) -> Result<(), PersistenceError> {
        let mut late = None;
        {
            let mut state = self.state();
            for a in accounts {
                let key = a.key();
                if state.balances.contains(&key)
                    || state.enrolled.contains(&(a.org_id, a.customer_id))
                {
                    continue;
                }
                if let Some(later) = state.highest.filter(|l| *l > Level::Balances)
                    && self.enforce
                    && waits
                {
                    late = Some(later);
                }
                state.balances.insert(key);
                state.highest = state.highest.max(Some(Level::Balances));
            }
        }
        match late {
            Some(later) => self.refuse(format!(
                "the balance of a customer not enrolled here locked after {later:?}"
            )),
            None => Ok(()),
        }
    }

    /// The declared deviation of reward issuance: it enrols its customers, then claims its
    /// keys (so that a request refused for an unknown customer claims nothing). Issuance keys
    /// are claimed by issuance alone, which always takes the two in this order, and an
    /// issuance locks no balance, so the two orders never meet.
    pub fn keys_after_enrolments(&self) {
        self.state().keys_after_enrolments = true;
    }

    /// `customer_id` was enrolled (inserted) by this transaction.
    pub(crate) fn enrolled(&self, org_id: i64, customer_id: Uuid) {
        let mut state = self.state();
        state.enrolled.insert((org_id, customer_id));
        state.highest = state.highest.max(Some(Level::Enrolments));
    }
}

/// What a connection says of the lock order: a transaction carries one, the pool none.
pub trait Locks {
    fn lock_order(&self) -> Option<&LockOrder> {
        None
    }
}

impl Locks for crate::Pool {}
impl Locks for sea_orm::DatabaseConnection {}
impl Locks for sea_orm::DatabaseTransaction {}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(customer: u128) -> Account {
        Account {
            org_id: 1,
            customer_id: Uuid::from_u128(customer),
            program_id: 1,
            currency: "POINTS".into(),
        }
    }

    #[test]
    fn keys_then_balances_then_enrolments_is_the_order() {
        let order = LockOrder::new(true);
        assert!(order.keys(true).is_ok());
        assert!(order.balances([&account(1), &account(2)], true).is_ok());
        order.enrolled(1, Uuid::from_u128(3));
        assert!(
            order.balances([&account(3)], true).is_ok(),
            "its own new balance"
        );
        assert!(
            order.balances([&account(1)], true).is_ok(),
            "locked already"
        );
    }

    #[test]
    fn a_key_waited_for_under_a_balance_is_refused() {
        let order = LockOrder::new(true);
        assert!(order.balances([&account(1)], false).is_ok());
        assert!(order.keys(true).is_err(), "the worker's old order");
        assert!(order.keys(false).is_ok(), "a claim that does not wait");
    }

    #[test]
    fn an_existing_balance_after_an_enrolment_is_refused() {
        let order = LockOrder::new(true);
        assert!(order.keys(true).is_ok());
        order.enrolled(1, Uuid::from_u128(9));
        assert!(
            order.balances([&account(1)], true).is_err(),
            "the transfer's old order"
        );
        assert!(
            order.balances([&account(2)], false).is_ok(),
            "SKIP LOCKED waits for nothing"
        );
    }

    #[test]
    fn issuance_declares_its_keys_after_its_customers() {
        let order = LockOrder::new(true);
        order.enrolled(1, Uuid::from_u128(9));
        assert!(order.keys(true).is_err());
        order.keys_after_enrolments();
        assert!(order.keys(true).is_ok());
    }

    #[test]
    fn sqlite_checks_nothing() {
        let order = LockOrder::new(false);
        order.enrolled(1, Uuid::from_u128(9));
        assert!(order.balances([&account(1)], true).is_ok());
        assert!(order.keys(true).is_ok());
    }
}
