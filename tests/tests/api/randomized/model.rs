//! The model: what the database must hold, built from the definite answers only.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Catalog;
use super::history::{History, KeyLog, LONG_SECONDS, Reply, Sent, minor_of};
use super::snapshot::Snapshot;

/// The answers of one key disagree (ids, amounts, the balance then), as JSON values: apart
/// from `idempotentReplayed`, and for an issued item apart from its `status` (`ISSUED` then
/// `REPLAYED`) and the fields only a single issuance's answer has. `None` when they agree.
pub fn answers_differ(key: &str, a: &Reply, b: &Reply) -> Option<String> {
    let normal = |r: &Reply| -> Value {
        let mut v = r.body.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("idempotentReplayed");
            if key.starts_with("issue/") {
                o.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "issuanceId"
                            | "rewardId"
                            | "quantity"
                            | "vouchers"
                            | "customerId"
                            | "requestId"
                    )
                });
            }
        }
        v
    };
    (normal(a) != normal(b)).then(|| format!("{} / {}", a.text, b.text))
}

/// Two replays (202) of one key whose texts differ though their values agree. Every replay
/// answers the stored text (whether the key's first request was in flight or long done), so
/// all the replays of a key are the same bytes; a difference fails the run. Bulk issuance
/// answers per item and is compared as JSON only.
pub fn replays_differ_in_bytes(key: &str, a: &Reply, b: &Reply) -> Option<String> {
    (a.status == 202 && b.status == 202 && !key.starts_with("issue/") && a.text != b.text).then(
        || {
            format!(
                "{key}: two replays equal as JSON differ in bytes: {} / {}",
                a.text, b.text
            )
        },
    )
}

/// The state the answers say the database must be in, with the keys that had an effect.
#[derive(Debug, Default)]
pub struct Expected {
    pub state: Snapshot,
}

/// A key's effect: its kind (`allocation`, `hold`, …), the rest of the key, the request and
/// the answer.
type Effect<'a> = (&'a str, &'a str, &'a Sent, &'a Reply);

/// A string field of an answer.
fn field(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The whole amount a request asked for (points), in minor units.
fn asked(v: &Value) -> i64 {
    v.as_i64().unwrap_or(-1) * 100
}

fn seconds_between(from: &Value, to: &Value) -> i64 {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    match (parse(from), parse(to)) {
        (Some(a), Some(b)) => (b - a).num_seconds(),
        _ => i64::MIN,
    }
}

/// One allocation, as its answers tell it.
struct Allocation {
    id: String,
    customer: String,
    amount: i64,
    pending: bool,
    /// Pending for longer than the run: only the endpoint can activate it.
    long: bool,
    capped: bool,
    /// Its lot expires (the yearly strategy) or not (NEVER).
    expires: bool,
    /// (amount, the allocation's status after, the part's key)
    reversals: Vec<(i64, String, Option<String>)>,
    activated_by_client: bool,
}

/// The model under construction.
struct Builder<'a> {
    catalog: &'a Catalog,
    effects: Vec<Effect<'a>>,
    s: Snapshot,
    report: &'a mut Vec<String>,
}

impl Expected {
    /// Builds the model from the keys' effects; what contradicts itself goes to `report`.
    pub fn build(h: &History, catalog: &Catalog, report: &mut Vec<String>) -> Self {
        for (key, log) in &h.keys {
            report.extend(key_violations(key, log));
        }
        for (key, r) in &h.reused {
            if r.status != 422 {
                report.push(format!("{key} reused with another payload: {}", r.text));
            }
        }
        let effects = h
            .keys
            .iter()
            .filter_map(|(k, log)| {
                let (kind, rest) = k.split_once('/')?;
                log.effect().map(|(s, r)| (kind, rest, s, r))
            })
            .collect();
        let mut b = Builder {
            catalog,
            effects,
            s: Snapshot::default(),
            report,
        };
        b.allocations();
        b.holds();
        b.payments();
        b.issuances();
        b.s.normalise();
        Expected { state: b.s }
    }

    /// What the database holds that the model does not say.
    pub fn compare(&self, actual: &Snapshot) -> Vec<String> {
        let mut actual = actual.clone();
        actual.normalise();
        if self.state == actual {
            return Vec::new();
        }
        vec![format!(
            "the database differs from the model: {}",
            self.state.difference(&actual, ("model", "database"))
        )]
    }
}

