//! Random sequences of allocations, redemptions, reversals, clock moves and expiry runs; the
//! ledger invariant (balance = sum of the ledger = remaining of the lots) is checked after
//! every step, and no step may answer anything but its documented statuses.

use std::sync::atomic::{AtomicUsize, Ordering};

use api::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

#[derive(Debug, Clone)]
enum Step {
    /// Allocate `source` (10 points per 100) with expiry 0: 10 days, 1: 365 days, 2: never.
    Allocate {
        source: u32,
        expiry: usize,
    },
    Redeem {
        points: u32,
    },
    /// Reverse the n-th allocation of this case (modulo how many there are).
    Reverse {
        nth: usize,
    },
    Advance {
        days: u32,
    },
    Expire,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u32..2000, 0usize..3).prop_map(|(source, expiry)| Step::Allocate { source, expiry }),
        2 => (1u32..150).prop_map(|points| Step::Redeem { points }),
        1 => (0usize..8).prop_map(|nth| Step::Reverse { nth }),
        1 => (1u32..15).prop_map(|days| Step::Advance { days }),
        1 => Just(Step::Expire),
    ]
}

async fn run_case(
    app: &TestApp,
    clock: &ManualClock,
    key: &str,
    c: &Catalog,
    expiries: [i64; 3],
    case: usize,
    steps: Vec<Step>,
) -> Result<(), String> {
    let mobile = format!("9197{case:08}");
    let mut allocations: Vec<String> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let unique = format!("case{case}-step{i}");
        let status = match step {
            Step::Allocate { source, expiry } => {
                let mut body = allocation_body(c, &mobile, json!(source), &unique);
                body["expiryStrategyId"] = json!(expiries[*expiry]);
                let r = app.post("/v1/currency/allocations", key, &body).await;
                if r.status == StatusCode::CREATED {
                    allocations.push(unique.clone());
                }
                (r.status, r.code().to_owned(), vec![StatusCode::CREATED])
            }
            Step::Redeem { points } => {
                let body = json!({"programId": c.program_id, "currency": "POINTS", "amount": points, "mobile": mobile, "uniqueId": unique});
                let r = app.post("/v1/currency/redemptions", key, &body).await;
                // Unknown customer (nothing allocated yet) or not enough points are fine.
                (
                    r.status,
                    r.code().to_owned(),
                    vec![
                        StatusCode::CREATED,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        StatusCode::NOT_FOUND,
                    ],
                )
            }
            Step::Reverse { nth } => {
                if allocations.is_empty() {
                    continue;
                }
                let target = &allocations[nth % allocations.len()];
                let r = app
                    .post(
                        &format!("/v1/currency/allocations/{target}/reversal"),
                        key,
                        &json!({}),
                    )
                    .await;
                (
                    r.status,
                    r.code().to_owned(),
                    vec![
                        StatusCode::CREATED,
                        StatusCode::ACCEPTED,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    ],
                )
            }
            Step::Advance { days } => {
                clock.advance(Duration::days(i64::from(*days)));
                continue;
            }
            Step::Expire => {
                api::workers::expire_all(&app.db, clock.now_for_tests())
                    .await
                    .map_err(|e| format!("expiry failed: {e}"))?;
                continue;
            }
        };
        let (got, code, allowed) = status;
        if !allowed.contains(&got) {
            return Err(format!("step {i} {step:?} answered {got} {code}"));
        }
        if got == StatusCode::UNPROCESSABLE_ENTITY && code != "INSUFFICIENT_BALANCE" {
            return Err(format!("step {i} {step:?} answered 422 {code}"));
        }
        let broken = invariant_violations(app).await;
        if !broken.is_empty() {
            return Err(format!("after step {i} {step:?}: {broken:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_ledger_sequences_keep_the_invariant() {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn {
        clock: Some(clock.clone()),
        ..Spawn::default()
    })
    .await;
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
    let handle = tokio::runtime::Handle::current();
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(step(), 1..14), |steps| {
            let case = cases.fetch_add(1, Ordering::SeqCst);
            handle
                .block_on(run_case(&app, &clock, &key, &c, expiries, case, steps))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences did exercise the ledger (a vacuous run would prove nothing).
    let kinds = |k: &str| format!("SELECT count(*)::bigint FROM ledger_entries WHERE kind = '{k}'");
    assert!(app.scalar(&kinds("CREDIT")).await > 10);
    assert!(app.scalar(&kinds("DEBIT")).await > 0);
    assert!(app.scalar(&kinds("REVERSAL")).await + app.scalar(&kinds("EXPIRE")).await > 0);
}
