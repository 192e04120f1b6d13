use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use tests::{StatusCode, TestApp, create_reward, setup_catalog};

const BULK: &str = "/v1/rewards/issue/bulk";

async fn app_with_org() -> (TestApp, String, i64) {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    (app, key, c.program_id)
}

fn bulk(mobile: &str, items: &[(i64, i64, &str)]) -> Value {
    json!({
        "mobile": mobile,
        "brand": "testOrg_marvel_20230822_147",
        "transactionNumber": "2344s4",
        "rewards": items.iter().map(|(r, q, id)| json!({"rewardId": r, "quantity": q, "requestId": id})).collect::<Vec<_>>(),
    })
}

async fn reward(app: &TestApp, key: &str, id: i64) -> Value {
    app.get(&format!("/v1/rewards/{id}"), key).await.body
}

#[tokio::test]
async fn the_seed_body_partially_succeeds_and_a_retry_only_processes_what_failed() {
    let (app, key, program) = app_with_org().await;
    let coffee = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Free coffee", "stock": 100, "perCustomerLimit": 2}),
    )
    .await;
    let tea = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Tea", "stock": 100, "perCustomerLimit": 1}),
    )
    .await;
    let body = bulk("919825752814", &[(coffee, 2, "req3"), (tea, 2, "req4")]);

    let first = app.post(BULK, &key, &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["transactionNumber"], "2344s4");
    assert_eq!(
        first.body["summary"],
        json!({"issued": 1, "replayed": 0, "failed": 1})
    );
    let issued = &first.body["results"][0];
    assert_eq!(issued["status"], "ISSUED");
    assert_eq!(issued["requestId"], "req3");
    assert_eq!(issued["idempotentReplayed"], false);
    assert_eq!(issued["vouchers"].as_array().unwrap().len(), 2);
    let failed = &first.body["results"][1];
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"]["code"], "CUSTOMER_LIMIT_EXCEEDED");
    assert_eq!(failed["error"]["retryable"], true);
    // The issued item's key was written once, answer included; the failed item left no record.
    assert_eq!(
        app.scalar(
            "SELECT count(*)::bigint FROM idempotency_records r JOIN issuances i \
             ON i.id::text = r.resource_id AND i.request_id = r.key \
             WHERE r.key = 'req3' AND r.status_code = 201 AND r.response->>'issuanceId' = r.resource_id"
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM idempotency_records")
            .await,
        1
    );

    let retry = app.post(BULK, &key, &body).await;
    assert_eq!(
        retry.body["summary"],
        json!({"issued": 0, "replayed": 1, "failed": 1})
    );
    let replayed = &retry.body["results"][0];
    assert_eq!(replayed["status"], "REPLAYED");
    assert_eq!(replayed["idempotentReplayed"], true);
    assert_eq!(replayed["issuanceId"], issued["issuanceId"]);
    assert_eq!(replayed["vouchers"], issued["vouchers"]);
    assert_eq!(reward(&app, &key, coffee).await["stock"], 98);
    assert_eq!(reward(&app, &key, coffee).await["issued"], 2);

    // The limit is raised; the same retry now issues the failed item, and only it.
    let patched = app
        .client
        .patch(app.url(&format!("/v1/rewards/{tea}")))
        .header("X-API-KEY", &key)
        .json(&json!({"perCustomerLimit": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let third = app.post(BULK, &key, &body).await;
    assert_eq!(
        third.body["summary"],
        json!({"issued": 1, "replayed": 1, "failed": 0})
    );
    assert_eq!(third.body["results"][1]["status"], "ISSUED");
    assert_eq!(reward(&app, &key, coffee).await["stock"], 98);
    assert_eq!(reward(&app, &key, tea).await["stock"], 98);
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM issuances").await,
        2
    );
    assert_eq!(app.scalar("SELECT count(*)::bigint FROM vouchers").await, 4);
}

#[tokio::test]
async fn out_of_stock_then_a_restock_lets_the_retry_issue() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "Rare", "stock": 1})).await;
    let body = bulk("919825752814", &[(r, 2, "rare-1")]);
    let first = app.post(BULK, &key, &body).await;
    assert_eq!(first.body["results"][0]["error"]["code"], "OUT_OF_STOCK");
    assert_eq!(first.body["results"][0]["error"]["retryable"], true);
    assert_eq!(reward(&app, &key, r).await["stock"], 1);
    // A failed item did not consume its key.
    assert_eq!(
        app.get("/v1/idempotency-keys/reward-issuance/rare-1", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let restock = app
        .client
        .patch(app.url(&format!("/v1/rewards/{r}")))
        .header("X-API-KEY", &key)
        .json(&json!({"addStock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(restock.status(), StatusCode::OK);
    let retry = app.post(BULK, &key, &body).await;
    assert_eq!(
        retry.body["results"][0]["status"], "ISSUED",
        "{}",
        retry.text
    );
    let after = reward(&app, &key, r).await;
    assert_eq!(
        (after["stock"].as_i64(), after["issued"].as_i64()),
        (Some(0), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_customers_race_for_a_stock_of_ten() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Ten", "stock": 10, "perCustomerLimit": 1}),
    )
    .await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| bulk(&format!("91900000{i:04}"), &[(r, 1, &format!("race-{i}"))]))
        .collect();
    let replies =
        futures_util::future::join_all(bodies.iter().map(|b| app.post(BULK, &key, b))).await;
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let item = &reply.body["results"][0];
        let label = if item["status"] == "FAILED" {
            item["error"]["code"].as_str().unwrap().to_owned()
        } else {
            item["status"].as_str().unwrap().to_owned()
        };
        *statuses.entry(label).or_default() += 1;
    }
    assert_eq!(statuses.get("ISSUED"), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get("OUT_OF_STOCK"), Some(&30), "{statuses:?}");
    let after = reward(&app, &key, r).await;
    assert_eq!(
        (after["stock"].as_i64(), after["issued"].as_i64()),
        (Some(0), Some(10))
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM vouchers").await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_customer_racing_against_their_limit_gets_no_more_than_it() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Two each", "perCustomerLimit": 2}),
    )
    .await;
    let bodies: Vec<Value> = (0..12)
        .map(|i| bulk("919825752814", &[(r, 1, &format!("mine-{i}"))]))
        .collect();
    let replies =
        futures_util::future::join_all(bodies.iter().map(|b| app.post(BULK, &key, b))).await;
    let issued = replies
        .iter()
        .filter(|r| r.body["results"][0]["status"] == "ISSUED")
        .count();
    assert_eq!(issued, 2);
    assert_eq!(
        app.scalar("SELECT max(held)::bigint FROM customer_reward_counts")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_bulk_requests_sent_together_issue_each_item_once() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Plenty", "stock": 1000}),
    )
    .await;
    let ids: Vec<String> = (0..30).map(|i| format!("ov-{i:02}")).collect();
    let a: Vec<(i64, i64, &str)> = ids[..20].iter().map(|id| (r, 1, id.as_str())).collect();
    let b: Vec<(i64, i64, &str)> = ids[10..]
        .iter()
        .rev()
        .map(|id| (r, 1, id.as_str()))
        .collect();
    let (body_a, body_b) = (bulk("919825752814", &a), bulk("919825752814", &b));
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(app.post(BULK, &key, &body_a), app.post(BULK, &key, &body_b));
        assert_eq!(ra.status, StatusCode::OK, "{}", ra.text);
        assert_eq!(rb.status, StatusCode::OK, "{}", rb.text);
        let mut seen: HashMap<String, String> = HashMap::new();
        for item in ra.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rb.body["results"].as_array().unwrap())
        {
            assert_ne!(item["status"], "FAILED", "{item}");
            let id = item["requestId"].as_str().unwrap().to_owned();
            let issuance = item["issuanceId"].as_str().unwrap().to_owned();
            if let Some(previous) = seen.insert(id.clone(), issuance.clone()) {
                assert_eq!(previous, issuance, "{id} was issued twice");
            }
        }
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM issuances").await,
        30
    );
    assert_eq!(reward(&app, &key, r).await["stock"], 970);
}

