//! Requests racing the background jobs of another instance whose clock is a moment ahead:
//! captures and voids against hold expiry, redemptions and holds against lot expiry. Each
//! contested thing has exactly one outcome, nothing answers 5xx, and nothing is lost or made.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{Catalog, Spawn, StatusCode, TestApp, invariant_violations, setup_catalog};

const MOBILE: &str = "919866660000";

async fn app_with_clock() -> (TestApp, ManualClock, String, Catalog) {
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Races").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

async fn second_instance(app: &TestApp) -> persistence::Db {
    persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
        .await
        .unwrap()
}

/// Posts `body` to `path` from a task of its own; answers (status, body).
fn spawn_post(
    app: &TestApp,
    key: &str,
    path: &str,
    body: Value,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let client = app.client.clone();
    let url = app.url(path);
    let key = key.to_owned();
    tokio::spawn(async move {
        let r = client
            .post(url)
            .header("X-API-KEY", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_void_and_hold_expiry_racing_have_one_winner_per_hold() {
    let (app, clock, key, c) = app_with_clock().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &json!({"programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": c.expiry_id,
                    "sourceValue": 100_000, "mobile": MOBILE, "uniqueId": "funds"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = app
            .post(
                "/v1/currency/holds",
                &key,
                &json!({"programId": c.program_id, "currency": "POINTS", "amount": 50, "mobile": MOBILE,
                        "uniqueId": format!("h{i}"), "expiresInSeconds": 60}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["holdId"].as_str().unwrap().to_owned());
    }
    // The serving instance is a second before the holds expire; the other instance's worker
    // is a second past it.
    clock.advance(Duration::seconds(59));
    let worker_now = clock.now_for_tests() + Duration::seconds(2);
    let other = second_instance(&app).await;
    let worker = tokio::spawn(async move {
        let mut released = 0;
        for _ in 0..5 {
            released += api::workers::expire_holds_all(&other, worker_now)
                .await
                .unwrap();
        }
        released
    });
    let mut tasks = Vec::new();
    for id in &ids {
        for action in ["capture", "void"] {
            tasks.push((
                id.clone(),
                action,
                spawn_post(
                    &app,
                    &key,
                    &format!("/v1/currency/holds/{id}/{action}"),
                    json!({}),
                ),
            ));
        }
    }
    let mut wins = std::collections::HashMap::<String, Vec<&str>>::new();
    for (id, action, task) in tasks {
        let (status, body) = task.await.unwrap();
        assert!(
            status == 201 || status == 409,
            "{action} {id}: {status} {body}"
        );
        if status == 201 {
            wins.entry(id).or_default().push(action);
        }
    }
    let released = worker.await.unwrap();
    let mut expired = 0;
    for id in &ids {
        let state = app.get(&format!("/v1/currency/holds/{id}"), &key).await;
        let status = state.body["status"].as_str().unwrap().to_owned();
        let won = wins.get(id).cloned().unwrap_or_default();
        match status.as_str() {
            "CAPTURED" => assert_eq!(won, ["capture"], "{id}"),
            "VOIDED" => assert_eq!(won, ["void"], "{id}"),
            "EXPIRED" => {
                assert!(won.is_empty(), "{id}: {won:?} won, yet it expired");
                expired += 1;
            }
            other => panic!("{id} is {other}"),
        }
    }
    assert_eq!(released, expired, "the worker released what it says");
    let broken = invariant_violations(&app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemptions_and_holds_racing_lot_expiry_never_spend_an_expired_point() {
    let (app, clock, key, c) = app_with_clock().await;
    let e = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "1 day", "kind": "AFTER_DAYS", "days": 1}),
        )
        .await;
    let one_day = e.body["expiryStrategyId"].as_i64().unwrap();
    // 40 customers with 100 points each, all expiring together.
    for i in 0..40 {
        let r = app
            .post(
                "/v1/currency/allocations",
                &key,
                &json!({"programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": one_day,
                        "sourceValue": 1000, "mobile": format!("9198666{i:05}"), "uniqueId": format!("a{i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    clock.advance(Duration::days(1) - Duration::seconds(1));
    let worker_now = clock.now_for_tests() + Duration::seconds(2);
    let other = second_instance(&app).await;
    let worker = tokio::spawn(async move {
        let mut expired = 0;
        for _ in 0..5 {
            expired += api::workers::expire_all(&other, worker_now).await.unwrap();
        }
        expired
    });
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mobile = format!("9198666{i:05}");
        let (path, body) = if i % 2 == 0 {
            (
                "/v1/currency/redemptions",
                json!({"programId": c.program_id, "currency": "POINTS", "amount": 60, "mobile": mobile, "uniqueId": format!("r{i}")}),
            )
        } else {
            (
                "/v1/currency/holds",
                json!({"programId": c.program_id, "currency": "POINTS", "amount": 60, "mobile": mobile, "uniqueId": format!("h{i}")}),
            )
        };
        tasks.push(spawn_post(&app, &key, path, body));
    }
    let mut spent = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => spent += 1,
            422 => assert_eq!(body["code"], "INSUFFICIENT_BALANCE", "{body}"),
            other => panic!("answered {other}: {body}"),
        }
    }
    let expired = worker.await.unwrap();
    // Every lot either expired whole (its customer's request came too late) or was spent
    // first and then expired with what was left: one EXPIRE entry per lot, never two.
    assert_eq!(expired, 40, "{spent} spent");
    assert_eq!(
        app.scalar(
            "SELECT count(DISTINCT reference)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'"
        )
        .await,
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'")
            .await,
    );
    // Nothing is left anywhere once the lots' time has passed for the serving instance too
    // (held points expire with their lots).
    clock.advance(Duration::seconds(2));
    api::workers::expire_all(&app.db, clock.now_for_tests())
        .await
        .unwrap();
    assert_eq!(
        app.scalar("SELECT COALESCE(sum(available + held), 0)::bigint FROM balances")
            .await,
        0
    );
    assert_eq!(
        app.scalar(
            "SELECT (sum(CASE WHEN kind = 'CREDIT' THEN amount ELSE 0 END) \
             - sum(CASE WHEN kind IN ('DEBIT', 'EXPIRE') THEN amount ELSE 0 END))::bigint \
             FROM ledger_entries"
        )
        .await,
        0,
        "credited = spent + expired"
    );
    let broken = invariant_violations(&app).await;
    assert!(broken.is_empty(), "{broken:?}");
}
