//! Group commit, aimed at the batch itself: concurrent allocations share a transaction, and
//! each is still answered exactly as it would have been alone.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tests::{
    Catalog, Reply, Spawn, StatusCode, TestApp, allocation_body, invariant_violations,
    minor_units as minor, setup_catalog,
};

const ALLOCATE: &str = "/v1/currency/allocations";

/// One request of a storm and what it must get.
struct Shot {
    key: String,
    body: Value,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Created,
    Replayed,
    NotFound,
    /// One of a group sharing a key: one 201 among them, the rest replay or are refused.
    SharedKey,
}

async fn fire(app: &TestApp, api_key: &str, shots: &[Shot]) -> Vec<Reply> {
    join_all(shots.iter().map(|s| app.post(ALLOCATE, api_key, &s.body))).await
}

/// The storm of the issue: good requests, keys shared inside the storm (one with another
/// payload), unknown strategies, unknown customers, a new customer, keys used before, and the
/// same keys in another organisation at the same time.
async fn storm(app: &TestApp) {
    let (_, key_a) = app.create_org("A").await;
    let (_, key_b) = app.create_org("B").await;
    let a = setup_catalog(app, &key_a).await;
    let b = setup_catalog(app, &key_b).await;
    let mobile = |i: usize| format!("91987654{:04}", i % 5);
    // Two keys used before the storm: they replay.
    for k in ["before-0", "before-1"] {
        let r = app
            .post(
                ALLOCATE,
                &key_a,
                &allocation_body(&a, &mobile(0), json!(100), k),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let mut shots_a: Vec<Shot> = Vec::new();
    for i in 0..20 {
        let k = format!("k-{i}");
        shots_a.push(Shot {
            body: allocation_body(&a, &mobile(i), json!(1000 + i), &k),
            key: k,
            expect: Expect::Created,
        });
    }
    shots_a.push(Shot {
        key: "new-customer".into(),
        body: allocation_body(&a, "919000000099", json!(500), "new-customer"),
        expect: Expect::Created,
    });
    for _ in 0..5 {
        shots_a.push(Shot {
            key: "shared".into(),
            body: allocation_body(&a, &mobile(1), json!(700), "shared"),
            expect: Expect::SharedKey,
        });
    }
    shots_a.push(Shot {
        key: "shared".into(),
        body: allocation_body(&a, &mobile(1), json!(701), "shared"),
        expect: Expect::SharedKey,
    });
    for i in 0..3 {
        let k = format!("bad-strategy-{i}");
        let mut body = allocation_body(&a, &mobile(i), json!(100), &k);
        body["awardStrategyId"] = json!(999_999);
        shots_a.push(Shot {
            key: k,
            body,
            expect: Expect::NotFound,
        });
    }
    for i in 0..2 {
        let k = format!("ghost-{i}");
        let mut body = allocation_body(&a, &mobile(i), json!(100), &k);
        body["lookupParams"] = json!({"identifierType": "customerId", "identifierValue": uuid::Uuid::new_v4().to_string()});
        shots_a.push(Shot {
            key: k,
            body,
            expect: Expect::NotFound,
        });
    }
    for k in ["before-0", "before-1"] {
        shots_a.push(Shot {
            key: k.into(),
            body: allocation_body(&a, &mobile(0), json!(100), k),
            expect: Expect::Replayed,
        });
    }
    // Organisation B uses the same key strings at the same time: other keys altogether.
    let shots_b: Vec<Shot> = (0..10)
        .map(|i| {
            let k = format!("k-{i}");
            Shot {
                body: allocation_body(&b, &mobile(i), json!(2000 + i), &k),
                key: k,
                expect: Expect::Created,
            }
        })
        .collect();

    let (replies_a, replies_b) =
        tokio::join!(fire(app, &key_a, &shots_a), fire(app, &key_b, &shots_b));

    let mut shared: Vec<(&Shot, &Reply)> = Vec::new();
    for (shot, reply) in shots_a
        .iter()
        .zip(&replies_a)
        .chain(shots_b.iter().zip(&replies_b))
    {
        match shot.expect {
            Expect::Created => {
                assert_eq!(
                    reply.status,
                    StatusCode::CREATED,
                    "{}: {}",
                    shot.key,
                    reply.text
                );
                assert_eq!(reply.body["uniqueId"], shot.key.as_str());
                assert_eq!(reply.body["idempotentReplayed"], false);
            }
            Expect::Replayed => {
                assert_eq!(
                    reply.status,
                    StatusCode::ACCEPTED,
                    "{}: {}",
                    shot.key,
                    reply.text
                );
                assert_eq!(reply.body["idempotentReplayed"], true);
            }
            Expect::NotFound => {
                assert_eq!(
                    reply.status,
                    StatusCode::NOT_FOUND,
                    "{}: {}",
                    shot.key,
                    reply.text
                );
                assert_eq!(reply.code(), "NOT_FOUND");
                let used = app
                    .get(
                        &format!("/v1/idempotency-keys/currency-allocation/{}", shot.key),
                        &key_a,
                    )
                    .await;
                assert_eq!(
                    used.status,
                    StatusCode::NOT_FOUND,
                    "a refused request consumed its key"
                );
            }
            Expect::SharedKey => shared.push((shot, reply)),
        }
    }
    // The shared key: exactly one effect; the same payload replays it, the other is refused.
    let winners: Vec<&(&Shot, &Reply)> = shared
        .iter()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(winners.len(), 1, "one effect for a shared key");
    let winner_value = &winners[0].0.body["sourceValue"];
    for (shot, reply) in &shared {
        if reply.status == StatusCode::CREATED {
            continue;
        }
        if shot.body["sourceValue"] == *winner_value {
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
            assert_eq!(
                reply.body["allocationId"],
                winners[0].1.body["allocationId"]
            );
        } else {
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                reply.text
            );
            assert_eq!(reply.code(), "IDEMPOTENCY_KEY_REUSED");
            assert_eq!(reply.body["mismatchedFields"], json!(["sourceValue"]));
        }
    }

    // Exact totals: every 201 is in the books once, and nothing else is.
    let created: Vec<&Reply> = replies_a
        .iter()
        .chain(&replies_b)
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations").await,
        created.len() as i64 + 2
    );
    let answered_minor: i64 = created
        .iter()
        .map(|r| minor(&r.body["amount"]))
        .sum::<i64>()
        + 2 * 1000;
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        answered_minor
    );
    assert!(
        invariant_violations(app).await.is_empty(),
        "{:?}",
        invariant_violations(app).await
    );
    // Each entry's balanceAfter is the running balance of its account, in entry order, as if
    // the batch's credits had been made one by one; and every answer shows its own.
    assert_eq!(
        app.scalar(
            "SELECT count(*)::bigint FROM (SELECT balance_after, sum(CASE WHEN kind = 'CREDIT' \
             THEN amount ELSE -amount END) OVER (PARTITION BY org_id, customer_id, program_id, \
             currency ORDER BY id) AS running FROM ledger_entries) t WHERE balance_after <> running"
        )
        .await,
        0
    );
    let mut shown: HashMap<String, i64> = HashMap::new();
    for r in &created {
        let entry = r.body["ledgerEntryId"]
            .as_str()
            .expect("ledgerEntryId")
            .to_owned();
        shown.insert(entry, minor(&r.body["balance"]["available"]));
    }
    for (entry, available) in shown {
        let stored = app
            .scalar(&format!(
                "SELECT balance_after FROM ledger_entries WHERE id = {entry}"
            ))
            .await;
        assert_eq!(stored, available, "entry {entry}");
    }
}

