use std::collections::HashMap;

use api::engine::clock::ManualClock;
use chrono::{DateTime, Utc};
use serde_json::json;
use tests::{Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

const MOBILE: &str = "919876543210";

#[tokio::test]
async fn the_capillary_body_allocates_once_and_replays_after() {
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let app = TestApp::spawn_with(Spawn::clock(clock)).await;
    let (org_id, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let mut body = allocation_body(&c, MOBILE, json!(1000), "currency-issue-001");
    body["orgId"] = json!(org_id);

    let first = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.header("Idempotent-Replayed"), Some("false"));
    let b = &first.body;
    assert_eq!(b["uniqueId"], "currency-issue-001");
    assert_eq!(b["programId"], c.program_id);
    assert_eq!(b["currency"], "POINTS");
    assert_eq!(b["amount"], "100.00");
    assert_eq!(b["expiresAt"], "2027-11-22T10:00:00Z");
    assert_eq!(b["eventName"], "TransactionAdd");
    assert_eq!(b["eventSourceId"], "BILL123");
    assert_eq!(b["createdAt"], "2026-11-22T10:00:00Z");
    assert_eq!(b["balance"]["available"], "100.00");
    assert_eq!(b["idempotentReplayed"], false);
    assert_eq!(b["idempotencyKey"], "currency-issue-001");
    assert!(b["allocationId"].is_string() && b["customerId"].is_string());

    let again = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.body["idempotentReplayed"], true);
    assert_eq!(again.body["idempotencyKey"], "currency-issue-001");
    for field in [
        "allocationId",
        "customerId",
        "amount",
        "expiresAt",
        "createdAt",
    ] {
        assert_eq!(again.body[field], first.body[field], "{field}");
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries")
            .await,
        1
    );

    let got = app
        .get("/v1/currency/allocations/currency-issue-001", &key)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["allocationId"], first.body["allocationId"]);
    assert_eq!(got.body["balance"]["available"], "100.00");
    assert_eq!(
        app.get("/v1/currency/allocations/never-used", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let customer_id = first.body["customerId"].as_str().unwrap();
    let lookup = app
        .get(
            "/v1/customers/lookup?identifierType=mobile&identifierValue=%2B91%2098765%2043210",
            &key,
        )
        .await;
    assert_eq!(lookup.status, StatusCode::OK);
    assert_eq!(lookup.body["customerId"], customer_id);
    assert_eq!(
        lookup.body["balances"],
        json!([{"programId": c.program_id, "currency": "POINTS", "available": "100.00", "pending": "0.00", "held": "0.00"}])
    );
    let ledger = app
        .get(&format!("/v1/customers/{customer_id}/ledger"), &key)
        .await;
    assert_eq!(ledger.status, StatusCode::OK);
    let entry = &ledger.body["items"][0];
    assert_eq!(entry["kind"], "CREDIT");
    assert_eq!(entry["amount"], "100.00");
    assert_eq!(entry["balanceAfter"], "100.00");
    assert!(ledger.body["nextCursor"].is_null());

    let record = app
        .get(
            "/v1/idempotency-keys/currency-allocation/currency-issue-001",
            &key,
        )
        .await;
    assert_eq!(record.status, StatusCode::OK);
    assert_eq!(record.body["firstUsedAt"], "2026-11-22T10:00:00Z");
    assert_eq!(
        app.get("/v1/idempotency-keys/currency-allocation/other", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_same_key_with_another_meaning_is_refused_and_names_the_fields() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, MOBILE, json!(1000), "k1");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &body)
            .await
            .status,
        StatusCode::CREATED
    );

    let other_amount = allocation_body(&c, MOBILE, json!(2000), "k1");
    let r = app
        .post("/v1/currency/allocations", &key, &other_amount)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(r.body["mismatchedFields"], json!(["sourceValue"]));

    let other_customer = allocation_body(&c, "919000000001", json!(1000), "k1");
    let r = app
        .post("/v1/currency/allocations", &key, &other_customer)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["mismatchedFields"], json!(["customer"]));

    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        1
    );
}

