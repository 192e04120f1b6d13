use serde_json::json;
use tests::{StatusCode, TestApp, allocation_body, setup_catalog};

#[tokio::test]
async fn another_organisations_objects_do_not_exist() {
    let app = TestApp::spawn().await;
    let (_, key_a) = app.create_org("A").await;
    let (org_b, key_b) = app.create_org("B").await;
    let ca = setup_catalog(&app, &key_a).await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key_a,
            &allocation_body(&ca, "919876543210", json!(1000), "a-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let customer = r.body["customerId"].as_str().unwrap().to_owned();

    for path in [
        format!("/v1/programs/{}", ca.program_id),
        format!("/v1/programs/{}/award-strategies", ca.program_id),
        "/v1/currency/allocations/a-1".to_owned(),
        format!("/v1/customers/{customer}"),
        format!("/v1/customers/{customer}/ledger"),
        "/v1/customers/lookup?identifierType=mobile&identifierValue=919876543210".to_owned(),
        "/v1/idempotency-keys/currency-allocation/a-1".to_owned(),
    ] {
        let r = app.get(&path, &key_b).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert!(!r.text.contains(&customer), "{path} leaked a customer id");
    }
    assert_eq!(
        app.get("/v1/programs", &key_b).await.body["items"],
        json!([])
    );

    // B cannot allocate against A's catalog, nor claim to be A.
    let before = app.row_counts().await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key_b,
            &allocation_body(&ca, "919876543210", json!(1000), "b-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let mut body = allocation_body(&ca, "919876543210", json!(1000), "b-2");
    body["orgId"] = json!(org_b + 1000);
    let r = app.post("/v1/currency/allocations", &key_b, &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "FORBIDDEN");
    assert_eq!(app.row_counts().await, before);
}
