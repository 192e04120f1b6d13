use serde_json::json;
use tests::{StatusCode, TestApp, setup_catalog};

#[tokio::test]
async fn programs_strategies_are_created_listed_and_paged() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let p = app
        .get(&format!("/v1/programs/{}", c.program_id), &key)
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(
        p.body["currencies"],
        json!([{"code": "COINS", "scale": 0}, {"code": "POINTS", "scale": 2}])
    );
    for i in 0..3 {
        let r = app
            .post(
                "/v1/programs",
                &key,
                &json!({"name": format!("P{i}"), "currencies": [{"code": "POINTS", "scale": 0}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let page1 = app.get("/v1/programs?limit=3", &key).await;
    assert_eq!(page1.body["items"].as_array().unwrap().len(), 3);
    let cursor = page1.body["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page2 = app
        .get(&format!("/v1/programs?limit=3&cursor={cursor}"), &key)
        .await;
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert!(page2.body["nextCursor"].is_null());
    let strategies = app
        .get(
            &format!("/v1/programs/{}/award-strategies", c.program_id),
            &key,
        )
        .await;
    assert_eq!(strategies.body["items"][0]["multiplier"], "0.1");
    assert_eq!(strategies.body["items"][0]["rounding"], "FLOOR");
    let expiries = app
        .get(
            &format!("/v1/programs/{}/expiry-strategies", c.program_id),
            &key,
        )
        .await;
    assert_eq!(expiries.body["items"][0]["days"], 365);
}

#[tokio::test]
async fn strategies_are_checked_against_their_program() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let path = format!("/v1/programs/{}/award-strategies", c.program_id);
    let r = app
        .post(
            &path,
            &key,
            &json!({"name": "x", "currency": "GEMS", "kind": "FIXED", "points": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "CURRENCY_NOT_FOUND");
    let r = app
        .post(
            &path,
            &key,
            &json!({"name": "x", "currency": "POINTS", "kind": "RATE"}),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "multiplier");
    let r = app
        .post(&path, &key, &json!({"name": "x", "currency": "POINTS", "kind": "RATE", "multiplier": 1, "minAward": 10, "maxAward": 5}))
        .await;
    // Each bound is well formed; together they clash: 422.
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.code(), "AWARD_BOUNDS_INVERTED");
    let r = app.post(&path, &key, &json!({"name": "x", "currency": "POINTS", "kind": "RATE", "multiplier": 1, "rounding": "UP"})).await;
    assert_eq!(r.body["errors"][0]["field"], "rounding");
    let r = app
        .post(
            "/v1/programs/999999/award-strategies",
            &key,
            &json!({"name": "x", "currency": "POINTS", "kind": "FIXED", "points": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = format!("/v1/programs/{}/expiry-strategies", c.program_id);
    let r = app
        .post(
            &e,
            &key,
            &json!({"name": "x", "kind": "AFTER_DAYS", "days": 0}),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "days");
    let r = app
        .post(
            &e,
            &key,
            &json!({"name": "x", "kind": "END_OF_MONTH_AFTER_MONTHS", "months": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["months"], 3);
    let r = app.post("/v1/programs", &key, &json!({"name": "x", "currencies": [{"code": "POINTS", "scale": 9}, {"code": "bad", "scale": 1}]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    // Every invalid field is reported at once.
    assert_eq!(fields, vec!["currencies[0].scale", "currencies[1].code"]);
}

#[tokio::test]
async fn catalog_posts_honour_an_idempotency_key_header() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let body = json!({"name": "Once", "currencies": [{"code": "POINTS", "scale": 2}]});
    let first = app
        .post_with(
            "/v1/programs",
            &key,
            &body,
            &[("Idempotency-Key", "prog-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["idempotentReplayed"], false);
    let again = app
        .post_with(
            "/v1/programs",
            &key,
            &body,
            &[("Idempotency-Key", "prog-1")],
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.body["programId"], first.body["programId"]);
    let other = json!({"name": "Twice", "currencies": [{"code": "POINTS", "scale": 2}]});
    let reused = app
        .post_with(
            "/v1/programs",
            &key,
            &other,
            &[("Idempotency-Key", "prog-1")],
        )
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["mismatchedFields"], json!(["name"]));
    assert_eq!(app.scalar("SELECT count(*)::bigint FROM programs").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_catalog_posts_with_one_key_create_one_program() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let body = json!({"name": "Race", "currencies": [{"code": "POINTS", "scale": 2}]});
    let replies = futures_util::future::join_all(
        (0..10).map(|_| app.post_with("/v1/programs", &key, &body, &[("Idempotency-Key", "race")])),
    )
    .await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let other = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED || r.status == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, other), (1, 9));
    assert_eq!(app.scalar("SELECT count(*)::bigint FROM programs").await, 1);
}

#[tokio::test]
async fn a_key_held_longer_than_the_wait_answers_409_with_retry_after() {
    let app = tests::TestApp::spawn_with(tests::Spawn::settings(|s| {
        s.idempotency_wait = std::time::Duration::from_millis(300)
    }))
    .await;
    let (org, key) = app.create_org("Acme").await;
    // Another transaction holds the key and does not finish.
    let (_holder, tx) = tests::hold_key(&app, org, "program-create", "held").await;
    let body = json!({"name": "Held", "currencies": [{"code": "POINTS", "scale": 2}]});
    let r = app
        .post_with("/v1/programs", &key, &body, &[("Idempotency-Key", "held")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.code(), "IDEMPOTENCY_KEY_IN_USE");
    assert_eq!(r.body["retryable"], true);
    assert!(r.header("Retry-After").is_some());
    // The holder gives up: the key was never used, so the retry performs the effect.
    drop(tx);
    let r = app
        .post_with("/v1/programs", &key, &body, &[("Idempotency-Key", "held")])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn customers_can_be_enrolled_explicitly() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let first = app
        .post_with(
            "/v1/customers",
            &key,
            &json!({"email": " Jane@Example.com "}),
            &[("Idempotency-Key", "c-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["email"], "jane@example.com");
    let replay = app
        .post_with(
            "/v1/customers",
            &key,
            &json!({"email": "jane@example.com"}),
            &[("Idempotency-Key", "c-1")],
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    let known = app
        .post("/v1/customers", &key, &json!({"email": "JANE@example.com"}))
        .await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(known.body["customerId"], first.body["customerId"]);
    assert_eq!(
        app.post("/v1/customers", &key, &json!({"email": "nope"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM customers").await,
        1
    );
}
