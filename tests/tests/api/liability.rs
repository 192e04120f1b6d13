//! A program's liability in one currency: the balances added up, what expires month by month,
//! and the ledger month by month.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Utc};
use persistence::ConnectionTrait;
use sea_orm::{DbBackend, Statement};
use serde_json::{Value, json};
use tests::{Catalog, Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

const ALICE: &str = "919822220001";
const BOB: &str = "919822220002";

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
}

async fn expiry_days(app: &TestApp, key: &str, c: &Catalog, days: i64) -> i64 {
    let r = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            key,
            &json!({"name": format!("{days} days"), "kind": "AFTER_DAYS", "days": days}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["expiryStrategyId"].as_i64().unwrap()
}

async fn ok(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let r = app.post(path, key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text);
    r.body
}

fn allocation(c: &Catalog, expiry: i64, source: i64, unique: &str) -> Value {
    let mut body = allocation_body(c, ALICE, json!(source), unique);
    body["expiryStrategyId"] = json!(expiry);
    body
}

fn month(
    m: &str,
    issued: &str,
    redeemed: &str,
    expired: &str,
    reversed: &str,
    transferred: &str,
) -> Value {
    json!({"month": m, "issued": issued, "redeemed": redeemed, "expired": expired,
           "reversed": reversed, "transferred": transferred})
}

/// Merging the sums' deltas, twice at once as two instances would, changes no figure of the
/// liability at `path` and leaves no delta unmerged; before and after, the sums are what the
/// ledger adds up to.
async fn merging_changes_nothing(app: &TestApp, key: &str, path: &str, backend: DbBackend) {
    let sums = tests::liability_sums_violations(backend);
    let broken = |app: &TestApp| {
        let sql = sums.clone();
        let conn = app.db.conn().clone();
        async move {
            conn.query_all_raw(Statement::from_string(backend, sql))
                .await
                .expect("sums query")
                .into_iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(broken(app).await, Vec::<String>::new());
    let before = app.get(path, key).await;
    let (a, b) = tokio::join!(
        persistence::liability::merge(&app.db, 10_000),
        persistence::liability::merge(&app.db, 10_000)
    );
    assert!(
        a.expect("merge") + b.expect("merge") > 0,
        "nothing to merge"
    );
    let after = app.get(path, key).await;
    for part in ["outstanding", "expiring", "months"] {
        assert_eq!(before.body[part], after.body[part], "{part}");
    }
    let unmerged = app
        .db
        .conn()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT (SELECT count(*) FROM ledger_month_sums WHERE NOT merged) \
             + (SELECT count(*) FROM lot_month_sums WHERE NOT merged) AS n"
                .to_owned(),
        ))
        .await
        .expect("count")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(unmerged, 0);
    assert_eq!(broken(app).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_liability_adds_up_balances_expiring_lots_and_the_ledger_by_month() {
    let clock = ManualClock::new(at("2026-10-15T10:00:00Z"));
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Finance").await;
    let c = setup_catalog(&app, &key).await;
    let days30 = expiry_days(&app, &key, &c, 30).await;
    let days60 = expiry_days(&app, &key, &c, 60).await;
    let p = c.program_id;
    let redeem = |amount: &str, unique: &str| {
        json!({"programId": p, "currency": "POINTS", "amount": amount, "mobile": ALICE,
               "uniqueId": unique})
    };

    // October: 100 issued (expiring 2026-11-14), 10 redeemed.
    ok(
        &app,
        &key,
        "/v1/currency/allocations",
        allocation(&c, days30, 1000, "oct"),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/redemptions",
        redeem("10", "r-oct"),
    )
    .await;

    // November 22nd: 200 issued (expiring 2027-01-21); a redemption of 20 (which first expires
    // what was left of October's 90); a hold of 30 captured for 15 (its release counts for
    // nothing); 25 transferred to Bob (his lot keeps the expiry); 50 issued and reversed; 40
    // promised for later.
    clock.set(at("2026-11-22T10:00:00Z"));
    ok(
        &app,
        &key,
        "/v1/currency/allocations",
        allocation(&c, days60, 2000, "nov"),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/redemptions",
        redeem("20", "r-nov"),
    )
    .await;
    let hold = ok(
        &app,
        &key,
        "/v1/currency/holds",
        json!({"programId": p, "currency": "POINTS", "amount": "30", "mobile": ALICE, "uniqueId": "h"}),
    )
    .await;
    let hold_id = hold["holdId"].as_str().unwrap();
    ok(
        &app,
        &key,
        &format!("/v1/currency/holds/{hold_id}/capture"),
        json!({"amount": "15"}),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/transfers",
        json!({"programId": p, "currency": "POINTS", "amount": "25", "from": {"mobile": ALICE},
               "to": {"mobile": BOB}, "uniqueId": "gift"}),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/allocations",
        allocation(&c, days60, 500, "returned"),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/allocations/returned/reversal",
        json!({}),
    )
    .await;
    let mut later = allocation(&c, days60, 400, "later");
    later["maturesAt"] = json!("2027-03-01T00:00:00Z");
    ok(&app, &key, "/v1/currency/allocations", later).await;

    let r = app
        .get(&format!("/v1/programs/{p}/liability?currency=POINTS"), &key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["programId"], p);
    assert_eq!(r.body["currency"], "POINTS");
    assert_eq!(r.body["asOf"], "2026-11-22T10:00:00Z");
    // Alice 200 - 20 - 15 - 25 = 140, Bob 25.
    assert_eq!(
        r.body["outstanding"],
        json!({"available": "165.00", "pending": "40.00", "held": "0.00"})
    );
    let expiring = r.body["expiring"].as_array().unwrap();
    assert_eq!(expiring.len(), 12);
    assert_eq!(expiring[0], json!({"month": "2026-11", "amount": "0.00"}));
    assert_eq!(expiring[2], json!({"month": "2027-01", "amount": "165.00"}));
    assert_eq!(expiring[11]["month"], "2027-10");
    let expiring_total: i64 = expiring
        .iter()
        .map(|e| tests::minor_units(&e["amount"]))
        .sum();
    assert_eq!(expiring_total, 16500);

    let months = r.body["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!(
        months[0],
        month("2025-12", "0.00", "0.00", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        months[10],
        month("2026-10", "100.00", "10.00", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        months[11],
        month("2026-11", "250.00", "35.00", "90.00", "50.00", "25.00")
    );

    // A currency of the program with nothing in it: zeros at its scale.
    let coins = app
        .get(&format!("/v1/programs/{p}/liability?currency=COINS"), &key)
        .await;
    assert_eq!(coins.status, StatusCode::OK, "{}", coins.text);
    assert_eq!(
        coins.body["outstanding"],
        json!({"available": "0", "pending": "0", "held": "0"})
    );
    assert_eq!(
        coins.body["months"][11],
        month("2026-11", "0", "0", "0", "0", "0")
    );
    let path = format!("/v1/programs/{p}/liability?currency=POINTS");
    merging_changes_nothing(&app, &key, &path, DbBackend::Postgres).await;
}

#[tokio::test]
async fn a_liability_needs_a_currency_of_a_program_of_the_organisation() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Finance").await;
    let c = setup_catalog(&app, &key).await;
    let p = c.program_id;
    for query in [
        "",
        "?currency=",
        "?currency=points",
        "?currency=P-1",
        "?other=POINTS",
    ] {
        let r = app
            .get(&format!("/v1/programs/{p}/liability{query}"), &key)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert_eq!(r.code(), "VALIDATION_FAILED");
    }
    let r = app
        .get(&format!("/v1/programs/{p}/liability?currency=GEMS"), &key)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.code(), "CURRENCY_NOT_FOUND");
    for program in ["999999", "abc", "0"] {
        let r = app
            .get(
                &format!("/v1/programs/{program}/liability?currency=POINTS"),
                &key,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{program}: {}", r.text);
    }
    let (_, other) = app.create_org("Someone else").await;
    let r = app
        .get(
            &format!("/v1/programs/{p}/liability?currency=POINTS"),
            &other,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

/// The months on SQLite (`strftime` rather than `to_char`), and the customer lists there.
#[tokio::test]
async fn the_liability_and_the_customer_lists_read_the_same_on_sqlite() {
    let file = std::env::temp_dir().join(format!("loyalty-liability-{}.db", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let clock = ManualClock::new(at("2026-10-31T23:30:00Z"));
    let app = TestApp::spawn_on(
        &url,
        Spawn::clock(clock.clone()).with_settings(|s| s.migrate = true),
    )
    .await;
    let (_, key) = app.create_org("SQLite").await;
    let c = setup_catalog(&app, &key).await;
    let p = c.program_id;
    let days30 = expiry_days(&app, &key, &c, 30).await;
    // The last half hour of October, UTC.
    let a = ok(
        &app,
        &key,
        "/v1/currency/allocations",
        allocation(&c, days30, 1000, "a"),
    )
    .await;
    clock.set(at("2026-11-01T00:30:00Z"));
    ok(
        &app,
        &key,
        "/v1/currency/allocations",
        allocation(&c, days30, 500, "b"),
    )
    .await;
    ok(
        &app,
        &key,
        "/v1/currency/transfers",
        json!({"programId": p, "currency": "POINTS", "amount": "5", "from": {"mobile": ALICE},
               "to": {"mobile": BOB}, "uniqueId": "t"}),
    )
    .await;
    let r = app
        .get(&format!("/v1/programs/{p}/liability?currency=POINTS"), &key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["outstanding"],
        json!({"available": "150.00", "pending": "0.00", "held": "0.00"})
    );
    assert_eq!(
        r.body["months"][10],
        month("2026-10", "100.00", "0.00", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        r.body["months"][11],
        month("2026-11", "50.00", "0.00", "0.00", "0.00", "5.00")
    );
    // October's lot expires on 2026-11-30 23:30 (the 5 Bob got from it too), November's on
    // 2026-12-01 00:30.
    assert_eq!(
        r.body["expiring"][0],
        json!({"month": "2026-11", "amount": "100.00"})
    );
    assert_eq!(
        r.body["expiring"][1],
        json!({"month": "2026-12", "amount": "50.00"})
    );

    let alice = a["customerId"].as_str().unwrap();
    let allocations = app
        .get(&format!("/v1/customers/{alice}/allocations?limit=1"), &key)
        .await;
    assert_eq!(allocations.status, StatusCode::OK, "{}", allocations.text);
    assert_eq!(allocations.body["items"][0]["uniqueId"], "b");
    let cursor = allocations.body["nextCursor"].as_str().unwrap().to_owned();
    let next = app
        .get(
            &format!("/v1/customers/{alice}/allocations?limit=1&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(next.body["items"][0]["uniqueId"], "a");
    assert_eq!(next.body["nextCursor"], Value::Null);
    let transfers = app
        .get(&format!("/v1/customers/{alice}/transfers"), &key)
        .await;
    assert_eq!(
        transfers.body["items"][0]["direction"], "SENT",
        "{}",
        transfers.text
    );
    let holds = app.get(&format!("/v1/customers/{alice}/holds"), &key).await;
    assert_eq!(holds.body["items"], json!([]), "{}", holds.text);
    let path = format!("/v1/programs/{p}/liability?currency=POINTS");
    merging_changes_nothing(&app, &key, &path, DbBackend::Sqlite).await;
    app.stop().await;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = file.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
}
