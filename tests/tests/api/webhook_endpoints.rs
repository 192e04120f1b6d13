//! The organisation's webhook endpoints as a collection: listed in pages like every other list,
//! and limited in number.

use serde_json::json;
use tests::{StatusCode, TestApp};

async fn create(app: &TestApp, key: &str, n: u32) -> tests::Reply {
    app.post(
        "/v1/webhook-endpoints",
        key,
        &json!({"url": format!("https://8.8.8.8/hooks/{n}"), "events": ["reward.issued"]}),
    )
    .await
}

#[tokio::test]
async fn endpoints_are_listed_in_pages_oldest_first() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let (_, other) = app.create_org("Other").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let r = create(&app, &key, n).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["endpointId"].as_str().unwrap().to_owned());
    }
    assert_eq!(create(&app, &other, 99).await.status, StatusCode::CREATED);
    // The third one is deleted: it is not listed, and the pages go on past it.
    let deleted = app
        .delete(&format!("/v1/webhook-endpoints/{}", ids[2]), &key, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);

    let first = app.get("/v1/webhook-endpoints?limit=2", &key).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let listed = |page: &tests::Reply| -> Vec<String> {
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["endpointId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&first), ids[..2], "{}", first.text);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = app
        .get(
            &format!("/v1/webhook-endpoints?limit=2&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(
        listed(&second),
        [ids[3].clone(), ids[4].clone()],
        "{}",
        second.text
    );
    // A full last page may still name a cursor; the page after it is empty and ends.
    if let Some(cursor) = second.body["nextCursor"].as_str() {
        let third = app
            .get(
                &format!("/v1/webhook-endpoints?limit=2&cursor={cursor}"),
                &key,
            )
            .await;
        assert!(listed(&third).is_empty(), "{}", third.text);
        assert!(third.body["nextCursor"].is_null());
    }
    let all = app.get("/v1/webhook-endpoints", &key).await;
    assert_eq!(listed(&all).len(), 4, "{}", all.text);
    assert!(all.body["nextCursor"].is_null());
    assert_eq!(
        listed(&app.get("/v1/webhook-endpoints", &other).await).len(),
        1
    );
    for query in ["limit=0", "limit=201", "limit=x", "cursor=abc", "cursor=0"] {
        let r = app
            .get(&format!("/v1/webhook-endpoints?{query}"), &key)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
    }
}

#[tokio::test]
async fn an_organisation_has_at_most_the_configured_number_of_endpoints() {
    let app = TestApp::spawn_with(tests::Spawn::settings(|s| s.webhooks.max_endpoints = 3)).await;
    let (_, key) = app.create_org("Acme").await;
    let (_, other) = app.create_org("Other").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = create(&app, &key, n).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.body["endpointId"].as_str().unwrap().to_owned());
    }
    let count = "SELECT count(*)::bigint FROM webhook_endpoints";
    let before = app.scalar(count).await;
    let refused = create(&app, &key, 3).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.code(), "ENDPOINT_LIMIT_REACHED");
    assert_eq!(app.scalar(count).await, before, "nothing was created");
    // Another organisation has its own limit.
    assert_eq!(create(&app, &other, 0).await.status, StatusCode::CREATED);
    // A deleted endpoint no longer counts; a disabled one does.
    let disabled = app
        .patch(
            &format!("/v1/webhook-endpoints/{}", ids[0]),
            &key,
            &json!({"status": "DISABLED"}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(
        create(&app, &key, 4).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let deleted = app
        .delete(&format!("/v1/webhook-endpoints/{}", ids[1]), &key, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(create(&app, &key, 5).await.status, StatusCode::CREATED);
    assert_eq!(
        create(&app, &key, 6).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn endpoints_are_numbered_paged_and_limited_on_sqlite_too() {
    let path = std::env::temp_dir().join(format!("loyalty-endpoints-{}.db", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        let app = TestApp::spawn_on(
            &url,
            tests::Spawn::settings(|s| {
                s.migrate = true;
                s.webhooks.max_endpoints = 2;
            }),
        )
        .await;
        let (_, key) = app.create_org("SQLite").await;
        assert_eq!(create(&app, &key, 0).await.status, StatusCode::CREATED);
        assert_eq!(create(&app, &key, 1).await.status, StatusCode::CREATED);
        let refused = create(&app, &key, 2).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(refused.code(), "ENDPOINT_LIMIT_REACHED");
        let first = app.get("/v1/webhook-endpoints?limit=1", &key).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert_eq!(first.body["items"][0]["url"], "https://8.8.8.8/hooks/0");
        let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
        let second = app
            .get(
                &format!("/v1/webhook-endpoints?limit=1&cursor={cursor}"),
                &key,
            )
            .await;
        assert_eq!(second.body["items"][0]["url"], "https://8.8.8.8/hooks/1");
        assert!(second.body["nextCursor"].is_null(), "{}", second.text);
        // The delivery worker's statements run here too (nothing is due).
        assert_eq!(
            api::engine::webhooks::deliver_due(
                &app.db,
                &api::engine::webhooks::client(false),
                &api::engine::webhooks::WebhookSettings::default(),
                chrono::Utc::now(),
                50,
            )
            .await
            .unwrap(),
            0
        );
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
