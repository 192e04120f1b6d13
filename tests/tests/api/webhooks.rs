use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tests::{Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

/// One request the receiver got: its headers (lower-case names) and body.
type Received = (std::collections::HashMap<String, String>, String);

/// A webhook receiver on loopback that records what it gets and answers the queued statuses
/// (200 when the queue is empty).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    /// A body to answer with instead of "answered <status>".
    body: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let server = HttpServer::new(move || {
            let me = me.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let me = me.clone();
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                v.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    me.got
                        .lock()
                        .unwrap()
                        .push((headers, String::from_utf8_lossy(&body).into_owned()));
                    let status = me.answers.lock().unwrap().pop_front().unwrap_or(200);
                    let body = me.body.lock().unwrap().clone();
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .body(body.unwrap_or_else(|| format!("answered {status}").into_bytes()))
                }
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        format!("http://127.0.0.1:{port}/hooks")
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn settings(schedule: &[u64]) -> api::engine::webhooks::WebhookSettings {
    api::engine::webhooks::WebhookSettings {
        allow_private: true,
        retry_schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
        timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn app_allowing_private() -> TestApp {
    TestApp::spawn_with(Spawn::settings(|s| s.webhooks.allow_private = true)).await
}

async fn deliver(app: &TestApp, schedule: &[u64], at: chrono::DateTime<Utc>) -> usize {
    api::engine::webhooks::deliver_due(
        &app.db,
        &api::engine::webhooks::client(true),
        &settings(schedule),
        at,
        50,
    )
    .await
    .unwrap()
}

fn verify(secret: &str, headers: &std::collections::HashMap<String, String>, body: &str) {
    let id = headers["webhook-id"].as_str();
    let timestamp = headers["webhook-timestamp"].as_str();
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["webhook-signature"].as_str(), expected);
}

#[tokio::test]
async fn private_and_malformed_endpoint_urls_are_refused() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "ftp://example.com/x",
        "not a url",
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
    }
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "https://8.8.8.8/hooks", "events": ["nope"]}),
        )
        .await;
    assert_eq!(r.body["errors"][0]["field"], "events[0]");
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": "https://8.8.8.8/hooks", "events": ["reward.issued"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.body["secret"].as_str().unwrap().starts_with("whsec_"));
    // The same guard applies when an endpoint's URL is changed.
    let path = format!(
        "/v1/webhook-endpoints/{}",
        r.body["endpointId"].as_str().unwrap()
    );
    for url in ["http://127.0.0.1:9/x", "http://169.254.169.254/latest"] {
        let p = app.patch(&path, &key, &json!({"url": url})).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{url}: {}", p.text);
        assert_eq!(p.body["errors"][0]["field"], "url");
    }
    let listed = app.get("/v1/webhook-endpoints", &key).await;
    assert_eq!(listed.body["items"][0]["url"], "https://8.8.8.8/hooks");
}

