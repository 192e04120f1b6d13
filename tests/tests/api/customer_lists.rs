//! A customer's holds, allocations and transfers: newest first, in keyset pages, filtered by
//! status, within the organisation.

use serde_json::{Value, json};
use tests::{Catalog, StatusCode, TestApp, allocation_body, setup_catalog};

const ALICE: &str = "919811110001";
const BOB: &str = "919811110002";

async fn allocate(
    app: &TestApp,
    key: &str,
    c: &Catalog,
    mobile: &str,
    source: i64,
    unique: &str,
) -> Value {
    let r = app
        .post(
            "/v1/currency/allocations",
            key,
            &allocation_body(c, mobile, json!(source), unique),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

async fn hold(app: &TestApp, key: &str, c: &Catalog, amount: &str, unique: &str) -> String {
    let r = app
        .post(
            "/v1/currency/holds",
            key,
            &json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
                    "mobile": ALICE, "uniqueId": unique}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["holdId"].as_str().unwrap().to_owned()
}

/// The ids (`field`) of the items of a page, and its `nextCursor`.
async fn page(app: &TestApp, key: &str, path: &str, field: &str) -> (Vec<String>, Value) {
    let r = app.get(path, key).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    let ids = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect();
    (ids, r.body["nextCursor"].clone())
}

/// What every list refuses: a bad status, cursor or limit (400), a customer that is not one of
/// the organisation's (404).
async fn refusals(app: &TestApp, key: &str, customer: &str, list: &str, with_status: bool) {
    let base = format!("/v1/customers/{customer}/{list}");
    let mut bad = vec![
        "cursor=12",
        "cursor=nope",
        "cursor=0190f5f25b7e7c4e9a592f4f1e8b1c07",
        "limit=0",
        "limit=201",
        "limit=x",
    ];
    if with_status {
        bad.extend(["status=held", "status=", "status=OTHER"]);
    }
    for query in bad {
        let r = app.get(&format!("{base}?{query}"), key).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert_eq!(r.code(), "VALIDATION_FAILED");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{query}"
        );
    }
    for path in [
        format!("/v1/customers/{}/{list}", uuid::Uuid::now_v7()),
        format!("/v1/customers/not-a-customer/{list}"),
    ] {
        let r = app.get(&path, key).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    let (_, other) = app.create_org(&format!("Other {list}")).await;
    let r = app.get(&base, &other).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another organisation: {}",
        r.text
    );
}

#[tokio::test]
async fn a_customers_holds_are_listed_newest_first_in_pages_and_by_status() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Lists").await;
    let c = setup_catalog(&app, &key).await;
    let customer = allocate(&app, &key, &c, ALICE, 1000, "a1").await["customerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let h1 = hold(&app, &key, &c, "10", "h1").await;
    let h2 = hold(&app, &key, &c, "10", "h2").await;
    let h3 = hold(&app, &key, &c, "10", "h3").await;
    let r = app
        .post(
            &format!("/v1/currency/holds/{h1}/capture"),
            &key,
            &json!({"amount": "10"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post(&format!("/v1/currency/holds/{h2}/void"), &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let base = format!("/v1/customers/{customer}/holds");
    let (ids, next) = page(&app, &key, &format!("{base}?limit=2"), "holdId").await;
    assert_eq!(ids, [h3.clone(), h2.clone()]);
    assert_eq!(next, json!(h2));
    let (ids, next) = page(&app, &key, &format!("{base}?limit=2&cursor={h2}"), "holdId").await;
    assert_eq!(ids, [h1.as_str()]);
    assert_eq!(next, Value::Null);
    for (status, want) in [("HELD", &h3), ("CAPTURED", &h1), ("VOIDED", &h2)] {
        let (ids, _) = page(&app, &key, &format!("{base}?status={status}"), "holdId").await;
        assert_eq!(ids, [want.as_str()], "{status}");
    }
    let (ids, _) = page(&app, &key, &format!("{base}?status=EXPIRED"), "holdId").await;
    assert!(ids.is_empty());

    // Each hold as GET /v1/currency/holds/{id} shows it, with its account's balance now.
    let listed = app.get(&base, &key).await.body["items"][0].clone();
    let one = app
        .get(&format!("/v1/currency/holds/{h3}"), &key)
        .await
        .body;
    assert_eq!(listed, one);
    assert_eq!(
        listed["balance"],
        json!({"available": "80.00", "pending": "0.00", "held": "10.00"})
    );
    refusals(&app, &key, &customer, "holds", true).await;
}

#[tokio::test]
async fn a_customers_allocations_are_listed_newest_first_in_pages_and_by_status() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Lists").await;
    let c = setup_catalog(&app, &key).await;
    let first = allocate(&app, &key, &c, ALICE, 1000, "a1").await;
    let customer = first["customerId"].as_str().unwrap().to_owned();
    let mut body = allocation_body(&c, ALICE, json!(400), "a2");
    body["maturesAt"] = json!("2099-01-01T00:00:00Z");
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "PENDING");
    allocate(&app, &key, &c, ALICE, 2000, "a3").await;
    allocate(&app, &key, &c, BOB, 2000, "someone-else").await;

    let base = format!("/v1/customers/{customer}/allocations");
    let (ids, next) = page(&app, &key, &format!("{base}?limit=2"), "uniqueId").await;
    assert_eq!(ids, ["a3", "a2"]);
    let cursor = next.as_str().unwrap().to_owned();
    let (ids, next) = page(
        &app,
        &key,
        &format!("{base}?limit=2&cursor={cursor}"),
        "uniqueId",
    )
    .await;
    assert_eq!(ids, ["a1"]);
    assert_eq!(next, Value::Null);
    for (status, want) in [
        ("PENDING", vec!["a2"]),
        ("ACTIVE", vec!["a3", "a1"]),
        ("CANCELLED", vec![]),
    ] {
        let (ids, _) = page(&app, &key, &format!("{base}?status={status}"), "uniqueId").await;
        assert_eq!(ids, want, "{status}");
    }

    // As GET /v1/currency/allocations/{uniqueId} shows it, with the account's balance now.
    let listed = app
        .get(&format!("{base}?limit=1&cursor={cursor}"), &key)
        .await
        .body["items"][0]
        .clone();
    let one = app.get("/v1/currency/allocations/a1", &key).await.body;
    assert_eq!(listed, one);
    assert_eq!(
        listed["balance"],
        json!({"available": "300.00", "pending": "40.00", "held": "0.00"})
    );
    refusals(&app, &key, &customer, "allocations", true).await;
}

#[tokio::test]
async fn a_customers_transfers_sent_and_received_are_listed_newest_first() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Lists").await;
    let c = setup_catalog(&app, &key).await;
    let alice = allocate(&app, &key, &c, ALICE, 1000, "a1").await["customerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = allocate(&app, &key, &c, BOB, 1000, "b1").await["customerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let transfer = |amount: &str, from: &str, to: &str, unique: &str| {
        json!({"programId": c.program_id, "currency": "POINTS", "amount": amount,
               "from": {"mobile": from}, "to": {"mobile": to}, "uniqueId": unique,
               "reason": "gift"})
    };
    let mut ids = Vec::new();
    for (amount, from, to, unique) in [
        ("25", ALICE, BOB, "t1"),
        ("5", BOB, ALICE, "t2"),
        ("1.5", ALICE, BOB, "t3"),
    ] {
        let r = app
            .post(
                "/v1/currency/transfers",
                &key,
                &transfer(amount, from, to, unique),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["transferId"].as_str().unwrap().to_owned());
    }
    // Another customer's transfer is not Alice's.
    allocate(&app, &key, &c, "919811110003", 1000, "c1").await;
    let r = app
        .post(
            "/v1/currency/transfers",
            &key,
            &transfer("1", "919811110003", BOB, "t4"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let base = format!("/v1/customers/{alice}/transfers");
    let r = app.get(&base, &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0],
        json!({"transferId": ids[2], "uniqueId": "t3", "direction": "SENT",
               "otherCustomerId": bob, "programId": c.program_id, "currency": "POINTS",
               "amount": "1.50", "reason": "gift", "createdAt": items[0]["createdAt"]})
    );
    assert_eq!(items[1]["direction"], "RECEIVED");
    assert_eq!(items[1]["otherCustomerId"], bob.as_str());
    assert_eq!(items[1]["amount"], "5.00");
    assert_eq!(items[2]["uniqueId"], "t1");

    let (got, next) = page(&app, &key, &format!("{base}?limit=2"), "transferId").await;
    assert_eq!(got, [ids[2].clone(), ids[1].clone()]);
    let (got, next) = page(
        &app,
        &key,
        &format!("{base}?limit=2&cursor={}", next.as_str().unwrap()),
        "transferId",
    )
    .await;
    assert_eq!(got, [ids[0].clone()]);
    assert_eq!(next, Value::Null);

    let r = app
        .get(&format!("/v1/customers/{bob}/transfers"), &key)
        .await;
    let directions: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["direction"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(directions, ["RECEIVED", "RECEIVED", "SENT", "RECEIVED"]);
    refusals(&app, &key, &alice, "transfers", false).await;
}
