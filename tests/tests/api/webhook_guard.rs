//! The guard against server-side request forgery on webhook endpoint URLs: every address that
//! is not public is refused, whatever range or IPv6 form it is written in.

use serde_json::json;
use tests::{StatusCode, TestApp};

#[tokio::test]
async fn endpoint_urls_in_reserved_ranges_and_ipv6_forms_are_refused() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let created = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "https://8.8.8.8/hooks", "events": ["reward.issued"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let path = format!(
        "/v1/webhook-endpoints/{}",
        created.body["endpointId"].as_str().unwrap()
    );
    for url in [
        // 192.0.0.0/24, IETF protocol assignments.
        "http://192.0.0.170/x",
        // 198.18.0.0/15, benchmarking.
        "http://198.18.0.1/x",
        "http://198.19.255.254/x",
        // IPv4-compatible IPv6, of a private and of a public address.
        "http://[::10.0.0.1]/x",
        "http://[::8.8.8.8]/x",
        // NAT64 for local use.
        "http://[64:ff9b:1::a00:1]/x",
        // Site-local.
        "http://[fec0::1]/x",
        // 6to4, of a private and of a public address.
        "http://[2002:a00:1::1]/x",
        "http://[2002:808:808::1]/x",
    ] {
        let r = app
            .post(
                "/v1/webhook-endpoints",
                &key,
                &json!({"url": url, "events": ["reward.issued"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "url", "{url}");
        let p = app.patch(&path, &key, &json!({"url": url})).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{url}: {}", p.text);
        assert_eq!(p.body["errors"][0]["field"], "url", "{url}");
    }
    let listed = app.get("/v1/webhook-endpoints", &key).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["url"], "https://8.8.8.8/hooks");
}
