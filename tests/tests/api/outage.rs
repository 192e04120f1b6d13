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
        Spawn {
            settings: Box::new(|s| {
                s.migrate = true;
                s.db_acquire_timeout = Duration::from_secs(1);
            }),
            ..Spawn::default()
        },
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
    app.stop().await;
}
