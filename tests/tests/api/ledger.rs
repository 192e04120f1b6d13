use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

const MOBILE: &str = "919876543210";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn app_at_t0() -> (TestApp, ManualClock, String, Catalog) {
    let clock = ManualClock::new(t0());
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

async fn expiry(app: &TestApp, key: &str, c: &Catalog, body: Value) -> i64 {
    let r = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            key,
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["expiryStrategyId"].as_i64().unwrap()
}

async fn allocate(
    app: &TestApp,
    key: &str,
    c: &Catalog,
    expiry_id: i64,
    source: i64,
    unique: &str,
) -> Value {
    let mut body = allocation_body(c, MOBILE, json!(source), unique);
    body["expiryStrategyId"] = json!(expiry_id);
    let r = app.post("/v1/currency/allocations", key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

fn redemption(c: &Catalog, amount: Value, unique: &str) -> Value {
    json!({"programId": c.program_id, "currency": "POINTS", "amount": amount, "mobile": MOBILE, "uniqueId": unique, "reason": "checkout"})
}

async fn lots(app: &TestApp) -> Vec<(String, i64)> {
    let rows = app
        .db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COALESCE(to_char(expires_at, 'YYYY-MM-DD'), 'never') AS e, remaining FROM ledger_entries WHERE kind = 'CREDIT' ORDER BY id".to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).unwrap(),
                r.try_get_by_index::<i64>(1).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn redemption_spends_the_lots_that_expire_first() {
    let (app, _clock, key, c) = app_at_t0().await;
    let ten = expiry(
        &app,
        &key,
        &c,
        json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
    )
    .await;
    let never = expiry(&app, &key, &c, json!({"name": "never", "kind": "NEVER"})).await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "a-365").await; // 100.00, expires in 365 days
    allocate(&app, &key, &c, ten, 500, "a-10").await; // 50.00, expires in 10 days
    allocate(&app, &key, &c, never, 700, "a-never").await; // 70.00, never
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!("120.00"), "red-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["amount"], "120.00");
    assert_eq!(r.body["balance"]["available"], "100.00");
    assert_eq!(r.body["idempotencyKey"], "red-1");
    assert_eq!(
        lots(&app).await,
        vec![
            ("2027-11-22".to_owned(), 3000),
            ("2026-12-02".to_owned(), 0),
            ("never".to_owned(), 7000)
        ]
    );
    let again = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(120), "red-1"),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["redemptionId"], r.body["redemptionId"]);
    let other = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(10), "red-1"),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["mismatchedFields"], json!(["amount"]));
    // Spending past the 365-day lot reaches the never-expiring one last.
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(50), "red-2"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        lots(&app).await,
        vec![
            ("2027-11-22".to_owned(), 0),
            ("2026-12-02".to_owned(), 0),
            ("never".to_owned(), 5000)
        ]
    );
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn insufficient_balance_does_not_consume_the_key() {
    let (app, _clock, key, c) = app_at_t0().await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "a-1").await;
    let before = app.row_counts().await;
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(150), "big"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "INSUFFICIENT_BALANCE");
    assert_eq!(r.body["retryable"], true);
    assert_eq!(app.row_counts().await, before);
    assert_eq!(
        app.get("/v1/idempotency-keys/currency-redemption/big", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    allocate(&app, &key, &c, c.expiry_id, 1000, "a-2").await;
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(150), "big"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["balance"]["available"], "50.00");
    // A key is required, an amount must fit the currency, and an unknown customer is not enrolled.
    let mut no_key = redemption(&c, json!(1), "x");
    no_key.as_object_mut().unwrap().remove("uniqueId");
    assert_eq!(
        app.post("/v1/currency/redemptions", &key, &no_key)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // More places than the currency keeps depends on the currency, so it is 422 (and a
    // number no exact decimal can hold is the same refusal).
    for (amount, unique) in [(json!("0.001"), "y"), (json!(1e-40), "y2")] {
        let r = app
            .post(
                "/v1/currency/redemptions",
                &key,
                &redemption(&c, amount, unique),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["code"], "AMOUNT_NOT_REPRESENTABLE");
    }
    assert_eq!(
        app.post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!("1e3"), "y3")
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(-1), "z")
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let mut stranger = redemption(&c, json!(1), "w");
    stranger["mobile"] = json!("919000000009");
    assert_eq!(
        app.post("/v1/currency/redemptions", &key, &stranger)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_reversal_happens_once() {
    let (app, _clock, key, c) = app_at_t0().await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "rev-1").await;
    allocate(&app, &key, &c, c.expiry_id, 500, "rev-2").await;
    let first = app
        .post(
            "/v1/currency/allocations/rev-1/reversal",
            &key,
            &json!({"reason": "returned goods"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["amount"], "100.00");
    assert_eq!(first.body["balance"]["available"], "50.00");
    let second = app
        .client
        .post(app.url("/v1/currency/allocations/rev-1/reversal"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["reversalId"], first.body["reversalId"]);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'REVERSAL'")
            .await,
        1
    );
    let got = app.get("/v1/currency/allocations/rev-1", &key).await;
    assert!(got.body["reversedAt"].is_string());
    assert_eq!(got.body["balance"]["available"], "50.00");
    assert_eq!(
        app.post("/v1/currency/allocations/nope/reversal", &key, &json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Spent points cannot be taken back.
    app.post(
        "/v1/currency/redemptions",
        &key,
        &redemption(&c, json!(50), "spend"),
    )
    .await;
    let r = app
        .post("/v1/currency/allocations/rev-2/reversal", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "INSUFFICIENT_BALANCE");
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_with_a_moved_clock_run_by_two_workers_at_once() {
    let (app, clock, key, c) = app_at_t0().await;
    let ten = expiry(
        &app,
        &key,
        &c,
        json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
    )
    .await;
    for i in 0..30 {
        let mut body = allocation_body(
            &c,
            &format!("91980000{i:04}"),
            json!(100),
            &format!("e-{i}"),
        );
        body["expiryStrategyId"] = json!(ten);
        assert_eq!(
            app.post("/v1/currency/allocations", &key, &body)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    allocate(&app, &key, &c, c.expiry_id, 1000, "stays").await;
    let db1 = persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
        .await
        .unwrap();
    let db2 = persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
        .await
        .unwrap();
    // Not due yet.
    assert_eq!(
        api::workers::expire_all(&db1, clock.now_for_tests())
            .await
            .unwrap(),
        0
    );
    clock.advance(Duration::days(10) + Duration::seconds(1));
    let now = clock.now_for_tests();
    let (a, b) = tokio::join!(
        api::workers::expire_all(&db1, now),
        api::workers::expire_all(&db2, now)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 30);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'")
            .await,
        30
    );
    assert_eq!(api::workers::expire_all(&db1, now).await.unwrap(), 0);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM balances WHERE available > 0")
            .await,
        1
    );
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
    let lookup = app
        .get(
            "/v1/customers/lookup?identifierType=mobile&identifierValue=919800000000",
            &key,
        )
        .await;
    assert_eq!(lookup.body["balances"][0]["available"], "0.00");
    let customer = lookup.body["customerId"].as_str().unwrap();
    let ledger = app
        .get(&format!("/v1/customers/{customer}/ledger"), &key)
        .await;
    assert_eq!(ledger.body["items"][0]["kind"], "EXPIRE");
    assert_eq!(ledger.body["items"][0]["amount"], "10.00");
    assert_eq!(ledger.body["items"][0]["balanceAfter"], "0.00");
}

#[tokio::test]
async fn a_redemption_expires_due_lots_before_spending() {
    let (app, clock, key, c) = app_at_t0().await;
    let ten = expiry(
        &app,
        &key,
        &c,
        json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
    )
    .await;
    allocate(&app, &key, &c, ten, 1000, "soon").await;
    allocate(&app, &key, &c, c.expiry_id, 500, "later").await;
    clock.advance(Duration::days(11));
    // The worker has not run; the redemption must not spend the expired lot.
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(60), "too-much"),
        )
        .await;
    assert_eq!(r.code(), "INSUFFICIENT_BALANCE");
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &redemption(&c, json!(50), "ok"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["balance"]["available"], "0.00");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries WHERE kind = 'EXPIRE'")
            .await,
        1
    );
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn retention_forgets_old_keys() {
    let clock = ManualClock::new(t0());
    let app =
        TestApp::spawn_with(Spawn::clock(clock.clone()).with_settings(|s| {
            s.idempotency_retention = Some(std::time::Duration::from_secs(3600))
        }))
        .await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "old").await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "purged").await;
    assert_eq!(
        app.post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(1000), "old")
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    clock.advance(Duration::hours(2));
    assert_eq!(
        app.get("/v1/idempotency-keys/currency-allocation/old", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Reused past the retention, a key is a new request, even with another payload.
    let reused = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(2000), "old"),
        )
        .await;
    assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.text);
    assert_eq!(
        app.get("/v1/currency/allocations/old", &key).await.body["amount"],
        "200.00"
    );
    let cutoff = clock.now_for_tests() - Duration::hours(1);
    let purged = api::workers::purge_all(&app.db, cutoff).await.unwrap();
    assert!(purged >= 1, "purged {purged}");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM idempotency_records WHERE key = 'purged'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM idempotency_records WHERE key = 'old'")
            .await,
        1
    );
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn reversing_an_expired_allocation_takes_back_only_what_did_not_expire() {
    let (app, clock, key, c) = app_at_t0().await;
    let ten = expiry(
        &app,
        &key,
        &c,
        json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
    )
    .await;
    let first = allocate(&app, &key, &c, ten, 1000, "short").await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "long").await;
    clock.advance(Duration::days(11));
    let r = app
        .post("/v1/currency/allocations/short/reversal", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["amount"], "0.00");
    assert_eq!(r.body["expiredAmount"], "100.00");
    assert_eq!(
        r.body["balance"]["available"], "100.00",
        "the other lot is untouched"
    );
    assert_eq!(r.body["idempotencyKey"], "short");
    // The reversal is recorded under the allocation itself.
    let allocation_id = first["allocationId"].as_str().unwrap();
    let record = app
        .get(
            &format!("/v1/idempotency-keys/currency-reversal/{allocation_id}"),
            &key,
        )
        .await;
    assert_eq!(record.status, StatusCode::OK);
    assert_eq!(invariant_violations(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn text_the_database_cannot_store_is_a_client_error() {
    let (app, _clock, key, c) = app_at_t0().await;
    let body = allocate(&app, &key, &c, c.expiry_id, 1000, "nul").await;
    let customer = body["customerId"].as_str().unwrap();
    let r = app
        .get(
            &format!("/v1/customers/{customer}/ledger?currency=%00"),
            &key,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .get("/v1/idempotency-keys/currency-allocation/a%00b", &key)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let mut bad = redemption(&c, json!(1), "bad-currency");
    bad["currency"] = json!("POI\u{0}NTS");
    let r = app.post("/v1/currency/redemptions", &key, &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "currency");
}
