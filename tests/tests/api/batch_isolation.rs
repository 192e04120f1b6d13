//! A request's fate is its own, in a batch too: what a batch answers when it does not commit,
//! when one of its requests waits on a lock held elsewhere, and what its stored answers show.
//! Each case is made to happen deterministically, by a transaction the test holds open.

use std::time::Duration;

use futures_util::future::join_all;
use persistence::Db;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations,
    minor_units as minor, setup_catalog,
};

const ALLOCATE: &str = "/v1/currency/allocations";
const REDEEM: &str = "/v1/currency/redemptions";

/// An application whose requests wait `wait` for a lock held elsewhere.
async fn spawn_waiting(wait: Duration) -> TestApp {
    TestApp::spawn_with(Spawn::settings(move |s| s.idempotency_wait = wait)).await
}

async fn allocate(app: &TestApp, key: &str, c: &Catalog, mobile: &str, value: i64, id: &str) {
    let r = app
        .post(ALLOCATE, key, &allocation_body(c, mobile, json!(value), id))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn redemption(c: &Catalog, mobile: &str, amount: &str, unique_id: &str) -> Value {
    json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
           "mobile": mobile, "uniqueId": unique_id})
}

/// Balance 100.00; two redemptions of 60.00 in one batch whose insert waits on a lock the test
/// holds until both are answered. The batch decided the second was short of points only
/// because of the first, which never committed: neither may be answered 422, and nothing is
/// spent.
#[tokio::test]
async fn a_refusal_that_counted_an_uncommitted_sibling_is_not_answered() {
    let app = spawn_waiting(Duration::from_millis(1500)).await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, "919811100001", 1000, "seed-a").await;
    allocate(&app, &key, &c, "919811100002", 1000, "seed-b").await;
    let before = app
        .scalar("SELECT sum(available)::bigint FROM balances")
        .await;
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared("LOCK TABLE redemptions IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    // A first redemption occupies the writer on the lock, so the next two form one batch.
    let first_body = redemption(&c, "919811100002", "10", "first");
    let pair_bodies = [
        redemption(&c, "919811100001", "60", "r1"),
        redemption(&c, "919811100001", "60", "r2"),
    ];
    let first = app.post(REDEEM, &key, &first_body);
    let (first, pair) = tokio::join!(first, async {
        app.until_a_backend_waits_on_a_lock().await;
        join_all(pair_bodies.iter().map(|b| app.post(REDEEM, &key, b))).await
    });
    drop(other);
    for r in std::iter::once(&first).chain(&pair) {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert_eq!(r.body["retryable"], json!(true), "{}", r.text);
    }
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        before
    );
    // Retried, each gets what it gets alone: one of the pair is short of points now.
    let mut created = 0;
    for (id, amount) in [("r1", "60"), ("r2", "60")] {
        let r = app
            .post(REDEEM, &key, &redemption(&c, "919811100001", amount, id))
            .await;
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(r.code(), "INSUFFICIENT_BALANCE"),
            other => panic!("{other}: {}", r.text),
        }
    }
    assert_eq!(created, 1);
    assert!(invariant_violations(&app).await.is_empty());
}

