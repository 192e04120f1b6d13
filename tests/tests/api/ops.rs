use serde_json::{Value, json};
use tests::{StatusCode, TestApp, allocation_body, setup_catalog};

/// Every route registered in `api/src/routes/mod.rs`, read from the source, as (method, path).
fn registered_routes() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../api/src/routes/mod.rs"
    ))
    .unwrap();
    let top_level = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];
    let mut routes = Vec::new();
    for chunk in source.split("resource(\"").skip(1) {
        let path = chunk.split('"').next().unwrap();
        let full = if top_level.contains(&path) {
            path.to_owned()
        } else {
            format!("/v1{path}")
        };
        let body = chunk.split("resource(\"").next().unwrap();
        for method in ["get", "post", "patch", "put", "delete"] {
            if body.contains(&format!("{method}().to(")) {
                routes.push((method.to_owned(), full.clone()));
            }
        }
    }
    assert!(
        routes.len() > 20,
        "the route table was not read: {routes:?}"
    );
    routes
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_docs_render_it() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in registered_routes() {
        assert!(
            doc["paths"][&path][&method].is_object(),
            "{method} {path} is missing from openapi.json"
        );
    }
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(docs.text().await.unwrap().contains("/openapi.json"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_show_no_tenant_data() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, "919876543210", json!(1000), "m-1");
    let first = app.post("/v1/currency/allocations", &key, &body).await;
    app.post("/v1/currency/allocations", &key, &body).await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("loyalty_up 1"));
    assert!(text.contains(r#"loyalty_http_requests_total{method="POST",route="/v1/currency/allocations",status="201"} 1"#), "{text}");
    assert!(text.contains(r#"loyalty_http_requests_total{method="POST",route="/v1/currency/allocations",status="202"} 1"#), "{text}");
    assert!(
        text.contains(r#"loyalty_idempotent_replays_total{route="/v1/currency/allocations"} 1"#),
        "{text}"
    );
    assert!(!text.contains(first.body["customerId"].as_str().unwrap()));
    assert!(!text.contains("919876543210"));
    assert!(!text.contains(&key));
}
