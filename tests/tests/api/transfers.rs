//! Transfers between customers: expiry dates kept, exactly once, and A→B / B→A races.

use serde_json::{Value, json};
use tests::{StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog};

const ALICE: &str = "919800000001";
const BOB: &str = "919800000002";

fn transfer(program_id: i64, amount: Value, from: &str, to: Value, unique: &str) -> Value {
    json!({"programId": program_id, "currency": "POINTS", "amount": amount,
           "from": {"mobile": from}, "to": to, "uniqueId": unique})
}

async fn assert_invariant(app: &TestApp) {
    let broken = invariant_violations(app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

#[tokio::test]
async fn a_transfer_moves_points_with_their_expiry_dates_once() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Transfers").await;
    let c = setup_catalog(&app, &key).await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, ALICE, json!(1000), "a1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires_at = r.body["expiresAt"].clone();

    let body = transfer(
        c.program_id,
        json!("25"),
        ALICE,
        json!({"mobile": BOB}),
        "t1",
    );
    let r = app.post("/v1/currency/transfers", &key, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["amount"], "25.00");
    assert_eq!(r.body["from"]["balance"]["available"], "75.00");
    assert_eq!(r.body["to"]["balance"]["available"], "25.00");
    let bob = r.body["to"]["customerId"].as_str().unwrap().to_owned();
    // Bob was enrolled, and his lot expires when Alice's did.
    let ledger = app.get(&format!("/v1/customers/{bob}/ledger"), &key).await;
    let entries = ledger.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "TRANSFER_IN");
    assert_eq!(entries[0]["expiresAt"], expires_at);
    assert_invariant(&app).await;

    let again = app.post("/v1/currency/transfers", &key, &body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["transferId"], r.body["transferId"]);
    let reused = app
        .post(
            "/v1/currency/transfers",
            &key,
            &transfer(c.program_id, json!(26), ALICE, json!({"mobile": BOB}), "t1"),
        )
        .await;
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM transfers").await,
        1
    );
}

#[tokio::test]
async fn bad_transfers_are_4xx_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Transfers").await;
    let c = setup_catalog(&app, &key).await;
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, ALICE, json!(1000), "a1"),
    )
    .await;
    let before = app.row_counts().await;
    for (body, status, code) in [
        (
            transfer(c.program_id, json!(101), ALICE, json!({"mobile": BOB}), "x"),
            422,
            "INSUFFICIENT_BALANCE",
        ),
        (
            transfer(c.program_id, json!(1), ALICE, json!({"mobile": ALICE}), "x"),
            400,
            "VALIDATION_FAILED",
        ),
        (
            transfer(
                c.program_id,
                json!(1),
                "919800000009",
                json!({"mobile": BOB}),
                "x",
            ),
            404,
            "NOT_FOUND",
        ),
        (
            transfer(
                c.program_id,
                json!(1),
                ALICE,
                json!({"customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02"}),
                "x",
            ),
            404,
            "NOT_FOUND",
        ),
        (
            transfer(
                c.program_id,
                json!("0.001"),
                ALICE,
                json!({"mobile": BOB}),
                "x",
            ),
            422,
            "AMOUNT_NOT_REPRESENTABLE",
        ),
        (
            transfer(c.program_id, json!(1), ALICE, json!({"mobile": "12"}), "x"),
            400,
            "VALIDATION_FAILED",
        ),
        (
            transfer(c.program_id, json!(1), ALICE, json!({}), "x"),
            400,
            "VALIDATION_FAILED",
        ),
    ] {
        let r = app.post("/v1/currency/transfers", &key, &body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text);
        assert_eq!(r.code(), code, "{body}");
    }
    assert_eq!(app.row_counts().await, before);
    // The refused key was not consumed.
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, ALICE, json!(1000), "a2"),
    )
    .await;
    let r = app
        .post(
            "/v1/currency/transfers",
            &key,
            &transfer(c.program_id, json!(101), ALICE, json!({"mobile": BOB}), "x"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_invariant(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_both_ways_at_once_never_deadlock_or_lose_points() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Transfers").await;
    let c = setup_catalog(&app, &key).await;
    for (mobile, unique) in [(ALICE, "a"), (BOB, "b")] {
        let r = app
            .post(
                "/v1/currency/allocations",
                &key,
                &allocation_body(&c, mobile, json!(1000), unique),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (from, to) = if i % 2 == 0 {
                (ALICE, BOB)
            } else {
                (BOB, ALICE)
            };
            let body = transfer(
                c.program_id,
                json!(7),
                from,
                json!({"mobile": to}),
                &format!("t{i}"),
            );
            let client = app.client.clone();
            let url = app.url("/v1/currency/transfers");
            let key = key.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("X-API-KEY", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers.iter().all(|s| [201, 422].contains(s)),
        "{answers:?}"
    );
    assert!(
        answers.iter().filter(|s| **s == 201).count() >= 20,
        "{answers:?}"
    );
    assert_eq!(
        app.scalar("SELECT sum(available)::bigint FROM balances")
            .await,
        20_000,
        "no points created or lost"
    );
    assert_invariant(&app).await;
}