impl<'a> Builder<'a> {
    fn of_kind(&self, kind: &str) -> Vec<Effect<'a>> {
        self.effects
            .iter()
            .filter(|e| e.0 == kind)
            .copied()
            .collect()
    }

    /// Allocations, what reversed them and what activated them: credits, lots, pending
    /// amounts, the allocations' rows and the earn cap counters.
    fn allocations(&mut self) {
        let mut allocations: BTreeMap<String, Allocation> = BTreeMap::new();
        for (_, unique, sent, r) in self.of_kind("allocation") {
            let b = &r.body;
            let amount = minor_of(&b["amount"]);
            let capped = b["awardStrategyId"] == self.catalog.capped;
            let fine = if capped {
                (0..=500).contains(&amount)
                    && b["capped"] == (amount < 500)
                    && (amount == 500 || b["uncappedAmount"] == "5.00")
            } else {
                amount == sent.body["sourceValue"].as_i64().unwrap_or(-1) * 10
                    && b["capped"] == false
            };
            if !fine {
                self.report
                    .push(format!("allocation/{unique}: {} for {}", r.text, sent.body));
            }
            let pending = b["status"] == "PENDING";
            let a = Allocation {
                id: field(&b["allocationId"]),
                customer: field(&b["customerId"]),
                amount,
                pending,
                long: pending && seconds_between(&b["createdAt"], &b["maturesAt"]) >= 3600,
                capped,
                expires: b["expiryStrategyId"] == self.catalog.year,
                reversals: Vec::new(),
                activated_by_client: false,
            };
            allocations.insert(unique.to_owned(), a);
            self.s
                .keys
                .insert(("currency-allocation".into(), unique.to_owned()));
        }
        let changes: Vec<_> = self
            .effects
            .iter()
            .filter(|e| e.0 == "reversal" || e.0 == "activation")
            .copied()
            .collect();
        for (kind, rest, _, r) in changes {
            let (unique, part) = match rest.split_once('/') {
                Some((u, p)) => (u, Some(p.to_owned())),
                None => (rest, None),
            };
            let Some(a) = allocations.get_mut(unique) else {
                self.report
                    .push(format!("{kind}/{rest}: an effect on no allocation"));
                continue;
            };
            let b = &r.body;
            if kind == "activation" {
                a.activated_by_client = true;
                if b["status"] != "ACTIVE" {
                    self.report
                        .push(format!("activation/{rest}: answered {}", r.text));
                }
                continue;
            }
            if b["expiredAmount"] != "0.00" {
                self.report
                    .push(format!("reversal/{rest}: nothing expired, yet {}", r.text));
            }
            let key = match &part {
                Some(p) => format!("{}:{p}", a.id),
                None => a.id.clone(),
            };
            self.s.keys.insert(("currency-reversal".into(), key));
            let status = field(&b["allocationStatus"]);
            a.reversals.push((minor_of(&b["amount"]), status, part));
        }
        for (unique, a) in &allocations {
            self.allocation(unique, a);
        }
    }

    /// One allocation's end: a reversal that answered PENDING or CANCELLED lowered what was
    /// promised, one that answered ACTIVE took back from the balance; a pending allocation is
    /// CANCELLED when a reversal said so, else ACTIVE once matured (by the worker, for those
    /// due within the run) or activated (by the endpoint), else still PENDING.
    fn allocation(&mut self, unique: &str, a: &Allocation) {
        let sum = |active: bool| -> i64 {
            a.reversals
                .iter()
                .filter(|r| (r.1 == "ACTIVE") == active)
                .map(|r| r.0)
                .sum()
        };
        let (on_pending, on_active) = (sum(false), sum(true));
        let full = a.reversals.iter().any(|r| r.2.is_none());
        let cancelled = a.reversals.iter().any(|r| r.1 == "CANCELLED");
        if cancelled && a.activated_by_client {
            self.report.push(format!(
                "allocation/{unique}: cancelled while pending, and activated"
            ));
        }
        let acct = self.s.accounts.entry(a.customer.clone()).or_default();
        let credited = if !a.pending {
            Some(a.amount)
        } else if cancelled {
            None
        } else if !a.long || a.activated_by_client {
            self.s
                .keys
                .insert(("allocation-activation".into(), a.id.clone()));
            Some(a.amount - on_pending)
        } else {
            acct.pending += a.amount - on_pending;
            None
        };
        let status = match credited {
            Some(credit) => {
                acct.entry("CREDIT", credit);
                acct.entry("REVERSAL", on_active);
                acct.available += credit - on_active;
                let lot = format!("allocation:{unique}");
                self.s.lots.insert(lot, (1, credit, a.expires));
                "ACTIVE"
            }
            None if cancelled => "CANCELLED",
            None => "PENDING",
        };
        let reversed = if full {
            a.amount
        } else {
            on_pending + on_active
        };
        let row = (status.to_owned(), a.amount, reversed, full);
        self.s.allocations.insert(a.id.clone(), row);
        if a.capped {
            *self.s.caps.entry(a.customer.clone()).or_default() += a.amount - reversed;
        }
        if self
            .s
            .caps
            .get(&a.customer)
            .is_some_and(|c| *c > super::CAP_MAX)
        {
            self.report.push(format!(
                "{} was awarded more than the cap of {}",
                a.customer,
                super::CAP_MAX
            ));
        }
    }

    /// Holds and what ended them: captured, voided, else expired by the worker (those due
    /// within the run) or still held.
    fn holds(&mut self) {
        let mut holds: BTreeMap<String, (String, i64, bool)> = BTreeMap::new();
        for (_, k, _, r) in self.of_kind("hold") {
            let b = &r.body;
            let long = seconds_between(&b["createdAt"], &b["expiresAt"]) >= LONG_SECONDS - 1;
            let hold = (field(&b["customerId"]), minor_of(&b["amount"]), long);
            holds.insert(field(&b["holdId"]), hold);
            self.s.keys.insert(("currency-hold".into(), k.to_owned()));
        }
        let mut ends: BTreeMap<String, Vec<(&str, i64)>> = BTreeMap::new();
        let settled: Vec<_> = self
            .effects
            .iter()
            .filter(|e| e.0 == "capture" || e.0 == "void")
            .copied()
            .collect();
        for (kind, id, sent, r) in settled {
            let Some((_, amount, _)) = holds.get(id) else {
                self.report
                    .push(format!("{kind}/{id}: an effect on no hold"));
                continue;
            };
            let captured = match (kind, &sent.body["amount"]) {
                ("void", _) => 0,
                (_, Value::Null) => *amount,
                (_, v) => asked(v),
            };
            let b = &r.body;
            if minor_of(&b["capturedAmount"]) != captured
                || minor_of(&b["releasedAmount"]) != amount - captured
            {
                self.report
                    .push(format!("{kind}/{id}: {} of a hold of {amount}", r.text));
            }
            ends.entry(id.to_owned())
                .or_default()
                .push((kind, captured));
            let operation = if kind == "capture" {
                "hold-capture"
            } else {
                "hold-void"
            };
            self.s.keys.insert((operation.into(), id.to_owned()));
        }
        for (id, (customer, amount, long)) in holds {
            let end = ends.get(&id).cloned().unwrap_or_default();
            if end.len() > 1 {
                self.report.push(format!("hold {id} ended twice: {end:?}"));
            }
            let (status, captured, released, held) = match end.first() {
                Some(("capture", c)) => ("CAPTURED", *c, amount - c, 0),
                Some(_) => ("VOIDED", 0, amount, 0),
                None if long => ("HELD", 0, 0, amount),
                None => ("EXPIRED", 0, amount, 0),
            };
            let acct = self.s.accounts.entry(customer).or_default();
            acct.entry("HOLD", amount);
            acct.entry("DEBIT", captured);
            acct.entry("RELEASE", released);
            acct.available += released - amount;
            acct.held += held;
            let row = (status.into(), amount, captured, released, held);
            self.s.holds.insert(id, row);
        }
    }

    /// Redemptions and transfers.
    fn payments(&mut self) {
        let paid: Vec<_> = self
            .effects
            .iter()
            .filter(|e| e.0 == "redemption" || e.0 == "transfer")
            .copied()
            .collect();
        for (kind, k, sent, r) in paid {
            let b = &r.body;
            let amount = asked(&sent.body["amount"]);
            if minor_of(&b["amount"]) != amount {
                self.report
                    .push(format!("{kind}/{k}: moved {} for {}", r.text, sent.body));
            }
            if kind == "redemption" {
                let acct = self.s.accounts.entry(field(&b["customerId"])).or_default();
                acct.available -= amount;
                acct.entry("DEBIT", amount);
                self.s.redemptions.insert(field(&b["redemptionId"]));
                self.s
                    .keys
                    .insert(("currency-redemption".into(), k.to_owned()));
                continue;
            }
            let from = self
                .s
                .accounts
                .entry(field(&b["from"]["customerId"]))
                .or_default();
            from.available -= amount;
            from.entry("TRANSFER_OUT", amount);
            let to = self
                .s
                .accounts
                .entry(field(&b["to"]["customerId"]))
                .or_default();
            to.available += amount;
            to.entry("TRANSFER_IN", amount);
            self.s
                .lots
                .insert(format!("transfer:{k}"), (0, amount, false));
            self.s.transfers.insert(field(&b["transferId"]));
            self.s
                .keys
                .insert(("currency-transfer".into(), k.to_owned()));
        }
    }

    /// Issuances (single and bulk items) and cancellations: the issuances' rows and vouchers,
    /// the rewards' stock and the customers' holdings.
    fn issuances(&mut self) {
        let mut cancelled: BTreeSet<String> = BTreeSet::new();
        for (_, id, _, r) in self.of_kind("cancel") {
            if r.body["status"] != "CANCELLED" {
                self.report
                    .push(format!("cancel/{id}: answered {}", r.text));
            }
            cancelled.insert(id.to_owned());
            self.s
                .keys
                .insert(("issuance-cancellation".into(), id.to_owned()));
        }
        let c = self.catalog;
        self.s.rewards.insert(c.scarce, (super::SCARCE_STOCK, 0));
        self.s.rewards.insert(c.daily, (super::DAILY_STOCK, 0));
        for (_, k, sent, r) in self.of_kind("issue") {
            let b = &r.body;
            let id = field(&b["issuanceId"]);
            let item = if sent.path.ends_with("/bulk") {
                &sent.body["rewards"][0]
            } else {
                &sent.body
            };
            let reward = item["rewardId"].as_i64().unwrap_or(-1);
            let quantity = item["quantity"].as_i64().unwrap_or(-1);
            let mut vouchers: Vec<String> = b["vouchers"]
                .as_array()
                .map(|v| v.iter().map(field).collect())
                .unwrap_or_default();
            vouchers.sort();
            if b["rewardId"] != reward
                || b["quantity"] != quantity
                || vouchers.len() as i64 != quantity
            {
                self.report
                    .push(format!("issue/{k}: issued {} for {}", r.text, sent.body));
            }
            let customer = field(&b["customerId"]);
            let status = if cancelled.remove(&id) {
                "CANCELLED"
            } else {
                let (stock, issued) = self.s.rewards.entry(reward).or_default();
                *stock -= quantity;
                *issued += quantity;
                let held = self
                    .s
                    .holdings
                    .entry((customer.clone(), reward))
                    .or_default();
                *held += quantity;
                if reward == c.scarce && *held > 4 {
                    self.report.push(format!(
                        "{customer} holds {held} of the scarce reward (limit 4)"
                    ));
                }
                "ISSUED"
            };
            let row = (status.into(), reward, quantity, customer, vouchers);
            self.s.issuances.insert(id, row);
            self.s.keys.insert(("reward-issuance".into(), k.to_owned()));
        }
        for id in cancelled {
            self.report.push(format!(
                "cancel/{id}: cancelled an issuance no answer issued"
            ));
        }
    }
}

/// Contradictions within one key's answers: two effects that disagree, two 201s, or a
/// refusal of a request sent after an effect was answered (a refusal before it is fine: a
/// refused request does not consume its key, so a later one may succeed).
fn key_violations(key: &str, log: &KeyLog) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, first)) = log.effect() else {
        return out;
    };
    let created = log.answers.iter().filter(|(_, r)| r.status == 201).count();
    if created > 1 {
        out.push(format!("{key}: {created} answers 201 (one effect per key)"));
    }
    let effect_read = log
        .answers
        .iter()
        .filter(|(_, r)| r.is_effect())
        .map(|(_, r)| r.read_at)
        .min()
        .unwrap_or(first.read_at);
    for (_, r) in &log.answers {
        if r.is_effect() {
            if let Some(d) = answers_differ(key, first, r) {
                out.push(format!("{key}: its answers differ: {d}"));
            } else if let Some(d) = replays_differ_in_bytes(key, first, r) {
                out.push(d);
            }
        } else if r.code() != "IDEMPOTENCY_KEY_REUSED" && r.sent_at > effect_read {
            out.push(format!(
                "{key}: had an effect ({} {}), then answered a later request {} {}",
                first.status, first.text, r.status, r.text
            ));
        }
    }
    out
}