#[tokio::test]
async fn a_storm_of_mixed_requests_gets_what_each_would_get_alone() {
    let app = TestApp::spawn().await;
    storm(&app).await;
    // And they were committed together: a batch's allocations share its instant.
    let largest_batch = app
        .scalar("SELECT max(n)::bigint FROM (SELECT count(*) AS n FROM allocations GROUP BY created_at) t")
        .await;
    assert!(largest_batch > 1, "no two allocations shared a commit");
}

#[tokio::test]
async fn the_same_storm_without_group_commit_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.group_commit_max = 0)).await;
    storm(&app).await;
}

#[tokio::test]
async fn the_same_storm_with_two_overlapping_writers_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.group_commit_writers = 2)).await;
    storm(&app).await;
}

#[tokio::test]
async fn the_same_storm_with_overlapping_batches_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| {
        s.group_commit_overlap = 2;
        s.group_commit_max = 4;
    }))
    .await;
    storm(&app).await;
}

async fn catalog_for(app: &TestApp) -> (String, Catalog) {
    let (_, key) = app.create_org("Shop").await;
    let c = setup_catalog(app, &key).await;
    (key, c)
}

#[tokio::test]
async fn two_instances_committing_the_same_keys_make_each_effect_once() {
    let one = TestApp::spawn().await;
    let two = TestApp::spawn_on(&one.database_url, Spawn::default()).await;
    let (key, c) = catalog_for(&one).await;
    let bodies: Vec<Value> = (0..15)
        .map(|i| {
            allocation_body(
                &c,
                &format!("9198765{:05}", i % 4),
                json!(100 + i),
                &format!("x-{i}"),
            )
        })
        .collect();
    // Every key three times on each instance, all at once.
    let mut sends = Vec::new();
    for b in &bodies {
        for app in [&one, &two, &one, &two, &one, &two] {
            sends.push(app.post(ALLOCATE, &key, b));
        }
    }
    let replies = join_all(sends).await;
    let mut created: HashMap<String, usize> = HashMap::new();
    for r in &replies {
        match r.status {
            StatusCode::CREATED => *created.entry(r.body["uniqueId"].to_string()).or_default() += 1,
            StatusCode::ACCEPTED => {}
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(created.len(), bodies.len());
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    assert_eq!(
        one.scalar("SELECT count(*)::bigint FROM allocations").await,
        15
    );
    assert!(invariant_violations(&one).await.is_empty());
}

/// The database kills the connection while it commits a batch (a deferred trigger holds the
/// COMMIT, and the test terminates that backend): every request of the batch answers 503, and
/// retrying them all afterwards makes each effect exactly once.
#[tokio::test]
async fn a_commit_cut_off_answers_503_to_its_batch_and_retries_are_exact() {
    let app = TestApp::spawn().await;
    let (key, c) = catalog_for(&app).await;
    for sql in [
        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF current_setting('test.held', true) IS DISTINCT FROM 'y' THEN \
             PERFORM set_config('test.held', 'y', true); PERFORM pg_sleep(30); END IF; \
           RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON allocations \
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()",
    ] {
        app.db
            .conn()
            .execute_unprepared(sql)
            .await
            .expect("install the trigger");
    }
    // Whatever backend sits in a held COMMIT is cut off, until the test says stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let db = app.db.clone();
        tokio::spawn(async move {
            let mut killed = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = db
                    .conn()
                    .query_all_raw(sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event = 'PgSleep' \
                         AND query ILIKE 'commit%'",
                    ))
                    .await
                    .expect("terminate held commits");
                killed += rows.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            killed
        })
    };
    let bodies: Vec<Value> = (0..20)
        .map(|i| {
            allocation_body(
                &c,
                &format!("9198765{:05}", i % 6),
                json!(1000),
                &format!("cut-{i}"),
            )
        })
        .collect();
    let replies = join_all(bodies.iter().map(|b| app.post(ALLOCATE, &key, b))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = killer.await.expect("killer");
    assert!(killed >= 1, "no commit was cut off");
    for r in &replies {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert_eq!(r.body["retryable"], true);
        assert!(r.header("Retry-After").is_some());
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations").await,
        0
    );

    app.db
        .conn()
        .execute_unprepared("DROP TRIGGER hold_commit ON allocations")
        .await
        .expect("drop the trigger");
    // The clients retry, twice each, concurrently, as long as they are told 503 (a pooled
    // connection cut by the test may fail once more): one effect per key.
    let retry = |body: &Value| {
        let (app, key, body) = (&app, &key, body.clone());
        async move {
            for _ in 0..20 {
                let r = app.post(ALLOCATE, key, &body).await;
                if r.status != StatusCode::SERVICE_UNAVAILABLE {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("still 503 after 20 retries");
        }
    };
    let retries = join_all(bodies.iter().chain(&bodies).map(retry)).await;
    for r in &retries {
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::ACCEPTED,
            "{}",
            r.text
        );
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations").await,
        20
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        20 * 100 * 100
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A webhook endpoint created on one instance gets the events of another within the cache's
/// bound (LOYALTY_CACHE_TTL_MS, 1 s by default), even though that instance had cached the
/// organisation's empty list of endpoints; on the instance that created it, at once.
#[tokio::test]
async fn an_endpoint_created_on_another_instance_is_seen_within_the_cache_bound() {
    let one = TestApp::spawn_with(Spawn::settings(|s| s.webhooks.allow_private = true)).await;
    let two = TestApp::spawn_on(&one.database_url, Spawn::default()).await;
    let (key, c) = catalog_for(&one).await;
    async fn allocate(app: &TestApp, key: &str, c: &Catalog, unique_id: &str) {
        let body = allocation_body(c, "919876543210", json!(100), unique_id);
        let r = app.post(ALLOCATE, key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Both instances cache "no endpoints".
    allocate(&one, &key, &c, "warm-1").await;
    allocate(&two, &key, &c, "warm-2").await;
    let created = one
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["currency.allocated"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let events = "SELECT count(*)::bigint FROM webhook_events";
    allocate(&one, &key, &c, "same-instance").await;
    assert_eq!(
        one.scalar(events).await,
        1,
        "the creating instance sees it at once"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    allocate(&two, &key, &c, "other-instance").await;
    assert_eq!(
        one.scalar(events).await,
        2,
        "the other instance sees it after the bound"
    );
}

/// Single issuances committed together: stock and a per-customer limit contended within the
/// batch, unknown rewards, shared requestIds, new customers whose request fails (they must not
/// stay enrolled), and another organisation at the same time.
async fn issuance_storm(app: &TestApp) {
    let (_, key_a) = app.create_org("A").await;
    let (_, key_b) = app.create_org("B").await;
    let a = setup_catalog(app, &key_a).await;
    let b = setup_catalog(app, &key_b).await;
    let scarce = tests::create_reward(
        app,
        &key_a,
        a.program_id,
        json!({"name": "Scarce", "stock": 10}),
    )
    .await;
    let limited = tests::create_reward(
        app,
        &key_a,
        a.program_id,
        json!({"name": "Limited", "perCustomerLimit": 2}),
    )
    .await;
    let other = tests::create_reward(app, &key_b, b.program_id, json!({"name": "B's"})).await;
    let issue = |key: &str, body: Value| {
        let (app, key) = (app, key.to_owned());
        async move { app.post("/v1/rewards/issue", &key, &body).await }
    };
    let mut sends = Vec::new();
    // 40 new customers race for a stock of 10: those who lose are not enrolled.
    for i in 0..40 {
        sends.push(issue(&key_a, json!({"mobile": format!("91900000{i:04}"), "rewardId": scarce, "quantity": 1, "requestId": format!("s-{i}")})));
    }
    // One customer asks the limited reward 6 times: 2 fit.
    for i in 0..6 {
        sends.push(issue(&key_a, json!({"mobile": "919111111111", "rewardId": limited, "quantity": 1, "requestId": format!("l-{i}")})));
    }
    // An unknown reward.
    sends.push(issue(
        &key_a,
        json!({"mobile": "919222222222", "rewardId": 999_999, "quantity": 1, "requestId": "ghost"}),
    ));
    // One requestId four times.
    for _ in 0..4 {
        sends.push(issue(&key_a, json!({"mobile": "919333333333", "rewardId": limited, "quantity": 1, "requestId": "twice"})));
    }
    // The same requestIds in another organisation.
    for i in 0..10 {
        sends.push(issue(&key_b, json!({"mobile": format!("91900000{i:04}"), "rewardId": other, "quantity": 1, "requestId": format!("s-{i}")})));
    }
    let replies = join_all(sends).await;
    let (scarce_replies, rest) = replies.split_at(40);
    let (limited_replies, rest) = rest.split_at(6);
    let (ghost, rest) = rest.split_at(1);
    let (twice, of_b) = rest.split_at(4);

    let count = |rs: &[Reply], status: StatusCode| rs.iter().filter(|r| r.status == status).count();
    assert_eq!(
        count(scarce_replies, StatusCode::CREATED),
        10,
        "stock of 10"
    );
    for r in scarce_replies
        .iter()
        .filter(|r| r.status != StatusCode::CREATED)
    {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.code(), "OUT_OF_STOCK");
    }
    assert_eq!(count(limited_replies, StatusCode::CREATED), 2, "limit of 2");
    for r in limited_replies
        .iter()
        .filter(|r| r.status != StatusCode::CREATED)
    {
        assert_eq!(r.code(), "CUSTOMER_LIMIT_EXCEEDED", "{}", r.text);
    }
    assert_eq!(ghost[0].status, StatusCode::NOT_FOUND, "{}", ghost[0].text);
    assert_eq!(ghost[0].code(), "REWARD_NOT_FOUND");
    assert_eq!(
        count(twice, StatusCode::CREATED),
        1,
        "one effect per requestId"
    );
    assert_eq!(count(twice, StatusCode::ACCEPTED), 3);
    let vouchers: Vec<&Value> = twice.iter().map(|r| &r.body["vouchers"]).collect();
    assert!(
        vouchers.windows(2).all(|w| w[0] == w[1]),
        "replays show the same vouchers"
    );
    assert_eq!(
        count(of_b, StatusCode::CREATED),
        10,
        "another organisation's keys are its own"
    );

    // The books: exactly what the answers say, and nobody enrolled by a refused request.
    let reward_row = app.get(&format!("/v1/rewards/{scarce}"), &key_a).await;
    assert_eq!(reward_row.body["stock"], 0);
    assert_eq!(reward_row.body["issued"], 10);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM issuances").await,
        10 + 2 + 1 + 10
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM vouchers").await,
        10 + 2 + 1 + 10
    );
    let org_a_customers = "SELECT count(*)::bigint FROM customers c JOIN organisations o ON o.id = c.org_id AND o.name = 'A'";
    assert_eq!(
        app.scalar(org_a_customers).await,
        10 + 1 + 1,
        "the 30 who got nothing, and the ghost's, were not kept"
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*)::bigint FROM idempotency_records WHERE operation = 'reward-issuance'"
        )
        .await,
        10 + 2 + 1 + 10,
        "refused requests consumed no key"
    );
}

#[tokio::test]
async fn a_storm_of_single_issuances_gets_what_each_would_get_alone() {
    let app = TestApp::spawn().await;
    issuance_storm(&app).await;
    let largest_batch = app
        .scalar("SELECT max(n)::bigint FROM (SELECT count(*) AS n FROM issuances GROUP BY created_at) t")
        .await;
    assert!(largest_batch > 1, "no two issuances shared a commit");
}

#[tokio::test]
async fn the_same_issuance_storm_without_group_commit_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.group_commit_max = 0)).await;
    issuance_storm(&app).await;
}

/// Redemptions committed together: one customer's balance contended within the batch, several
/// customers, an unknown customer and currency, a shared key, and the books after.
async fn redemption_storm(app: &TestApp) {
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(app, &key).await;
    // Customer 0 has 100.00 points (10 allocations of 10.00); customers 1..5 have 10.00 each.
    for i in 0..10 {
        let r = app
            .post(
                ALLOCATE,
                &key,
                &allocation_body(&c, "919800000000", json!(100), &format!("a0-{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for i in 1..6 {
        let r = app
            .post(
                ALLOCATE,
                &key,
                &allocation_body(&c, &format!("91980000000{i}"), json!(100), &format!("a{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let redeem = |mobile: &str, amount: &str, unique_id: &str, currency: &str| {
        json!({"programId": c.program_id, "currency": currency, "amount": amount,
               "mobile": mobile, "uniqueId": unique_id})
    };
    let mut bodies = Vec::new();
    for i in 0..30 {
        bodies.push(redeem("919800000000", "10", &format!("r0-{i}"), "POINTS"));
    }
    for i in 1..5 {
        bodies.push(redeem(
            &format!("91980000000{i}"),
            "4.5",
            &format!("r{i}"),
            "POINTS",
        ));
    }
    bodies.push(redeem("919899999999", "1", "nobody", "POINTS"));
    bodies.push(redeem("919800000001", "1", "coins", "GEMS"));
    for _ in 0..3 {
        bodies.push(redeem("919800000005", "1", "shared", "POINTS"));
    }
    let replies = join_all(
        bodies
            .iter()
            .map(|b| app.post("/v1/currency/redemptions", &key, b)),
    )
    .await;
    let (contended, rest) = replies.split_at(30);
    let (others, rest) = rest.split_at(4);
    let (nobody, rest) = rest.split_at(1);
    let (gems, shared) = rest.split_at(1);
    let ok = contended
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(ok, 10, "100.00 points pay for ten redemptions of 10.00");
    for r in contended.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(r.code(), "INSUFFICIENT_BALANCE", "{}", r.text);
    }
    for r in others {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["balance"]["available"], "5.50");
    }
    assert_eq!(
        nobody[0].status,
        StatusCode::NOT_FOUND,
        "{}",
        nobody[0].text
    );
    assert_eq!(gems[0].status, StatusCode::NOT_FOUND, "{}", gems[0].text);
    assert_eq!(gems[0].code(), "CURRENCY_NOT_FOUND");
    assert_eq!(
        shared
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        1,
        "{:?}",
        shared.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!(
        shared
            .iter()
            .filter(|r| r.status == StatusCode::ACCEPTED)
            .count(),
        2
    );
    // Every balanceAfter shown is a step of the customer's running balance, each shown once.
    let mut shown: Vec<String> = contended
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| {
            r.body["balance"]["available"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    shown.sort_by_key(|s| minor(&json!(s)));
    let steps: Vec<String> = (0..10).map(|k| format!("{}.00", k * 10)).collect();
    assert_eq!(shown, steps);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM idempotency_records WHERE operation = 'currency-redemption'").await,
        10 + 4 + 1,
        "refused redemptions consumed no key"
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        4 * 550 + 900
    );
    assert!(
        invariant_violations(app).await.is_empty(),
        "{:?}",
        invariant_violations(app).await
    );
}

#[tokio::test]
async fn a_storm_of_redemptions_gets_what_each_would_get_alone() {
    let app = TestApp::spawn().await;
    redemption_storm(&app).await;
    let largest_batch = app
        .scalar("SELECT max(n)::bigint FROM (SELECT count(*) AS n FROM redemptions GROUP BY created_at) t")
        .await;
    assert!(largest_batch > 1, "no two redemptions shared a commit");
}

#[tokio::test]
async fn the_same_redemption_storm_without_group_commit_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.group_commit_max = 0)).await;
    redemption_storm(&app).await;
}

#[tokio::test]
async fn the_same_redemption_storm_with_two_overlapping_writers_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.group_commit_writers = 2)).await;
    redemption_storm(&app).await;
}

#[tokio::test]
async fn the_same_redemption_storm_with_overlapping_batches_gets_the_same_answers() {
    let app = TestApp::spawn_with(Spawn::settings(|s| {
        s.group_commit_overlap = 2;
        s.group_commit_max = 4;
    }))
    .await;
    redemption_storm(&app).await;
}

/// A key whose first use another transaction (another instance) has written but not committed
/// yet: the batch is not told by its look-up, writes its effect, finds the key taken when it
/// inserts its record, and rolls back; its retry answers what the committed record says (here
/// 422: the other use had another payload). Nothing of the batch's effect stays.
#[tokio::test]
async fn a_key_first_used_by_a_transaction_in_flight_is_answered_from_it_not_doubled() {
    let app = TestApp::spawn().await;
    let (key, c) = catalog_for(&app).await;
    let mobile = "919876500077";
    let seed = app
        .post(
            ALLOCATE,
            &key,
            &allocation_body(&c, mobile, json!(100), "seed"),
        )
        .await;
    assert_eq!(seed.status, StatusCode::CREATED, "{}", seed.text);
    let balance = app
        .scalar("SELECT sum(available)::bigint FROM balances")
        .await;
    let org_id = app
        .scalar("SELECT org_id FROM idempotency_records WHERE key = 'seed'")
        .await;
    let other = app.db.begin().await.expect("begin");
    other
        .execute_unprepared(&format!(
            "INSERT INTO idempotency_records (org_id, operation, key, fingerprint, \
             request_fields, created_at, status_code, response) VALUES ({org_id}, \
             'currency-allocation', 'raced', 'another payload', '{{}}', now(), 201, '{{}}')"
        ))
        .await
        .expect("the other first use");
    let body = allocation_body(&c, mobile, json!(5000), "raced");
    let (reply, ()) = tokio::join!(app.post(ALLOCATE, &key, &body), async {
        app.until_a_backend_waits_on_a_lock().await;
        persistence::Db::commit(other).await.expect("commit");
    });
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations WHERE unique_id = 'raced'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        balance
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A balance row created by another transaction while a batch credits the same account (the
/// customer's first points, from two places at once): the batch, which found no row to lock,
/// sees the row its upsert added to is not the one it answered from, rolls back and tries
/// again. Its answer, its ledger entry and the balance then all count the other credit.
#[tokio::test]
async fn a_balance_row_created_under_a_batch_is_counted_in_its_answer() {
    let app = TestApp::spawn().await;
    let (key, c) = catalog_for(&app).await;
    let seed = app
        .post(
            ALLOCATE,
            &key,
            &allocation_body(&c, "919876500078", json!(100), "seed"),
        )
        .await;
    assert_eq!(seed.status, StatusCode::CREATED, "{}", seed.text);
    let org_id = app
        .scalar("SELECT org_id FROM idempotency_records WHERE key = 'seed'")
        .await;
    let mobile = "919876500079";
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
            "WITH c AS (SELECT id FROM customers WHERE org_id = {org_id} AND mobile = '{mobile}'), \
             b AS (INSERT INTO balances (org_id, customer_id, program_id, currency, available, updated_at) \
                   SELECT {org_id}, id, {p}, 'POINTS', 700, now() FROM c) \
             INSERT INTO ledger_entries (org_id, customer_id, program_id, currency, kind, amount, \
               balance_after, reference, remaining, created_at) \
             SELECT {org_id}, id, {p}, 'POINTS', 'CREDIT', 700, 700, 'elsewhere', 700, now() FROM c",
            p = c.program_id
        ))
        .await
        .expect("the other credit");
    let body = allocation_body(&c, mobile, json!(5000), "under");
    let (reply, ()) = tokio::join!(app.post(ALLOCATE, &key, &body), async {
        app.until_a_backend_waits_on_a_lock().await;
        persistence::Db::commit(other).await.expect("commit");
    });
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let amount = app
        .scalar("SELECT amount FROM allocations WHERE unique_id = 'under'")
        .await;
    assert!(amount > 0);
    assert_eq!(
        minor(&reply.body["balance"]["available"]),
        700 + amount,
        "{}",
        reply.text
    );
    assert_eq!(
        app.scalar(
            "SELECT e.balance_after FROM ledger_entries e JOIN allocations a \
             ON a.ledger_entry_id = e.id WHERE a.unique_id = 'under'"
        )
        .await,
        700 + amount
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT available FROM balances b JOIN customers c ON c.id = b.customer_id \
             WHERE c.mobile = '{mobile}'"
        ))
        .await,
        700 + amount
    );
    assert!(invariant_violations(&app).await.is_empty());
}
