//! Every bad input answers its status and code, as problem+json, and changes nothing.

use serde_json::{Value, json};
use tests::{StatusCode, TestApp, allocation_body, setup_catalog};

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).expect("field exists") = value;
    body
}

#[tokio::test]
async fn bad_allocation_inputs_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let good = allocation_body(&c, "919876543210", json!(1000), "v-1");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative amount",
            with(good.clone(), "/sourceValue", json!(-5)),
            "sourceValue",
        ),
        (
            "NaN",
            with(good.clone(), "/sourceValue", json!("NaN")),
            "sourceValue",
        ),
        (
            "infinity",
            with(good.clone(), "/sourceValue", json!("Infinity")),
            "sourceValue",
        ),
        (
            "too many digits",
            with(
                good.clone(),
                "/sourceValue",
                json!("12345678901234567890123456789"),
            ),
            "sourceValue",
        ),
        (
            "amount of the wrong type",
            with(good.clone(), "/sourceValue", json!(true)),
            "sourceValue",
        ),
        (
            "id of the wrong type",
            with(good.clone(), "/programId", json!({"id": 1})),
            "programId",
        ),
        (
            "empty key",
            with(good.clone(), "/uniqueId", json!("")),
            "uniqueId",
        ),
        (
            "key too long",
            with(good.clone(), "/uniqueId", json!("k".repeat(256))),
            "uniqueId",
        ),
        (
            "key with a control character",
            with(good.clone(), "/uniqueId", json!("a\u{7}b")),
            "uniqueId",
        ),
        (
            "bad mobile",
            with(
                good.clone(),
                "/lookupParams/identifierValue",
                json!("12-ab"),
            ),
            "lookupParams.identifierValue",
        ),
        (
            "short mobile",
            with(
                good.clone(),
                "/lookupParams/identifierValue",
                json!("12345"),
            ),
            "lookupParams.identifierValue",
        ),
        (
            "unknown identifier type",
            with(good.clone(), "/lookupParams/identifierType", json!("phone")),
            "lookupParams.identifierType",
        ),
        (
            "missing program",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("programId");
                b
            },
            "programId",
        ),
    ];
    let before = app.row_counts().await;
    for (name, body, field) in cases {
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(r.code(), "VALIDATION_FAILED", "{name}");
        let fields: Vec<&str> = r.body["errors"]
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
    let bad_email = with(
        good.clone(),
        "/lookupParams",
        json!({"identifierType": "email", "identifierValue": "not-an-email"}),
    );
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &bad_email)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let key_256 = "k".repeat(256);
    let r = app
        .post_with(
            "/v1/currency/allocations",
            &key,
            &good,
            &[("Idempotency-Key", key_256.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    for (name, text) in [
        ("malformed JSON", "{\"programId\": "),
        ("trailing garbage", "{} x"),
        (
            "huge exponent",
            &*format!(
                r#"{{"programId": {}, "awardStrategyId": {}, "expiryStrategyId": {}, "sourceValue": 1e400, "mobile": "919876543210", "uniqueId": "e"}}"#,
                c.program_id, c.rate_id, c.expiry_id
            ),
        ),
        ("not an object", "[1, 2]"),
    ] {
        let r = app
            .post_raw(
                "/v1/currency/allocations",
                &key,
                "application/json",
                text.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert_eq!(r.code(), "VALIDATION_FAILED", "{name}");
        assert!(
            !r.text.to_lowercase().contains("sql"),
            "{name} leaked internals"
        );
    }
    let r = app
        .post_raw(
            "/v1/currency/allocations",
            &key,
            "text/plain",
            good.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "UNSUPPORTED_MEDIA_TYPE");
    let mut big = good.clone();
    big["eventName"] = json!("x".repeat(1024 * 1024 + 10));
    let r = app.post("/v1/currency/allocations", &key, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");

    assert_eq!(
        app.row_counts().await,
        before,
        "a refused request wrote something"
    );
    // Unknown fields are ignored: Capillary clients send more than we use.
    let extra = with(good.clone(), "/eventName", json!("TransactionAdd"));
    let mut extra = extra;
    extra["tillCode"] = json!("T1");
    extra["lookupParams"]["source"] = json!("INSTORE");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &extra)
            .await
            .status,
        StatusCode::CREATED
    );
}

/// Decimals have one grammar on both sides of the contract: plain strings of 14 + 14 digits,
/// numbers below 10^14 (400 otherwise); a well-formed value no exact decimal or currency can
/// hold is 422. Text fields sent as numbers take whole numbers of zero or more only.
#[tokio::test]
async fn the_decimal_and_number_grammar_matches_the_document() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Marvel").await;
    let c = setup_catalog(&app, &key).await;
    let good = allocation_body(&c, "919876543210", json!(1000), "g-1");
    let before = app.row_counts().await;
    for (name, body, status, code) in [
        (
            "exponent in a string",
            with(good.clone(), "/sourceValue", json!("1e3")),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "15 integer digits",
            with(good.clone(), "/sourceValue", json!("123456789012345")),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "15 decimal places",
            with(good.clone(), "/sourceValue", json!("1.123456789012345")),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "a number of 10^14",
            with(good.clone(), "/sourceValue", json!(1e14)),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "a number too small to hold",
            with(good.clone(), "/sourceValue", json!(1e-40)),
            422,
            "AMOUNT_NOT_REPRESENTABLE",
        ),
        (
            "a negative mobile number",
            with(
                good.clone(),
                "/lookupParams/identifierValue",
                json!(-919876543),
            ),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "a fractional mobile number",
            with(
                good.clone(),
                "/lookupParams/identifierValue",
                json!(91987654.5),
            ),
            400,
            "VALIDATION_FAILED",
        ),
    ] {
        let r = app.post("/v1/currency/allocations", &key, &body).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {}", r.text);
        assert_eq!(r.code(), code, "{name}");
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused request wrote something"
    );

    // Within the grammar: spaces around a string, the largest number, a mobile as a number.
    let first = app
        .post(
            "/v1/currency/allocations",
            &key,
            &with(good.clone(), "/sourceValue", json!(" 1000.50\n")),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let mut as_number = allocation_body(&c, "919876543210", json!(99999999999999.98_f64), "g-2");
    as_number["lookupParams"]["identifierValue"] = json!(919876543210_i64);
    let r = app.post("/v1/currency/allocations", &key, &as_number).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["customerId"], first.body["customerId"]);

    // A reversal's optional body may be null, and must otherwise be an object.
    for (body, status) in [("[null]", 400), ("null", 201)] {
        let r = app
            .post_raw(
                "/v1/currency/allocations/g-2/reversal",
                &key,
                "application/json",
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text);
    }

    // Two fields that clash are 422, and change nothing.
    let reward = app
        .post(
            &format!("/v1/programs/{}/rewards", c.program_id),
            &key,
            &json!({"name": "Mug", "stock": 5}),
        )
        .await;
    let id = reward.body["rewardId"].as_i64().unwrap();
    let r = app
        .client
        .patch(app.url(&format!("/v1/rewards/{id}")))
        .header("X-API-KEY", &key)
        .json(&json!({"stock": 1, "addStock": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "STOCK_CHANGE_AMBIGUOUS");
    let r = app.get(&format!("/v1/rewards/{id}"), &key).await;
    assert_eq!(r.body["stock"], 5);
}

/// Where JSON Schema and the service could disagree, they do not: a whole number written with a
/// point is an integer, and a partial reversal's `amount` needs `reversalId` in the document as
/// in the service.
#[tokio::test]
async fn integers_written_with_a_point_and_a_partial_reversal_s_key_follow_the_document() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Contract").await;
    let c = setup_catalog(&app, &key).await;
    let allocated = app
        .post(
            "/v1/currency/allocations",
            &key,
            &allocation_body(&c, "919876543210", json!(1000), "c-1"),
        )
        .await;
    assert_eq!(allocated.status, StatusCode::CREATED, "{}", allocated.text);

    // `expiresInSeconds` is an integer; JSON Schema counts 279583.0 as one.
    let hold = |expires: Value, unique: &str| {
        json!({"programId": c.program_id, "currency": "POINTS", "amount": 1,
               "mobile": "919876543210", "uniqueId": unique, "expiresInSeconds": expires})
    };
    let r = app
        .post("/v1/currency/holds", &key, &hold(json!(279583.0), "h-1"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let before = app.row_counts().await;
    for (expires, why) in [
        (json!(279583.5), "a fraction"),
        (json!(0.0), "below 1"),
        (json!(604801.0), "above the most"),
        (json!("900"), "a string"),
    ] {
        let r = app
            .post("/v1/currency/holds", &key, &hold(expires, "h-2"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "expiresInSeconds", "{why}");
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused hold wrote something"
    );

    // The document states what the service does: `amount` requires `reversalId`, a string (the
    // Idempotency-Key header stands in for it, which a schema cannot say).
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["schemas"]["ReversalBody"]["dependentRequired"],
        json!({"amount": ["reversalId"]}),
        "{}",
        doc["components"]["schemas"]["ReversalBody"]
    );
    assert_eq!(
        doc["components"]["schemas"]["ReversalBody"]["dependentSchemas"]["amount"],
        json!({"properties": {"reversalId": {"type": "string"}}}),
    );
    for body in [
        json!({"amount": "1"}),
        json!({"amount": "1", "reversalId": null}),
    ] {
        let r = app
            .post("/v1/currency/allocations/c-1/reversal", &key, &body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "reversalId", "{body}");
    }
    let r = app
        .post(
            "/v1/currency/allocations/c-1/reversal",
            &key,
            &json!({"amount": "1", "reversalId": "part-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
