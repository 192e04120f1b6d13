//! A customer's data: export gathers everything held about them; erase removes their
//! identifiers for good (found nowhere in the database afterwards) while the ledger balances.

use persistence::ConnectionTrait;
use sea_orm::{DbBackend, Statement};
use serde_json::{Value, json};
use tests::{
    StatusCode, TestApp, allocation_body, create_reward, invariant_violations, setup_catalog,
};

const EMAIL: &str = "Erase.Me_7@Example.com";
const STORED: &str = "erase.me_7@example.com";

/// Rows of every table of the database whose text holds `needle` (any column, any case).
async fn everywhere(app: &TestApp, needle: &str) -> Vec<String> {
    let tables: Vec<String> = app
        .db
        .conn()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                .to_owned(),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert!(tables.len() > 20, "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let n = app
            .scalar(&format!(
                "SELECT count(*)::bigint FROM \"{table}\" t WHERE lower(t::text) LIKE '%{}%'",
                needle.to_lowercase()
            ))
            .await;
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

#[tokio::test]
async fn export_gathers_everything_and_erase_leaves_the_identifier_nowhere() {
    let app =
        TestApp::spawn_with(tests::Spawn::settings(|s| s.webhooks.allow_private = true)).await;
    let (_, key) = app.create_org("Data").await;
    let c = setup_catalog(&app, &key).await;
    let endpoint = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["currency.allocated", "reward.issued", "currency.transferred"]}),
        )
        .await;
    assert_eq!(endpoint.status, StatusCode::CREATED);
    // Enrolled explicitly under a key (the answer, with the email, is stored on the key).
    let created = app
        .post_with(
            "/v1/customers",
            &key,
            &json!({"email": EMAIL}),
            &[("Idempotency-Key", "enrol-1")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let customer = created.body["customerId"].as_str().unwrap().to_owned();
    let mut body = allocation_body(&c, "0", json!(5000), "alloc-1");
    body.as_object_mut().unwrap().remove("lookupParams");
    body["email"] = json!(EMAIL);
    let a = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    for (path, body) in [
        (
            "/v1/currency/redemptions",
            json!({"programId": c.program_id, "currency": "POINTS", "amount": 50, "email": EMAIL, "uniqueId": "r-1"}),
        ),
        (
            "/v1/currency/holds",
            json!({"programId": c.program_id, "currency": "POINTS", "amount": 20, "email": EMAIL, "uniqueId": "h-1"}),
        ),
        (
            "/v1/currency/transfers",
            json!({"programId": c.program_id, "currency": "POINTS", "amount": 30, "from": {"email": EMAIL},
                   "to": {"mobile": "919844443333"}, "uniqueId": "t-1"}),
        ),
    ] {
        let r = app.post(path, &key, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text);
    }
    let reward = create_reward(&app, &key, c.program_id, json!({"name": "Mug", "stock": 5})).await;
    let issued = app
        .post(
            "/v1/rewards/issue/bulk",
            &key,
            &json!({"email": EMAIL, "rewards": [{"rewardId": reward, "quantity": 1, "requestId": "i-1"}]}),
        )
        .await;
    assert_eq!(
        issued.body["results"][0]["status"], "ISSUED",
        "{}",
        issued.text
    );
    assert!(!everywhere(&app, STORED).await.is_empty());

    // The export holds every part of it.
    let export = app
        .get(&format!("/v1/customers/{customer}/export"), &key)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let doc = &export.body;
    assert_eq!(doc["customer"]["email"], STORED);
    let len = |section: &str| doc[section].as_array().map_or(0, Vec::len);
    assert_eq!(len("allocations"), 1);
    assert_eq!(len("redemptions"), 1);
    assert_eq!(len("holds"), 1);
    assert_eq!(len("transfers"), 1);
    assert_eq!(len("issuances"), 1);
    assert_eq!(len("vouchers"), 1);
    assert_eq!(len("balances"), 1);
    // CREDIT, DEBIT, HOLD, TRANSFER_OUT.
    assert_eq!(len("ledger"), 4, "{}", doc["ledger"]);
    assert_eq!(doc["balances"][0]["available"], 50000 - 5000 - 2000 - 3000);

    // Erased: 201, then a replay; the identifier is found nowhere, the ledger still balances.
    let erase = app
        .post(&format!("/v1/customers/{customer}/erase"), &key, &json!({}))
        .await;
    assert_eq!(erase.status, StatusCode::CREATED, "{}", erase.text);
    assert_eq!(erase.body["identifiersErased"], 1);
    assert!(erase.body["idempotencyRecordsScrubbed"].as_u64().unwrap() >= 5);
    let again = app
        .post(&format!("/v1/customers/{customer}/erase"), &key, &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    let left = everywhere(&app, STORED).await;
    assert!(left.is_empty(), "the identifier is still in {left:?}");
    assert!(invariant_violations(&app).await.is_empty());
    let after = app
        .get(&format!("/v1/customers/{customer}/export"), &key)
        .await;
    assert_eq!(after.body["customer"]["email"], Value::Null);
    assert!(after.body["customer"]["erased_at"].is_string());
    assert_eq!(after.body["ledger"].as_array().unwrap().len(), 4);
    let lookup = app
        .get(
            &format!("/v1/customers/lookup?identifierType=email&identifierValue={EMAIL}"),
            &key,
        )
        .await;
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);

    // A later request naming the old identifier enrols someone new.
    let mut later = body.clone();
    later["uniqueId"] = json!("alloc-2");
    let fresh = app.post("/v1/currency/allocations", &key, &later).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.text);
    assert_ne!(fresh.body["customerId"], customer.as_str());
    assert_eq!(fresh.body["balance"]["available"], "500.00");
    // The erased request's key no longer replays its identifier: it is refused as reused.
    let retried = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(
        retried.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        retried.text
    );
    assert!(!retried.text.to_lowercase().contains(STORED));

    for path in [
        format!("/v1/customers/{}/export", uuid::Uuid::now_v7()),
        "/v1/customers/not-a-uuid/export".to_owned(),
    ] {
        assert_eq!(app.get(&path, &key).await.status, StatusCode::NOT_FOUND);
    }
    let unknown = app
        .post(
            &format!("/v1/customers/{}/erase", uuid::Uuid::now_v7()),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Another organisation can neither export nor erase this customer.
    let (_, other) = app.create_org("Other").await;
    assert_eq!(
        app.get(&format!("/v1/customers/{customer}/export"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// An export longer than a page is streamed whole: every ledger entry once, in order, in one
/// valid document with every section.
#[tokio::test]
async fn a_long_history_is_exported_whole_page_after_page() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Long").await;
    let c = setup_catalog(&app, &key).await;
    let first = app
        .post(
            "/v1/currency/allocations",
            &key,
            &tests::allocation_body(&c, "919877700001", json!(1000), "long-1"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let customer = first.body["customerId"].as_str().unwrap().to_owned();
    // A history of 2,500 more entries (more than two pages), written directly.
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO ledger_entries (org_id, customer_id, program_id, currency, kind, amount, \
             balance_after, reference, created_at) \
             SELECT org_id, customer_id, program_id, currency, 'DEBIT', 0, 0, 'bulk:' || g, now() \
             FROM ledger_entries, generate_series(1, 2500) g WHERE customer_id = '{customer}'"
        ))
        .await
        .unwrap();
    let export = app
        .get(&format!("/v1/customers/{customer}/export"), &key)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let doc = &export.body;
    assert_eq!(doc["customer"]["mobile"], "919877700001");
    assert!(doc["exportedAt"].is_string());
    let ids: Vec<i64> = doc["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2501);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "entries out of order");
    for section in [
        "balances",
        "allocations",
        "redemptions",
        "holds",
        "transfers",
        "issuances",
        "vouchers",
        "rewardHoldings",
    ] {
        assert!(doc[section].is_array(), "{section} missing");
    }
    assert_eq!(doc["allocations"].as_array().unwrap().len(), 1);
    assert_eq!(doc["balances"][0]["scale"], 2);
}
