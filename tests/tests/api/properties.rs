//! Random sequences of every ledger operation with a movable clock: allocations (pending or
//! not, under earn caps or not), redemptions, holds, captures, voids, transfers, partial and
//! full reversals, activations, and the background jobs (lot expiry, activation, hold expiry,
//! expiry notices). The extended ledger invariant (`tests::invariant_violations`) is checked
//! after every step, and no step may answer anything but its documented statuses.

use std::sync::atomic::{AtomicUsize, Ordering};

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::json;
use tests::{Catalog, Reply, Spawn, StatusCode, TestApp, invariant_violations, setup_catalog};

/// The seed of the sequences CI runs.
const SEED: u64 = 20261123;

#[derive(Debug, Clone)]
enum Step {
    /// Allocate `source` (10 points per 100) to customer `who` with expiry 0: 10 days,
    /// 1: 365 days, 2: never; pending for `pending_hours` when set; under the capped strategy
    /// when `capped`.
    Allocate {
        who: usize,
        source: u32,
        expiry: usize,
        pending_hours: Option<u32>,
        capped: bool,
    },
    Redeem {
        who: usize,
        points: u32,
    },
    Hold {
        who: usize,
        points: u32,
        seconds: u32,
    },
    /// Capture the n-th hold of this case, all of it or `part`.
    Capture {
        nth: usize,
        part: Option<u32>,
    },
    Void {
        nth: usize,
    },
    Transfer {
        from: usize,
        points: u32,
    },
    /// Reverse the n-th allocation of this case, all that is left or `part`.
    Reverse {
        nth: usize,
        part: Option<u32>,
    },
    Activate {
        nth: usize,
    },
    Advance {
        hours: u32,
    },
    /// Every background job once, at the clock's time.
    Jobs,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..2, 1u32..2000, 0usize..3, proptest::option::weighted(0.25, 1u32..72), proptest::bool::weighted(0.3))
            .prop_map(|(who, source, expiry, pending_hours, capped)| Step::Allocate { who, source, expiry, pending_hours, capped }),
        2 => (0usize..2, 1u32..150).prop_map(|(who, points)| Step::Redeem { who, points }),
        2 => (0usize..2, 1u32..80, 60u32..259_200).prop_map(|(who, points, seconds)| Step::Hold { who, points, seconds }),
        2 => (0usize..6, proptest::option::of(1u32..60)).prop_map(|(nth, part)| Step::Capture { nth, part }),
        2 => (0usize..6).prop_map(|nth| Step::Void { nth }),
        2 => (0usize..2, 1u32..100).prop_map(|(from, points)| Step::Transfer { from, points }),
        2 => (0usize..8, proptest::option::of(1u32..40)).prop_map(|(nth, part)| Step::Reverse { nth, part }),
        1 => (0usize..8).prop_map(|nth| Step::Activate { nth }),
        2 => (1u32..240).prop_map(|hours| Step::Advance { hours }),
        1 => Just(Step::Jobs),
    ]
}

struct World<'a> {
    app: &'a TestApp,
    clock: &'a ManualClock,
    key: &'a str,
    c: &'a Catalog,
    capped_id: i64,
    expiries: [i64; 3],
}

