//! Authentication holds against a hostile client: a request is authenticated before anything
//! else is looked at (its body included), and failed authentications from one client address
//! are limited, without slowing anyone else.

use serde_json::json;
use tests::{Spawn, StatusCode, TestApp};

/// A well-formed key that no organisation has.
fn unknown_key(i: usize) -> String {
    format!("lk_zzzzzzzz{:04}_{}", i % 10_000, "q".repeat(32))
}

#[tokio::test]
async fn an_unknown_key_is_refused_before_the_body_is_looked_at() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.max_body_bytes = 1000)).await;
    let (_, key) = app.create_org("Body").await;
    let unknown = unknown_key(1);
    // Not JSON: 415 for a known key, 401 for an unknown one.
    let text = app
        .post_raw("/v1/programs", &unknown, "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(text.status, StatusCode::UNAUTHORIZED, "{}", text.text);
    assert_eq!(text.code(), "UNAUTHORIZED");
    let known = app
        .post_raw("/v1/programs", &key, "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(known.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Too large: 413 for a known key, 401 for an unknown one.
    let big = serde_json::to_vec(&json!({"name": "x".repeat(5000)})).unwrap();
    let large = app
        .post_raw("/v1/programs", &unknown, "application/json", big.clone())
        .await;
    assert_eq!(large.status, StatusCode::UNAUTHORIZED, "{}", large.text);
    let known = app
        .post_raw("/v1/programs", &key, "application/json", big)
        .await;
    assert_eq!(known.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Malformed JSON: 400 for a known key, 401 for an unknown one.
    let malformed = app
        .post_raw("/v1/programs", &unknown, "application/json", b"{".to_vec())
        .await;
    assert_eq!(
        malformed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        malformed.text
    );
    // A query that would be 400 for a known key: 401 for an unknown one.
    let query = app.get("/v1/api-keys?limit=0", &unknown).await;
    assert_eq!(query.status, StatusCode::UNAUTHORIZED, "{}", query.text);
    assert_eq!(
        app.get("/v1/api-keys?limit=0", &key).await.status,
        StatusCode::BAD_REQUEST
    );
    // Nothing was written.
    assert_eq!(app.scalar("SELECT count(*)::bigint FROM programs").await, 0);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let app = TestApp::spawn_with(Spawn::settings(|s| {
        s.auth_failures_per_minute = 10;
        s.trust_forwarded_for = true;
    }))
    .await;
    let (_, good) = app.create_org("Good").await;
    let get_from = |key: String, address: &'static str| {
        let req = app
            .client
            .get(app.url("/v1/programs"))
            .header("X-API-KEY", key)
            .header("X-Forwarded-For", address);
        async move { req.send().await.unwrap() }
    };
    // A key that worked from an address keeps working from it through a flood.
    assert_eq!(
        get_from(good.clone(), "203.0.113.7").await.status(),
        StatusCode::OK
    );
    // A flood of well-formed unknown keys from one address.
    let (mut unauthorized, mut limited) = (0, 0);
    for i in 0..40 {
        let r = get_from(unknown_key(i), "203.0.113.7").await;
        match r.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert!(
                    retry_after.is_some_and(|s| (1..=60).contains(&s)),
                    "{retry_after:?}"
                );
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "RATE_LIMITED", "{body}");
                assert_eq!(body["retryable"], true, "{body}");
            }
            other => panic!("answered {other}"),
        }
    }
    // Ten a minute (twenty if a minute turned during the flood), the rest refused.
    assert!(
        (10..=20).contains(&unauthorized),
        "{unauthorized} were looked up"
    );
    assert!(limited >= 20, "only {limited} refused");
    // The flooded address: its known key is still served; a key never seen here waits.
    let r = get_from(good.clone(), "203.0.113.7").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a known key from the flooded address"
    );
    let (_, fresh) = app.create_org("Fresh").await;
    let r = get_from(fresh.clone(), "203.0.113.7").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The same good key from other addresses (the test's own included) is served, and so is a
    // bad key from another address (it is 401, not 429).
    for address in ["198.51.100.4", "127.0.0.1"] {
        let r = get_from(fresh.clone(), address).await;
        assert_eq!(r.status(), StatusCode::OK, "{address}");
    }
    assert_eq!(
        app.get("/v1/programs", &good).await.status,
        StatusCode::OK,
        "without X-Forwarded-For"
    );
    let other = get_from(unknown_key(99), "198.51.100.4").await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    // The same bad key again costs nothing more and is still refused.
    for _ in 0..3 {
        let again = get_from(unknown_key(98), "198.51.100.5").await;
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_forwarded_address_is_ignored_unless_trusted() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.auth_failures_per_minute = 5)).await;
    // Each request claims another address; untrusted, they are all the test's own address.
    let mut limited = 0;
    for i in 0..20 {
        let r = app
            .client
            .get(app.url("/v1/programs"))
            .header("X-API-KEY", unknown_key(i))
            .header("X-Forwarded-For", format!("192.0.2.{i}"))
            .send()
            .await
            .unwrap();
        limited += usize::from(r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(limited >= 5, "only {limited} refused");
}
