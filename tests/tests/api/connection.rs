//! The service's connections to PostgreSQL failing under it: a backend that stops answering
//! (a half-open connection, a paused server), and connections the server dropped while idle.

use std::time::Duration;

use serde_json::json;
use tests::{Spawn, StatusCode, TestApp, allocation_body, invariant_violations, setup_catalog};

const ALLOCATE: &str = "/v1/currency/allocations";

/// The process ids of the service's backends on the test's database.
async fn service_backends(app: &TestApp) -> Vec<i32> {
    use sea_orm::ConnectionTrait;
    app.db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'loyalty'",
        ))
        .await
        .expect("backends")
        .iter()
        .map(|r| r.try_get_by_index::<i32>(0).expect("pid"))
        .collect()
}

fn signal(pids: &[i32], sig: &str) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
    }
}

/// Sends `SIGCONT` to the stopped backends when dropped, even if the test fails.
struct Stopped(Vec<i32>);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(&self.0, "-CONT");
    }
}

/// Every backend of the service stops (`kill -STOP`, as a paused server or a half-open
/// connection would look): an allocation is answered 503 `retryable` within the write deadline
/// instead of hanging, and once the backends go on, its retry makes it exactly once.
#[tokio::test]
async fn a_backend_that_stops_answering_gives_503_not_a_hang() {
    let app = TestApp::spawn_with(Spawn::settings(|s| {
        s.idempotency_wait = Duration::from_secs(1);
        s.write_deadline = Duration::from_secs(2);
        s.db_statement_timeout = Duration::from_secs(1);
    }))
    .await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let warm = app
        .post(
            ALLOCATE,
            &key,
            &allocation_body(&c, "919800300001", json!(100), "warm"),
        )
        .await;
    assert_eq!(warm.status, StatusCode::CREATED, "{}", warm.text);
    let pids = service_backends(&app).await;
    assert!(!pids.is_empty());
    let stopped = Stopped(pids);
    signal(&stopped.0, "-STOP");
    let body = allocation_body(&c, "919800300002", json!(100), "stalled");
    let reply = tokio::time::timeout(Duration::from_secs(40), app.post(ALLOCATE, &key, &body))
        .await
        .expect("the allocation hung on a stopped backend");
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["retryable"], json!(true), "{}", reply.text);
    drop(stopped);
    let mut made = None;
    for _ in 0..50 {
        let retry = app.post(ALLOCATE, &key, &body).await;
        if retry.status.is_success() {
            made = Some(retry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let made = made.expect("the retry never succeeded");
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&made.status),
        "{}",
        made.text
    );
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations WHERE unique_id = 'stalled'")
            .await,
        1
    );
    assert!(invariant_violations(&app).await.is_empty());
}

/// The server drops every connection of the service while it is idle (`pg_terminate_backend`,
/// or a restart): the requests that follow never reached the database on a dead connection,
/// so none of them fails.
#[tokio::test]
async fn requests_after_the_server_dropped_idle_connections_all_succeed() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    // Fill the pool with connections, then let the server drop them all.
    let bodies: Vec<serde_json::Value> = (0..16)
        .map(|i| allocation_body(&c, &format!("9198004{i:05}"), json!(100), &format!("w{i}")))
        .collect();
    let warm =
        futures_util::future::join_all(bodies.iter().map(|b| app.post(ALLOCATE, &key, b))).await;
    for r in &warm {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for round in 0..3 {
        let killed = app
            .scalar(
                "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'loyalty'",
            )
            .await;
        assert!(killed > 0);
        for (i, warm_body) in bodies.iter().take(8).enumerate() {
            let r = app
                .post(
                    ALLOCATE,
                    &key,
                    &allocation_body(&c, "919800500001", json!(100), &format!("a{round}-{i}")),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::CREATED,
                "round {round}, request {i}: {}",
                r.text
            );
            let replay = app.post(ALLOCATE, &key, warm_body).await;
            assert!(replay.status.is_success(), "{}", replay.text);
        }
    }
    assert!(invariant_violations(&app).await.is_empty());
}

/// Each HTTP worker looks keys up on a connection of its own. The server drops those
/// connections: the replays that follow are answered as before, by a connection opened again
/// in their place, and none of them fails.
#[tokio::test]
async fn replays_go_on_after_the_key_look_up_connections_are_dropped() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("A").await;
    let c = setup_catalog(&app, &key).await;
    let bodies: Vec<serde_json::Value> = (0..8)
        .map(|i| allocation_body(&c, &format!("9198006{i:05}"), json!(100), &format!("l{i}")))
        .collect();
    let mut first = Vec::new();
    for b in &bodies {
        let r = app.post(ALLOCATE, &key, b).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        first.push(r.body);
    }
    // Replays alone: the allocations' keys are looked up before their batches.
    let look_ups = "FROM pg_stat_activity WHERE datname = current_database() \
                    AND application_name = 'loyalty' AND query LIKE 'WITH wanted(%'";
    for _ in 0..4 {
        for b in &bodies {
            let r = app.post(ALLOCATE, &key, b).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        }
    }
    for round in 0..3 {
        let killed = app
            .scalar(&format!(
                "SELECT count(pg_terminate_backend(pid))::bigint {look_ups}"
            ))
            .await;
        assert!(killed > 0, "round {round}: no look-up connection to drop");
        for (b, made) in bodies.iter().zip(&first) {
            let r = app.post(ALLOCATE, &key, b).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "round {round}: {}", r.text);
            assert_eq!(r.body["idempotentReplayed"], json!(true));
            assert_eq!(r.body["id"], made["id"], "round {round}");
        }
    }
    assert_eq!(
        app.scalar("SELECT count(*)::bigint FROM allocations WHERE unique_id LIKE 'l%'")
            .await,
        8
    );
    assert!(invariant_violations(&app).await.is_empty());
}
