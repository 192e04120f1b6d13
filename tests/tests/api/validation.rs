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
