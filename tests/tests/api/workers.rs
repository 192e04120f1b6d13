//! The background jobs keep going past items that fail: lots of accounts whose expiry is
//! refused, or pending allocations whose activation is, and that come first in the order the
//! job reads them in, do not keep the items behind them from being done.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tests::{Catalog, Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

/// More failing items than one read of a job takes (`EXPIRY_BATCH`, `ACTIVATION_BATCH`).
const FAILING: usize = 201;

async fn app_with_clock() -> (TestApp, ManualClock, String, Catalog) {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Workers").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

async fn expiry_strategy(app: &TestApp, key: &str, c: &Catalog, name: &str) -> i64 {
    let e = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            key,
            &json!({"name": name, "kind": "AFTER_DAYS", "days": 10}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    e.body["expiryStrategyId"].as_i64().unwrap()
}

fn mobile(i: usize) -> String {
    format!("9198{i:08}")
}

#[tokio::test]
async fn accounts_whose_expiry_fails_do_not_keep_the_worker_from_the_rest() {
    let (app, clock, key, c) = app_with_clock().await;
    let ten_days = expiry_strategy(&app, &key, &c, "10 days").await;
    for i in 0..FAILING {
        let mut body = allocation_body(&c, &mobile(i), json!(1000), &format!("bad-{i}"));
        body["expiryStrategyId"] = json!(ten_days);
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Their balances no longer hold what their lots have left: expiring a lot would take the
    // balance below zero, which the worker refuses, every time.
    app.scalar(
        "WITH b AS (UPDATE balances SET available = 0 RETURNING 1) SELECT count(*)::bigint FROM b",
    )
    .await;
    // The good account's lot expires a day after theirs: it is read after all of them.
    clock.advance(Duration::days(1));
    let good = mobile(FAILING);
    let mut body = allocation_body(&c, &good, json!(1000), "good");
    body["expiryStrategyId"] = json!(ten_days);
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    clock.advance(Duration::days(10));
    let now = clock.now_for_tests();
    assert_eq!(api::workers::expire_all(&app.db, now).await.unwrap(), 1);
    let customer = r.body["customerId"].as_str().unwrap();
    let balance = app.get(&format!("/v1/customers/{customer}"), &key).await;
    assert_eq!(balance.body["balances"][0]["available"], "0.00");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'")
            .await,
        1,
        "the failing accounts expired nothing"
    );
    // A later run tries the failing ones again, and still gets past them.
    assert_eq!(api::workers::expire_all(&app.db, now).await.unwrap(), 0);
}

#[tokio::test]
async fn allocations_whose_activation_fails_do_not_keep_the_worker_from_the_rest() {
    let (app, clock, key, c) = app_with_clock().await;
    let broken = expiry_strategy(&app, &key, &c, "broken later").await;
    let at = |later: Duration| {
        (clock.now_for_tests() + later).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    for i in 0..FAILING {
        let mut body = allocation_body(&c, &mobile(0), json!(1000), &format!("bad-{i}"));
        body["expiryStrategyId"] = json!(broken);
        body["maturesAt"] = json!(at(Duration::hours(1)));
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["status"], "PENDING");
    }
    // The good allocation matures after all of them: it is read after them.
    let mut body = allocation_body(&c, &mobile(0), json!(1000), "good");
    body["maturesAt"] = json!(at(Duration::hours(2)));
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Their expiry strategy loses its length: activating them (which dates their lot) fails,
    // every time.
    app.scalar(&format!(
        "WITH s AS (UPDATE expiry_strategies SET days = NULL WHERE id = {broken} RETURNING 1) \
         SELECT count(*)::bigint FROM s"
    ))
    .await;

    clock.advance(Duration::hours(3));
    let now = clock.now_for_tests();
    assert_eq!(api::workers::activate_all(&app.db, now).await.unwrap(), 1);
    let got = app.get("/v1/currency/allocations/good", &key).await;
    assert_eq!(got.body["status"], "ACTIVE", "{}", got.text);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations WHERE status = 'PENDING'")
            .await,
        FAILING as i64
    );
    assert_eq!(api::workers::activate_all(&app.db, now).await.unwrap(), 0);
}

#[tokio::test]
async fn holds_whose_expiry_fails_do_not_keep_the_worker_from_the_rest() {
    let (app, clock, key, c) = app_with_clock().await;
    let hold = |mobile: &str, unique: &str, seconds: i64| {
        json!({"programId": c.program_id, "currency": "POINTS", "amount": "1",
               "mobile": mobile, "uniqueId": unique, "expiresInSeconds": seconds})
    };
    let bad = mobile(0);
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, &bad, json!(5000), "bad"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for i in 0..FAILING {
        let h = app
            .post(
                "/v1/currency/holds",
                &key,
                &hold(&bad, &format!("bad-{i}"), 60),
            )
            .await;
        assert_eq!(h.status, StatusCode::CREATED, "{}", h.text);
    }
    // The balance no longer shows what the holds hold: releasing one would take `held` below
    // zero, which the worker refuses, every time.
    app.scalar(
        "WITH b AS (UPDATE balances SET held = 0 RETURNING 1) SELECT count(*)::bigint FROM b",
    )
    .await;
    // The good hold expires after all of them: it is read after them.
    let good = mobile(1);
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, &good, json!(1000), "good"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let h = app
        .post("/v1/currency/holds", &key, &hold(&good, "good", 120))
        .await;
    assert_eq!(h.status, StatusCode::CREATED, "{}", h.text);
    clock.advance(Duration::hours(1));
    let now = clock.now_for_tests();
    assert_eq!(
        api::workers::expire_holds_all(&app.db, now).await.unwrap(),
        1
    );
    let after = app
        .get(
            &format!("/v1/currency/holds/{}", h.body["holdId"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(after.body["status"], "EXPIRED", "{}", after.text);
}
