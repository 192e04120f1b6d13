//! Holds (two-phase redemption): create, capture, void, expiry, and their races.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

const MOBILE: &str = "919812345678";

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn app_with_clock() -> (TestApp, ManualClock) {
    let clock = ManualClock::new(start());
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    (app, clock)
}

/// Allocates `source` (0.1 points per unit, so `source / 10` points) to `mobile`.
async fn allocate(app: &TestApp, key: &str, c: &Catalog, mobile: &str, source: i64, unique: &str) {
    let r = app
        .post(
            "/v1/currency/allocations",
            key,
            &allocation_body(c, mobile, json!(source), unique),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn hold_body(c: &Catalog, amount: Value, unique: &str) -> Value {
    json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
           "mobile": MOBILE, "uniqueId": unique})
}

async fn assert_invariant(app: &TestApp) {
    let broken = invariant_violations(app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

#[tokio::test]
async fn a_hold_reserves_points_and_a_capture_spends_part_and_releases_the_rest() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 1000, "a1").await; // 100.00 points

    let r = app
        .post(
            "/v1/currency/holds",
            &key,
            &hold_body(&c, json!("40"), "h1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "HELD");
    assert_eq!(r.body["amount"], "40.00");
    assert_eq!(r.body["heldAmount"], "40.00");
    assert_eq!(r.body["idempotentReplayed"], false);
    assert_eq!(
        r.body["balance"],
        json!({"available": "60.00", "pending": "0.00", "held": "40.00"})
    );
    let hold_id = r.body["holdId"].as_str().unwrap().to_owned();
    let at = |field: &str| {
        r.body[field]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(at("expiresAt") - at("createdAt"), Duration::seconds(900));
    assert_invariant(&app).await;

    // The same request again replays; the same key with another amount is refused.
    let again = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(40), "h1"))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.body["holdId"], hold_id.as_str());
    assert_eq!(again.body["idempotentReplayed"], true);
    let reused = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(41), "h1"))
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(reused.body["mismatchedFields"], json!(["amount"]));

    // Held points cannot be redeemed.
    let redeem = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": 61, "mobile": MOBILE, "uniqueId": "r1"}),
        )
        .await;
    assert_eq!(redeem.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(redeem.code(), "INSUFFICIENT_BALANCE");

    let got = app
        .get(&format!("/v1/currency/holds/{hold_id}"), &key)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["status"], "HELD");

    let capture = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/capture"),
            &key,
            &json!({"amount": "30"}),
        )
        .await;
    assert_eq!(capture.status, StatusCode::CREATED, "{}", capture.text);
    assert_eq!(capture.body["status"], "CAPTURED");
    assert_eq!(capture.body["capturedAmount"], "30.00");
    assert_eq!(capture.body["releasedAmount"], "10.00");
    assert_eq!(capture.body["heldAmount"], "0.00");
    assert_eq!(
        capture.body["balance"],
        json!({"available": "70.00", "pending": "0.00", "held": "0.00"})
    );
    assert_invariant(&app).await;

    // Captured once: the same capture replays, another amount is a reused key, a void is 409.
    let again = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/capture"),
            &key,
            &json!({"amount": 30}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.body["capturedAmount"], "30.00");
    let other = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/capture"),
            &key,
            &json!({"amount": 20}),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "IDEMPOTENCY_KEY_REUSED");
    let void = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/void"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(void.status, StatusCode::CONFLICT, "{}", void.text);
    assert_eq!(void.code(), "HOLD_NOT_ACTIVE");

    let kinds: Vec<String> = app
        .get(
            &format!(
                "/v1/customers/{}/ledger",
                capture.body["customerId"].as_str().unwrap()
            ),
            &key,
        )
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["RELEASE", "DEBIT", "HOLD", "CREDIT"]);
    assert_invariant(&app).await;
}

#[tokio::test]
async fn a_void_releases_everything_and_a_capture_after_it_is_refused() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 1000, "a1").await;
    let r = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(100), "h1"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hold_id = r.body["holdId"].as_str().unwrap().to_owned();
    let void = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/void"),
            &key,
            &Value::Null,
        )
        .await;
    assert_eq!(void.status, StatusCode::CREATED, "{}", void.text);
    assert_eq!(void.body["status"], "VOIDED");
    assert_eq!(void.body["releasedAmount"], "100.00");
    assert_eq!(void.body["balance"]["available"], "100.00");
    let again = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/void"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let capture = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/capture"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(capture.status, StatusCode::CONFLICT, "{}", capture.text);
    assert_eq!(capture.code(), "HOLD_NOT_ACTIVE");
    assert_invariant(&app).await;
}