#[tokio::test]
async fn a_request_id_reused_for_another_payload_fails_that_item_only() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "Any"})).await;
    let s = create_reward(&app, &key, program, json!({"name": "Other"})).await;
    assert_eq!(
        app.post(BULK, &key, &bulk("919825752814", &[(r, 1, "k-1")]))
            .await
            .body["results"][0]["status"],
        "ISSUED"
    );
    let reply = app
        .post(
            BULK,
            &key,
            &bulk("919825752814", &[(r, 2, "k-1"), (s, 1, "k-2")]),
        )
        .await;
    let item = &reply.body["results"][0];
    assert_eq!(item["status"], "FAILED");
    assert_eq!(item["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(item["error"]["retryable"], false);
    assert_eq!(item["error"]["mismatchedFields"], json!(["quantity"]));
    assert_eq!(reply.body["results"][1]["status"], "ISSUED");
    let other_customer = app
        .post(BULK, &key, &bulk("919000000000", &[(r, 1, "k-1")]))
        .await;
    assert_eq!(
        other_customer.body["results"][0]["error"]["mismatchedFields"],
        json!(["customer"])
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM issuances").await,
        2
    );
}

#[tokio::test]
async fn a_dry_run_reports_and_changes_nothing() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "Two", "stock": 2})).await;
    let issued = app
        .post(BULK, &key, &bulk("919825752814", &[(r, 1, "done")]))
        .await;
    assert_eq!(issued.body["results"][0]["status"], "ISSUED");
    let before = app.row_counts().await;
    let body = bulk(
        "919825752814",
        &[
            (r, 1, "done"),
            (r, 1, "would"),
            (r, 1, "too-many"),
            (987654, 1, "unknown"),
        ],
    );
    let dry = app.post(&format!("{BULK}?dryRun=true"), &key, &body).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(dry.body["dryRun"], true);
    let statuses: Vec<&str> = dry.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            if i["status"] == "FAILED" {
                i["error"]["code"].as_str().unwrap()
            } else {
                i["status"].as_str().unwrap()
            }
        })
        .collect();
    assert_eq!(
        statuses,
        vec!["REPLAYED", "ISSUED", "OUT_OF_STOCK", "REWARD_NOT_FOUND"]
    );
    let new_customer = app
        .post(
            &format!("{BULK}?dryRun=true"),
            &key,
            &bulk("919111111111", &[(r, 1, "x")]),
        )
        .await;
    assert!(new_customer.body["customerId"].is_null());
    assert_eq!(app.row_counts().await, before, "a dry run wrote something");
}

