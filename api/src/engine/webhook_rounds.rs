//! Webhook delivery shared fairly between organisations.
//!
//! A round names the organisations with due events (oldest due first) and leases each one its
//! share of the round, so an organisation with thousands of due events does not take a whole
//! round. The worker ([`Rounds`]) does not wait for a round's deliveries: each runs on its own
//! and is recorded when it ends, and the next round starts on the next tick, or as soon as a
//! delivery ends, with the room left.
//! Deliveries in flight are bounded in all ([`IN_FLIGHT`]) and per organisation
//! ([`IN_FLIGHT_PER_ORG`]), so an organisation whose receivers are slow holds at most its own
//! part of the room while the others' events keep going out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use persistence::webhooks::{self, Delivery};
use persistence::{Db, PersistenceError};

use crate::engine::webhooks::{WebhookSettings, deliver_one, lease_until};

/// The most deliveries one instance has in flight at once, all organisations together.
pub const IN_FLIGHT: usize = 64;
/// The most deliveries one instance has in flight at once for one organisation.
pub const IN_FLIGHT_PER_ORG: usize = 16;

/// Leases up to `total` due events: the organisations with due events (leaving out `except`)
/// each get an equal share, at most `room(org)`; what a share leaves unused goes, in a second
/// pass, to the organisations that had more.
pub async fn claim_shares(
    db: &Db,
    settings: &WebhookSettings,
    now: DateTime<Utc>,
    total: usize,
    room: impl Fn(i64) -> usize,
    except: &[i64],
) -> Result<Vec<Delivery>, PersistenceError> {
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    if total == 0 {
        return Ok(Vec::new());
    }
    let orgs = webhooks::due_orgs(db.conn(), now, except, as_u64(total)).await?;
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let until = lease_until(settings, now);
    let share = (total / orgs.len()).max(1);
    let mut claimed = Vec::new();
    let mut taken: HashMap<i64, usize> = HashMap::new();
    let mut more = Vec::new();
    for org in &orgs {
        let n = share.min(room(*org)).min(total - claimed.len());
        if n == 0 {
            continue;
        }
        let got = webhooks::claim_due(db.conn(), now, until, as_u64(n), Some(*org)).await?;
        if got.len() == n {
            more.push(*org);
        }
        taken.insert(*org, got.len());
        claimed.extend(got);
    }
    for org in more {
        let left = total - claimed.len();
        let n = left.min(room(org).saturating_sub(taken.get(&org).copied().unwrap_or(0)));
        if n == 0 {
            continue;
        }
        claimed.extend(webhooks::claim_due(db.conn(), now, until, as_u64(n), Some(org)).await?);
    }
    Ok(claimed)
}

/// The deliveries this instance has in flight, per organisation.
#[derive(Default, Clone)]
pub struct Rounds {
    in_flight: Arc<Mutex<HashMap<i64, usize>>>,
    /// Signalled when a delivery ends, so that its room is used at once rather than at the
    /// next tick (an organisation with a backlog and quick receivers keeps its part busy).
    ended: Arc<tokio::sync::Notify>,
}

/// Counts one delivery in flight for as long as it lives (a delivery that panics or is dropped
/// is counted out too).
struct InFlight {
    rounds: Rounds,
    org: i64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.rounds.lock();
        if let Some(n) = map.get_mut(&self.org) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.org);
            }
        }
        drop(map);
        self.rounds.ended.notify_one();
    }
}

impl Rounds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        // A panic while the map was held leaves counts that are still right.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns once a delivery has ended since the last call (at once if one has).
    pub async fn ended(&self) {
        self.ended.notified().await;
    }

    /// How many deliveries are in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().values().sum()
    }

    /// Starts one round: leases what the room allows and starts each delivery on its own task,
    /// without waiting for any. Returns how many it started.
    pub async fn start(
        &self,
        db: &Db,
        client: &reqwest::Client,
        settings: &Arc<WebhookSettings>,
        now: DateTime<Utc>,
    ) -> Result<usize, PersistenceError> {
        let (busy, free, counts) = {
            let map = self.lock();
            let busy: Vec<i64> = map
                .iter()
                .filter(|(_, n)| **n >= IN_FLIGHT_PER_ORG)
                .map(|(org, _)| *org)
                .collect();
            let used: usize = map.values().sum();
            (busy, IN_FLIGHT.saturating_sub(used), map.clone())
        };
        let room =
            |org: i64| IN_FLIGHT_PER_ORG.saturating_sub(counts.get(&org).copied().unwrap_or(0));
        let deliveries = claim_shares(db, settings, now, free, room, &busy).await?;
        let started = deliveries.len();
        for d in deliveries {
            let org = d.event.org_id;
            *self.lock().entry(org).or_insert(0) += 1;
            let guard = InFlight {
                rounds: self.clone(),
                org,
            };
            let (db, client, settings) = (db.clone(), client.clone(), Arc::clone(settings));
            tokio::spawn(async move {
                deliver_one(&db, &client, &settings, &d, now).await;
                drop(guard);
            });
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_counted_out_however_it_ends() {
        let rounds = Rounds::default();
        *rounds.lock().entry(7).or_insert(0) += 2;
        let a = InFlight {
            rounds: rounds.clone(),
            org: 7,
        };
        let b = InFlight {
            rounds: rounds.clone(),
            org: 7,
        };
        assert_eq!(rounds.in_flight(), 2);
        drop(a);
        assert_eq!(rounds.in_flight(), 1);
        drop(b);
        assert_eq!(rounds.in_flight(), 0);
        assert!(rounds.lock().is_empty());
    }

    #[tokio::test]
    async fn the_end_of_a_delivery_wakes_the_worker() {
        let rounds = Rounds::default();
        *rounds.lock().entry(7).or_insert(0) += 1;
        drop(InFlight {
            rounds: rounds.clone(),
            org: 7,
        });
        // The end came before anyone waited: the next wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), rounds.ended())
            .await
            .expect("the worker is woken"); // ok: a test
    }
}
