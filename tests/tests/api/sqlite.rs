//! A smoke test of the embedded SQLite default: the points lifecycle end to end (earn caps,
//! pending points, holds, transfers, partial reversals, expiry notices, expiry) on a fresh
//! SQLite file, with every replay and the ledger invariant checked in portable SQL.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use persistence::ConnectionTrait;
use sea_orm::{DbBackend, Statement};
use serde_json::{Value, json};
use tests::{Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

const MOBILE: &str = "919877778888";

/// A fresh SQLite file, removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The invariant of `tests::invariant_violations`, in SQL both backends run: for every
/// balance, available + held = the remaining of its lots, held = their earmarks = its active
/// holds, pending = its pending allocations, none negative; and the liability's sums are
/// what the ledger adds up to.
async fn sqlite_invariant(app: &TestApp) -> Vec<String> {
    let sql = "SELECT b.customer_id || '/' || b.currency FROM balances b \
        WHERE b.available < 0 OR b.held < 0 OR b.pending < 0 \
           OR b.available + b.held <> (SELECT COALESCE(SUM(e.remaining), 0) FROM ledger_entries e \
               WHERE e.org_id = b.org_id AND e.customer_id = b.customer_id \
                 AND e.program_id = b.program_id AND e.currency = b.currency) \
           OR b.held <> (SELECT COALESCE(SUM(e.held), 0) FROM ledger_entries e \
               WHERE e.org_id = b.org_id AND e.customer_id = b.customer_id \
                 AND e.program_id = b.program_id AND e.currency = b.currency) \
           OR b.held <> (SELECT COALESCE(SUM(h.held), 0) FROM holds h WHERE h.status = 'HELD' \
               AND h.org_id = b.org_id AND h.customer_id = b.customer_id \
               AND h.program_id = b.program_id AND h.currency = b.currency) \
           OR b.pending <> (SELECT COALESCE(SUM(a.amount - a.reversed_amount), 0) FROM allocations a \
               WHERE a.status = 'PENDING' AND a.org_id = b.org_id AND a.customer_id = b.customer_id \
                 AND a.program_id = b.program_id AND a.currency = b.currency)";
    let sums = tests::liability_sums_violations(DbBackend::Sqlite);
    let mut broken = Vec::new();
    for sql in [sql, sums.as_str()] {
        broken.extend(
            app.db
                .conn()
                .query_all_raw(Statement::from_string(DbBackend::Sqlite, sql.to_owned()))
                .await
                .expect("invariant query")
                .into_iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap_or_default()),
        );
    }
    broken
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .conn()
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql.to_owned()))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("an integer")
}

/// Posts `body` twice: 201, then the same answer replayed with 202. Returns the answer.
async fn once(app: &TestApp, key: &str, path: &str, body: &Value) -> Value {
    once_with(app, key, path, body, &[]).await
}

