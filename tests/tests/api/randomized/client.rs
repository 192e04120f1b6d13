//! The clients: each a sequence of random keyed writes, chosen by its own generator, sent to
//! random instances (an unknown outcome retried with the same key and body until definite).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::history::{LONG_SECONDS, Reply, Sent, bulk_items, check, record, send_until_definite};
use super::{Rng, World};

/// Customers by mobile. No allocation goes to the last: it has points only when a transfer
/// gives it some, so most writes for it are refused (404, 422).
pub const MOBILES: [&str; 6] = [
    "919800000001",
    "919800000002",
    "919800000003",
    "919800000004",
    "919800000005",
    "919800000006",
];
/// One client: a sequence of operations chosen by its own generator.
pub struct Client {
    world: Arc<World>,
    n: usize,
    rng: Rng,
    count: usize,
}

impl Client {
    pub fn new(world: Arc<World>, n: usize, rng: Rng) -> Self {
        Self {
            world,
            n,
            rng,
            count: 0,
        }
    }

    pub async fn run(mut self, ops: usize) {
        for _ in 0..ops {
            self.count += 1;
            self.step().await;
        }
    }

    fn fresh_key(&self, prefix: &str) -> String {
        format!("{prefix}{}-{}", self.n, self.count)
    }

    fn mobile(&mut self) -> &'static str {
        MOBILES[self.rng.below(MOBILES.len())]
    }

    /// Sends `body` to `path` on random instances until the answer is definite; `None` when
    /// none came within the patience (recorded as a violation).
    pub async fn send(&mut self, path: &str, body: &Value) -> Option<Reply> {
        send_until_definite(&self.world, &mut self.rng, path, body).await
    }

    /// Sends and records the answer under `key` (checking it is one `kind` may give). One
    /// time in seven the same request goes twice at once (to two random instances, each
    /// retried on its own); the answer returned is then an effect if either is.
    async fn keyed(&mut self, kind: &str, key: String, path: String, body: Value) -> Option<Reply> {
        let twice = self.rng.chance(15);
        let mut other = Rng::new(self.rng.next());
        let (world, rng) = (&self.world, &mut self.rng);
        let (first, second) = if twice {
            tokio::join!(
                send_until_definite(world, rng, &path, &body),
                send_until_definite(world, &mut other, &path, &body)
            )
        } else {
            (send_until_definite(world, rng, &path, &body).await, None)
        };
        let sent = Sent { path, body };
        for reply in [&first, &second].into_iter().flatten() {
            record(world, kind, key.clone(), sent.clone(), reply.clone());
        }
        match (first, second) {
            (Some(a), Some(b)) if !a.is_effect() && b.is_effect() => Some(b),
            (first, second) => first.or(second),
        }
    }

    async fn step(&mut self) {
        let c = &self.world.catalog;
        let (program, rate, capped_id, year, never) =
            (c.program, c.rate, c.capped, c.year, c.never);
        let (scarce, daily) = (c.scarce, c.daily);
        let roll = self.rng.below(46);
        match roll {
            // Allocations, some pending (most maturing within seconds), some capped.
            0..=9 => {
                let key = self.fresh_key("a");
                let capped = self.rng.chance(20);
                let mut body = json!({
                    "programId": program,
                    "awardStrategyId": if capped { capped_id } else { rate },
                    "expiryStrategyId": if self.rng.chance(50) { year } else { never },
                    "sourceValue": self.rng.range(1, 500),
                    "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile",
                                     "identifierValue": MOBILES[self.rng.below(MOBILES.len() - 1)]},
                    "uniqueId": key,
                });
                if self.rng.chance(25) {
                    let ms = if self.rng.chance(80) {
                        self.rng.range(1000, 4000) as i64
                    } else {
                        LONG_SECONDS * 1000
                    };
                    let at = chrono::Utc::now() + chrono::Duration::milliseconds(ms);
                    body["maturesAt"] =
                        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                }
                let sent = Sent {
                    path: "/v1/currency/allocations".into(),
                    body: body.clone(),
                };
                self.world
                    .history
                    .lock()
                    .expect("history")
                    .sent_allocations
                    .push((key.clone(), sent.clone()));
                self.keyed(
                    "allocation",
                    format!("allocation/{key}"),
                    sent.path,
                    sent.body,
                )
                .await;
            }
            // The same allocation again, with the same key and body (perhaps still in flight
            // on another client).
            10..=11 => {
                let pick = {
                    let h = self.world.history.lock().expect("history");
                    (!h.sent_allocations.is_empty()).then(|| {
                        h.sent_allocations[self.rng.below(h.sent_allocations.len())].clone()
                    })
                };
                if let Some((key, sent)) = pick {
                    self.keyed(
                        "allocation",
                        format!("allocation/{key}"),
                        sent.path,
                        sent.body,
                    )
                    .await;
                }
            }
            // A used key with another payload: refused, whatever instance gets it.
            12 => {
                let pick = {
                    let h = self.world.history.lock().expect("history");
                    let used: Vec<_> = h
                        .keys
                        .iter()
                        .filter(|(k, log)| {
                            (k.starts_with("allocation/") || k.starts_with("redemption/"))
                                && log.effect().is_some()
                        })
                        .map(|(k, log)| (k.clone(), log.effect().map(|e| e.0.clone())))
                        .collect();
                    (!used.is_empty()).then(|| used[self.rng.below(used.len())].clone())
                };
                if let Some((key, Some(mut sent))) = pick {
                    let field = if key.starts_with("allocation/") {
                        "sourceValue"
                    } else {
                        "amount"
                    };
                    let other = sent.body[field].as_u64().unwrap_or(1) + 1;
                    sent.body[field] = json!(other);
                    if let Some(reply) = self.send(&sent.path, &sent.body).await {
                        check(&self.world, "reuse", &key, &reply);
                        self.world
                            .history
                            .lock()
                            .expect("history")
                            .reused
                            .push((key, reply));
                    }
                }
            }
            13..=17 => {
                let key = self.fresh_key("r");
                let body = json!({"programId": program, "currency": "POINTS",
                    "amount": self.rng.range(1, 30), "mobile": self.mobile(), "uniqueId": key});
                self.keyed(
                    "redemption",
                    format!("redemption/{key}"),
                    "/v1/currency/redemptions".into(),
                    body,
                )
                .await;
            }
            18..=21 => {
                let key = self.fresh_key("h");
                let seconds = if self.rng.chance(75) {
                    self.rng.range(2, 6) as i64
                } else {
                    LONG_SECONDS
                };
                let amount = self.rng.range(1, 20) as i64;
                let body = json!({"programId": program, "currency": "POINTS", "amount": amount,
                    "mobile": self.mobile(), "uniqueId": key, "expiresInSeconds": seconds});
                let reply = self
                    .keyed(
                        "hold",
                        format!("hold/{key}"),
                        "/v1/currency/holds".into(),
                        body,
                    )
                    .await;
                if let Some(id) = reply
                    .as_ref()
                    .filter(|r| r.is_effect())
                    .and_then(|r| r.body["holdId"].as_str())
                {
                    self.world
                        .history
                        .lock()
                        .expect("history")
                        .holds
                        .push((id.to_owned(), amount));
                }
            }
            22..=24 => {
                if let Some((id, amount)) = self.pick_hold() {
                    let body = if self.rng.chance(50) {
                        json!({})
                    } else {
                        json!({"amount": self.rng.range(1, amount as u64)})
                    };
                    self.keyed(
                        "capture",
                        format!("capture/{id}"),
                        format!("/v1/currency/holds/{id}/capture"),
                        body,
                    )
                    .await;
                }
            }
            25..=26 => {
                if let Some((id, _)) = self.pick_hold() {
                    self.keyed(
                        "void",
                        format!("void/{id}"),
                        format!("/v1/currency/holds/{id}/void"),
                        json!({}),
                    )
                    .await;
                }
            }
            27..=30 => {
                let key = self.fresh_key("t");
                let from = self.rng.below(MOBILES.len());
                let to = (from + 1 + self.rng.below(MOBILES.len() - 1)) % MOBILES.len();
                let body = json!({"programId": program, "currency": "POINTS",
                    "amount": self.rng.range(1, 25), "from": {"mobile": MOBILES[from]},
                    "to": {"mobile": MOBILES[to]}, "uniqueId": key});
                self.keyed(
                    "transfer",
                    format!("transfer/{key}"),
                    "/v1/currency/transfers".into(),
                    body,
                )
                .await;
            }
            31..=33 => {
                let pending = self.rng.chance(40);
                let Some((unique, _, amount)) = self.pick_allocation(pending) else {
                    return;
                };
                let path = format!("/v1/currency/allocations/{unique}/reversal");
                if roll == 31 {
                    self.keyed("reversal", format!("reversal/{unique}"), path, json!({}))
                        .await;
                } else {
                    let rid = self.fresh_key("p");
                    let part = self.rng.range(1, (amount / 100).clamp(1, 5) as u64);
                    let body = json!({"amount": part, "reversalId": rid});
                    self.keyed("reversal", format!("reversal/{unique}/{rid}"), path, body)
                        .await;
                }
            }
            34..=35 => {
                if let Some((unique, _, _)) = self.pick_allocation(true) {
                    self.keyed(
                        "activation",
                        format!("activation/{unique}"),
                        format!("/v1/currency/allocations/{unique}/activate"),
                        json!({}),
                    )
                    .await;
                }
            }
            36..=38 => {
                let key = self.fresh_key("i");
                let reward = if self.rng.chance(50) { scarce } else { daily };
                let body = json!({"mobile": self.mobile(), "rewardId": reward,
                    "quantity": self.rng.range(1, 3), "requestId": key});
                let reply = self
                    .keyed(
                        "issue",
                        format!("issue/{key}"),
                        "/v1/rewards/issue".into(),
                        body,
                    )
                    .await;
                if let Some(id) = reply
                    .as_ref()
                    .filter(|r| r.is_effect())
                    .and_then(|r| r.body["issuanceId"].as_str())
                {
                    self.world
                        .history
                        .lock()
                        .expect("history")
                        .issuances
                        .push(id.to_owned());
                }
            }
            39..=41 => self.bulk().await,
            42 => {
                let pick = {
                    let h = self.world.history.lock().expect("history");
                    (!h.issuances.is_empty())
                        .then(|| h.issuances[self.rng.below(h.issuances.len())].clone())
                };
                if let Some(id) = pick {
                    self.keyed(
                        "cancel",
                        format!("cancel/{id}"),
                        format!("/v1/rewards/issuances/{id}/cancel"),
                        json!({}),
                    )
                    .await;
                }
            }
            // A pause: clients do not all press at once all the time.
            _ => tokio::time::sleep(Duration::from_millis(self.rng.range(5, 60))).await,
        }
    }

    /// A bulk issuance of one to three items; each item's result is recorded under its key as
    /// a single issuance's would be (201 issued, 202 replayed, 422 with its code).
    async fn bulk(&mut self) {
        let c = &self.world.catalog;
        let (scarce, daily) = (c.scarce, c.daily);
        let mobile = self.mobile();
        let items: Vec<Value> = (0..self.rng.range(1, 3))
            .map(|i| {
                json!({"rewardId": if self.rng.chance(50) { scarce } else { daily },
                       "quantity": self.rng.range(1, 2),
                       "requestId": format!("b{}-{}-{i}", self.n, self.count)})
            })
            .collect();
        let body = json!({"mobile": mobile, "rewards": items});
        let Some(reply) = self.send("/v1/rewards/issue/bulk", &body).await else {
            return;
        };
        check(&self.world, "bulk", "bulk", &reply);
        for (item, result) in items.iter().zip(bulk_items(&reply)) {
            let key = item["requestId"].as_str().unwrap_or_default().to_owned();
            let sent = Sent {
                path: "/v1/rewards/issue/bulk".into(),
                body: json!({"mobile": mobile, "rewards": [item]}),
            };
            if result.is_effect()
                && let Some(id) = result.body["issuanceId"].as_str()
            {
                self.world
                    .history
                    .lock()
                    .expect("history")
                    .issuances
                    .push(id.to_owned());
            }
            record(&self.world, "issue", format!("issue/{key}"), sent, result);
        }
    }

    fn pick_hold(&mut self) -> Option<(String, i64)> {
        let h = self.world.history.lock().expect("history");
        (!h.holds.is_empty()).then(|| h.holds[self.rng.below(h.holds.len())].clone())
    }

    /// An allocation that had an effect; with `pending`, one that was pending when made.
    fn pick_allocation(&mut self, pending: bool) -> Option<(String, bool, i64)> {
        let h = self.world.history.lock().expect("history");
        let pool: Vec<_> = h
            .allocations
            .iter()
            .filter(|a| a.1 || !pending)
            .cloned()
            .collect();
        (!pool.is_empty()).then(|| pool[self.rng.below(pool.len())].clone())
    }
}