#[tokio::test]
async fn a_hold_above_the_available_balance_fails_and_keeps_its_key() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 1000, "a1").await;
    let r = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(150), "h1"))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.code(), "INSUFFICIENT_BALANCE");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM holds").await,
        0,
        "a refused hold writes nothing"
    );
    allocate(&app, &key, &c, MOBILE, 1000, "a2").await;
    let r = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(150), "h1"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_invariant(&app).await;
}

#[tokio::test]
async fn bad_hold_requests_are_4xx_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 1000, "a1").await;
    let (_, other) = app.create_org("Other").await;
    let before = app.row_counts().await;
    for (patch, status, code) in [
        (json!({"expiresInSeconds": 0}), 400, "VALIDATION_FAILED"),
        (json!({"expiresInSeconds": -60}), 400, "VALIDATION_FAILED"),
        (
            json!({"expiresInSeconds": 604_801}),
            400,
            "VALIDATION_FAILED",
        ),
        (json!({"amount": "0"}), 400, "VALIDATION_FAILED"),
        (json!({"amount": "1.001"}), 422, "AMOUNT_NOT_REPRESENTABLE"),
        (json!({"currency": "GEMS"}), 404, "CURRENCY_NOT_FOUND"),
        (json!({"mobile": "919800000000"}), 404, "NOT_FOUND"),
        (json!({"uniqueId": null}), 400, "VALIDATION_FAILED"),
    ] {
        let mut body = hold_body(&c, json!(10), "bad");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post("/v1/currency/holds", &key, &body).await;
        assert_eq!(r.status.as_u16(), status, "{patch}: {}", r.text);
        assert_eq!(r.code(), code, "{patch}");
    }
    let r = app
        .post("/v1/currency/holds", &key, &hold_body(&c, json!(10), "h1"))
        .await;
    let hold_id = r.body["holdId"].as_str().unwrap().to_owned();
    let after_hold = app.row_counts().await;
    for (path, body, status) in [
        (
            format!("/v1/currency/holds/{hold_id}/capture"),
            json!({"amount": 11}),
            400,
        ),
        (
            format!("/v1/currency/holds/{hold_id}/capture"),
            json!({"amount": "0.001"}),
            422,
        ),
        (
            format!("/v1/currency/holds/{hold_id}/capture"),
            json!({"amount": -1}),
            400,
        ),
        (
            format!("/v1/currency/holds/{hold_id}/capture"),
            json!({"other": 1}),
            400,
        ),
        (
            "/v1/currency/holds/0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c05/capture".into(),
            json!({}),
            404,
        ),
        ("/v1/currency/holds/not-a-uuid/void".into(), json!({}), 404),
    ] {
        let r = app.post(&path, &key, &body).await;
        assert_eq!(r.status.as_u16(), status, "{path} {body}: {}", r.text);
    }
    assert_eq!(
        app.get("/v1/currency/holds/not-a-uuid", &key).await.status,
        StatusCode::NOT_FOUND
    );
    // Another organisation cannot see or settle the hold.
    assert_eq!(
        app.get(&format!("/v1/currency/holds/{hold_id}"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/v1/currency/holds/{hold_id}/void"),
            &other,
            &json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.row_counts().await, after_hold);
    assert_ne!(before, after_hold);
    assert_invariant(&app).await;
}

#[tokio::test]
async fn an_expired_hold_is_released_once_by_the_worker_on_any_number_of_instances() {
    let (app, clock) = app_with_clock().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 10_000, "a1").await; // 1000 points
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut body = hold_body(&c, json!(10), &format!("h{i}"));
        body["expiresInSeconds"] = json!(60);
        let r = app.post("/v1/currency/holds", &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["holdId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        api::workers::expire_holds_all(&app.db, clock.now_for_tests())
            .await
            .unwrap(),
        0,
        "nothing is due yet"
    );
    clock.advance(Duration::seconds(60));
    // Past its expiry a hold can no longer be captured, even before the worker ran.
    let r = app
        .post(
            &format!("/v1/currency/holds/{}/capture", ids[0]),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.code(), "HOLD_NOT_ACTIVE");
    let db2 = persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
        .await
        .unwrap();
    let now = clock.now_for_tests();
    let (a, b) = tokio::join!(
        api::workers::expire_holds_all(&app.db, now),
        api::workers::expire_holds_all(&db2, now)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 20);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM holds WHERE status = 'EXPIRED'")
            .await,
        20
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'RELEASE'")
            .await,
        20,
        "each hold released exactly once"
    );
    let got = app
        .get(&format!("/v1/currency/holds/{}", ids[0]), &key)
        .await;
    assert_eq!(got.body["status"], "EXPIRED");
    assert_eq!(got.body["releasedAmount"], "10.00");
    assert_eq!(got.body["balance"]["available"], "1000.00");
    assert_eq!(got.body["balance"]["held"], "0.00");
    assert_invariant(&app).await;
}

