//! The history of a run: every definite answer, by key, with the request that got it; how a
//! request is sent until its answer is definite; and the replay of every key at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::snapshot::Snapshot;
use super::{Rng, World};

/// A hold or a maturity of this many seconds or more outlives the run.
pub const LONG_SECONDS: i64 = 86_400;
/// How long one request may go without a definite answer.
const PATIENCE: Duration = Duration::from_secs(90);

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: Value,
    /// When the attempt that got it was sent, and when it was read.
    pub sent_at: Instant,
    pub read_at: Instant,
}

impl Reply {
    pub async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let now = Instant::now();
        Self {
            status,
            text,
            body,
            sent_at: now,
            read_at: now,
        }
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn is_effect(&self) -> bool {
        self.status == 201 || self.status == 202
    }
}

/// A request as sent: every keyed write is a POST.
#[derive(Debug, Clone)]
pub struct Sent {
    pub path: String,
    pub body: Value,
}

/// Everything a key got: its definite answers, each with the request that got it.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    pub answers: Vec<(Sent, Reply)>,
}

impl KeyLog {
    /// The key's effect: its first 201 or 202 (every other one must equal it).
    pub fn effect(&self) -> Option<&(Sent, Reply)> {
        self.answers.iter().find(|(_, r)| r.is_effect())
    }
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct History {
    /// By key: `allocation/<uniqueId>`, `redemption/…`, `hold/…`, `capture/<holdId>`,
    /// `void/<holdId>`, `transfer/…`, `reversal/<uniqueId>[/<reversalId>]`,
    /// `activation/<uniqueId>`, `issue/<requestId>`, `cancel/<issuanceId>`.
    pub keys: BTreeMap<String, KeyLog>,
    /// Keys sent again with another payload, and what that got.
    pub reused: Vec<(String, Reply)>,
    /// Answers no definite answer may be (a 500, an unlisted status or code), and requests
    /// that never got a definite answer.
    pub violations: Vec<String>,
    /// Unknown outcomes retried: no answer (killed, reset, refused), of which timed out; 503;
    /// 409 `IDEMPOTENCY_KEY_IN_USE`.
    pub no_answer: usize,
    pub timeouts: usize,
    pub unavailable: usize,
    pub in_use: usize,
    /// Targets for later operations: allocations (uniqueId, pending, amount), holds (id,
    /// amount), issuances (id).
    pub allocations: Vec<(String, bool, i64)>,
    pub holds: Vec<(String, i64)>,
    pub issuances: Vec<String>,
    /// Allocation requests sent so far (to send again with the same key and body).
    pub sent_allocations: Vec<(String, Sent)>,
}

/// Minor units (scale 2) of a decimal string.
pub fn minor(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap_or(i64::MIN) * 100 + frac[..2].parse::<i64>().unwrap_or(0)
}

pub fn minor_of(v: &Value) -> i64 {
    v.as_str().map(minor).unwrap_or(i64::MIN)
}

/// Statuses and codes a definite answer of an operation may have.
fn allowed(kind: &str) -> (&'static [u16], &'static [&'static str]) {
    match kind {
        "allocation" => (&[201, 202], &[]),
        "redemption" | "hold" | "transfer" => (
            &[201, 202, 404, 422],
            &["NOT_FOUND", "INSUFFICIENT_BALANCE"],
        ),
        "capture" => (
            &[201, 202, 409, 422],
            &["HOLD_NOT_ACTIVE", "IDEMPOTENCY_KEY_REUSED"],
        ),
        "void" => (&[201, 202, 409], &["HOLD_NOT_ACTIVE"]),
        "reversal" => (
            &[201, 202, 422],
            &[
                "INSUFFICIENT_BALANCE",
                "ALREADY_REVERSED",
                "REVERSAL_EXCEEDS_ALLOCATION",
            ],
        ),
        "activation" => (&[201, 202, 409], &["ALLOCATION_NOT_PENDING"]),
        "issue" => (
            &[201, 202, 422],
            &[
                "OUT_OF_STOCK",
                "CUSTOMER_LIMIT_EXCEEDED",
                "PERIOD_LIMIT_EXCEEDED",
            ],
        ),
        "cancel" => (&[201, 202], &[]),
        "bulk" => (&[200], &[]),
        "reuse" => (&[422], &["IDEMPOTENCY_KEY_REUSED"]),
        _ => (&[], &[]),
    }
}

/// The items of a bulk answer as single answers: 201 `ISSUED`, 202 `REPLAYED`, 422 with the
/// failure's code; each carrying the request's `customerId`.
pub fn bulk_items(reply: &Reply) -> Vec<Reply> {
    let customer = reply.body["customerId"].clone();
    reply.body["results"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let mut body = item.clone();
                    body["customerId"] = customer.clone();
                    let status = match item["status"].as_str() {
                        Some("ISSUED") => 201,
                        Some("REPLAYED") => 202,
                        _ => 422,
                    };
                    if status == 422 {
                        body["code"] = item["error"]["code"].clone();
                    }
                    Reply {
                        status,
                        text: body.to_string(),
                        body,
                        ..reply.clone()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends until definite. Unknown: no answer, 503, 409 `IDEMPOTENCY_KEY_IN_USE`; a 5xx other
/// than 503 is also retried, and recorded as a violation.
pub async fn send_until_definite(
    world: &World,
    rng: &mut Rng,
    path: &str,
    body: &Value,
) -> Option<Reply> {
    let started = Instant::now();
    loop {
        if started.elapsed() > PATIENCE {
            world
                .history
                .lock()
                .expect("history")
                .violations
                .push(format!(
                    "no definite answer within {PATIENCE:?}: POST {path} {body}"
                ));
            return None;
        }
        let attempt = Instant::now();
        let address = {
            let addresses = world.addresses.lock().expect("addresses");
            let up: Vec<_> = addresses.iter().flatten().cloned().collect();
            (!up.is_empty()).then(|| up[rng.below(up.len())].clone())
        };
        let Some(address) = address else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let sent = world
            .http
            .post(format!("{address}{path}"))
            .header("X-API-KEY", &world.api_key)
            .json(body)
            .send()
            .await;
        let reply = match sent {
            Ok(resp) => Reply {
                sent_at: attempt,
                ..Reply::from(resp).await
            },
            Err(e) => {
                {
                    let mut h = world.history.lock().expect("history");
                    h.no_answer += 1;
                    h.timeouts += usize::from(e.is_timeout());
                }
                tokio::time::sleep(Duration::from_millis(rng.range(10, 100))).await;
                continue;
            }
        };
        let in_use = reply.status == 409 && reply.code() == "IDEMPOTENCY_KEY_IN_USE";
        if reply.status >= 500 || in_use {
            {
                let mut h = world.history.lock().expect("history");
                h.unavailable += usize::from(reply.status == 503);
                h.in_use += usize::from(in_use);
                if reply.status != 503 && !in_use {
                    h.violations.push(format!(
                        "POST {path} {body} answered {}: {}",
                        reply.status, reply.text
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.range(10, 100))).await;
            continue;
        }
        return Some(reply);
    }
}

/// Checks a definite answer is one `kind` may give.
pub fn check(world: &World, kind: &str, key: &str, reply: &Reply) {
    let (statuses, codes) = allowed(kind);
    let fine =
        statuses.contains(&reply.status) && (reply.status < 400 || codes.contains(&reply.code()));
    if !fine {
        world
            .history
            .lock()
            .expect("history")
            .violations
            .push(format!(
                "{key} ({kind}) answered {}: {}",
                reply.status, reply.text
            ));
    }
}

/// Checks and records a definite answer under its key; an allocation's effect becomes a
/// target for reversals (and activations when pending).
pub fn record(world: &World, kind: &str, key: String, sent: Sent, reply: Reply) {
    check(world, kind, &key, &reply);
    let mut h = world.history.lock().expect("history");
    let first_effect = h.keys.get(&key).is_none_or(|log| log.effect().is_none());
    if kind == "allocation" && reply.is_effect() && first_effect {
        let unique = reply.body["uniqueId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pending = reply.body["status"] == "PENDING";
        h.allocations
            .push((unique, pending, minor_of(&reply.body["amount"])));
    }
    h.keys.entry(key).or_default().answers.push((sent, reply));
}

/// Sends every key that had an effect again, to random instances, and checks each replays
/// (202, `idempotentReplayed`) what it answered; returns how many were sent.
pub async fn replay_all(
    world: &World,
    history: &History,
    rng: &mut Rng,
    report: &mut Vec<String>,
) -> usize {
    let mut sent = 0;
    for (key, log) in &history.keys {
        let Some((request, first)) = log.effect() else {
            continue;
        };
        let Some(mut reply) = send_until_definite(world, rng, &request.path, &request.body).await
        else {
            report.push(format!("{key}: no definite answer to its replay"));
            continue;
        };
        sent += 1;
        if request.path.ends_with("/bulk") {
            match bulk_items(&reply).pop() {
                Some(item) => reply = item,
                None => {
                    report.push(format!("{key}: the replay answered {}", reply.text));
                    continue;
                }
            }
        }
        if reply.status != 202 || reply.body["idempotentReplayed"] != true {
            report.push(format!(
                "{key}: sent again, answered {} {} (first: {} {})",
                reply.status, reply.text, first.status, first.text
            ));
            continue;
        }
        if let Some(diff) = super::model::answers_differ(key, first, &reply) {
            report.push(format!("{key}: the replay differs from the answer: {diff}"));
        } else if let Some(d) = super::model::replays_differ_in_bytes(key, first, &reply) {
            report.push(d);
        }
    }
    sent
}

/// What the run exercised, for the coverage line (a run that did none of something proved
/// nothing about it).
impl History {
    pub fn coverage(&self, db: &Snapshot, kills: usize, cuts: usize) -> Vec<(&'static str, usize)> {
        let answered = |kind: &str, pred: &dyn Fn(&Reply) -> bool| {
            self.keys
                .iter()
                .filter(|(k, _)| k.split('/').next() == Some(kind))
                .flat_map(|(_, log)| log.answers.iter())
                .filter(|(_, r)| pred(r))
                .count()
        };
        let holds = |status: &str| db.holds.values().filter(|h| h.0 == status).count();
        let code = |c: &'static str| move |r: &Reply| r.code() == c;
        let client_activations = answered("activation", &|r| r.status == 201);
        let activations = db
            .keys
            .iter()
            .filter(|k| k.0 == "allocation-activation")
            .count();
        vec![
            ("kills", kills),
            ("connection cuts", cuts),
            ("requests without an answer, retried", self.no_answer),
            ("503 answers, retried", self.unavailable),
            ("409 key in use, retried", self.in_use),
            (
                "allocations replayed",
                answered("allocation", &|r| r.status == 202),
            ),
            ("keys reused and refused", self.reused.len()),
            (
                "capped allocations",
                answered("allocation", &|r| r.body["capped"] == true),
            ),
            ("redemptions", db.redemptions.len()),
            (
                "refusals for balance",
                answered("redemption", &code("INSUFFICIENT_BALANCE"))
                    + answered("transfer", &code("INSUFFICIENT_BALANCE")),
            ),
            ("transfers", db.transfers.len()),
            ("captured holds", holds("CAPTURED")),
            ("voided holds", holds("VOIDED")),
            ("expired holds", holds("EXPIRED")),
            (
                "holds not active",
                answered("capture", &code("HOLD_NOT_ACTIVE"))
                    + answered("void", &code("HOLD_NOT_ACTIVE")),
            ),
            ("activations by the endpoint", client_activations),
            (
                "activations by the worker",
                activations.saturating_sub(client_activations),
            ),
            (
                "cancelled pending allocations",
                db.allocations
                    .values()
                    .filter(|a| a.0 == "CANCELLED")
                    .count(),
            ),
            (
                "partial reversals",
                db.keys
                    .iter()
                    .filter(|k| k.0 == "currency-reversal" && k.1.contains(':'))
                    .count(),
            ),
            (
                "full reversals",
                db.allocations.values().filter(|a| a.3).count(),
            ),
            ("out of stock", answered("issue", &code("OUT_OF_STOCK"))),
            (
                "limits reached",
                answered("issue", &code("CUSTOMER_LIMIT_EXCEEDED"))
                    + answered("issue", &code("PERIOD_LIMIT_EXCEEDED")),
            ),
            (
                "cancelled issuances",
                db.issuances.values().filter(|i| i.0 == "CANCELLED").count(),
            ),
        ]
    }
}