#[tokio::test]
async fn cancellation_returns_stock_and_limit_and_replays() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "One each", "stock": 5, "perCustomerLimit": 1}),
    )
    .await;
    let first = app
        .post(BULK, &key, &bulk("919825752814", &[(r, 1, "c-1")]))
        .await;
    let issuance = first.body["results"][0]["issuanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post(BULK, &key, &bulk("919825752814", &[(r, 1, "c-2")]))
            .await
            .body["results"][0]["error"]["code"],
        "CUSTOMER_LIMIT_EXCEEDED"
    );
    let path = format!("/v1/rewards/issuances/{issuance}/cancel");
    let cancel = app
        .client
        .post(app.url(&path))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::CREATED);
    let body: Value = cancel.json().await.unwrap();
    assert_eq!(body["status"], "CANCELLED");
    let again = app.post(&path, &key, &json!({"reason": "duplicate"})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["idempotentReplayed"], true);
    let after = reward(&app, &key, r).await;
    assert_eq!(
        (after["stock"].as_i64(), after["issued"].as_i64()),
        (Some(5), Some(0))
    );
    // The limit was given back too.
    assert_eq!(
        app.post(BULK, &key, &bulk("919825752814", &[(r, 1, "c-2")]))
            .await
            .body["results"][0]["status"],
        "ISSUED"
    );
    // Replaying the original request still answers the original (now cancelled) issuance.
    let replay = app
        .post(BULK, &key, &bulk("919825752814", &[(r, 1, "c-1")]))
        .await;
    assert_eq!(replay.body["results"][0]["issuanceId"], issuance.as_str());
    assert_eq!(
        app.post(
            &format!("/v1/rewards/issuances/{}/cancel", uuid::Uuid::new_v4()),
            &key,
            &json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let customer = first.body["customerId"].as_str().unwrap();
    let listing = app
        .get(&format!("/v1/customers/{customer}/rewards"), &key)
        .await;
    let items = listing.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["status"], "CANCELLED");
    assert_eq!(items[0]["status"], "ISSUED");
    assert_eq!(items[0]["vouchers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_thousand_item_request_issues_every_item_with_its_own_voucher() {
    let (app, key, program) = app_with_org().await;
    let rewards: Vec<i64> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(
                create_reward(
                    &app,
                    &key,
                    program,
                    json!({"name": format!("R{i}"), "stock": 1000}),
                )
                .await,
            );
        }
        v
    };
    let ids: Vec<String> = (0..1000).map(|i| format!("big-{i}")).collect();
    let items: Vec<(i64, i64, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (rewards[i % 5], 1, id.as_str()))
        .collect();
    let body = bulk("919825752814", &items);
    let reply = app.post(BULK, &key, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body["summary"],
        json!({"issued": 1000, "replayed": 0, "failed": 0})
    );
    let codes: HashSet<&str> = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["vouchers"][0].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 1000);
    assert!(codes.iter().all(|c| {
        c.len() == 14
            && c.chars()
                .all(|ch| ch == '-' || "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(ch))
    }));
    for r in &rewards {
        assert_eq!(reward(&app, &key, *r).await["stock"], 800);
    }
    let retry = app.post(BULK, &key, &body).await;
    assert_eq!(
        retry.body["summary"],
        json!({"issued": 0, "replayed": 1000, "failed": 0})
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM vouchers").await,
        1000
    );
}