/// What a step may answer: its statuses, and the codes a 4xx may carry.
struct Allowed(&'static [u16], &'static [&'static str]);

fn check(step: usize, what: &Step, r: &Reply, allowed: &Allowed) -> Result<(), String> {
    let status = r.status.as_u16();
    if !allowed.0.contains(&status) {
        return Err(format!(
            "step {step} {what:?} answered {status}: {}",
            r.text
        ));
    }
    if (400..500).contains(&status) && !allowed.1.contains(&r.code()) {
        return Err(format!(
            "step {step} {what:?} answered {status} {}",
            r.code()
        ));
    }
    Ok(())
}

async fn run_case(w: &World<'_>, case: usize, steps: Vec<Step>) -> Result<(), String> {
    let mobiles = [format!("9197{case:08}"), format!("9198{case:08}")];
    let mut allocations: Vec<String> = Vec::new();
    let mut holds: Vec<String> = Vec::new();
    let (app, key, c) = (w.app, w.key, w.c);
    let program = c.program_id;
    for (i, step) in steps.iter().enumerate() {
        let unique = format!("case{case}-step{i}");
        let now = w.clock.now_for_tests();
        match step {
            Step::Allocate {
                who,
                source,
                expiry,
                pending_hours,
                capped,
            } => {
                let mut body = json!({
                    "programId": program,
                    "awardStrategyId": if *capped { w.capped_id } else { c.rate_id },
                    "expiryStrategyId": w.expiries[*expiry],
                    "sourceValue": source, "mobile": mobiles[*who], "uniqueId": unique
                });
                if let Some(h) = pending_hours {
                    body["maturesAt"] = json!(
                        (now + Duration::hours(i64::from(*h)))
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
                let r = app.post("/v1/currency/allocations", key, &body).await;
                check(i, step, &r, &Allowed(&[201], &[]))?;
                allocations.push(unique.clone());
            }
            Step::Redeem { who, points } => {
                let body = json!({"programId": program, "currency": "POINTS", "amount": points, "mobile": mobiles[*who], "uniqueId": unique});
                let r = app.post("/v1/currency/redemptions", key, &body).await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(&[201, 404, 422], &["NOT_FOUND", "INSUFFICIENT_BALANCE"]),
                )?;
            }
            Step::Hold {
                who,
                points,
                seconds,
            } => {
                let body = json!({"programId": program, "currency": "POINTS", "amount": points, "mobile": mobiles[*who], "uniqueId": unique, "expiresInSeconds": seconds});
                let r = app.post("/v1/currency/holds", key, &body).await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(&[201, 404, 422], &["NOT_FOUND", "INSUFFICIENT_BALANCE"]),
                )?;
                if let Some(id) = r.body["holdId"].as_str() {
                    holds.push(id.to_owned());
                }
            }
            Step::Capture { nth, part } => {
                let Some(id) = (!holds.is_empty()).then(|| &holds[nth % holds.len()]) else {
                    continue;
                };
                let body = match part {
                    Some(p) => json!({"amount": p}),
                    None => json!({}),
                };
                let r = app
                    .post(&format!("/v1/currency/holds/{id}/capture"), key, &body)
                    .await;
                // 400: more than the hold holds; 422: more than is left of it after a lot
                // under it expired.
                check(
                    i,
                    step,
                    &r,
                    &Allowed(
                        &[201, 202, 400, 409, 422],
                        &[
                            "VALIDATION_FAILED",
                            "HOLD_NOT_ACTIVE",
                            "INSUFFICIENT_BALANCE",
                            "IDEMPOTENCY_KEY_REUSED",
                        ],
                    ),
                )?;
            }
            Step::Void { nth } => {
                let Some(id) = (!holds.is_empty()).then(|| &holds[nth % holds.len()]) else {
                    continue;
                };
                let r = app
                    .post(&format!("/v1/currency/holds/{id}/void"), key, &json!({}))
                    .await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(&[201, 202, 409], &["HOLD_NOT_ACTIVE"]),
                )?;
            }
            Step::Transfer { from, points } => {
                let body = json!({"programId": program, "currency": "POINTS", "amount": points,
                    "from": {"mobile": mobiles[*from]}, "to": {"mobile": mobiles[1 - from]}, "uniqueId": unique});
                let r = app.post("/v1/currency/transfers", key, &body).await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(&[201, 404, 422], &["NOT_FOUND", "INSUFFICIENT_BALANCE"]),
                )?;
            }
            Step::Reverse { nth, part } => {
                let Some(target) =
                    (!allocations.is_empty()).then(|| &allocations[nth % allocations.len()])
                else {
                    continue;
                };
                let body = match part {
                    Some(p) => json!({"amount": p, "reversalId": unique}),
                    None => json!({}),
                };
                let r = app
                    .post(
                        &format!("/v1/currency/allocations/{target}/reversal"),
                        key,
                        &body,
                    )
                    .await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(
                        &[201, 202, 422],
                        &[
                            "INSUFFICIENT_BALANCE",
                            "ALREADY_REVERSED",
                            "REVERSAL_EXCEEDS_ALLOCATION",
                        ],
                    ),
                )?;
            }
            Step::Activate { nth } => {
                let Some(target) =
                    (!allocations.is_empty()).then(|| &allocations[nth % allocations.len()])
                else {
                    continue;
                };
                let r = app
                    .post(
                        &format!("/v1/currency/allocations/{target}/activate"),
                        key,
                        &json!({}),
                    )
                    .await;
                check(
                    i,
                    step,
                    &r,
                    &Allowed(&[201, 202, 409], &["ALLOCATION_NOT_PENDING"]),
                )?;
            }
            Step::Advance { hours } => {
                w.clock.advance(Duration::hours(i64::from(*hours)));
                continue;
            }
            Step::Jobs => {
                let db = &app.db;
                let failed = |job: &str, e: persistence::PersistenceError| {
                    format!("step {i}: {job} failed: {e}")
                };
                api::workers::expire_all(db, now)
                    .await
                    .map_err(|e| failed("expiry", e))?;
                api::workers::activate_all(db, now)
                    .await
                    .map_err(|e| failed("activation", e))?;
                api::workers::expire_holds_all(db, now)
                    .await
                    .map_err(|e| failed("hold expiry", e))?;
                api::workers::notify_expiring_all(db, now, 7)
                    .await
                    .map_err(|e| failed("notices", e))?;
            }
        }
        let broken = invariant_violations(app).await;
        if !broken.is_empty() {
            return Err(format!("after step {i} {step:?}: {broken:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_lifecycle_sequences_keep_the_invariant() {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Props").await;
    let c = setup_catalog(&app, &key).await;
    let mut expiries = [0i64; 3];
    for (i, body) in [
        json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
        json!({"name": "1 year", "kind": "AFTER_DAYS", "days": 365}),
        json!({"name": "never", "kind": "NEVER"}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .post(
                &format!("/v1/programs/{}/expiry-strategies", c.program_id),
                &key,
                &body,
            )
            .await;
        expiries[i] = r.body["expiryStrategyId"].as_i64().unwrap();
    }
    let capped = app
        .post(
            &format!("/v1/programs/{}/award-strategies", c.program_id),
            &key,
            &json!({"name": "capped", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1",
                    "caps": [{"period": "DAY", "max": "150"}, {"period": "WEEK", "max": "400"}]}),
        )
        .await;
    assert_eq!(capped.status, StatusCode::CREATED, "{}", capped.text);
    let world = World {
        app: &app,
        clock: &clock,
        key: &key,
        c: &c,
        capped_id: capped.body["awardStrategyId"].as_i64().unwrap(),
        expiries,
    };
    let handle = tokio::runtime::Handle::current();
    let cases = AtomicUsize::new(0);
    // A fixed seed, so CI runs the same 64 sequences every time and the coverage check below
    // is about those; PROPTEST_RNG_SEED=<n> explores others.
    let mut config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let fixed_seed = std::env::var_os("PROPTEST_RNG_SEED").is_none();
    if fixed_seed {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    let mut runner = TestRunner::new(config);
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(step(), 1..24), |steps| {
            let case = cases.fetch_add(1, Ordering::SeqCst);
            handle
                .block_on(run_case(&world, case, steps))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences did exercise every part (a vacuous run would prove nothing).
    let mut coverage = Vec::new();
    for kind in [
        "CREDIT",
        "DEBIT",
        "HOLD",
        "RELEASE",
        "TRANSFER_OUT",
        "TRANSFER_IN",
        "REVERSAL",
    ] {
        let sql = format!("SELECT count(*)::bigint FROM ledger_entries WHERE kind = '{kind}'");
        coverage.push((format!("{kind} entry"), app.scalar(&sql).await));
    }
    for (what, sql) in [
        (
            "capped allocation",
            "SELECT count(*)::bigint FROM allocations WHERE capped",
        ),
        (
            "activation",
            "SELECT count(*)::bigint FROM allocations WHERE activated_at IS NOT NULL",
        ),
        (
            "captured hold",
            "SELECT count(*)::bigint FROM holds WHERE status = 'CAPTURED'",
        ),
        (
            "voided hold",
            "SELECT count(*)::bigint FROM holds WHERE status = 'VOIDED'",
        ),
        (
            "expired hold",
            "SELECT count(*)::bigint FROM holds WHERE status = 'EXPIRED'",
        ),
        (
            "expired lot",
            "SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'",
        ),
        (
            "noticed lot",
            "SELECT count(*)::bigint FROM ledger_entries WHERE notified_at IS NOT NULL",
        ),
        (
            "partial reversal",
            "SELECT count(*)::bigint FROM allocations WHERE reversed_amount > 0 AND reversed_at IS NULL",
        ),
    ] {
        coverage.push((what.to_owned(), app.scalar(sql).await));
    }
    eprintln!("coverage: {coverage:?}");
    let missing: Vec<_> = coverage.iter().filter(|(_, n)| *n == 0).collect();
    assert!(
        missing.is_empty() || !fixed_seed,
        "the sequences of seed {SEED} made none of {missing:?}"
    );
}
