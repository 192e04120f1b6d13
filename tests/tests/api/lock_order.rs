//! The lock order, checked pair by pair: while a request or a worker waits for the first lock
//! of the order, it must not hold a later one (else two paths taking them in opposite orders
//! could each hold what the other waits for). The order (docs/DESIGN.md): idempotency keys,
//! existing balances (by customer), customers enrolled, their new balances, lots.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use persistence::{ConnectionTrait, Db, DbOptions};
use serde_json::json;
use tests::{Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog};

/// A connection of the test's own, beside the app's and the harness's.
async fn other_connection(app: &TestApp) -> Db {
    Db::connect(
        &app.database_url,
        &DbOptions {
            max_connections: 2,
            application_name: "loyalty-test",
            ..DbOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// Whether `sql` can take its locks at once (it runs with `lock_timeout` 100 ms, and is
/// rolled back).
async fn free(db: &Db, sql: &str) -> bool {
    let tx = db.begin().await.expect("begin");
    tx.execute_unprepared("SET LOCAL lock_timeout = '100ms'")
        .await
        .expect("lock_timeout");
    tx.execute_unprepared(sql).await.is_ok()
}

/// The activation worker meets a call's activation in flight (the test holds the activation
/// key, as `POST …/activate` does first): it waits for the key without holding the balance,
/// the order the call takes them in. Then it activates the allocation once.
#[tokio::test]
async fn the_activation_worker_takes_the_key_before_the_balance() {
    let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (org_id, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let mut body = allocation_body(&c, "919800700001", json!(1000), "p1");
    body["maturesAt"] = json!("2026-11-23T10:00:00Z");
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["allocationId"].as_str().expect("id").to_owned();
    clock.advance(Duration::days(2));
    let holder = other_connection(&app).await;
    let call = holder.begin().await.expect("begin");
    call.execute_unprepared(&format!(
        "INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, \
         created_at) VALUES ({org_id}, 'allocation-activation', '{id}', 'in flight', '{{}}', now())"
    ))
    .await
    .expect("the call's claim");
    let checker = other_connection(&app).await;
    let now = clock.now_for_tests();
    let (activated, balance_free) = tokio::join!(api::workers::activate_all(&app.db, now), async {
        app.until_a_backend_waits_on_a_lock().await;
        let free = free(&checker, "SELECT * FROM balances FOR UPDATE").await;
        drop(call);
        free
    });
    assert!(
        balance_free,
        "the worker held the balance while it waited for the key"
    );
    assert_eq!(activated.expect("worker"), 1);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations WHERE status = 'ACTIVE'")
            .await,
        1
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A transfer to a new customer whose sender's balance is held elsewhere (by an allocation
/// batch crediting the sender, say): it waits for the balance without having enrolled the
/// recipient, the order an allocation batch takes them in (balances, then enrolments). Then
/// it is made once.
#[tokio::test]
async fn a_transfer_to_a_new_customer_locks_the_sender_before_it_enrols() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, "919800800001", json!(1000), "a1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let org_id = app.scalar("SELECT org_id FROM customers LIMIT 1").await;
    let holder = other_connection(&app).await;
    let batch = holder.begin().await.expect("begin");
    batch
        .execute_unprepared("SELECT * FROM balances FOR UPDATE")
        .await
        .expect("hold the sender's balance");
    let checker = other_connection(&app).await;
    let transfer = json!({"programId": c.program_id, "currency": "POINTS", "amount": "25",
        "from": {"mobile": "919800800001"}, "to": {"mobile": "919800800002"},
        "uniqueId": "t1"});
    let (reply, recipient_free) =
        tokio::join!(app.post("/v1/currency/transfers", &key, &transfer), async {
            app.until_a_backend_waits_on_a_lock().await;
            let free = free(
                &checker,
                &format!(
                    "INSERT INTO customers (id, org_id, mobile, created_at) VALUES \
                     (gen_random_uuid(), {org_id}, '919800800002', now()) \
                     ON CONFLICT DO NOTHING"
                ),
            )
            .await;
            drop(batch);
            free
        });
    assert!(
        recipient_free,
        "the transfer held the recipient's enrolment while it waited for the sender's balance"
    );
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        2
    );
    assert!(invariant_violations(&app).await.is_empty());
}
