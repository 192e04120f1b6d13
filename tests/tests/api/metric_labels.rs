//! Metric labels a client can choose are bounded: an invented HTTP method is counted as
//! `other`, so a client cannot grow the number of series without limit.

use std::collections::BTreeSet;

use tests::{StatusCode, TestApp};

/// The values of `label` on the samples of `metric` in a Prometheus text exposition.
fn label_values(text: &str, metric: &str, label: &str) -> BTreeSet<String> {
    let prefix = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| {
            let start = l.find(&prefix)? + prefix.len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn invented_methods_share_one_label_value() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Labels").await;
    assert_eq!(app.get("/v1/programs", &key).await.status, StatusCode::OK);
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        for path in ["/v1/programs", &format!("/nowhere/{i}")] {
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert!(
                [StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_FOUND].contains(&r.status()),
                "{method} {path}: {}",
                r.status()
            );
        }
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = "loyalty_http_request_duration_seconds";
    let methods = label_values(&text, metric, "method");
    let known: BTreeSet<String> = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ]
    .iter()
    .map(|m| (*m).to_owned())
    .collect();
    assert!(
        methods.is_subset(&known),
        "method label values a client invented: {:?}",
        methods.difference(&known).collect::<Vec<_>>()
    );
    assert!(methods.contains("other"), "{methods:?}");
    assert!(methods.contains("GET"), "{methods:?}");
    // Paths that match no route are one route value, whatever the path.
    let routes = label_values(&text, metric, "route");
    assert!(routes.contains("unmatched"), "{routes:?}");
    assert!(!routes.iter().any(|r| r.contains("nowhere")), "{routes:?}");
}
