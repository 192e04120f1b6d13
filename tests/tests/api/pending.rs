//! Pending points (`maturesAt`), activation by the worker or on request, and partial reversals.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

const MOBILE: &str = "919812345678";

async fn app_with_clock() -> (TestApp, ManualClock, String, Catalog) {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Pending").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

fn at(clock: &ManualClock, later: Duration) -> String {
    (clock.now_for_tests() + later).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn assert_invariant(app: &TestApp) {
    let broken = invariant_violations(app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

fn pending_body(c: &Catalog, source: i64, unique: &str, matures_at: &str) -> Value {
    let mut body = allocation_body(c, MOBILE, json!(source), unique);
    body["maturesAt"] = json!(matures_at);
    body
}

#[tokio::test]
async fn pending_points_are_not_spendable_until_the_worker_activates_them() {
    let (app, clock, key, c) = app_with_clock().await;
    let matures = at(&clock, Duration::days(14));
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &pending_body(&c, 1000, "p1", &matures),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["maturesAt"], matures.as_str());
    assert_eq!(
        r.body["expiresAt"],
        Value::Null,
        "its life starts when it becomes available"
    );
    assert_eq!(r.body["ledgerEntryId"], Value::Null);
    assert_eq!(
        r.body["balance"],
        json!({"available": "0.00", "pending": "100.00", "held": "0.00"})
    );
    assert_invariant(&app).await;
    // The same request replays; another maturesAt is another request.
    let again = app
        .post(
            "/v1/currency/allocations",
            &key,
            &pending_body(&c, 1000, "p1", &matures),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let other = app
        .post(
            "/v1/currency/allocations",
            &key,
            &pending_body(&c, 1000, "p1", &at(&clock, Duration::days(15))),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["mismatchedFields"], json!(["maturesAt"]));

    // Not spendable: no redemption, no hold.
    for (path, body) in [
        (
            "/v1/currency/redemptions",
            json!({"programId": c.program_id, "currency": "POINTS", "amount": 1, "mobile": MOBILE, "uniqueId": "r1"}),
        ),
        (
            "/v1/currency/holds",
            json!({"programId": c.program_id, "currency": "POINTS", "amount": 1, "mobile": MOBILE, "uniqueId": "h1"}),
        ),
    ] {
        let r = app.post(path, &key, &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            r.text
        );
        assert_eq!(r.code(), "INSUFFICIENT_BALANCE");
    }

    assert_eq!(
        api::workers::activate_all(&app.db, clock.now_for_tests())
            .await
            .unwrap(),
        0,
        "not due yet"
    );
    clock.advance(Duration::days(14));
    let db2 = persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
        .await
        .unwrap();
    let now = clock.now_for_tests();
    let (a, b) = tokio::join!(
        api::workers::activate_all(&app.db, now),
        api::workers::activate_all(&db2, now)
    );
    assert_eq!(
        a.unwrap() + b.unwrap(),
        1,
        "activated once by two instances"
    );
    let got = app.get("/v1/currency/allocations/p1", &key).await;
    assert_eq!(got.body["status"], "ACTIVE");
    assert_eq!(
        got.body["activatedAt"],
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // A year from activation, not from the allocation.
    assert_eq!(
        got.body["expiresAt"],
        (now + Duration::days(365)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(
        got.body["balance"],
        json!({"available": "100.00", "pending": "0.00", "held": "0.00"})
    );
    // The activation endpoint now replays the worker's activation.
    let r = app
        .post("/v1/currency/allocations/p1/activate", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'CREDIT'")
            .await,
        1
    );
    assert_invariant(&app).await;
}

#[tokio::test]
async fn activation_on_request_is_once_and_a_past_matures_at_means_now() {
    let (app, clock, key, c) = app_with_clock().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &pending_body(&c, 1000, "now", &at(&clock, Duration::seconds(-5))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(r.body["balance"]["available"], "100.00");
    // Activating an allocation that was never pending is refused.
    let r = app
        .post("/v1/currency/allocations/now/activate", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.code(), "ALLOCATION_NOT_PENDING");

    let matures = at(&clock, Duration::days(30));
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &pending_body(&c, 500, "later", &matures),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut answers = Vec::new();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/v1/currency/allocations/later/activate");
            let key = key.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("X-API-KEY", key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers.sort();
    assert_eq!(
        answers.iter().filter(|s| **s == 201).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| [201, 202].contains(s)),
        "{answers:?}"
    );
    let got = app.get("/v1/currency/allocations/later", &key).await;
    assert_eq!(got.body["status"], "ACTIVE");
    assert_eq!(got.body["balance"]["available"], "150.00");
    // The worker finds nothing left to do when its time comes.
    clock.advance(Duration::days(31));
    assert_eq!(
        api::workers::activate_all(&app.db, clock.now_for_tests())
            .await
            .unwrap(),
        0
    );
    assert_invariant(&app).await;
}

#[tokio::test]
async fn reversing_a_pending_allocation_cancels_or_lowers_it() {
    let (app, clock, key, c) = app_with_clock().await;
    let matures = at(&clock, Duration::days(14));
    for unique in ["p1", "p2"] {
        let r = app
            .post(
                "/v1/currency/allocations",
                &key,
                &pending_body(&c, 1000, unique, &matures),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // A part of p1 is returned while it is pending; p2 is reversed in full.
    let r = app
        .post(
            "/v1/currency/allocations/p1/reversal",
            &key,
            &json!({"amount": "30", "reversalId": "return-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["amount"], "30.00");
    assert_eq!(r.body["allocationStatus"], "PENDING");
    assert_eq!(r.body["balance"]["pending"], "170.00");
    let r = app
        .post("/v1/currency/allocations/p2/reversal", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["allocationStatus"], "CANCELLED");
    assert_eq!(r.body["balance"]["pending"], "70.00");
    assert_invariant(&app).await;
    clock.advance(Duration::days(14));
    assert_eq!(
        api::workers::activate_all(&app.db, clock.now_for_tests())
            .await
            .unwrap(),
        1
    );
    let p1 = app.get("/v1/currency/allocations/p1", &key).await;
    assert_eq!(p1.body["status"], "ACTIVE");
    assert_eq!(p1.body["reversedAmount"], "30.00");
    assert_eq!(
        p1.body["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "0.00"}),
        "only what was left of p1 became available; p2 never did"
    );
    let p2 = app.get("/v1/currency/allocations/p2", &key).await;
    assert_eq!(p2.body["status"], "CANCELLED");
    assert_invariant(&app).await;
}

#[tokio::test]
async fn partial_reversals_are_each_once_and_never_exceed_the_allocation() {
    let (app, _clock, key, c) = app_with_clock().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(1000), "buy"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let part =
        |id: &str, amount: Value| json!({"amount": amount, "reversalId": id, "reason": "returned"});
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r1", json!(40)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["reversedAmount"], "40.00");
    assert_eq!(r.body["idempotencyKey"], "r1");
    assert_eq!(r.body["balance"]["available"], "60.00");
    // The same part again replays; its key with another amount is refused.
    let again = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r1", json!("40.00")),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    let reused = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r1", json!(41)),
        )
        .await;
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    // More than is left: refused, and the key stays free.
    let over = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r2", json!(61)),
        )
        .await;
    assert_eq!(
        over.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        over.text
    );
    assert_eq!(over.code(), "REVERSAL_EXCEEDS_ALLOCATION");
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r2", json!(20)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // An amount needs a key; the key in the header works as well.
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &json!({"amount": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .post_with(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &json!({"amount": 5}),
            &[("Idempotency-Key", "r3")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // A key of the longest allowed length works too, once.
    let long = "k".repeat(255);
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part(&long, json!(1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["idempotencyKey"], long.as_str());
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part(&long, json!(1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    // The rest in full: 34 left.
    let r = app
        .post("/v1/currency/allocations/buy/reversal", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["amount"], "34.00");
    assert_eq!(r.body["reversedAmount"], "100.00");
    assert_eq!(r.body["balance"]["available"], "0.00");
    let r = app
        .post(
            "/v1/currency/allocations/buy/reversal",
            &key,
            &part("r4", json!(1)),
        )
        .await;
    assert_eq!(r.code(), "REVERSAL_EXCEEDS_ALLOCATION");
    assert_invariant(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_partial_reversals_never_pass_the_allocation() {
    let (app, _clock, key, c) = app_with_clock().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(1000), "buy"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // 20 parts of 10 against an allocation of 100: exactly ten succeed.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/v1/currency/allocations/buy/reversal");
            let key = key.clone();
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("X-API-KEY", key)
                    .json(&json!({"amount": 10, "reversalId": format!("part-{i}")}))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|s| **s == 201).count(),
        10,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| [201, 422].contains(s)),
        "{answers:?}"
    );
    let got = app.get("/v1/currency/allocations/buy", &key).await;
    assert_eq!(got.body["reversedAmount"], "100.00");
    assert_eq!(got.body["balance"]["available"], "0.00");
    assert_invariant(&app).await;
}