#[tokio::test]
async fn held_points_expire_with_their_lots_and_a_void_returns_only_what_is_left() {
    let (app, clock) = app_with_clock().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    let five_days = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "5 days", "kind": "AFTER_DAYS", "days": 5}),
        )
        .await
        .body["expiryStrategyId"]
        .as_i64()
        .unwrap();
    let never = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "never", "kind": "NEVER"}),
        )
        .await
        .body["expiryStrategyId"]
        .as_i64()
        .unwrap();
    for (unique, expiry) in [("soon", five_days), ("never", never)] {
        let mut body = allocation_body(&c, MOBILE, json!(1000), unique);
        body["expiryStrategyId"] = json!(expiry);
        assert_eq!(
            app.post("/v1/currency/allocations", &key, &body)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    // 150 held: the 100 that expire in 5 days first, then 50 of the never-expiring lot.
    let mut body = hold_body(&c, json!(150), "h1");
    body["expiresInSeconds"] = json!(604_800);
    let r = app.post("/v1/currency/holds", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let hold_id = r.body["holdId"].as_str().unwrap().to_owned();
    assert_eq!(r.body["balance"]["available"], "50.00");

    clock.advance(Duration::days(5));
    assert_eq!(
        api::workers::expire_all(&app.db, clock.now_for_tests())
            .await
            .unwrap(),
        1
    );
    assert_invariant(&app).await;
    let got = app
        .get(&format!("/v1/currency/holds/{hold_id}"), &key)
        .await;
    assert_eq!(got.body["status"], "HELD");
    assert_eq!(got.body["heldAmount"], "50.00");
    assert_eq!(got.body["expiredAmount"], "100.00");
    assert_eq!(
        got.body["balance"],
        json!({"available": "50.00", "pending": "0.00", "held": "50.00"}),
        "the unheld part of the never-expiring lot stays available"
    );
    // Capturing more than is left is refused (the key is kept); a void returns what is left.
    let capture = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/capture"),
            &key,
            &json!({"amount": 100}),
        )
        .await;
    assert_eq!(
        capture.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        capture.text
    );
    assert_eq!(capture.code(), "INSUFFICIENT_BALANCE");
    let void = app
        .post(
            &format!("/v1/currency/holds/{hold_id}/void"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(void.status, StatusCode::CREATED, "{}", void.text);
    assert_eq!(void.body["releasedAmount"], "50.00");
    assert_eq!(void.body["expiredAmount"], "100.00");
    assert_eq!(void.body["balance"]["available"], "100.00");
    assert_invariant(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_and_void_racing_on_one_hold_have_exactly_one_winner() {
    let (app, clock) = app_with_clock().await;
    let (_, key) = app.create_org("Holds").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, MOBILE, 100_000, "a1").await; // 10000 points
    let mut ids = Vec::new();
    for i in 0..15 {
        let mut body = hold_body(&c, json!(100), &format!("h{i}"));
        body["expiresInSeconds"] = json!(120);
        let r = app.post("/v1/currency/holds", &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["holdId"].as_str().unwrap().to_owned());
    }
    // Every hold gets two captures and two voids at once, a minute before it would expire.
    clock.advance(Duration::seconds(60));
    let mut tasks = Vec::new();
    for id in &ids {
        for action in ["capture", "void", "capture", "void"] {
            let client = app.client.clone();
            let url = app.url(&format!("/v1/currency/holds/{id}/{action}"));
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("X-API-KEY", key)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                (action, r.status().as_u16())
            }));
        }
    }
    let mut per_hold = Vec::new();
    for chunk in tasks.chunks_mut(4) {
        let mut answers = Vec::new();
        for t in chunk {
            answers.push(t.await.unwrap());
        }
        per_hold.push(answers);
    }
    for (id, answers) in ids.iter().zip(&per_hold) {
        let created: Vec<_> = answers.iter().filter(|(_, s)| *s == 201).collect();
        assert_eq!(created.len(), 1, "{id}: {answers:?}");
        let winner = created[0].0;
        for (action, status) in answers {
            let allowed: &[u16] = if *action == winner {
                &[201, 202]
            } else {
                &[409]
            };
            assert!(allowed.contains(status), "{id}: {answers:?}");
        }
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM holds WHERE status = 'HELD'")
            .await,
        0
    );
    assert_invariant(&app).await;
}