#[tokio::test]
async fn an_event_is_written_with_its_effect_and_delivered_signed() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let (_, other) = app.create_org("Other").await;
    let c = setup_catalog(&app, &key).await;
    let endpoint = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": url, "events": ["currency.allocated"]}),
        )
        .await;
    assert_eq!(endpoint.status, StatusCode::CREATED, "{}", endpoint.text);
    let secret = endpoint.body["secret"].as_str().unwrap().to_owned();

    let body = allocation_body(&c, "919876543210", json!(1000), "hook-1");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &body)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &body)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let mut missing = body.clone();
    missing["awardStrategyId"] = json!(999999);
    missing["uniqueId"] = json!("hook-2");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &missing)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // One effect, one event: no event for the replay, none for the refused request.
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM webhook_events")
            .await,
        1
    );

    assert_eq!(deliver(&app, &[5], Utc::now()).await, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let (headers, sent) = &received[0];
    verify(&secret, headers, sent);
    let payload: Value = serde_json::from_str(sent).unwrap();
    assert_eq!(payload["type"], "currency.allocated");
    assert_eq!(payload["data"]["uniqueId"], "hook-1");
    assert_eq!(payload["data"]["amount"], "100.00");

    let events = app.get("/v1/webhook-events", &key).await;
    let event = &events.body["items"][0];
    assert_eq!(event["status"], "DELIVERED");
    assert_eq!(event["attempts"], 1);
    assert_eq!(event["lastResponseCode"], 200);
    assert_eq!(
        event["idempotencyToken"].as_str().unwrap(),
        headers["webhook-id"].as_str()
    );
    let id = event["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/webhook-events/{id}"), &key)
            .await
            .body["status"],
        "DELIVERED"
    );
    assert_eq!(
        app.get(&format!("/v1/webhook-events/{id}"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        deliver(&app, &[5], Utc::now()).await,
        0,
        "a delivered event is not sent again"
    );
}

#[tokio::test]
async fn failures_are_retried_with_back_off_under_the_same_id() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().extend([500, 503]);
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    app.post(
        "/v1/webhook-endpoints",
        &key,
        &json!({"url": url, "events": ["currency.allocated", "currency.redeemed"]}),
    )
    .await;
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, "919876543210", json!(1000), "r-1"),
    )
    .await;
    let start = Utc::now();
    let schedule = [10, 20];
    assert_eq!(deliver(&app, &schedule, start).await, 1);
    let event = app.get("/v1/webhook-events", &key).await.body["items"][0].clone();
    assert_eq!(
        (
            event["status"].as_str(),
            event["attempts"].as_i64(),
            event["lastResponseCode"].as_i64()
        ),
        (Some("DELIVERING"), Some(1), Some(500))
    );
    assert_eq!(event["lastResponseBody"], "answered 500");
    assert_eq!(
        deliver(&app, &schedule, start + chrono::Duration::seconds(5)).await,
        0,
        "not due before its back-off"
    );
    assert_eq!(
        deliver(&app, &schedule, start + chrono::Duration::seconds(11)).await,
        1
    );
    assert_eq!(
        deliver(&app, &schedule, start + chrono::Duration::seconds(32)).await,
        1
    );
    let event = app.get("/v1/webhook-events", &key).await.body["items"][0].clone();
    assert_eq!(
        (event["status"].as_str(), event["attempts"].as_i64()),
        (Some("DELIVERED"), Some(3))
    );
    let ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|(h, _)| h["webhook-id"].as_str().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}

