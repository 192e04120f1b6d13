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
        // IETF protocol assignments, benchmarking, documentation.
        "192.0.0.8",
        "198.18.0.1",
        "198.19.255.254",
        "192.0.2.1",
        "203.0.113.9",
        // IPv4-compatible, public or not, and IPv4-translated.
        "::10.0.0.1",
        "::8.8.8.8",
        "::ffff:0:8.8.8.8",
        // NAT64 for local use, site-local, 6to4, Teredo, documentation, discard.
        "64:ff9b:1::808:808",
        "fec0::1",
        "feff::1",
        "2002:a00:1::1",
        "2002:808:808::1",
        "2001:0:4136:e378::1",
        "2001:db8::1",
        "100::1",
    ] {
        assert!(is_private(ip.parse().unwrap()), "{ip} should be private");
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "64:ff9b::808:808",
        "::ffff:8.8.8.8",
        "192.0.1.1",
        "198.17.255.1",
        "198.20.0.1",
        "2001:4860:4860::8888",
        "2003::1",
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

/// Sets the proxy variables of this process for as long as it lives.
struct ProxyEnv(&'static [&'static str]);

impl ProxyEnv {
    fn set(proxy: &str) -> Self {
        let names: &'static [&'static str] = &[
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "ALL_PROXY",
            "https_proxy",
            "http_proxy",
            "all_proxy",
        ];
        for name in names {
            // SAFETY: only this test sets or reads these variables in this binary; no other
            // test builds an HTTP client.
            unsafe { std::env::set_var(name, proxy) };
        }
        Self(names)
    }
}

impl Drop for ProxyEnv {
    fn drop(&mut self) {
        for name in self.0 {
            // SAFETY: as in `set`.
            unsafe { std::env::remove_var(name) };
        }
    }
}

#[tokio::test]
async fn deliveries_ignore_proxies_from_the_environment() {
    // A "proxy" that would resolve any name itself, around the public-only resolver.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let _env = ProxyEnv::set(&format!("http://127.0.0.1:{port}"));
    for url in ["http://localhost:9/hook", "https://localhost:9/hook"] {
        let sent = client(false)
            .post(url)
            .timeout(Duration::from_secs(5))
            .body("{}")
            .send()
            .await;
        assert!(sent.is_err(), "{url}: a private name is never reached");
        let reached = tokio::time::timeout(Duration::from_millis(300), proxy.accept()).await;
        assert!(
            reached.is_err(),
            "{url}: the delivery went through the proxy from the environment"
        );
    }
    // Allowing private addresses does not bring proxies back either: a receiver on loopback is
    // reached directly.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!(
        "http://127.0.0.1:{}/hook",
        receiver.local_addr().unwrap().port()
    );
    let answer = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = receiver.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
    });
    let sent = client(true)
        .post(&target)
        .timeout(Duration::from_secs(5))
        .body("{}")
        .send()
        .await;
    assert_eq!(sent.map(|r| r.status().as_u16()).ok(), Some(204));
    answer.await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), proxy.accept())
            .await
            .is_err(),
        "the proxy was used"
    );
}
