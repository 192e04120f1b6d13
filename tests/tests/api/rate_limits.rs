//! Per-organisation rate limits: a flood from one organisation is refused with 429 and
//! `Retry-After` while another organisation is served, and every answer says where it stands.

use tests::{Spawn, StatusCode, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organisations_flood_is_refused_while_another_is_served() {
    let app = TestApp::spawn_with(Spawn::settings(|s| s.rate_limit_per_second = 5)).await;
    let (_, flooder) = app.create_org("Flood").await;
    let (_, quiet) = app.create_org("Quiet").await;

    // The first answer shows the whole burst (twice the rate) less this request.
    let first = app.get("/v1/programs", &flooder).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("ratelimit-limit"), Some("10"));
    assert_eq!(first.header("ratelimit-remaining"), Some("9"));
    assert!(first.header("ratelimit-reset").is_some());

    let flood: Vec<_> = (0..40)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/v1/programs");
            let key = flooder.clone();
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("X-API-KEY", key)
                    .send()
                    .await
                    .unwrap();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                (status, retry_after, body)
            })
        })
        .collect();
    // The quiet organisation is served throughout.
    for _ in 0..8 {
        let r = app.get("/v1/programs", &quiet).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let (mut passed, mut refused) = (0, 0);
    for t in flood {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => passed += 1,
            429 => {
                refused += 1;
                assert_eq!(body["code"], "RATE_LIMITED", "{body}");
                assert_eq!(body["retryable"], true);
                assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
            }
            other => panic!("answered {other}: {body}"),
        }
    }
    // Nine were left of the burst; a few more may have refilled meanwhile (5 a second).
    assert!((9..=20).contains(&passed), "{passed} passed");
    assert!(refused >= 20, "{refused} refused");
    let refused_now = app.get("/v1/programs", &flooder).await;
    if refused_now.status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(refused_now.header("ratelimit-remaining"), Some("0"));
        assert_eq!(
            refused_now.header("content-type"),
            Some("application/problem+json")
        );
    }
    // A request without a valid key spends nobody's budget and carries no rate headers.
    let anonymous = app.get("/v1/programs", "lk_nobody_nothing").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.header("ratelimit-limit").is_none());
}

#[tokio::test]
async fn rate_limits_are_off_by_default() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Free").await;
    for _ in 0..30 {
        let r = app.get("/v1/programs", &key).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("ratelimit-limit").is_none());
    }
}
