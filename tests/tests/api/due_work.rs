//! Work that has come due in an account (a hold past its `expiresAt`, pending points past their
//! `maturesAt`) is done by whatever next takes the account's balance lock, not only by the
//! workers, which skip busy accounts: an account cannot be starved by its own traffic.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

const MOBILE: &str = "919800900001";

async fn app_with_clock() -> (TestApp, ManualClock, String, Catalog) {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Due").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

fn redemption(c: &Catalog, amount: &str, unique: &str) -> Value {
    json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
           "mobile": MOBILE, "uniqueId": unique})
}

async fn assert_invariant(app: &TestApp) {
    let broken = invariant_violations(app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

/// 100.00 points, 80.00 of them held for an hour; two hours later, with no worker run, a
/// redemption of 50.00 (group-committed) and a hold of 10.00 (alone) find the hold released.
#[tokio::test]
async fn an_expired_hold_is_released_by_the_next_spend_on_its_account() {
    let (app, clock, key, c) = app_with_clock().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(1000), "a1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hold = app
        .post(
            "/v1/currency/holds",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "80",
                    "mobile": MOBILE, "uniqueId": "h1", "expiresInSeconds": 3600}),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
    let hold_id = hold.body["holdId"].as_str().expect("holdId").to_owned();
    clock.advance(Duration::hours(2));
    let spent = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, "50", "r1"),
        )
        .await;
    assert_eq!(spent.status, StatusCode::CREATED, "{}", spent.text);
    assert_eq!(
        spent.body["balance"],
        json!({"available": "50.00", "pending": "0.00", "held": "0.00"})
    );
    let after = app
        .get(&format!("/v1/currency/holds/{hold_id}"), &key)
        .await;
    assert_eq!(after.body["status"], "EXPIRED", "{}", after.text);
    let more = app
        .post(
            "/v1/currency/holds",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "10",
                    "mobile": MOBILE, "uniqueId": "h2"}),
        )
        .await;
    assert_eq!(more.status, StatusCode::CREATED, "{}", more.text);
    assert_invariant(&app).await;
}

/// Pending points past their `maturesAt`, with no worker run: the next redemption on the
/// account (group-committed) activates them and spends them; the activation is recorded
/// under its key, so `POST …/activate` then replays it.
#[tokio::test]
async fn matured_pending_points_are_activated_by_the_next_spend_on_their_account() {
    let (app, clock, key, c) = app_with_clock().await;
    let mut body = allocation_body(&c, MOBILE, json!(1000), "p1");
    body["maturesAt"] = json!("2026-11-22T11:00:00Z");
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "PENDING");
    clock.advance(Duration::hours(2));
    let spent = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, "50", "r1"),
        )
        .await;
    assert_eq!(spent.status, StatusCode::CREATED, "{}", spent.text);
    assert_eq!(
        spent.body["balance"],
        json!({"available": "50.00", "pending": "0.00", "held": "0.00"})
    );
    let activated = app
        .post("/v1/currency/allocations/p1/activate", &key, &json!({}))
        .await;
    assert_eq!(activated.status, StatusCode::ACCEPTED, "{}", activated.text);
    assert_eq!(activated.body["status"], "ACTIVE", "{}", activated.text);
    assert_invariant(&app).await;
}

/// The same on the path that runs alone: a transfer out of an account whose pending points
/// have matured and whose hold has expired.
#[tokio::test]
async fn a_transfer_settles_what_has_come_due_first() {
    let (app, clock, key, c) = app_with_clock().await;
    let mut body = allocation_body(&c, MOBILE, json!(1000), "p1");
    body["maturesAt"] = json!("2026-11-22T11:00:00Z");
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(500), "a2"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hold = app
        .post(
            "/v1/currency/holds",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "50",
                    "mobile": MOBILE, "uniqueId": "h1", "expiresInSeconds": 3600}),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
    clock.advance(Duration::hours(2));
    let transfer = json!({"programId": c.program_id, "currency": "POINTS", "amount": "140",
        "from": {"mobile": MOBILE}, "to": {"mobile": "919800900002"}, "uniqueId": "t1"});
    let sent = app.post("/v1/currency/transfers", &key, &transfer).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    assert_eq!(
        sent.body["from"]["balance"],
        json!({"available": "10.00", "pending": "0.00", "held": "0.00"})
    );
    assert_invariant(&app).await;
}
