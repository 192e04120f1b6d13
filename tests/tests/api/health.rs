use tests::{StatusCode, TestApp};

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_key() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_valid_key_are_401() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/v1/programs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app
        .get(
            "/v1/programs",
            "lk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "UNAUTHORIZED");
    let (_, key) = app.create_org("Acme").await;
    // The right prefix with a wrong secret is refused too.
    let last = if key.ends_with('a') { 'b' } else { 'a' };
    let forged = format!("{}{last}", &key[..key.len() - 1]);
    assert_eq!(
        app.get("/v1/programs", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    let bearer = app
        .client
        .get(app.url("/v1/programs"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_are_problem_json_404() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn an_unknown_method_is_problem_json_405() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    let r = app
        .client
        .delete(app.url("/v1/programs"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_instances_starting_at_once_migrate_an_empty_database_once() {
    let url = tests::empty_database().await;
    let spawn = || tests::TestApp::spawn_on(&url, tests::Spawn::settings(|s| s.migrate = true));
    let (a, b, c) = tokio::join!(spawn(), spawn(), spawn());
    assert_eq!(
        a.scalar("SELECT count(*)::bigint FROM seaql_migrations")
            .await as usize,
        <migration::Migrator as migration::MigratorTrait>::migrations().len()
    );
    for app in [&a, &b, &c] {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