#[tokio::test]
async fn a_failed_event_can_be_retried_as_a_new_resource_with_the_same_token() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().extend([500, 500]);
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let reward = tests::create_reward(&app, &key, c.program_id, json!({"name": "R"})).await;
    app.post(
        "/v1/webhook-endpoints",
        &key,
        &json!({"url": url, "events": ["reward.issued"]}),
    )
    .await;
    let issued = app.post("/v1/rewards/issue", &key, &json!({"mobile": "919876543210", "rewardId": reward, "quantity": 1, "requestId": "w-1"})).await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let start = Utc::now();
    deliver(&app, &[1], start).await;
    deliver(&app, &[1], start + chrono::Duration::seconds(2)).await;
    let failed = app.get("/v1/webhook-events?status=failed", &key).await;
    let items = failed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", failed.text);
    let original = items[0].clone();
    assert_eq!(original["attempts"], 2);
    assert_eq!(
        original["payload"]["data"]["issuanceId"],
        issued.body["issuanceId"]
    );
    let retry = app
        .post(
            &format!(
                "/v1/webhook-events/{}/actions/retry",
                original["id"].as_str().unwrap()
            ),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert_ne!(retry.body["id"], original["id"]);
    assert_eq!(retry.body["status"], "DELIVERING");
    assert_eq!(retry.body["attempts"], 0);
    assert_eq!(retry.body["idempotencyToken"], original["idempotencyToken"]);
    assert_eq!(retry.body["retryOf"], original["id"]);
    assert_eq!(deliver(&app, &[1], Utc::now()).await, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(
            |(h, _)| h["webhook-id"].as_str() == original["idempotencyToken"].as_str().unwrap()
        )
    );
    let delivered = app
        .get(
            &format!("/v1/webhook-events/{}", retry.body["id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(delivered.body["status"], "DELIVERED");
    assert_eq!(
        app.get("/v1/webhook-events?status=bogus", &key)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn cancellations_redemptions_reversals_and_expiries_emit_their_events() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let events = [
        "reward.issued",
        "reward.cancelled",
        "currency.allocated",
        "currency.redeemed",
        "currency.reversed",
        "currency.expired",
    ];
    app.post(
        "/v1/webhook-endpoints",
        &key,
        &json!({"url": url, "events": events}),
    )
    .await;
    let reward = tests::create_reward(&app, &key, c.program_id, json!({"name": "R"})).await;
    let issued = app.post("/v1/rewards/issue", &key, &json!({"mobile": "919876543210", "rewardId": reward, "quantity": 1, "requestId": "e-1"})).await;
    app.post(
        &format!(
            "/v1/rewards/issuances/{}/cancel",
            issued.body["issuanceId"].as_str().unwrap()
        ),
        &key,
        &json!({}),
    )
    .await;
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, "919876543210", json!(1000), "e-2"),
    )
    .await;
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, "919876543210", json!(500), "e-3"),
    )
    .await;
    app.post("/v1/currency/redemptions", &key, &json!({"programId": c.program_id, "currency": "POINTS", "amount": 10, "mobile": "919876543210", "uniqueId": "e-4"})).await;
    app.post("/v1/currency/allocations/e-3/reversal", &key, &json!({}))
        .await;
    api::workers::expire_all(&app.db, Utc::now() + chrono::Duration::days(400))
        .await
        .unwrap();
    let mut types: Vec<String> = Vec::new();
    // The expiry ran "400 days from now"; its event is due from then.
    while deliver(&app, &[1], Utc::now() + chrono::Duration::days(401)).await > 0 {}
    for (_, body) in receiver.received() {
        types.push(
            serde_json::from_str::<Value>(&body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    types.sort();
    let mut expected: Vec<String> = [
        "currency.allocated",
        "currency.allocated",
        "currency.expired",
        "currency.redeemed",
        "currency.reversed",
        "reward.cancelled",
        "reward.issued",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(types, expected);
}

#[tokio::test]
async fn an_odd_answer_body_is_stored_cut_and_clean() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    let mut odd = b"ok\0".to_vec();
    odd.extend(std::iter::repeat_n(b'x', 5000));
    *receiver.body.lock().unwrap() = Some(odd);
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    app.post(
        "/v1/webhook-endpoints",
        &key,
        &json!({"url": url, "events": ["currency.allocated"]}),
    )
    .await;
    app.post(
        "/v1/currency/allocations",
        &key,
        &allocation_body(&c, "919876543210", json!(1000), "odd"),
    )
    .await;
    assert_eq!(deliver(&app, &[5], Utc::now()).await, 1);
    let event = app.get("/v1/webhook-events", &key).await.body["items"][0].clone();
    assert_eq!(event["status"], "DELIVERED");
    let stored = event["lastResponseBody"].as_str().unwrap();
    assert!(
        stored.starts_with("okxxx") && stored.len() < 1024,
        "{stored}"
    );
}

#[tokio::test]
async fn an_endpoint_can_be_disabled_changed_and_deleted_and_its_events_stay_visible() {
    let app = app_allowing_private().await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let (_, key) = app.create_org("Acme").await;
    let (_, other) = app.create_org("Other").await;
    let c = setup_catalog(&app, &key).await;
    let created = app
        .post(
            "/v1/webhook-endpoints",
            &key,
            &json!({"url": url, "events": ["currency.allocated"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["status"], "ENABLED");
    let id = created.body["endpointId"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhook-endpoints/{id}");
    let allocate = |unique: &str| {
        let body = allocation_body(&c, "919876543210", json!(1000), unique);
        let app = &app;
        let key = key.clone();
        async move {
            let r = app.post("/v1/currency/allocations", &key, &body).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
    };
    let events = || app.scalar("SELECT count(*)::bigint FROM webhook_events");

    // Recorded while enabled, then the endpoint is disabled before delivery ("mid-delivery"):
    // the waiting event is not delivered, and new ones are not recorded.
    allocate("before").await;
    assert_eq!(events().await, 1);
    let disabled = app.patch(&path, &key, &json!({"status": "DISABLED"})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(disabled.body["status"], "DISABLED");
    assert!(
        disabled.body.get("secret").is_none(),
        "the secret is shown once"
    );
    allocate("while-disabled").await;
    assert_eq!(events().await, 1, "no new event for a disabled endpoint");
    assert_eq!(deliver(&app, &[5], Utc::now()).await, 0);
    assert!(receiver.received().is_empty());
    let listed = app.get("/v1/webhook-endpoints", &key).await;
    assert_eq!(listed.body["items"][0]["status"], "DISABLED");

    // Enabled again: the waiting event goes out, new ones are recorded.
    let enabled = app
        .patch(
            &path,
            &key,
            &json!({"status": "ENABLED", "events": ["currency.allocated", "currency.redeemed"]}),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text);
    assert_eq!(
        enabled.body["events"],
        json!(["currency.allocated", "currency.redeemed"])
    );
    assert_eq!(deliver(&app, &[5], Utc::now()).await, 1);
    assert_eq!(receiver.received().len(), 1);
    allocate("after").await;
    assert_eq!(events().await, 2);

    // The guard against server-side request forgery applies to a new URL too (this app allows
    // private addresses, so a malformed one stands in for it), and bad input changes nothing.
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"events": ["nope"]}), "events[0]"),
        (json!({"events": []}), "events"),
        (json!({"status": "PAUSED"}), "status"),
        (json!({"events": null}), "events"),
    ] {
        let r = app.patch(&path, &key, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], field, "{body}");
    }
    // An empty patch changes nothing.
    let same = app.patch(&path, &key, &json!({})).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.body["updatedAt"], enabled.body["updatedAt"]);
    assert_eq!(same.body["events"], enabled.body["events"]);
    // Another organisation cannot see or change it.
    let foreign = app
        .patch(&path, &other, &json!({"status": "DISABLED"}))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&path, &other, None).await.status,
        StatusCode::NOT_FOUND
    );

    // Deleted: 204, then 404 without a key; with the same key the deletion replays.
    let waiting = events().await;
    let deleted = app.delete(&path, &key, Some("drop-1")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(deleted.header("idempotent-replayed"), Some("false"));
    let replay = app.delete(&path, &key, Some("drop-1")).await;
    assert_eq!(replay.status, StatusCode::NO_CONTENT);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.delete(&path, &key, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(&path, &key, &json!({"status": "ENABLED"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    allocate("after-delete").await;
    assert_eq!(events().await, waiting, "no event for a deleted endpoint");
    let listed = app.get("/v1/webhook-endpoints", &key).await;
    assert_eq!(listed.body["items"], json!([]));
    // Its events stay visible; the one still waiting ended FAILED and is never delivered.
    let all = app.get("/v1/webhook-events", &key).await;
    let statuses: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["FAILED", "DELIVERED"], "{}", all.text);
    assert_eq!(
        deliver(&app, &[5], Utc::now() + chrono::Duration::hours(1)).await,
        0
    );
    let failed_id = all.body["items"][0]["id"].as_str().unwrap();
    let retry = app
        .post(
            &format!("/v1/webhook-events/{failed_id}/actions/retry"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{}", retry.text);
    assert_eq!(retry.code(), "ENDPOINT_DELETED");
}
