//! Unit tests of `webhooks`: private addresses, signatures, the public-only resolver.

use super::*;
use reqwest::dns::Resolve;

#[test]
fn private_addresses_are_recognised() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
    ] {
        assert!(is_private(ip.parse().unwrap()), "{ip} should be private");
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "64:ff9b::808:808",
    ] {
        assert!(!is_private(ip.parse().unwrap()), "{ip} should be public");
    }
}

#[test]
fn signatures_follow_standard_webhooks() {
    // The key is the base64 after whsec_; the signed content is id.timestamp.body.
    let secret = format!("whsec_{}", BASE64.encode(b"0123456789abcdef0123"));
    let a = sign(&secret, "msg_1", 1_700_000_000, "{}");
    assert!(a.starts_with("v1,"));
    assert_eq!(a, sign(&secret, "msg_1", 1_700_000_000, "{}"));
    assert_ne!(a, sign(&secret, "msg_2", 1_700_000_000, "{}"));
    assert_ne!(a, sign(&secret, "msg_1", 1_700_000_001, "{}"));
    assert_ne!(a, sign(&secret, "msg_1", 1_700_000_000, "{ }"));
}

#[tokio::test]
async fn the_delivery_resolver_never_yields_a_private_address() {
    let name: reqwest::dns::Name = "localhost".parse().unwrap();
    assert!(
        PublicOnly.resolve(name).await.is_err(),
        "localhost resolves only to loopback"
    );
}

#[tokio::test]
async fn urls_are_refused_by_address_and_scheme() {
    assert!(refuse_url("http://127.0.0.1/x", false).await.is_some());
    assert!(refuse_url("http://localhost:8080/x", false).await.is_some());
    assert!(refuse_url("http://[::1]/x", false).await.is_some());
    assert!(refuse_url("ftp://8.8.8.8/x", false).await.is_some());
    assert!(refuse_url("https://8.8.8.8/x", false).await.is_none());
    assert!(refuse_url("http://127.0.0.1/x", true).await.is_none());
}

#[test]
fn schedules_parse() {
    assert_eq!(
        parse_schedule("5s, 30s,2m").unwrap().0,
        vec![
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(120)
        ]
    );
    assert!(parse_schedule("soon").is_err());
}

#[test]
fn an_event_from_text_has_the_body_of_an_event_from_a_tree() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:11:12.345678Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let data = json!({"amount": "1.50", "note": "quote \" é", "nested": {"a": [1, null]}});
    let token = "tok \"1\"";
    let tree = (event("currency.allocated", data.clone(), now).body)(token);
    let text = (event_text("currency.allocated", data.to_string(), now).body)(token);
    // Byte for byte: the data's text is the tree's own serialisation here.
    assert_eq!(text, tree);
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["id"], json!(token));
    assert_eq!(parsed["type"], json!("currency.allocated"));
    assert_eq!(parsed["data"], data);
}
