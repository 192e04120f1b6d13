//! The database going away and coming back, on a PostgreSQL cluster this test owns.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::{Spawn, StatusCode, TestApp, allocation_body, setup_catalog};

/// A throwaway PostgreSQL cluster in a temporary folder, removed on drop.
struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
}

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl) are needed for the outage test")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bindir.join(program);
        let status = if is_root() {
            Command::new("runuser")
                .arg("-u")
                .arg("postgres")
                .arg("--")
                .arg(&path)
                .args(args)
                .status()
        } else {
            Command::new(&path).args(args).status()
        }
        .expect("run a PostgreSQL binary");
        assert!(status.success(), "{program} {args:?} failed");
    }

    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("loyalty-outage-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            assert!(
                Command::new("chown")
                    .arg("postgres")
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let cluster = Self {
            dir,
            bindir: bindir(),
            port,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" }).status();
        let data = self.data();
        let path = self.bindir.join("pg_ctl");
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .status()
        } else {
            Command::new(&path)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .status()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_and_started_gives_503_then_recovers() {
    let cluster = Cluster::new();
    let app = TestApp::spawn_on(
        &cluster.url(),
        Spawn::settings(|s| {
            s.migrate = true;
            s.db_acquire_timeout = Duration::from_secs(1);
        }),
    )
    .await;
    let (_, key) = app.create_org("Outage").await;
    let c = setup_catalog(&app, &key).await;
    let before = allocation_body(&c, "919876543210", json!(1000), "before");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &before)
            .await
            .status,
        StatusCode::CREATED
    );

    cluster.stop();
    let during = allocation_body(&c, "919876543210", json!(500), "during");
    for _ in 0..3 {
        let r = app.post("/v1/currency/allocations", &key, &during).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert_eq!(r.code(), "SERVICE_UNAVAILABLE");
        assert_eq!(r.body["retryable"], true);
        assert!(r.header("Retry-After").is_some());
        assert!(
            !r.text.contains("Connection refused") && !r.text.contains("sqlx"),
            "leaked internals: {}",
            r.text
        );
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The request that failed during the outage never committed: its retry performs it once.
    let r = app.post("/v1/currency/allocations", &key, &during).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["balance"]["available"], "150.00");
    assert_eq!(
        app.post("/v1/currency/allocations", &key, &before)
            .await
            .status,
        StatusCode::ACCEPTED
    );

    // Now with requests running while the database goes away and comes back: every request
    // answers (201 or 503, never a 500 or a hang), and retried afterwards every key has had its
    // effect exactly once, including any whose COMMIT was cut off.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load_body = move |i: usize| {
        json!({"programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": c.expiry_id,
               "sourceValue": 10, "mobile": "919000000001", "uniqueId": format!("load-{i}")})
    };
    let load = {
        let (client, url, key, done) = (
            app.client.clone(),
            app.url("/v1/currency/allocations"),
            key.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let body = load_body(statuses.len());
                let r = client
                    .post(&url)
                    .header("X-API-KEY", &key)
                    .json(&body)
                    .send()
                    .await
                    .expect("an answer");
                statuses.push(r.status());
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    eprintln!(
        "during the outage: {} requests, {} answered 503",
        statuses.len(),
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
            .count()
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "the outage was not hit: {statuses:?}"
    );
    for i in 0..statuses.len() {
        let r = app
            .post("/v1/currency/allocations", &key, &load_body(i))
            .await;
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::ACCEPTED,
            "load-{i}: {}",
            r.text
        );
    }
    let customer = app
        .get(
            "/v1/customers/lookup?identifierType=mobile&identifierValue=919000000001",
            &key,
        )
        .await;
    assert_eq!(
        customer.body["balances"][0]["available"],
        format!("{}.00", statuses.len()),
        "allocations of 1.00, each exactly once"
    );
    app.stop().await;
}