async fn once_with(
    app: &TestApp,
    key: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Value {
    let first = app.post_with(path, key, body, headers).await;
    assert_eq!(first.status, StatusCode::CREATED, "{path}: {}", first.text);
    let again = app.post_with(path, key, body, headers).await;
    assert_eq!(
        again.status,
        StatusCode::ACCEPTED,
        "{path} again: {}",
        again.text
    );
    first.body
}

#[tokio::test]
async fn the_points_lifecycle_runs_on_the_embedded_sqlite_default() {
    let file =
        TempFile(std::env::temp_dir().join(format!("loyalty-smoke-{}.db", uuid::Uuid::now_v7())));
    let url = format!("sqlite://{}?mode=rwc", file.0.display());
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let app = TestApp::spawn_on(
        &url,
        Spawn::clock(clock.clone()).with_settings(|s| s.migrate = true),
    )
    .await;
    let (_, key) = app.create_org("SQLite").await;
    let c = setup_catalog(&app, &key).await;
    let program = c.program_id;

    // An earn cap: 100 a day.
    let s = once_with(
        &app,
        &key,
        &format!("/v1/programs/{program}/award-strategies"),
        &json!({"name": "capped", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1",
                "caps": [{"period": "DAY", "max": "100"}]}),
        &[("Idempotency-Key", "capped-strategy")],
    )
    .await["awardStrategyId"]
        .as_i64()
        .unwrap();
    let capped = |source: i64, unique: &str| {
        json!({"programId": program, "awardStrategyId": s, "expiryStrategyId": c.expiry_id,
               "sourceValue": source, "mobile": MOBILE, "uniqueId": unique})
    };
    let a = once(&app, &key, "/v1/currency/allocations", &capped(800, "c1")).await;
    assert_eq!(a["amount"], "80.00");
    let b = once(&app, &key, "/v1/currency/allocations", &capped(800, "c2")).await;
    assert_eq!(
        (&b["amount"], &b["capped"]),
        (&json!("20.00"), &json!(true))
    );

    // Partial reversal, then the room it gave back.
    let r = once(
        &app,
        &key,
        "/v1/currency/allocations/c1/reversal",
        &json!({"amount": "10", "reversalId": "part-1"}),
    )
    .await;
    assert_eq!(r["reversedAmount"], "10.00");
    let d = once(&app, &key, "/v1/currency/allocations", &capped(800, "c3")).await;
    assert_eq!(d["amount"], "10.00");

    // Pending points, activated on request; another activated by the worker.
    let mut pending = allocation_body(&c, MOBILE, json!(500), "p1");
    pending["maturesAt"] = json!("2026-11-30T09:00:00Z");
    let p = once(&app, &key, "/v1/currency/allocations", &pending).await;
    assert_eq!(p["status"], "PENDING");
    let act = once(
        &app,
        &key,
        "/v1/currency/allocations/p1/activate",
        &json!({}),
    )
    .await;
    assert_eq!(act["status"], "ACTIVE");
    let mut later = allocation_body(&c, MOBILE, json!(300), "p2");
    later["maturesAt"] = json!("2026-11-24T09:00:00Z");
    once(&app, &key, "/v1/currency/allocations", &later).await;

    // Holds: captured in part, voided, and one left to expire.
    let hold = |amount: &str, unique: &str| {
        json!({"programId": program, "currency": "POINTS", "amount": amount, "mobile": MOBILE,
               "uniqueId": unique, "expiresInSeconds": 600})
    };
    let h1 = once(&app, &key, "/v1/currency/holds", &hold("30", "h1")).await;
    let cap = once(
        &app,
        &key,
        &format!(
            "/v1/currency/holds/{}/capture",
            h1["holdId"].as_str().unwrap()
        ),
        &json!({"amount": "12"}),
    )
    .await;
    assert_eq!(
        (&cap["capturedAmount"], &cap["releasedAmount"]),
        (&json!("12.00"), &json!("18.00"))
    );
    let h2 = once(&app, &key, "/v1/currency/holds", &hold("5", "h2")).await;
    once(
        &app,
        &key,
        &format!("/v1/currency/holds/{}/void", h2["holdId"].as_str().unwrap()),
        &json!({}),
    )
    .await;
    once(&app, &key, "/v1/currency/holds", &hold("7", "h3")).await;

    // A transfer to a new customer, a redemption.
    let t = once(
        &app,
        &key,
        "/v1/currency/transfers",
        &json!({"programId": program, "currency": "POINTS", "amount": "25",
                "from": {"mobile": MOBILE}, "to": {"email": "friend@example.com"}, "uniqueId": "t1"}),
    )
    .await;
    assert_eq!(t["to"]["balance"]["available"], "25.00");
    once(
        &app,
        &key,
        "/v1/currency/redemptions",
        &json!({"programId": program, "currency": "POINTS", "amount": "15", "mobile": MOBILE, "uniqueId": "r1"}),
    )
    .await;
    assert!(sqlite_invariant(&app).await.is_empty());

    // A day later: the worker activates p2, releases h3; notices and expiry run.
    clock.advance(Duration::days(1));
    let now = clock.now_for_tests();
    assert_eq!(api::workers::activate_all(&app.db, now).await.unwrap(), 1);
    assert_eq!(
        api::workers::expire_holds_all(&app.db, now).await.unwrap(),
        1
    );
    // A 400-day notice window reaches the 365-day lots: one notice each, once.
    let lots = count(
        &app,
        "SELECT COUNT(*) FROM ledger_entries WHERE remaining > 0 AND expires_at IS NOT NULL",
    )
    .await;
    assert!(lots >= 4, "{lots} lots");
    let written = api::workers::notify_expiring_all(&app.db, now, 400)
        .await
        .unwrap();
    assert_eq!(written as i64, lots);
    assert_eq!(
        api::workers::notify_expiring_all(&app.db, now, 400)
            .await
            .unwrap(),
        0
    );
    let customer = a["customerId"].as_str().unwrap();
    let expiring = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=400d&limit=2"),
            &key,
        )
        .await;
    assert_eq!(expiring.status, StatusCode::OK, "{}", expiring.text);
    assert_eq!(expiring.body["items"].as_array().unwrap().len(), 2);
    let next = expiring.body["nextCursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=400d&limit=200&cursor={next}"),
            &key,
        )
        .await;
    assert_eq!(rest.status, StatusCode::OK, "{}", rest.text);
    clock.advance(Duration::days(400));
    assert!(
        api::workers::expire_all(&app.db, clock.now_for_tests())
            .await
            .unwrap()
            > 0
    );
    let balance = app.get(&format!("/v1/customers/{customer}"), &key).await;
    assert_eq!(
        balance.body["balances"][0],
        json!({"programId": program, "currency": "POINTS", "available": "0.00", "pending": "0.00", "held": "0.00"})
    );
    assert!(sqlite_invariant(&app).await.is_empty());

    // Erasure works on SQLite too: the transfer's recipient (enrolled by email) is erased
    // from the customer row and from the stored transfer request.
    let friend = t["to"]["customerId"].as_str().unwrap();
    let stored =
        "SELECT COUNT(*) FROM idempotency_records WHERE request_fields LIKE '%friend@example.com%'";
    assert_eq!(count(&app, stored).await, 1);
    let export = app
        .get(&format!("/v1/customers/{friend}/export"), &key)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.body["customer"]["email"], "friend@example.com");
    once(
        &app,
        &key,
        &format!("/v1/customers/{friend}/erase"),
        &json!({}),
    )
    .await;
    assert_eq!(count(&app, stored).await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM customers WHERE email = 'friend@example.com'"
        )
        .await,
        0
    );
    assert!(sqlite_invariant(&app).await.is_empty());
    app.stop().await;
}