#[tokio::test]
async fn malformed_bulk_requests_are_refused_whole_and_change_nothing() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "Any"})).await;
    let ids: Vec<String> = (0..1001).map(|i| format!("m-{i}")).collect();
    let too_many: Vec<(i64, i64, &str)> = ids.iter().map(|id| (r, 1, id.as_str())).collect();
    let before = app.row_counts().await;
    let cases = vec![
        ("empty list", bulk("919825752814", &[]), "rewards"),
        ("too many items", bulk("919825752814", &too_many), "rewards"),
        (
            "duplicate requestId",
            bulk("919825752814", &[(r, 1, "d"), (r, 1, "d")]),
            "rewards[1].requestId",
        ),
        (
            "zero quantity",
            bulk("919825752814", &[(r, 0, "q0")]),
            "rewards[0].quantity",
        ),
        (
            "absurd quantity",
            bulk("919825752814", &[(r, 1_000_000, "q1")]),
            "rewards[0].quantity",
        ),
        (
            "empty requestId",
            bulk("919825752814", &[(r, 1, "")]),
            "rewards[0].requestId",
        ),
        ("bad mobile", bulk("12", &[(r, 1, "m")]), "mobile"),
        (
            "no customer",
            json!({"rewards": [{"rewardId": r, "quantity": 1, "requestId": "n"}]}),
            "customer",
        ),
        (
            "malformed item",
            json!({"mobile": "919825752814", "rewards": [{"rewardId": r, "quantity": "two", "requestId": "x"}]}),
            "rewards[0].quantity",
        ),
        (
            "missing requestId",
            json!({"mobile": "919825752814", "rewards": [{"rewardId": r, "quantity": 1}]}),
            "rewards[0].requestId",
        ),
    ];
    for (name, body, field) in cases {
        let reply = app.post(BULK, &key, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "VALIDATION_FAILED", "{name}");
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{name}: expected {field} in {fields:?}"
        );
    }
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test]
async fn the_single_form_answers_201_202_and_failures_as_problems() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "One", "stock": 1})).await;
    let body = json!({"mobile": "919825752814", "rewardId": r, "quantity": 1, "requestId": "s-1"});
    let first = app.post("/v1/rewards/issue", &key, &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.header("Idempotent-Replayed"), Some("false"));
    assert_eq!(first.body["status"], "ISSUED");
    assert_eq!(first.body["idempotencyKey"], "s-1");
    let again = app.post("/v1/rewards/issue", &key, &body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["issuanceId"], first.body["issuanceId"]);
    let out = app
        .post(
            "/v1/rewards/issue",
            &key,
            &json!({"mobile": "919825752814", "rewardId": r, "quantity": 1, "requestId": "s-2"}),
        )
        .await;
    assert_eq!(out.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out.code(), "OUT_OF_STOCK");
    assert_eq!(out.body["retryable"], true);
    let missing = app.post("/v1/rewards/issue", &key, &json!({"mobile": "919825752814", "rewardId": 424242, "quantity": 1, "requestId": "s-3"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "REWARD_NOT_FOUND");
    let reused = app
        .post(
            "/v1/rewards/issue",
            &key,
            &json!({"mobile": "919825752814", "rewardId": r, "quantity": 2, "requestId": "s-1"}),
        )
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(reused.body["mismatchedFields"], json!(["quantity"]));
}

#[tokio::test]
async fn status_and_validity_windows_are_enforced() {
    let (app, key, program) = app_with_org().await;
    let paused = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Paused", "status": "PAUSED"}),
    )
    .await;
    let future = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Soon", "validFrom": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let past = create_reward(&app, &key, program, json!({"name": "Gone", "validFrom": "2000-01-01T00:00:00Z", "validUntil": "2001-01-01T00:00:00Z"})).await;
    let reply = app
        .post(
            BULK,
            &key,
            &bulk(
                "919825752814",
                &[(paused, 1, "v1"), (future, 1, "v2"), (past, 1, "v3")],
            ),
        )
        .await;
    let codes: Vec<&str> = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec!["REWARD_INACTIVE", "REWARD_NOT_YET_VALID", "REWARD_EXPIRED"]
    );
    // Nothing issued: not even the new customer stays enrolled.
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        0
    );
    let bad = app.post(&format!("/v1/programs/{program}/rewards"), &key, &json!({"name": "x", "validFrom": "2026-02-01T00:00:00Z", "validUntil": "2026-01-01T00:00:00Z"})).await;
    // Each field is well formed; together they leave no window: 422.
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.code(), "VALIDITY_WINDOW_EMPTY");
    // Two currencies with one code: 422 as well, and nothing is created.
    let dup = app
        .post(
            "/v1/programs",
            &key,
            &json!({"name": "Dup", "currencies": [{"code": "P", "scale": 0}, {"code": "P", "scale": 2}]}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", dup.text);
    assert_eq!(dup.code(), "CURRENCY_DUPLICATED");
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM programs WHERE name = 'Dup'")
            .await,
        0
    );
    let bad = app
        .post(
            &format!("/v1/programs/{program}/rewards"),
            &key,
            &json!({"name": "x", "stock": -1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn another_organisations_rewards_do_not_exist() {
    let (app, key, program) = app_with_org().await;
    let r = create_reward(&app, &key, program, json!({"name": "Mine", "stock": 5})).await;
    let (_, other) = app.create_org("Other").await;
    assert_eq!(
        app.get(&format!("/v1/rewards/{r}"), &other).await.status,
        StatusCode::NOT_FOUND
    );
    let reply = app
        .post(BULK, &other, &bulk("919825752814", &[(r, 1, "steal")]))
        .await;
    assert_eq!(
        reply.body["results"][0]["error"]["code"],
        "REWARD_NOT_FOUND"
    );
    assert_eq!(reward(&app, &key, r).await["stock"], 5);
}