/// Another transaction holds one customer's balance of organisation A, for longer than any
/// request waits. The allocation for that customer waits; the allocations of organisation B
/// sent meanwhile are answered while it still waits, not after it. Once the other transaction
/// ends, A's allocation is made.
#[tokio::test]
async fn a_balance_held_elsewhere_holds_up_only_the_request_that_needs_it() {
    let app = spawn_waiting(Duration::from_secs(60)).await;
    let (_, key_a) = app.create_org("A").await;
    let (_, key_b) = app.create_org("B").await;
    let a = setup_catalog(&app, &key_a).await;
    let b = setup_catalog(&app, &key_b).await;
    allocate(&app, &key_a, &a, "919822200001", 1000, "seed").await;
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared("SELECT * FROM balances FOR UPDATE")
        .await
        .expect("hold the balance");
    let held_body = allocation_body(&a, "919822200001", json!(500), "held");
    // Set once A's request is answered: B's must all be answered before.
    let held_answered = std::sync::atomic::AtomicBool::new(false);
    let held = async {
        let reply = app.post(ALLOCATE, &key_a, &held_body).await;
        held_answered.store(true, std::sync::atomic::Ordering::SeqCst);
        reply
    };
    let bodies: Vec<Value> = (0..20)
        .map(|i| allocation_body(&b, &format!("9198333{i:05}"), json!(100), &format!("b{i}")))
        .collect();
    let others = async {
        app.until_a_backend_waits_on_a_lock().await;
        let replies = tokio::time::timeout(
            Duration::from_secs(30),
            join_all(bodies.iter().map(|body| app.post(ALLOCATE, &key_b, body))),
        )
        .await
        .expect("organisation B's allocations waited for organisation A's lock");
        // A's request still waits: B's were not answered because it gave up.
        let a_answered_first = held_answered.load(std::sync::atomic::Ordering::SeqCst);
        Db::commit(other).await.expect("release");
        (replies, a_answered_first)
    };
    let (held, (replies, a_answered_first)) = tokio::join!(held, others);
    for r in &replies {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    assert!(
        !a_answered_first,
        "A's request was answered before B's: {}",
        held.text
    );
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations").await,
        22
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A key whose first use another transaction holds for longer than a request waits: the
/// request is answered what it is answered alone (409 `IDEMPOTENCY_KEY_IN_USE`), in a batch
/// too, and the allocations queued behind it are not refused with it.
#[tokio::test]
async fn a_key_held_elsewhere_is_answered_409_and_costs_only_its_request() {
    let app = spawn_waiting(Duration::from_millis(1000)).await;
    let (org_id, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared(&format!(
            "INSERT INTO idempotency_records (org_id, operation, key, fingerprint, \
             request_fields, created_at) VALUES ({org_id}, 'currency-allocation', 'held', \
             'in flight', '{{}}', now())"
        ))
        .await
        .expect("the other first use");
    let held_body = allocation_body(&c, "919844400001", json!(100), "held");
    let held = app.post(ALLOCATE, &key, &held_body);
    let bodies: Vec<Value> = (0..10)
        .map(|i| allocation_body(&c, &format!("9198555{i:05}"), json!(100), &format!("q{i}")))
        .collect();
    let (held, replies) = tokio::join!(held, async {
        app.until_a_backend_waits_on_a_lock().await;
        join_all(bodies.iter().map(|body| app.post(ALLOCATE, &key, body))).await
    });
    drop(other);
    assert_eq!(held.status, StatusCode::CONFLICT, "{}", held.text);
    assert_eq!(held.code(), "IDEMPOTENCY_KEY_IN_USE", "{}", held.text);
    for r in &replies {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    assert!(invariant_violations(&app).await.is_empty());
}

/// A balance row created by another transaction while a batch credits the same account, with
/// nothing available but points pending: the stored answer shows the balance the credit left,
/// pending points included, never a balance nobody saw.
#[tokio::test]
async fn a_balance_created_under_a_batch_with_pending_points_is_shown_whole() {
    let app = TestApp::spawn().await;
    let (org_id, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let mobile = "919866600001";
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO customers (id, org_id, mobile, created_at) \
             VALUES (gen_random_uuid(), {org_id}, '{mobile}', now())"
        ))
        .await
        .expect("enrol the customer");
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared(&format!(
            "INSERT INTO balances (org_id, customer_id, program_id, currency, available, \
             pending, updated_at) SELECT {org_id}, id, {p}, 'POINTS', 0, 500, now() \
             FROM customers WHERE org_id = {org_id} AND mobile = '{mobile}'",
            p = c.program_id
        ))
        .await
        .expect("the other balance");
    let body = allocation_body(&c, mobile, json!(5000), "under");
    let (reply, ()) = tokio::join!(app.post(ALLOCATE, &key, &body), async {
        app.until_a_backend_waits_on_a_lock().await;
        Db::commit(other).await.expect("commit");
    });
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(
        minor(&reply.body["balance"]["pending"]),
        500,
        "{}",
        reply.text
    );
    let replay = app.post(ALLOCATE, &key, &body).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
    assert_eq!(
        minor(&replay.body["balance"]["pending"]),
        500,
        "{}",
        replay.text
    );
}

/// Many credits to one account in one batch: listed by id, the account's ledger entries chain
/// (each `balance_after` is the one before plus its amount), as they do when made one by one.
#[tokio::test]
async fn credits_of_one_batch_are_numbered_in_the_order_their_balances_chain() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let mobiles: Vec<String> = (0..4).map(|i| format!("91987770000{i}")).collect();
    for m in &mobiles {
        allocate(&app, &key, &c, m, 100, &format!("seed-{m}")).await;
    }
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared(&format!(
            "SELECT * FROM balances b JOIN customers c ON c.id = b.customer_id \
             WHERE c.mobile = '{}' FOR UPDATE OF b",
            mobiles[0]
        ))
        .await
        .expect("hold one balance");
    // The first request occupies the writer; the rest form one batch behind it.
    let first_body = allocation_body(&c, &mobiles[0], json!(100), "first");
    let first = app.post(ALLOCATE, &key, &first_body);
    let bodies: Vec<Value> = (0..48)
        .map(|i| allocation_body(&c, &mobiles[1 + i % 3], json!(10 + i), &format!("c{i}")))
        .collect();
    let (first, replies) = tokio::join!(first, async {
        app.until_a_backend_waits_on_a_lock().await;
        let sent = join_all(bodies.iter().map(|body| app.post(ALLOCATE, &key, body)));
        let release = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Db::commit(other).await.expect("release");
        };
        let (replies, ()) = tokio::join!(sent, release);
        replies
    });
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    for r in &replies {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let broken = app
        .scalar(
            "SELECT count(*)::bigint FROM (SELECT balance_after, amount, lag(balance_after) \
             OVER (PARTITION BY customer_id ORDER BY id) AS before FROM ledger_entries) e \
             WHERE before IS NOT NULL AND balance_after <> before + amount",
        )
        .await;
    assert_eq!(broken, 0);
}

/// A key past the retention is run alone after its batch (its old record is forgotten first).
/// While that run waits (here for the old record, which the test holds), the writer goes on:
/// allocations sent after it are answered, not queued behind it.
#[tokio::test]
async fn a_key_past_the_retention_waits_without_holding_up_the_writer() {
    use api::engine::clock::ManualClock;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let clock = ManualClock::new(start);
    let app = TestApp::spawn_with(Spawn::clock(clock.clone()).with_settings(|s| {
        s.idempotency_retention = Some(Duration::from_secs(3600));
        s.idempotency_wait = Duration::from_secs(60);
    }))
    .await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    allocate(&app, &key, &c, "919877700001", 100, "old").await;
    clock.advance(chrono::Duration::hours(2));
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared("SELECT * FROM idempotency_records WHERE key = 'old' FOR UPDATE")
        .await
        .expect("hold the old record");
    let old_body = allocation_body(&c, "919877700001", json!(200), "old");
    let bodies: Vec<Value> = (0..10)
        .map(|i| allocation_body(&c, &format!("9198777{i:05}"), json!(100), &format!("n{i}")))
        .collect();
    let (old, replies) = tokio::join!(app.post(ALLOCATE, &key, &old_body), async {
        app.until_a_backend_waits_on_a_lock().await;
        let replies = tokio::time::timeout(
            Duration::from_secs(30),
            join_all(bodies.iter().map(|b| app.post(ALLOCATE, &key, b))),
        )
        .await
        .expect("the allocations waited behind a key run alone");
        Db::commit(other).await.expect("release");
        replies
    });
    for r in &replies {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    assert_eq!(old.status, StatusCode::CREATED, "{}", old.text);
    assert!(invariant_violations(&app).await.is_empty());
}

/// The ledger ids of an allocation batch are drawn in request order whatever plan PostgreSQL
/// picks for the batch's opening statement: here a merge join (hash and nested-loop joins
/// discouraged in the transaction), which returns the requests sorted by account, not in the
/// order they came in.
#[tokio::test]
async fn a_batch_draws_its_ledger_ids_in_request_order_whatever_the_plan() {
    use domain::customer::CustomerRef;
    use domain::idempotency::Operation;
    use persistence::allocations::{Opening, open_batch};
    let app = TestApp::spawn().await;
    let (org_id, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let mut customers = Vec::new();
    for i in 0..3 {
        let r = app
            .post(
                ALLOCATE,
                &key,
                &allocation_body(&c, &format!("91987880000{i}"), json!(100), &format!("s{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["customerId"].as_str().expect("customerId");
        customers.push(CustomerRef::CustomerId(id.parse().expect("uuid")));
    }
    // Requests that name the accounts in an order no sort by account gives.
    customers.sort_by_key(|c| std::cmp::Reverse(format!("{c:?}")));
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    let openings: Vec<Opening> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Opening {
            org_id,
            key: k,
            customer: &customers[i % 3],
            account: Some((c.program_id, "POINTS")),
        })
        .collect();
    let tx = app.db.begin().await.expect("begin");
    tx.execute_unprepared("SET LOCAL enable_hashjoin = off; SET LOCAL enable_nestloop = off")
        .await
        .expect("plan settings");
    let opened = open_batch(&tx, Operation::CurrencyAllocation, &openings)
        .await
        .expect("open the batch");
    let ids: Vec<i64> = opened
        .iter()
        .map(|o| o.entry_id.expect("an entry id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "entry ids not in request order: {ids:?}"
    );
}
