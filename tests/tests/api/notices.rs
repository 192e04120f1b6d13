//! Expiry notices (`currency.expiring` once per lot before it expires, with any number of
//! instances), the customer's list of what expires soon, and the lifecycle's other events
//! recorded with their effects.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{Catalog, Spawn, StatusCode, TestApp, invariant_violations, setup_catalog};

const MOBILE: &str = "919833334444";

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// An app on a manual clock whose organisation subscribes to the lifecycle's events, with a
/// 10-day expiry strategy besides the catalog's 365-day one.
async fn app() -> (TestApp, ManualClock, String, Catalog, i64) {
    let clock = ManualClock::new(start());
    let app = TestApp::spawn_with(
        Spawn::clock(clock.clone()).with_settings(|s| s.webhooks.allow_private = true),
    )
    .await;
    let (_, key) = app.create_org("Notices").await;
    let c = setup_catalog(&app, &key).await;
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["currency.expiring", "currency.transferred", "currency.activated", "currency.held", "currency.hold_expired"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let e = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    let ten_days = e.body["expiryStrategyId"].as_i64().unwrap();
    (app, clock, key, c, ten_days)
}

async fn allocate(app: &TestApp, key: &str, c: &Catalog, expiry: i64, source: i64, unique: &str) {
    let r = app
        .post(
            "/v1/currency/allocations",
            key,
            &json!({
                "programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": expiry,
                "sourceValue": source, "mobile": MOBILE, "uniqueId": unique
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    use persistence::ConnectionTrait;
    app.db
        .conn()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT body::text FROM webhook_events WHERE event_type = $1 ORDER BY created_at, id",
            [kind.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let body: Value =
                serde_json::from_str(&r.try_get_by_index::<String>(0).unwrap()).unwrap();
            body["data"].clone()
        })
        .collect()
}

#[tokio::test]
async fn a_notice_is_written_once_per_lot_whatever_the_instances() {
    let (app, clock, key, c, ten_days) = app().await;
    allocate(&app, &key, &c, ten_days, 1000, "soon").await;
    allocate(&app, &key, &c, c.expiry_id, 500, "later").await;
    let notify = |db: persistence::Db, now| async move {
        api::workers::notify_expiring_all(&db, now, 7)
            .await
            .unwrap()
    };
    assert_eq!(
        notify(app.db.clone(), clock.now_for_tests()).await,
        0,
        "10 days away: not yet within 7"
    );
    assert_eq!(
        api::workers::notify_expiring_all(&app.db, clock.now_for_tests(), 0)
            .await
            .unwrap(),
        0,
        "0 days turns notices off"
    );

    clock.advance(Duration::days(4));
    let now = clock.now_for_tests();
    let others: Vec<persistence::Db> = instances(&app, 3).await;
    let mut runs = vec![tokio::spawn(notify(app.db.clone(), now))];
    for db in others {
        runs.push(tokio::spawn(notify(db, now)));
    }
    let mut written = 0;
    for r in runs {
        written += r.await.unwrap();
    }
    assert_eq!(written, 1, "one lot, one notice, four instances");
    let got = events(&app, "currency.expiring").await;
    assert_eq!(got.len(), 1);
    let expires = (start() + Duration::days(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(got[0]["amount"], "100.00");
    assert_eq!(got[0]["currency"], "POINTS");
    assert_eq!(got[0]["programId"], c.program_id);
    assert_eq!(got[0]["expiresAt"], expires.as_str());
    // Later rounds write nothing more for it.
    clock.advance(Duration::days(2));
    assert_eq!(notify(app.db.clone(), clock.now_for_tests()).await, 0);

    // The customer's view of what expires soon.
    let customer = app
        .get(
            &format!("/v1/customers/lookup?identifierType=mobile&identifierValue={MOBILE}"),
            &key,
        )
        .await
        .body["customerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let soon = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=7d"),
            &key,
        )
        .await;
    assert_eq!(soon.status, StatusCode::OK, "{}", soon.text);
    assert_eq!(soon.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(soon.body["items"][0]["amount"], "100.00");
    assert_eq!(soon.body["items"][0]["expiresAt"], expires.as_str());
    assert_ne!(soon.body["items"][0]["notifiedAt"], Value::Null);
    let all = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=400d"),
            &key,
        )
        .await;
    let amounts: Vec<&Value> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["amount"])
        .collect();
    assert_eq!(
        amounts,
        [&json!("100.00"), &json!("50.00")],
        "soonest first"
    );
    // Spent lots are not listed: the soonest one is used first by a redemption.
    let r = app
        .post(
            "/v1/currency/redemptions",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "100", "mobile": MOBILE, "uniqueId": "spend"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let after = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=400d"),
            &key,
        )
        .await;
    assert_eq!(after.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(after.body["items"][0]["amount"], "50.00");
    for bad in ["0d", "30", "30m", "-1d", "12345d", "1é"] {
        let r = app
            .get(
                &format!("/v1/customers/{customer}/expiring?within={bad}"),
                &key,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let unknown = app
        .get(
            &format!("/v1/customers/{}/expiring", uuid::Uuid::now_v7()),
            &key,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(invariant_violations(&app).await.is_empty());
}

async fn instances(app: &TestApp, n: usize) -> Vec<persistence::Db> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            persistence::Db::connect(&app.database_url, &persistence::DbOptions::default())
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn the_expiring_list_pages_soonest_first() {
    let (app, clock, key, c, ten_days) = app().await;
    // Five lots, one a day, each expiring ten days after it was allocated.
    for i in 0..5 {
        allocate(&app, &key, &c, ten_days, 100 * (i + 1), &format!("lot-{i}")).await;
        clock.advance(Duration::days(1));
    }
    let customer = app
        .get(
            &format!("/v1/customers/lookup?identifierType=mobile&identifierValue={MOBILE}"),
            &key,
        )
        .await
        .body["customerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/customers/{customer}/expiring?within=30d&limit=2"),
            Some(c) => format!("/v1/customers/{customer}/expiring?within=30d&limit=2&cursor={c}"),
        };
        let page = app.get(&path, &key).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["amount"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["10.00", "20.00", "30.00", "40.00", "50.00"]);
    // Now (day 5) the first lot, expiring on day 10, is within 5 days; the rest are not.
    let day = app
        .get(
            &format!("/v1/customers/{customer}/expiring?within=120h"),
            &key,
        )
        .await;
    assert_eq!(day.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn transfers_activations_and_hold_expiries_record_their_events() {
    let (app, clock, key, c, _) = app().await;
    allocate(&app, &key, &c, c.expiry_id, 1000, "funds").await;
    let r = app
        .post(
            "/v1/currency/transfers",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "30",
                    "from": {"mobile": MOBILE}, "to": {"mobile": "919855556666"}, "uniqueId": "gift"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let transferred = events(&app, "currency.transferred").await;
    assert_eq!(transferred.len(), 1);
    assert_eq!(transferred[0]["transferId"], r.body["transferId"]);
    assert_eq!(transferred[0]["amount"], "30.00");
    // A replay records nothing more.
    let again = app
        .post(
            "/v1/currency/transfers",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "30",
                    "from": {"mobile": MOBILE}, "to": {"mobile": "919855556666"}, "uniqueId": "gift"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(events(&app, "currency.transferred").await.len(), 1);

    let mut pending = json!({
        "programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": c.expiry_id,
        "sourceValue": 200, "mobile": MOBILE, "uniqueId": "promise"
    });
    pending["maturesAt"] = json!(
        (clock.now_for_tests() + Duration::days(3))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let p = app.post("/v1/currency/allocations", &key, &pending).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let h = app
        .post(
            "/v1/currency/holds",
            &key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": "5", "mobile": MOBILE,
                    "uniqueId": "cart", "expiresInSeconds": 60}),
        )
        .await;
    assert_eq!(h.status, StatusCode::CREATED, "{}", h.text);
    assert_eq!(events(&app, "currency.held").await.len(), 1);
    clock.advance(Duration::days(3));
    let now = clock.now_for_tests();
    assert_eq!(api::workers::activate_all(&app.db, now).await.unwrap(), 1);
    assert_eq!(
        api::workers::expire_holds_all(&app.db, now).await.unwrap(),
        1
    );
    let activated = events(&app, "currency.activated").await;
    assert_eq!(activated.len(), 1);
    assert_eq!(activated[0]["uniqueId"], "promise");
    assert_eq!(activated[0]["status"], "ACTIVE");
    let expired = events(&app, "currency.hold_expired").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["holdId"], h.body["holdId"]);
    assert_eq!(expired[0]["status"], "EXPIRED");
    assert!(invariant_violations(&app).await.is_empty());
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The `currency.expiring` notices of one organisation, oldest first.
async fn notices_of(app: &TestApp, org_id: i64) -> Vec<Value> {
    use persistence::ConnectionTrait;
    app.db
        .conn()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT body::text FROM webhook_events WHERE event_type = 'currency.expiring' \
             AND org_id = $1 ORDER BY created_at, id",
            [org_id.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let body: Value =
                serde_json::from_str(&r.try_get_by_index::<String>(0).unwrap()).unwrap();
            body["data"].clone()
        })
        .collect()
}

async fn org_of(app: &TestApp, c: &Catalog) -> i64 {
    app.scalar(&format!(
        "SELECT org_id FROM programs WHERE id = {}",
        c.program_id
    ))
    .await
}

/// A lot that expires before the next notice round comes (an end-of-month lot allocated
/// seconds before the month ends) still gets its notice, once, marked late: whether the expiry
/// worker emptied it first, or the notice round comes first and the lot expires after.
#[tokio::test]
async fn a_lot_that_expires_between_two_notice_rounds_gets_one_late_notice() {
    let (app, clock, key, c, ten_days) = app().await;
    let org = org_of(&app, &c).await;
    let e = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "end of month", "kind": "END_OF_MONTH_AFTER_MONTHS", "months": 0}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    let end_of_month = e.body["expiryStrategyId"].as_i64().unwrap();
    let db = &app.db;
    let notify = |now| async move { api::workers::notify_expiring_all(db, now, 7).await.unwrap() };
    // A lot noticed in time is not late.
    allocate(&app, &key, &c, ten_days, 1000, "in-time").await;
    clock.advance(Duration::days(4));
    assert_eq!(notify(clock.now_for_tests()).await, 1);

    // The expiry worker first: the lot is empty when the notice round comes.
    clock.set(utc("2026-11-30T23:59:00Z"));
    assert_eq!(notify(clock.now_for_tests()).await, 0);
    clock.set(utc("2026-11-30T23:59:30Z"));
    allocate(&app, &key, &c, end_of_month, 1000, "last-minute").await;
    clock.set(utc("2026-12-01T00:00:30Z"));
    let now = clock.now_for_tests();
    assert_eq!(api::workers::expire_all(&app.db, now).await.unwrap(), 1);
    assert_eq!(notify(now).await, 1);
    let got = notices_of(&app, org).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["late"], true);
    assert_eq!(got[1]["amount"], "100.00", "what expired");
    assert_eq!(got[1]["expiresAt"], "2026-12-01T00:00:00Z");
    assert_eq!(notify(now).await, 0, "once");

    // The notice round first: the lot is due but not expired yet.
    clock.set(utc("2026-12-31T23:59:30Z"));
    allocate(&app, &key, &c, end_of_month, 500, "new-year").await;
    clock.set(utc("2027-01-01T00:00:30Z"));
    let now = clock.now_for_tests();
    assert_eq!(notify(now).await, 1);
    let got = notices_of(&app, org).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["late"], true);
    assert_eq!(got[2]["amount"], "50.00");
    assert_eq!(got[2]["expiresAt"], "2027-01-01T00:00:00Z");
    assert_eq!(
        api::workers::expire_all(&app.db, now).await.unwrap(),
        2,
        "this lot and the one noticed in time"
    );
    assert_eq!(notify(now).await, 0, "once");
    let got = notices_of(&app, org).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["late"], false, "noticed in time");
    assert!(invariant_violations(&app).await.is_empty());
}

/// Notices are written organisation by organisation: one whose notices cannot be written (here
/// its event rows are refused by a trigger) keeps the others from none of theirs, and gets its
/// own, once, when it can again.
#[tokio::test]
async fn an_organisation_whose_notices_fail_holds_back_no_other() {
    use persistence::ConnectionTrait;
    let (app, clock, key, c, ten_days) = app().await;
    let failing = org_of(&app, &c).await;
    allocate(&app, &key, &c, ten_days, 1000, "first").await;
    let (healthy, other_key) = app.create_org("Healthy").await;
    let other = setup_catalog(&app, &other_key).await;
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &other_key,
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["currency.expiring"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let e = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", other.program_id),
            &other_key,
            &json!({"name": "10 days", "kind": "AFTER_DAYS", "days": 10}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    let other_ten_days = e.body["expiryStrategyId"].as_i64().unwrap();
    clock.advance(Duration::minutes(1));
    allocate(&app, &other_key, &other, other_ten_days, 700, "second").await;

    for sql in [
        "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'event refused'; END $$"
            .to_owned(),
        format!(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON webhook_events FOR EACH ROW \
             WHEN (NEW.org_id = {failing}) EXECUTE FUNCTION refuse_event()"
        ),
    ] {
        app.db
            .conn()
            .execute_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql,
            ))
            .await
            .unwrap();
    }
    clock.advance(Duration::days(4));
    let now = clock.now_for_tests();
    let written = api::workers::notify_expiring_all(&app.db, now, 7).await;
    assert!(
        matches!(written, Ok(1)),
        "the healthy organisation's notice: {written:?}"
    );
    let got = notices_of(&app, healthy).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["amount"], "70.00");
    assert!(notices_of(&app, failing).await.is_empty());
    // Its lot is not marked: a later round writes its notice once it can.
    app.db
        .conn()
        .execute_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "DROP TRIGGER refuse_event ON webhook_events".to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(
        api::workers::notify_expiring_all(&app.db, now, 7)
            .await
            .unwrap(),
        1
    );
    let got = notices_of(&app, failing).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["amount"], "100.00");
    assert_eq!(notices_of(&app, healthy).await.len(), 1);
}