/// A used key is found either inside its batch (while replays are rare) or by the replay path
/// before it (once they are common): a run of replays crosses from one to the other, and every
/// answer is the same, as is the refusal of another payload on either side.
#[tokio::test]
async fn replays_answer_the_same_whichever_path_finds_the_key() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, MOBILE, json!(1000), "k1");
    let first = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let other = allocation_body(&c, MOBILE, json!(2000), "k1");
    let mut replays = Vec::new();
    for round in 0..80 {
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "replay {round}: {}", r.text);
        assert_eq!(r.body["idempotentReplayed"], json!(true));
        replays.push(r.body);
        if round % 20 == 0 {
            let r = app.post("/v1/currency/allocations", &key, &other).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "round {round}");
            assert_eq!(r.body["mismatchedFields"], json!(["sourceValue"]));
        }
    }
    assert!(replays.windows(2).all(|w| w[0] == w[1]), "replays differ");
    let mut created = first.body.clone();
    created["idempotentReplayed"] = json!(true);
    assert_eq!(replays[0], created, "a replay is the first answer");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries")
            .await,
        1
    );
}

#[tokio::test]
async fn payloads_are_compared_on_their_meaning_not_their_bytes() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, MOBILE, json!(1000), "canon");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &body)
            .await
            .status,
        StatusCode::CREATED
    );
    // Other key order, white space, the amount as a string with trailing zeros, ids as strings,
    // the mobile formatted differently.
    let text = format!(
        r#"{{ "uniqueId" : "canon",
             "lookupParams": {{"identifierValue": "+91 98765-43210", "identifierType": "mobile"}},
             "sourceValue": "1000.00", "eventSourceId": "BILL123", "eventName": "TransactionAdd",
             "expiryStrategyId": "{}", "awardStrategyId": {}, "programId": "{}" }}"#,
        c.expiry_id, c.rate_id, c.program_id
    );
    let r = app
        .post_raw(
            "/v1/currency/allocations",
            &key,
            "application/json",
            text.into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["amount"], "100.00");
    // A mobile sent as a JSON number names the same customer.
    let mut numeric_mobile = allocation_body(&c, MOBILE, json!(1000), "canon");
    numeric_mobile
        .as_object_mut()
        .unwrap()
        .remove("lookupParams");
    numeric_mobile["mobile"] = json!(919876543210u64);
    let r = app
        .post("/v1/currency/allocations", &key, &numeric_mobile)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let sci = allocation_body(&c, MOBILE, json!(1e3), "canon");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &sci)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_make_one_effect() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, MOBILE, json!(1000), "race-1");
    let requests = (0..25).map(|_| app.post("/v1/currency/allocations", &key, &body));
    let replies = futures_util::future::join_all(requests).await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for r in &replies {
        *by_status.entry(r.status.as_u16()).or_default() += 1;
        if r.status.is_success() {
            assert_eq!(
                r.body["allocationId"],
                replies
                    .iter()
                    .find(|r| r.status == StatusCode::CREATED)
                    .unwrap()
                    .body["allocationId"]
            );
        }
    }
    assert_eq!(by_status.get(&201), Some(&1), "{by_status:?}");
    assert_eq!(
        by_status.get(&202).copied().unwrap_or(0) + by_status.get(&409).copied().unwrap_or(0),
        24,
        "{by_status:?}"
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM ledger_entries")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        1
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        10000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_different_keys_all_apply() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let bodies: Vec<_> = (0..20)
        .map(|i| allocation_body(&c, MOBILE, json!(10), &format!("many-{i}")))
        .collect();
    let replies = futures_util::future::join_all(
        bodies
            .iter()
            .map(|b| app.post("/v1/currency/allocations", &key, b)),
    )
    .await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::CREATED),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        1
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        2000
    );
    assert_eq!(
        app.scalar("SELECT sum(amount)::bigint FROM ledger_entries")
            .await,
        2000
    );
}

