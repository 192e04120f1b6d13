//! Erasing a customer touches that customer only: the records and events that concern them
//! are found by reference, and only whole values that are one of their identifiers change.
//! Every other customer's stored records, and the replays of their keys, stay byte for byte;
//! a write in flight for the erased customer commits before the erasure or after it, never
//! with the identifier after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use persistence::{ConnectionTrait, Db, DbOptions};
use sea_orm::{DbBackend, Statement};
use serde_json::{Value, json};
use tests::{
    Catalog, Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog,
};

const ALLOCATE: &str = "/v1/currency/allocations";
const ANN: &str = "ann@example.com";
const JOANN: &str = "joann@example.com";

/// An allocation for the customer named by `field` (`email`, `mobile`, `externalId`).
fn allocation(c: &Catalog, field: &str, value: &str, source: i64, unique_id: &str) -> Value {
    let mut body = allocation_body(c, "0", json!(source), unique_id);
    body.as_object_mut().unwrap().remove("lookupParams");
    body[field] = json!(value);
    body
}

async fn enrol(app: &TestApp, key: &str, body: Value, idempotency_key: &str) -> String {
    let r = app
        .post_with(
            "/v1/customers",
            key,
            &body,
            &[("Idempotency-Key", idempotency_key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["customerId"].as_str().unwrap().to_owned()
}

async fn texts(app: &TestApp, sql: &str) -> Vec<String> {
    app.db
        .conn()
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// The stored idempotency records whose key starts with `prefix`, whole, as text.
async fn records(app: &TestApp, prefix: &str) -> Vec<String> {
    texts(
        app,
        &format!(
            "SELECT concat_ws(' | ', operation, key, fingerprint, request_fields::text, \
             response::text, status_code::text) FROM idempotency_records \
             WHERE key LIKE '{prefix}%' ORDER BY operation, key"
        ),
    )
    .await
}

/// How many stored records and events hold Ann's email anywhere (not as part of Joann's).
async fn holding_ann(app: &TestApp) -> i64 {
    app.scalar(&format!(
        "SELECT (SELECT count(*) FROM idempotency_records r \
                 WHERE replace(r::text, '{JOANN}', '') LIKE '%{ANN}%') \
         + (SELECT count(*) FROM webhook_events e \
            WHERE replace(e::text, '{JOANN}', '') LIKE '%{ANN}%')"
    ))
    .await
}

/// The answers of a replay: status and the exact bytes.
async fn replay(
    app: &TestApp,
    key: &str,
    path: &str,
    body: &Value,
    header: Option<&str>,
) -> String {
    let r = match header {
        Some(k) => {
            app.post_with(path, key, body, &[("Idempotency-Key", k)])
                .await
        }
        None => app.post(path, key, body).await,
    };
    format!("{} {}", r.status, r.text)
}

async fn erase(app: &TestApp, key: &str, customer: &str) -> tests::Reply {
    app.post(&format!("/v1/customers/{customer}/erase"), key, &json!({}))
        .await
}

#[tokio::test]
async fn erasing_ann_leaves_joanns_records_and_replays_as_they_were() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Data").await;
    let c = setup_catalog(&app, &key).await;
    let ann = enrol(&app, &key, json!({"email": ANN}), "ann-enrol").await;
    let joann = enrol(&app, &key, json!({"email": JOANN}), "joann-enrol").await;
    let ann_alloc = allocation(&c, "email", ANN, 1000, "ann-a1");
    let joann_alloc = allocation(&c, "email", JOANN, 1000, "joann-a1");
    for body in [&ann_alloc, &joann_alloc] {
        let r = app.post(ALLOCATE, &key, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Joann sends Ann points, naming Ann by id: the record concerns both.
    let transfer = json!({"programId": c.program_id, "currency": "POINTS", "amount": 10,
        "from": {"email": JOANN}, "to": {"customerId": ann}, "uniqueId": "joann-t1"});
    let t = app.post("/v1/currency/transfers", &key, &transfer).await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);

    let joann_enrol = json!({"email": JOANN});
    let before_records = records(&app, "joann-").await;
    let before = [
        replay(&app, &key, ALLOCATE, &joann_alloc, None).await,
        replay(
            &app,
            &key,
            "/v1/customers",
            &joann_enrol,
            Some("joann-enrol"),
        )
        .await,
        replay(&app, &key, "/v1/currency/transfers", &transfer, None).await,
    ];
    assert!(before.iter().all(|r| r.starts_with("202")), "{before:?}");
    assert_eq!(before_records.len(), 3);

    let erased = erase(&app, &key, &ann).await;
    assert_eq!(erased.status, StatusCode::CREATED, "{}", erased.text);
    assert_eq!(records(&app, "joann-").await, before_records);
    // Ann's enrolment and allocation held her email; the transfer named her by id only.
    assert_eq!(
        erased.body["idempotencyRecordsScrubbed"], 2,
        "{}",
        erased.text
    );
    let after = [
        replay(&app, &key, ALLOCATE, &joann_alloc, None).await,
        replay(
            &app,
            &key,
            "/v1/customers",
            &joann_enrol,
            Some("joann-enrol"),
        )
        .await,
        replay(&app, &key, "/v1/currency/transfers", &transfer, None).await,
    ];
    assert_eq!(after, before, "Joann's replays changed with Ann's erasure");
    assert_eq!(
        app.get(&format!("/v1/customers/{joann}"), &key).await.body["email"],
        JOANN
    );

    // Ann's own keys are refused as reused, and say nothing of her email.
    for (path, body, header) in [
        (ALLOCATE, &ann_alloc, None),
        ("/v1/customers", &json!({"email": ANN}), Some("ann-enrol")),
    ] {
        let r = match header {
            Some(k) => {
                app.post_with(path, &key, body, &[("Idempotency-Key", k)])
                    .await
            }
            None => app.post(path, &key, body).await,
        };
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.code(), "IDEMPOTENCY_KEY_REUSED");
        assert!(!r.text.replace(JOANN, "").contains(ANN), "{}", r.text);
    }
    let left = texts(&app, "SELECT r::text FROM idempotency_records r").await;
    assert!(
        left.iter().all(|t| !t.replace(JOANN, "").contains(ANN)),
        "{left:?}"
    );
    assert!(invariant_violations(&app).await.is_empty());
}

#[tokio::test]
async fn a_customer_whose_external_id_is_a_digit_can_be_erased() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Digits").await;
    let c = setup_catalog(&app, &key).await;
    let uno = enrol(&app, &key, json!({"externalId": "1"}), "uno-enrol").await;
    let uno_alloc = allocation(&c, "externalId", "1", 1000, "uno-a1");
    let other_alloc = allocation(&c, "mobile", "919811111111", 11, "other-a1");
    let other_enrol = json!({"externalId": "11"});
    enrol(&app, &key, other_enrol.clone(), "other-enrol").await;
    for body in [&uno_alloc, &other_alloc] {
        let r = app.post(ALLOCATE, &key, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let before_records = records(&app, "other-").await;
    let before = [
        replay(&app, &key, ALLOCATE, &other_alloc, None).await,
        replay(
            &app,
            &key,
            "/v1/customers",
            &other_enrol,
            Some("other-enrol"),
        )
        .await,
    ];

    let erased = erase(&app, &key, &uno).await;
    assert_eq!(erased.status, StatusCode::CREATED, "{}", erased.text);
    assert_eq!(records(&app, "other-").await, before_records);
    assert_eq!(erased.body["identifiersErased"], 1);
    assert_eq!(
        erased.body["idempotencyRecordsScrubbed"], 2,
        "{}",
        erased.text
    );
    let again = erase(&app, &key, &uno).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    let after = [
        replay(&app, &key, ALLOCATE, &other_alloc, None).await,
        replay(
            &app,
            &key,
            "/v1/customers",
            &other_enrol,
            Some("other-enrol"),
        )
        .await,
    ];
    assert_eq!(after, before);
    // Uno's records are still valid JSON, with the numbers as they were and no externalId.
    let uno_records = records(&app, "uno-").await;
    assert_eq!(uno_records.len(), 2);
    assert!(
        uno_records
            .iter()
            .all(|r| !r.contains("externalId:1\"") && !r.contains("\"externalId\": \"1\"")),
        "{uno_records:?}"
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*)::bigint FROM idempotency_records WHERE key = 'uno-a1' \
             AND response->>'amount' = '100.00' AND request_fields->>'sourceValue' = '1000'"
        )
        .await,
        1
    );
    let retried = app.post(ALLOCATE, &key, &uno_alloc).await;
    assert_eq!(
        retried.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        retried.text
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A connection of the test's own.
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

/// Waits until `n` backends of the test's database wait on a lock.
async fn until_backends_wait(app: &TestApp, n: i64) {
    for _ in 0..3000 {
        let waiting = app
            .scalar(
                "SELECT count(*)::bigint FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} backends never waited");
}

/// Requests wait for locks held elsewhere far longer than the test holds them.
async fn patient_app() -> TestApp {
    TestApp::spawn_with(Spawn::settings(|s| {
        s.idempotency_wait = Duration::from_secs(30);
        s.batch_lock_wait = Duration::from_secs(30);
    }))
    .await
}

/// An allocation for Ann that found her and is held (the test holds her balance) when her
/// erasure comes: the erasure waits for it, then scrubs its record too.
#[tokio::test]
async fn an_allocation_in_flight_commits_before_the_erasure_and_is_scrubbed() {
    let app = patient_app().await;
    let (_, key) = app.create_org("Race").await;
    let c = setup_catalog(&app, &key).await;
    let first = app
        .post(
            ALLOCATE,
            &key,
            &allocation(&c, "email", ANN, 1000, "ann-a1"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let ann = first.body["customerId"].as_str().unwrap().to_owned();
    let holder = other_connection(&app).await;
    let tx = holder.begin().await.expect("begin");
    tx.execute_unprepared("SELECT * FROM balances FOR UPDATE")
        .await
        .expect("hold Ann's balance");
    let mut tx = Some(tx);
    let in_flight = allocation(&c, "email", ANN, 2000, "ann-a2");
    let (allocated, erased) = tokio::join!(app.post(ALLOCATE, &key, &in_flight), async {
        until_backends_wait(&app, 1).await;
        let erasure = erase(&app, &key, &ann);
        tokio::pin!(erasure);
        let done = tokio::select! {
            r = &mut erasure => Some(r),
            () = until_backends_wait(&app, 2) => None,
        };
        drop(tx.take());
        match done {
            Some(r) => r,
            None => erasure.await,
        }
    });
    assert_eq!(allocated.status, StatusCode::CREATED, "{}", allocated.text);
    assert_eq!(erased.status, StatusCode::CREATED, "{}", erased.text);
    assert_eq!(allocated.body["customerId"], ann.as_str());
    assert_eq!(holding_ann(&app).await, 0, "a record kept Ann's email");
    assert_eq!(
        erased.body["idempotencyRecordsScrubbed"], 2,
        "{}",
        erased.text
    );
    let retried = app.post(ALLOCATE, &key, &in_flight).await;
    assert_eq!(
        retried.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        retried.text
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// An allocation naming Ann's email that comes while her erasure runs (the test holds one of
/// her records, which the erasure waits for): it waits for the erasure, then enrols a new
/// customer, and the erased one never gets a record with the email.
#[tokio::test]
async fn an_allocation_during_the_erasure_enrols_a_new_customer() {
    let app = patient_app().await;
    let (_, key) = app.create_org("Race").await;
    let c = setup_catalog(&app, &key).await;
    let first = app
        .post(
            ALLOCATE,
            &key,
            &allocation(&c, "email", ANN, 1000, "ann-a1"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let ann = first.body["customerId"].as_str().unwrap().to_owned();
    let holder = other_connection(&app).await;
    let tx = holder.begin().await.expect("begin");
    tx.execute_unprepared("SELECT * FROM idempotency_records WHERE key = 'ann-a1' FOR UPDATE")
        .await
        .expect("hold Ann's record");
    let mut tx = Some(tx);
    let later = allocation(&c, "email", ANN, 2000, "ann-a2");
    let (erased, allocated) = tokio::join!(erase(&app, &key, &ann), async {
        until_backends_wait(&app, 1).await;
        let allocation = app.post(ALLOCATE, &key, &later);
        tokio::pin!(allocation);
        let done = tokio::select! {
            r = &mut allocation => Some(r),
            () = until_backends_wait(&app, 2) => None,
        };
        drop(tx.take());
        match done {
            Some(r) => r,
            None => allocation.await,
        }
    });
    assert_eq!(erased.status, StatusCode::CREATED, "{}", erased.text);
    assert_eq!(allocated.status, StatusCode::CREATED, "{}", allocated.text);
    assert_ne!(
        allocated.body["customerId"],
        ann.as_str(),
        "the erased customer got a new allocation by the erased email"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM idempotency_records r \
             WHERE (r.response->>'customerId' = '{ann}' OR r.request_fields::text LIKE '%{ann}%') \
             AND r::text LIKE '%{ANN}%'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM customers WHERE id = '{ann}' AND email IS NULL"
        ))
        .await,
        1
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// A receiver that answers each delivery with the email of the event's customer (from
/// `emails`), as a receiver echoing its own records would.
async fn echoing_receiver(emails: Arc<Mutex<HashMap<String, String>>>) -> String {
    let server = HttpServer::new(move || {
        let emails = emails.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let emails = emails.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let customer = event["data"]["customerId"].as_str().unwrap_or_default();
                let email = emails.lock().unwrap().get(customer).cloned();
                HttpResponse::Ok()
                    .json(json!({"received": event["id"], "customer": {"email": email}}))
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}/hooks")
}

#[tokio::test]
async fn a_receivers_echo_of_the_customer_is_scrubbed_with_their_events() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.webhooks.allow_private = true)).await;
    let (_, key) = app.create_org("Hooks").await;
    let c = setup_catalog(&app, &key).await;
    let emails = Arc::new(Mutex::new(HashMap::new()));
    let url = echoing_receiver(emails.clone()).await;
    let endpoint = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": url, "events": ["currency.allocated"]}),
        )
        .await;
    assert_eq!(endpoint.status, StatusCode::CREATED, "{}", endpoint.text);
    let mut ids = HashMap::new();
    for (email, unique) in [(ANN, "ann-a1"), (JOANN, "joann-a1")] {
        let r = app
            .post(
                ALLOCATE,
                &key,
                &allocation(&c, "email", email, 1000, unique),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["customerId"].as_str().unwrap().to_owned();
        emails.lock().unwrap().insert(id.clone(), email.to_owned());
        ids.insert(email, id);
    }
    let delivered = api::engine::webhooks::deliver_due(
        &app.db,
        &api::engine::webhooks::client(true),
        &api::engine::webhooks::WebhookSettings {
            allow_private: true,
            retry_schedule: vec![Duration::from_secs(5)],
            timeout: Duration::from_secs(5),
            ..api::engine::webhooks::WebhookSettings::default()
        },
        chrono::Utc::now(),
        50,
    )
    .await
    .unwrap();
    assert_eq!(delivered, 2);
    let answers = |events: &Value| -> HashMap<String, String> {
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["payload"]["data"]["customerId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    e["lastResponseBody"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    let before = answers(&app.get("/v1/webhook-events", &key).await.body);
    assert!(before[&ids[ANN]].contains(ANN), "{before:?}");

    let erased = erase(&app, &key, &ids[ANN]).await;
    assert_eq!(erased.status, StatusCode::CREATED, "{}", erased.text);
    assert_eq!(erased.body["webhookEventsScrubbed"], 1, "{}", erased.text);
    let after = answers(&app.get("/v1/webhook-events", &key).await.body);
    assert!(!after[&ids[ANN]].contains(ANN), "{after:?}");
    assert!(after[&ids[ANN]].contains("[erased]"), "{after:?}");
    assert_eq!(after[&ids[JOANN]], before[&ids[JOANN]]);
    assert_eq!(holding_ann(&app).await, 0);
}
