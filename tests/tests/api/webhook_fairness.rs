//! One organisation's slow webhook receivers do not hold up another organisation's deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tests::{Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

/// A receiver on loopback that accepts connections and never answers; returns its URL and how
/// many connections it accepted.
async fn silent_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (format!("http://127.0.0.1:{port}/slow"), accepted)
}

/// A receiver on loopback that answers 204 at once.
async fn quick_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read the head and the body (Content-Length), then answer.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/quick")
}

#[tokio::test]
async fn a_slow_organisation_does_not_hold_up_another_organisations_deliveries() {
    let app = TestApp::spawn_with(Spawn::settings(|s| {
        s.webhooks.allow_private = true;
        s.webhooks.timeout = Duration::from_secs(3);
        s.webhook_interval = Some(Duration::from_millis(100));
    }))
    .await;
    let (slow, accepted) = silent_receiver().await;
    let quick = quick_receiver().await;

    // Organisation A: 15 endpoints on a receiver that never answers, 10 allocations.
    let (org_a, key_a) = app.create_org("Slow").await;
    for n in 0..15 {
        let r = app
            .post(
                "/v1/webhook-endpoints",
                &key_a,
                &json!({"url": format!("{slow}/{n}"), "events": ["currency.allocated"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let c = setup_catalog(&app, &key_a).await;
    for n in 0..10 {
        let r = app
            .post(
                "/v1/currency/allocations",
                &key_a,
                &allocation_body(&c, "919876543210", json!(1000), &format!("slow-{n}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let a_events = format!("SELECT count(*)::bigint FROM webhook_events WHERE org_id = {org_a}");
    assert_eq!(app.scalar(&a_events).await, 150);

    // Organisation B: one event, to a receiver that answers at once.
    let (_, key_b) = app.create_org("Quick").await;
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &key_b,
            &json!({"url": quick, "events": ["currency.allocated"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = setup_catalog(&app, &key_b).await;
    let r = app
        .post(
            "/v1/currency/allocations",
            &key_b,
            &allocation_body(&c, "919876543211", json!(1000), "quick-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // B's event is delivered while A's are still waiting for their first attempt.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let events = app.get("/v1/webhook-events", &key_b).await;
        if events.body["items"][0]["status"] == "DELIVERED" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B's event was never delivered: {}",
            events.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let never_attempted = app.scalar(&format!("{a_events} AND attempts = 0")).await;
    assert!(
        never_attempted > 0,
        "B's event went out only after every one of A's ({} connections to A's receiver)",
        accepted.load(Ordering::SeqCst)
    );
    // A's deliveries did start: they share the worker, they are not starved either.
    assert!(accepted.load(Ordering::SeqCst) > 0);
}