#[tokio::test]
async fn a_definite_failure_does_not_consume_the_key() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let mut body = allocation_body(&c, MOBILE, json!(1000), "retry-me");
    body["awardStrategyId"] = json!(987654);
    let before = app.row_counts().await;
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused request wrote something"
    );
    // Fixed and retried with the same key: evaluated afresh, not refused as a reuse.
    body["awardStrategyId"] = json!(c.rate_id);
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn keys_are_scoped_by_organisation_and_operation() {
    let app = TestApp::spawn().await;
    let (_, key_a) = app.create_org("A").await;
    let (_, key_b) = app.create_org("B").await;
    let ca = setup_catalog(&app, &key_a).await;
    let cb = setup_catalog(&app, &key_b).await;
    let ra = app
        .post(
            "/v1/currency/allocations",
            &key_a,
            &allocation_body(&ca, MOBILE, json!(1000), "shared"),
        )
        .await;
    let rb = app
        .post(
            "/v1/currency/allocations",
            &key_b,
            &allocation_body(&cb, MOBILE, json!(500), "shared"),
        )
        .await;
    assert_eq!(ra.status, StatusCode::CREATED);
    assert_eq!(rb.status, StatusCode::CREATED, "{}", rb.text);
    assert_eq!(rb.body["amount"], "50.00");
    assert_ne!(ra.body["customerId"], rb.body["customerId"]);
    // The same string as a catalog key is another key.
    let p = app
        .post_with(
            "/v1/programs",
            &key_a,
            &json!({"name": "P", "currencies": [{"code": "POINTS", "scale": 0}]}),
            &[("Idempotency-Key", "shared")],
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_header_and_the_body_key_must_agree_and_one_is_required() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, MOBILE, json!(1000), "body-key");
    let r = app
        .post_with(
            "/v1/currency/allocations",
            &key,
            &body,
            &[("Idempotency-Key", "other-key")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut no_key = body.clone();
    no_key.as_object_mut().unwrap().remove("uniqueId");
    let r = app.post("/v1/currency/allocations", &key, &no_key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "uniqueId");
    let r = app
        .post_with(
            "/v1/currency/allocations",
            &key,
            &no_key,
            &[("Idempotency-Key", "hdr-key")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["uniqueId"], "hdr-key");
}

#[tokio::test]
async fn awards_are_rounded_capped_and_fixed() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!("12.349"), "r1"),
        )
        .await;
    assert_eq!(r.body["amount"], "1.23");
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(10_000_000), "r2"),
        )
        .await;
    assert_eq!(r.body["amount"], "5000.00");
    assert_eq!(r.body["balance"]["available"], "5001.23");
    let fixed = app
        .post(
            &format!("/v1/programs/{}/award-strategies", c.program_id),
            &key,
            &json!({"name": "50 coins", "currency": "COINS", "kind": "FIXED", "points": 50}),
        )
        .await;
    let never = app
        .post(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
            &json!({"name": "never", "kind": "NEVER"}),
        )
        .await;
    let mut body = allocation_body(&c, MOBILE, json!(1), "r3");
    body["awardStrategyId"] = fixed.body["awardStrategyId"].clone();
    body["expiryStrategyId"] = never.body["expiryStrategyId"].clone();
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["currency"], "COINS");
    assert_eq!(r.body["amount"], "50");
    assert!(r.body["expiresAt"].is_null());
}

#[tokio::test]
async fn customer_id_never_enrolls() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let mut body = allocation_body(&c, MOBILE, json!(1000), "by-id");
    body["lookupParams"] = json!({"identifierType": "customerId", "identifierValue": uuid::Uuid::new_v4().to_string()});
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        0
    );
    let enrolled = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, MOBILE, json!(10), "enrol"),
        )
        .await;
    body["lookupParams"]["identifierValue"] = enrolled.body["customerId"].clone();
    let r = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["customerId"], enrolled.body["customerId"]);
}

#[tokio::test]
async fn the_ledger_pages_newest_first() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let mut customer = String::new();
    for (i, v) in [100, 200, 300].iter().enumerate() {
        let r = app
            .post(
                "/v1/currency/allocations",
                &key,
                &allocation_body(&c, MOBILE, json!(v), &format!("p{i}")),
            )
            .await;
        customer = r.body["customerId"].as_str().unwrap().to_owned();
    }
    let first = app
        .get(&format!("/v1/customers/{customer}/ledger?limit=2"), &key)
        .await;
    let amounts: Vec<&str> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, vec!["30.00", "20.00"]);
    assert_eq!(first.body["items"][0]["balanceAfter"], "60.00");
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/v1/customers/{customer}/ledger?limit=2&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["items"][0]["amount"], "10.00");
    assert!(second.body["nextCursor"].is_null());
    let filtered = app
        .get(
            &format!("/v1/customers/{customer}/ledger?currency=COINS"),
            &key,
        )
        .await;
    assert_eq!(filtered.body["items"], json!([]));
    assert_eq!(
        app.get(&format!("/v1/customers/{customer}/ledger?limit=500"), &key)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}
