//! Load benchmark of the real `loyalty` server over HTTP, with PostgreSQL's own limit beside it.
//!
//! ```sh
//! cargo bench -p tests --bench load
//! ```
//!
//! What it does, in one run:
//! 1. builds `target/release/loyalty` (`cargo build --release -p api --bin loyalty`), makes a
//!    fresh database cloned from the migrated template (as the tests do), starts
//!    `loyalty serve` on it on a free port (`RUST_LOG=warn`, log in
//!    `target/bench-load-server.log`) and waits for `/readyz`;
//! 2. creates an organisation with `loyalty orgs create`, then over HTTP a program (`POINTS`,
//!    scale 2), a `RATE` award strategy (0.1, `FLOOR`), an `AFTER_DAYS` 365 expiry strategy and
//!    5 rewards (unlimited stock, no per-customer limit), and enrolls 1000 customers with one
//!    allocation each; those allocations are the replay pool;
//! 3. optionally (`BENCH_GROWTH`) fills the tables an allocation writes with N rows;
//! 4. runs each scenario at each concurrency, closed loop (C tasks, each sending its next
//!    request when the previous one answered, on its own keep-alive HTTP/1.1 connection:
//!    hyper's client connection, no pool), for `BENCH_SECONDS` after a short warm-up that is
//!    not counted:
//!    - `alloc`: `POST /v1/currency/allocations`, fresh `uniqueId`, random customer of the
//!      1000, `sourceValue` 1 to 10000; expects 201;
//!    - `replay`: a random allocation of the replay pool sent again byte for byte; expects 202;
//!    - `mixed`: one request in ten a `replay`, the others an `alloc` (ordinary traffic with
//!      some retries, where the service looks keys up inside their batch); expects 201 or 202;
//!    - `issue`: `POST /v1/rewards/issue`, fresh `requestId`, random reward and customer, one
//!      unit; expects 201;
//!    - `bulk1`, `bulk10`, `bulk100`, `bulk1000`: `POST /v1/rewards/issue/bulk` with that many
//!      items (fresh `requestId`s, rewards in turn, one random customer); expects 200 and
//!      `summary.issued` equal to the number of items;
//! 5. right after `alloc` at each concurrency, runs `pgbench` at the same concurrency with
//!    `tests/bench/allocation.sql`: the SQL of one allocation (see the script's header for what
//!    it includes and leaves out) against the same database;
//! 6. stops the server and drops the database.
//!
//! Knobs (environment variables; command-line arguments are ignored):
//! - `BENCH_SECONDS`: measured seconds per scenario and concurrency (default 2; pgbench gets
//!   the same, rounded, at least 1);
//! - `BENCH_CONCURRENCY`: comma list of concurrencies (default `1,8,32`);
//! - `BENCH_ONLY`: comma list of scenarios to run (default all: `alloc,replay,mixed,issue,
//!   bulk1,bulk10,bulk100,bulk1000`); pgbench runs with `alloc`;
//! - `BENCH_GROWTH`: completed allocations to put in `idempotency_records`, `allocations` and
//!   `ledger_entries` (and their balances) before the scenarios, in SQL (default 0: none), e.g.
//!   `10000000` to see whether latency holds up on big tables. The fill drops the tables'
//!   secondary indexes, inserts 1M rows per statement, builds the indexes again, then runs
//!   `VACUUM ANALYZE` and `CHECKPOINT` (which every run does before measuring, grown or not);
//!   each phase's time is printed. 200 000 rows took 9 to 17 s on 2 shared
//!   cores, so 10 million should take 10 to 20 minutes, and ~1.9 KB of disk per row (~19 GB);
//! - `BENCH_KEEP_DB=1`: keep the database afterwards (its URL is printed);
//! - `BENCH_SERVER=<path>`: run that `loyalty` binary instead of building one (to compare two
//!   builds in one sitting: copy `target/release/loyalty` aside before a change);
//! - `BENCH_ALTERNATE=LOYALTY_NAME=value[,…]`: compare two server settings in one run, on one
//!   database (grown once): the scenarios run in passes A (the environment's settings) and B
//!   (those plus these), alternating A, B, A, B, …, each pass on a server started for it, after
//!   a `CHECKPOINT`; every row and pgbench figure is labelled with its pass;
//! - `BENCH_ROUNDS`: how many A, B pairs (default 2);
//! - `DATABASE_URL`: the PostgreSQL server, as for the tests (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! `LOYALTY_*` settings in the environment reach the server (e.g. `LOYALTY_GROUP_COMMIT_MAX=0`
//! to commit each allocation alone, `LOYALTY_DB_MAX_CONNECTIONS`).
//!
//! Reading the results (stdout: a header, then markdown tables):
//! - req/s and items/s count answers as expected, over the measured window (from its start to
//!   the last answer of a request started in it); items/s differs from req/s only for bulk;
//! - p50/p95/p99 are latencies of those requests, from sending to the whole answer read;
//! - errors counts every unexpected answer (status, body, transport), warm-up included; the
//!   first few are printed as they happen. A row with errors is not a valid measurement;
//! - server peak RSS is the server's `VmHWM`, reset before each row (`/proc/<pid>/clear_refs`),
//!   so it is the peak of that row; the overall peak includes the setup;
//! - `service/pgbench` is the service's `alloc` req/s divided by pgbench's tps at the same
//!   concurrency: the share of the database's own throughput for the same writes that the
//!   service reaches (group commit can take it above 1 at high concurrency);
//! - pgbench's p50/p99 come from its per-transaction log (`-l`), so the database's own tail
//!   latency for the same SQL stands beside the service's;
//! - the p99 summary of `alloc`, `replay` and pgbench is there to compare a `BENCH_GROWTH` run
//!   with an empty one: pgbench's ratio is what the database alone does on the grown tables;
//! - "PostgreSQL's work per allocation made" divides what `pg_stat_wal` and `pg_stat_database`
//!   counted during a scenario (WAL bytes, full-page images, WAL flushes, blocks read from
//!   outside `shared_buffers`) by the ledger entries it drew: where a grown database's extra
//!   time goes, for the service and for pgbench side by side;
//! - "CPU per allocation made" divides the CPU time of the server, of every PostgreSQL process
//!   and of the load generator (read from `/proc` every 50 ms, so backends that start and end
//!   meanwhile count) by the allocations made, for `alloc` and for pgbench (by the replays
//!   answered for `replay`), and gives the throughput at which that cost (server and
//!   PostgreSQL) would use every core: the machine's CPU limit for that path, and the share of
//!   it the run reached.
//!
//! The load generator runs on the same machine as the server and PostgreSQL, and takes some of
//! the CPU they would otherwise have: compare runs made on the same machine only.

#[path = "load/cpu.rs"]
mod cpu;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use serde_json::{Value, json};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const CUSTOMERS: usize = 1000;
const REWARDS: usize = 5;
const ALL_SCENARIOS: [&str; 8] = [
    "alloc", "replay", "mixed", "issue", "bulk1", "bulk10", "bulk100", "bulk1000",
];
/// Unexpected answers printed per row; the rest are only counted.
const ERROR_SAMPLES: usize = 3;
/// Rows per statement when filling the tables (`BENCH_GROWTH`).
const GROWTH_CHUNK: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Knobs

struct Knobs {
    seconds: f64,
    concurrency: Vec<usize>,
    only: Option<Vec<String>>,
    growth: u64,
    keep_db: bool,
    server_url: String,
    /// `BENCH_ALTERNATE`: server settings (`LOYALTY_…=value`) of a second pass, B.
    alternate: Vec<(String, String)>,
    /// `BENCH_ROUNDS`: how many times the A, B pair runs (with `BENCH_ALTERNATE`).
    rounds: usize,
}

fn fail(message: &str) -> ! {
    eprintln!("load bench: {message}");
    std::process::exit(2)
}

impl Knobs {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let seconds = match var("BENCH_SECONDS") {
            None => 2.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => s,
                _ => fail(&format!(
                    "BENCH_SECONDS must be a positive number of seconds, not {v:?}"
                )),
            },
        };
        let concurrency = match var("BENCH_CONCURRENCY") {
            None => vec![1, 8, 32],
            Some(v) => v
                .split(',')
                .map(|c| match c.trim().parse::<usize>() {
                    Ok(n) if (1..=10_000).contains(&n) => n,
                    _ => fail(&format!(
                        "BENCH_CONCURRENCY must be a comma list of numbers 1 to 10000, not {v:?}"
                    )),
                })
                .collect(),
        };
        let only = var("BENCH_ONLY").map(|v| {
            let names: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
            for n in &names {
                if !ALL_SCENARIOS.contains(&n.as_str()) {
                    fail(&format!(
                        "BENCH_ONLY names an unknown scenario {n:?}; known: {}",
                        ALL_SCENARIOS.join(",")
                    ));
                }
            }
            names
        });
        let growth = match var("BENCH_GROWTH") {
            None => 0,
            Some(v) => v
                .trim()
                .replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| {
                    fail(&format!("BENCH_GROWTH must be a number of rows, not {v:?}"))
                }),
        };
        let alternate: Vec<(String, String)> = var("BENCH_ALTERNATE")
            .map(|v| {
                v.split(',')
                    .map(|pair| match pair.trim().split_once('=') {
                        Some((name, value)) if name.starts_with("LOYALTY_") => {
                            (name.to_owned(), value.to_owned())
                        }
                        _ => fail(&format!(
                            "BENCH_ALTERNATE must be a comma list of LOYALTY_NAME=value, not {v:?}"
                        )),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rounds = match var("BENCH_ROUNDS") {
            None => 2,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=20).contains(&n) => n,
                _ => fail(&format!("BENCH_ROUNDS must be 1 to 20, not {v:?}")),
            },
        };
        Self {
            seconds,
            concurrency,
            only,
            growth,
            alternate,
            rounds,
            keep_db: var("BENCH_KEEP_DB").is_some_and(|v| v != "0"),
            server_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        }
    }

    /// The passes to measure, each with the settings its server gets on top of the
    /// environment's: one unnamed pass, or `A`, `B` (the alternate settings), `BENCH_ROUNDS` times.
    fn passes(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        if self.alternate.is_empty() {
            return vec![("", Vec::new())];
        }
        (0..self.rounds)
            .flat_map(|_| [("A", Vec::new()), ("B", self.alternate.clone())])
            .collect()
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == scenario))
    }

    fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    /// Not counted: a quarter of the measured time, between 0.2 and 2 seconds.
    fn warmup(&self) -> Duration {
        Duration::from_secs_f64((self.seconds / 4.0).clamp(0.2, 2.0))
    }

    fn pgbench_seconds(&self) -> u64 {
        self.seconds.round().max(1.0) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Paths, building, the server process

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn build_server(root: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the release server (cargo build --release -p api --bin loyalty) ...");
    let started = Instant::now();
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--release", "-q", "-p", "api", "--bin", "loyalty"])
        .current_dir(root);
    // `cargo bench` gave this process the variables it sets for a bench (CARGO_MANIFEST_DIR,
    // CARGO_PKG_*, ...). Build scripts (ring's, through cc) ask to be rerun when those change,
    // so passing them on rebuilt half the dependency tree on every run, and the next
    // `cargo bench` rebuilt it back.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_MAKEFLAGS",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name.as_ref())
        {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", cargo.to_string_lossy())));
    if !status.success() {
        fail(&format!("building the server failed ({status})"));
    }
    eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
}

/// The `loyalty serve` child; killed when dropped, also on a panic.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(binary: &Path, database_url: &str, log: PathBuf, env: &[(String, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        let out = File::create(&log)
            .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", log.display())));
        let err = out.try_clone().expect("duplicate the log file handle");
        let child = Command::new(binary)
            .args(["serve", "--database-url", database_url, "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start {}: {e}", binary.display())));
        Self {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Panics (with the log's tail) when the server has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "the server exited ({status}); end of {}:\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.base);
        loop {
            self.check_alive();
            if let Ok(r) = client.get(&url).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become ready within 60 s (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `VmHWM` (peak resident set) in kB.
    fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets `VmHWM` to the current RSS; false when the kernel refuses.
    fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark's database; dropped (`WITH (FORCE)`) when this is dropped, unless kept.
struct BenchDatabase {
    url: String,
    server_url: String,
    keep: bool,
}

fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or_default().to_owned()
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if self.keep {
            println!("\ndatabase kept: {}", self.url);
            return;
        }
        let name = database_name(&self.url);
        let server = self.server_url.clone();
        // A runtime of its own, on a thread of its own: this may run while another runtime
        // unwinds.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let conn = connect(&server, 1).await.map_err(|e| e.to_string())?;
                exec(
                    &conn,
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                )
                .await
                .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("load bench: could not drop {}: {e}", self.url),
            Err(_) => eprintln!("load bench: could not drop {}", self.url),
        }
    }
}

async fn connect(url: &str, connections: u32) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(connections)
        .min_connections(0)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30));
    Database::connect(opts).await
}

async fn exec<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<u64, sea_orm::DbErr> {
    conn.execute_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .map(|r| r.rows_affected())
}

/// The first column of the first row, as text.
async fn query_text<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<String, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom(format!("no row from {sql}")))?;
    row.try_get_by_index::<String>(0)
}

/// What PostgreSQL wrote and read while a scenario ran, to say where a grown database's time
/// goes: WAL (and the full-page images in it, logged at the first change of a page after a
/// checkpoint), WAL flushes, and table or index pages not found in `shared_buffers`. Counted
/// per ledger entry id drawn from the sequence, i.e. per allocation made (the service's and
/// pgbench's alike); cluster-wide, so nothing else should run.
#[derive(Clone, Copy, Default)]
struct DbCounters {
    entries: f64,
    wal_bytes: f64,
    wal_fpi: f64,
    wal_syncs: f64,
    blocks_read: f64,
}

impl DbCounters {
    async fn read<C: ConnectionTrait>(conn: &C) -> Option<Self> {
        let text = query_text(
            conn,
            "SELECT concat_ws(' ', (SELECT last_value FROM ledger_entries_id_seq), \
                    w.wal_bytes, w.wal_fpi, w.wal_sync, \
                    (SELECT blks_read FROM pg_stat_database WHERE datname = current_database())) \
             FROM pg_stat_wal w",
        )
        .await
        .ok()?;
        let v: Vec<f64> = text
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match v[..] {
            [entries, wal_bytes, wal_fpi, wal_syncs, blocks_read] => Some(Self {
                entries,
                wal_bytes,
                wal_fpi,
                wal_syncs,
                blocks_read,
            }),
            _ => None,
        }
    }

    /// Per allocation between `self` (before) and `after`.
    fn per_allocation(self, after: Self) -> Option<String> {
        let n = after.entries - self.entries;
        (n > 0.0).then(|| {
            format!(
                "{:.1} KB WAL, {:.2} full-page images, {:.2} WAL flushes, {:.2} blocks read",
                (after.wal_bytes - self.wal_bytes) / n / 1024.0,
                (after.wal_fpi - self.wal_fpi) / n,
                (after.wal_syncs - self.wal_syncs) / n,
                (after.blocks_read - self.blocks_read) / n,
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Setup over HTTP

struct OrgInfo {
    org_id: i64,
    api_key: String,
}

fn create_org(binary: &Path, database_url: &str) -> OrgInfo {
    let out = Command::new(binary)
        .args([
            "orgs",
            "create",
            "--name",
            "Bench",
            "--database-url",
            database_url,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run loyalty orgs create: {e}")));
    assert!(
        out.status.success(),
        "loyalty orgs create failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!("loyalty orgs create printed {line:?}, not one JSON object: {e}")
    });
    OrgInfo {
        org_id: v["orgId"]
            .as_i64()
            .expect("orgId in the output of orgs create"),
        api_key: v["apiKey"]
            .as_str()
            .expect("apiKey in the output of orgs create")
            .to_owned(),
    }
}

/// Everything the load tasks share.
struct Ctx {
    client: reqwest::Client,
    base: String,
    key: String,
    program_id: i64,
    award_id: i64,
    expiry_id: i64,
    rewards: Vec<i64>,
    mobiles: Vec<String>,
    /// Allocation bodies already sent once: replaying them answers 202.
    pool: Vec<Vec<u8>>,
}

impl Ctx {
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<(StatusCode, Vec<u8>), String> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-API-KEY", &self.key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok((status, body.to_vec()))
    }

    /// A setup request that must succeed with `expect`; returns the answer's JSON.
    async fn must_post(&self, path: &str, body: &Value, expect: StatusCode) -> Value {
        let bytes = serde_json::to_vec(body).expect("serialise a request body");
        match self.post(path, bytes).await {
            Ok((status, answer)) if status == expect => {
                serde_json::from_slice(&answer).expect("a JSON answer")
            }
            Ok((status, answer)) => panic!(
                "setup: POST {path} answered {status}, expected {expect}: {}",
                String::from_utf8_lossy(&answer)
            ),
            Err(e) => panic!("setup: POST {path}: {e}"),
        }
    }

    fn allocation_body(&self, mobile: &str, source_value: u64, unique_id: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "programId": self.program_id,
            "awardStrategyId": self.award_id,
            "expiryStrategyId": self.expiry_id,
            "sourceValue": source_value,
            "eventName": "TransactionAdd",
            "eventSourceId": "BILL123",
            "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile", "identifierValue": mobile},
            "uniqueId": unique_id,
        }))
        .expect("serialise an allocation")
    }
}

/// One load task's own keep-alive HTTP/1.1 connection to the server: hyper's client connection,
/// without reqwest's pool, URL parsing and per-request header building, so that the load
/// generator takes less of the CPU it shares with the server and PostgreSQL (with reqwest it
/// took 37 µs per replay, a third of the machine's busy time). Reconnects after an error.
struct HttpConn {
    addr: String,
    host: HeaderValue,
    key: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    fn new(base: &str, ctx: &Ctx) -> Self {
        let addr = base.strip_prefix("http://").unwrap_or(base).to_owned();
        Self {
            host: HeaderValue::from_str(&addr).expect("the server's address as a Host header"),
            key: HeaderValue::from_str(&ctx.key).expect("the API key as a header value"),
            addr,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn post(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let result = self.exchange(path, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(self.connect().await?),
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        let mut request = hyper::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(hyper::header::HOST, self.host.clone());
        headers.insert("x-api-key", self.key.clone());
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
}

/// ` (A)` after a scenario's name in an alternating run, nothing otherwise.
fn labelled(pass: &str) -> String {
    if pass.is_empty() {
        String::new()
    } else {
        format!(" ({pass})")
    }
}

fn mobile(i: usize) -> String {
    format!("9190000{i:05}")
}

async fn setup_catalog(client: reqwest::Client, base: String, key: String) -> Ctx {
    let mut ctx = Ctx {
        client,
        base,
        key,
        program_id: 0,
        award_id: 0,
        expiry_id: 0,
        rewards: Vec::new(),
        mobiles: (0..CUSTOMERS).map(mobile).collect(),
        pool: Vec::new(),
    };
    let p = ctx
        .must_post(
            "/v1/programs",
            &json!({"name": "Bench", "currencies": [{"code": "POINTS", "scale": 2}]}),
            StatusCode::CREATED,
        )
        .await;
    ctx.program_id = p["programId"].as_i64().expect("programId");
    let a = ctx
        .must_post(
            &format!("/v1/programs/{}/award-strategies", ctx.program_id),
            &json!({"name": "1 point per 10", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1", "rounding": "FLOOR"}),
            StatusCode::CREATED,
        )
        .await;
    ctx.award_id = a["awardStrategyId"].as_i64().expect("awardStrategyId");
    let e = ctx
        .must_post(
            &format!("/v1/programs/{}/expiry-strategies", ctx.program_id),
            &json!({"name": "1 year", "kind": "AFTER_DAYS", "days": 365}),
            StatusCode::CREATED,
        )
        .await;
    ctx.expiry_id = e["expiryStrategyId"].as_i64().expect("expiryStrategyId");
    for i in 0..REWARDS {
        let r = ctx
            .must_post(
                &format!("/v1/programs/{}/rewards", ctx.program_id),
                &json!({"name": format!("Reward {i}"), "stock": null, "perCustomerLimit": null}),
                StatusCode::CREATED,
            )
            .await;
        ctx.rewards.push(r["rewardId"].as_i64().expect("rewardId"));
    }
    ctx
}

/// Enrolls the customers with one allocation each (8 at a time); returns the bodies sent.
async fn enrol_customers(ctx: &Ctx) -> Vec<Vec<u8>> {
    use futures_util::StreamExt;
    let mut rng = Rng::new();
    let bodies: Vec<Vec<u8>> = ctx
        .mobiles
        .iter()
        .enumerate()
        .map(|(i, m)| ctx.allocation_body(m, rng.range(1, 10_000), &format!("bench-pool-{i}")))
        .collect();
    let answers: Vec<Result<(StatusCode, Vec<u8>), String>> =
        futures_util::stream::iter(bodies.iter().cloned())
            .map(|body| ctx.post("/v1/currency/allocations", body))
            .buffer_unordered(8)
            .collect()
            .await;
    for answer in answers {
        match answer {
            Ok((StatusCode::CREATED, _)) => {}
            Ok((status, body)) => panic!(
                "setup: enrolling allocation answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => panic!("setup: enrolling allocation: {e}"),
        }
    }
    bodies
}

// ---------------------------------------------------------------------------------------------
// Growth fill

/// The tables an allocation writes to, which `BENCH_GROWTH` fills.
const GROWTH_TABLES: [&str; 3] = ["idempotency_records", "allocations", "ledger_entries"];

/// How long each phase of the growth fill took.
struct GrowthTimes {
    fill: Duration,
    indexes: Duration,
    indexes_rebuilt: usize,
}

/// Fills `idempotency_records`, `allocations` and `ledger_entries` with `rows` completed
/// allocations of the benchmark's program, spread over its customers, and adds their credits
/// to the balances (so the ledger invariant holds): one statement per [`GROWTH_CHUNK`] rows,
/// each in a transaction of its own.
///
/// The rows are what the service writes for an allocation, of the same sizes: random-UUID
/// keys, time-ordered allocation ids, a request fingerprint and fields, and a ~500-byte stored
/// outcome (its ids and amounts per row, the rest the same text for all). They are dated one
/// second apart up to now, in that order, and expire 365 days after that, so the expiry
/// worker leaves them alone.
///
/// The three tables' secondary indexes (those not backing a constraint) are dropped first and
/// built again from their saved definitions afterwards: inserting 10 million random keys into
/// indexes far larger than `shared_buffers` takes much longer than sorting them once. (The
/// rebuilt indexes are therefore compact, as after a `REINDEX`.)
async fn grow(
    conn: &DatabaseConnection,
    ctx: &Ctx,
    org_id: i64,
    rows: u64,
) -> Result<GrowthTimes, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let (program, award, expiry) = (ctx.program_id, ctx.award_id, ctx.expiry_id);
    let number = |text: String, what: &str| {
        text.parse::<i64>()
            .map_err(|e| sea_orm::DbErr::Custom(format!("{what}: {text:?}: {e}")))
    };
    let tables = GROWTH_TABLES
        .iter()
        .map(|t| format!("'{t}'::regclass"))
        .collect::<Vec<_>>()
        .join(", ");
    let indexes: Vec<(String, String)> = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid IN ({tables}) \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY 1"
            ),
        ))
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    for (name, _) in &indexes {
        exec(conn, &format!("DROP INDEX {name}")).await?;
    }

    let started = Instant::now();
    let epoch = number(
        query_text(conn, "SELECT extract(epoch FROM now())::bigint::text").await?,
        "epoch",
    )?;
    let mut done = 0u64;
    while done < rows {
        let from = done + 1;
        let to = (done + GROWTH_CHUNK).min(rows);
        let n = to - from + 1;
        let chunk_started = Instant::now();
        let tx = conn.begin().await?;
        // A block of ledger ids, reserved in one go (nextval per row is slow).
        let last = number(
            query_text(
                &tx,
                &format!(
                    "SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), \
                       nextval(pg_get_serial_sequence('ledger_entries', 'id')) + {n} - 1)::text"
                ),
            )
            .await?,
            "ledger id block",
        )?;
        let first_entry = last - n as i64 + 1;
        let sql = format!(
            "WITH customer_ids AS MATERIALIZED ( \
               SELECT array_agg(id ORDER BY mobile) AS ids FROM customers \
               WHERE org_id = {org_id} AND mobile LIKE '9190000_____'), \
             r AS MATERIALIZED ( \
               SELECT i, \
                 (SELECT ids[1 + i % {CUSTOMERS}] FROM customer_ids) AS customer_id, \
                 'mobile:9190000' || lpad((i % {CUSTOMERS})::text, 5, '0') AS customer, \
                 gen_random_uuid()::text AS key, \
                 {first_entry} + i - {from} AS entry_id, \
                 (i * 7919) % 10000 + 1 AS source_value, \
                 ((i * 7919) % 10000 + 1) * 10 AS amount, \
                 to_timestamp({epoch} - {rows} + i) AS at, \
                 encode(overlay(uuid_send(gen_random_uuid()) PLACING \
                   substring(int8send(({epoch} - {rows} + i) * 1000) FROM 3) FROM 1 FOR 6), 'hex')::uuid \
                   AS allocation_id \
               FROM generate_series({from}::bigint, {to}::bigint) AS i), \
             ledger AS ( \
               INSERT INTO ledger_entries (id, org_id, customer_id, program_id, currency, kind, amount, \
                 balance_after, reference, remaining, expires_at, created_at) \
               SELECT entry_id, {org_id}, customer_id, {program}, 'POINTS', 'CREDIT', amount, amount, \
                 'allocation:' || key, amount, at + interval '365 days', at FROM r), \
             alloc AS ( \
               INSERT INTO allocations (id, org_id, unique_id, customer_id, program_id, currency, amount, \
                 source_value, award_strategy_id, expiry_strategy_id, event_name, event_source_id, \
                 ledger_entry_id, expires_at, created_at) \
               SELECT allocation_id, {org_id}, key, customer_id, {program}, 'POINTS', amount, \
                 source_value::text, {award}, {expiry}, 'TransactionAdd', 'BILL123', entry_id, \
                 at + interval '365 days', at FROM r), \
             records AS ( \
               INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, \
                 status_code, response, resource_id, created_at) \
               SELECT {org_id}, 'currency-allocation', key, md5(key) || md5(customer || key), \
                 ('{{\"awardStrategyId\": \"{award}\", \"customer\": \"' || customer || \
                  '\", \"eventName\": \"TransactionAdd\", \"eventSourceId\": \"BILL123\", \
                  \"expiryStrategyId\": \"{expiry}\", \"programId\": \"{program}\", \"sourceValue\": \"' \
                  || source_value || '\"}}')::jsonb, \
                 201, \
                 ('{{\"allocationId\": \"' || allocation_id || '\", \"uniqueId\": \"' || key || \
                  '\", \"customerId\": \"' || customer_id || '\", \"programId\": {program}, \
                  \"awardStrategyId\": {award}, \"expiryStrategyId\": {expiry}, \"currency\": \"POINTS\", \
                  \"amount\": \"' || to_char(amount / 100.0, 'FM999999990.00') || '\", \
                  \"sourceValue\": \"' || source_value || '\", \
                  \"expiresAt\": \"2027-11-22T10:15:30.123456Z\", \"eventName\": \"TransactionAdd\", \
                  \"eventSourceId\": \"BILL123\", \"ledgerEntryId\": \"' || entry_id || '\", \
                  \"createdAt\": \"2026-11-22T10:15:30.123456Z\", \"reversedAt\": null, \
                  \"balance\": {{\"available\": \"48211.70\"}}}}')::jsonb, \
                 allocation_id::text, at FROM r), \
             balance AS ( \
               INSERT INTO balances (org_id, customer_id, program_id, currency, available, updated_at) \
               SELECT {org_id}, customer_id, {program}, 'POINTS', sum(amount), now() FROM r \
               GROUP BY customer_id \
               ON CONFLICT (org_id, customer_id, program_id, currency) \
               DO UPDATE SET available = balances.available + excluded.available, \
                 updated_at = excluded.updated_at) \
             SELECT count(*)::text FROM r"
        );
        let written = query_text(&tx, &sql).await?;
        tx.commit().await?;
        done = to;
        eprintln!(
            "growth: {done}/{rows} rows ({written} in {:.1} s)",
            chunk_started.elapsed().as_secs_f64()
        );
    }
    let fill = started.elapsed();

    let started = Instant::now();
    for (name, definition) in &indexes {
        let index_started = Instant::now();
        let tx = conn.begin().await?;
        exec(&tx, "SET LOCAL maintenance_work_mem = '1GB'").await?;
        exec(&tx, definition).await?;
        tx.commit().await?;
        eprintln!(
            "growth: index {name} rebuilt in {:.1} s",
            index_started.elapsed().as_secs_f64()
        );
    }
    Ok(GrowthTimes {
        fill,
        indexes: started.elapsed(),
        indexes_rebuilt: indexes.len(),
    })
}

/// The tests' ledger invariant over the whole database: accounts that break it.
async fn invariant_violations(conn: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let sql = "WITH ledger AS ( \
          SELECT org_id, customer_id, program_id, currency, \
                 sum(CASE WHEN kind = 'CREDIT' THEN amount ELSE -amount END) AS net, \
                 sum(COALESCE(remaining, 0)) AS lots \
          FROM ledger_entries GROUP BY org_id, customer_id, program_id, currency) \
        SELECT count(*)::text FROM balances b FULL JOIN ledger l USING (org_id, customer_id, program_id, currency) \
        WHERE COALESCE(b.available, -1) <> COALESCE(l.net, 0) OR COALESCE(b.available, -1) <> COALESCE(l.lots, 0)";
    let n = query_text(conn, sql).await?;
    n.parse()
        .map_err(|e| sea_orm::DbErr::Custom(format!("count: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Load

/// SplitMix64: enough randomness for picking customers and values, no dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(uuid::Uuid::new_v4().as_u128() as u64)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (close enough for a benchmark).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn index(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Scenario {
    Alloc,
    Replay,
    /// One replay in ten, the rest first-time allocations.
    Mixed,
    Issue,
    Bulk(usize),
}

impl Scenario {
    fn parse(name: &str) -> Self {
        match name {
            "alloc" => Self::Alloc,
            "replay" => Self::Replay,
            "mixed" => Self::Mixed,
            "issue" => Self::Issue,
            other => Self::Bulk(
                other
                    .strip_prefix("bulk")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| fail(&format!("unknown scenario {other}"))),
            ),
        }
    }

    fn items(self) -> u64 {
        match self {
            Self::Bulk(n) => n as u64,
            _ => 1,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Alloc | Self::Replay | Self::Mixed => "/v1/currency/allocations",
            Self::Issue => "/v1/rewards/issue",
            Self::Bulk(_) => "/v1/rewards/issue/bulk",
        }
    }

    fn expected(self, status: StatusCode) -> bool {
        match self {
            Self::Alloc | Self::Issue => status == StatusCode::CREATED,
            Self::Replay => status == StatusCode::ACCEPTED,
            Self::Mixed => status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
            Self::Bulk(_) => status == StatusCode::OK,
        }
    }

    fn body(self, ctx: &Ctx, rng: &mut Rng) -> Vec<u8> {
        let mobile = &ctx.mobiles[rng.index(ctx.mobiles.len())];
        let fresh = || uuid::Uuid::new_v4().to_string();
        match self {
            Self::Alloc => ctx.allocation_body(mobile, rng.range(1, 10_000), &fresh()),
            Self::Replay => ctx.pool[rng.index(ctx.pool.len())].clone(),
            Self::Mixed if rng.index(10) == 0 => ctx.pool[rng.index(ctx.pool.len())].clone(),
            Self::Mixed => ctx.allocation_body(mobile, rng.range(1, 10_000), &fresh()),
            Self::Issue => serde_json::to_vec(&json!({
                "mobile": mobile,
                "rewardId": ctx.rewards[rng.index(ctx.rewards.len())],
                "quantity": 1,
                "requestId": fresh(),
            }))
            .expect("serialise an issuance"),
            Self::Bulk(n) => serde_json::to_vec(&json!({
                "mobile": mobile,
                "transactionNumber": fresh(),
                "rewards": (0..n).map(|i| json!({
                    "rewardId": ctx.rewards[i % ctx.rewards.len()],
                    "quantity": 1,
                    "requestId": fresh(),
                })).collect::<Vec<_>>(),
            }))
            .expect("serialise a bulk issuance"),
        }
    }

    /// `None` when the answer is the expected one, else what was wrong with it.
    fn check(self, status: StatusCode, body: &[u8]) -> Option<String> {
        let text = || String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
        if !self.expected(status) {
            return Some(format!("status {status}: {}", text()));
        }
        if let Self::Bulk(n) = self {
            let issued = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["summary"]["issued"].as_u64());
            if issued != Some(n as u64) {
                return Some(format!(
                    "summary.issued {issued:?}, expected {n}: {}",
                    text()
                ));
            }
        }
        None
    }
}

#[derive(Default)]
struct TaskResult {
    latencies: Vec<Duration>,
    /// Answers as expected, the warm-up's included.
    answered: u64,
    errors: u64,
    samples: Vec<String>,
    last_answer: Option<Instant>,
}

struct RowResult {
    /// The pass (`A`, `B`) with `BENCH_ALTERNATE`, else empty.
    pass: &'static str,
    scenario: String,
    concurrency: usize,
    ok: u64,
    /// Answers as expected, the warm-up's included (what the CPU sampler saw).
    answered: u64,
    items: u64,
    errors: u64,
    window: Duration,
    latencies: Vec<Duration>,
    peak_rss_kb: Option<u64>,
}

impl RowResult {
    fn per_second(&self, n: u64) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            n as f64 / self.window.as_secs_f64()
        }
    }

    fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        // Nearest rank.
        let rank = (p * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        Some(self.latencies[i].as_secs_f64() * 1e3)
    }
}

/// C tasks in a closed loop: warm-up, then the measured window.
async fn run_load(
    ctx: Arc<Ctx>,
    base: &str,
    scenario: Scenario,
    name: &str,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> RowResult {
    let started = Instant::now();
    let window_start = started + warmup;
    let end = window_start + measure;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new();
            let mut http = HttpConn::new(&base, &ctx);
            let mut out = TaskResult::default();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let body = scenario.body(&ctx, &mut rng);
                let answer = http.post(scenario.path(), body).await;
                let answered = Instant::now();
                let problem = match &answer {
                    Ok((status, body)) => scenario.check(*status, body),
                    Err(e) => Some(e.clone()),
                };
                match problem {
                    Some(p) => {
                        out.errors += 1;
                        if out.samples.len() < ERROR_SAMPLES {
                            out.samples.push(p);
                        }
                        // A refusing server answers fast: do not spin.
                        if answer.is_err() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    None if sent >= window_start => {
                        out.answered += 1;
                        out.latencies.push(answered - sent);
                        out.last_answer = Some(answered);
                    }
                    None => out.answered += 1,
                }
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut answered = 0;
    let mut errors = 0;
    let mut samples = Vec::new();
    let mut last = end;
    for task in tasks {
        let r = task.await.expect("a load task panicked");
        latencies.extend(r.latencies);
        answered += r.answered;
        errors += r.errors;
        samples.extend(r.samples);
        if let Some(t) = r.last_answer {
            last = last.max(t);
        }
    }
    for s in samples.iter().take(ERROR_SAMPLES) {
        println!("ERROR {name} c={concurrency}: {s}");
    }
    latencies.sort();
    let ok = latencies.len() as u64;
    RowResult {
        pass: "",
        scenario: name.to_owned(),
        concurrency,
        ok,
        answered,
        items: ok * scenario.items(),
        errors,
        window: last.saturating_duration_since(window_start),
        latencies,
        peak_rss_kb: None,
    }
}

// ---------------------------------------------------------------------------------------------
// pgbench

struct PgbenchResult {
    pass: &'static str,
    concurrency: usize,
    tps: Option<f64>,
    latency_ms: Option<f64>,
    /// p50 and p99 of the transactions' latencies (pgbench's per-transaction log), ms.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    failed: Option<String>,
    problem: Option<String>,
}

fn run_pgbench(
    script: &Path,
    database_url: &str,
    concurrency: usize,
    seconds: u64,
    vars: &[(&str, i64)],
) -> PgbenchResult {
    // pgbench writes one line per transaction (`client tx latency_us script epoch us`) to
    // `<prefix>.<pid>[.<thread>]`; a directory of its own per run.
    let logs = std::env::temp_dir().join(format!(
        "loyalty-bench-pgbench-{}-c{concurrency}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::create_dir_all(&logs);
    let mut cmd = Command::new("pgbench");
    // Without TLS, as the service connects: libpq prefers TLS when the server offers it (the
    // Debian package's server does), and encrypting every message would slow pgbench down.
    cmd.env("PGSSLMODE", "disable");
    cmd.args(["-n", "-M", "prepared", "-l"])
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg("-c")
        .arg(concurrency.to_string())
        .arg("-j")
        .arg(concurrency.min(2).to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(script);
    for (name, value) in vars {
        cmd.arg("-D").arg(format!("{name}={value}"));
    }
    cmd.arg(database_url);
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            return PgbenchResult {
                pass: "",
                concurrency,
                tps: None,
                latency_ms: None,
                p50_ms: None,
                p99_ms: None,
                failed: None,
                problem: Some(format!("cannot run pgbench: {e}")),
            };
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let parsed = parse_pgbench(&stdout);
    let aborted = stderr.lines().filter(|l| l.contains("aborted")).count();
    let problem = if !out.status.success() || aborted > 0 || parsed.0.is_none() {
        let head: Vec<&str> = stderr.lines().take(5).collect();
        Some(format!(
            "pgbench {} ({aborted} clients aborted): {}",
            out.status,
            head.join(" | ")
        ))
    } else {
        None
    };
    let mut latencies = transaction_latencies_us(&logs);
    let _ = std::fs::remove_dir_all(&logs);
    latencies.sort_unstable();
    let percentile = |p: f64| -> Option<f64> {
        let last = latencies.len().checked_sub(1)?;
        let at = ((last as f64) * p).round() as usize;
        latencies.get(at).map(|us| *us as f64 / 1000.0)
    };
    PgbenchResult {
        pass: "",
        concurrency,
        tps: parsed.0,
        latency_ms: parsed.1,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        failed: parsed.2,
        problem,
    }
}

/// The latency (µs, third field) of every transaction in the per-transaction logs in `dir`.
fn transaction_latencies_us(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        out.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    out
}

/// (tps without connection time, latency average ms, failed transactions) from pgbench's
/// report; PostgreSQL 14+ says "without initial connection time", older ones "excluding
/// connections establishing".
fn parse_pgbench(out: &str) -> (Option<f64>, Option<f64>, Option<String>) {
    let number = |s: &str| {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse::<f64>().ok())
    };
    let mut tps = None;
    let mut tps_including = None;
    let mut latency = None;
    let mut failed = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            if rest.contains("without initial connection time")
                || rest.contains("excluding connections establishing")
            {
                tps = number(rest);
            } else {
                tps_including = number(rest);
            }
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            latency = number(rest);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            failed = Some(rest.to_owned());
        }
    }
    (tps.or(tps_including), latency, failed)
}

// ---------------------------------------------------------------------------------------------
// Report

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(|| "–".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn total_memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        )
}

fn nproc() -> String {
    Command::new("nproc")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The URL without a password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn print_header(conn: &DatabaseConnection, knobs: &Knobs, database_url: &str) {
    let show = async |what: &str| {
        query_text(conn, &format!("SHOW {what}"))
            .await
            .unwrap_or_else(|e| format!("? ({e})"))
    };
    println!("# loyalty load benchmark");
    println!();
    println!(
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!("- machine: nproc {}, memory {}", nproc(), total_memory());
    println!(
        "- PostgreSQL {}: fsync {}, synchronous_commit {}, shared_buffers {}, max_connections {}",
        show("server_version").await,
        show("fsync").await,
        show("synchronous_commit").await,
        show("shared_buffers").await,
        show("max_connections").await,
    );
    println!(
        "- knobs: BENCH_SECONDS={} (warm-up {:.1} s) BENCH_CONCURRENCY={} BENCH_ONLY={} BENCH_GROWTH={} DATABASE_URL={}",
        knobs.seconds,
        knobs.warmup().as_secs_f64(),
        knobs
            .concurrency
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        knobs
            .only
            .as_ref()
            .map_or_else(|| "(all)".to_owned(), |o| o.join(",")),
        knobs.growth,
        redact(&knobs.server_url),
    );
    let loyalty_env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LOYALTY_") || k == "IDEMPOTENCY_RETENTION")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "- server settings from the environment: {}",
        if loyalty_env.is_empty() {
            "none (defaults)".to_owned()
        } else {
            loyalty_env.join(" ")
        }
    );
    if !knobs.alternate.is_empty() {
        let b: Vec<String> = knobs
            .alternate
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "- passes: A (the settings above) and B (those and {}), alternating, {} rounds; each pass on a server started for it, after a CHECKPOINT",
            b.join(" "),
            knobs.rounds
        );
    }
    println!("- database: {}", database_name(database_url));
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let knobs = Knobs::from_env();
    let root = workspace_root();
    let target = target_dir(&root);
    let script = root.join("tests").join("bench").join("allocation.sql");
    let binary = match std::env::var_os("BENCH_SERVER") {
        Some(path) => PathBuf::from(path),
        None => {
            build_server(&root);
            target.join("release").join("loyalty")
        }
    };
    if !binary.exists() {
        fail(&format!("{} is missing after the build", binary.display()));
    }
    // The benchmark's own threads: as few as the machine has cores, since they share them with
    // the server and PostgreSQL.
    let run_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Drop order: `database` is declared before `server`, so the server is stopped before its
    // database is dropped, also when unwinding from a panic.
    // (tests::fresh_database reads DATABASE_URL, the same variable as the knob.)
    let database = BenchDatabase {
        url: runtime.block_on(tests::fresh_database()),
        server_url: knobs.server_url.clone(),
        keep: knobs.keep_db,
    };
    let setup_started = Instant::now();
    let org = create_org(&binary, &database.url);
    let log = target.join("bench-load-server.log");
    let mut server = Server::start(&binary, &database.url, log.clone(), &[]);
    runtime.block_on(run(
        &knobs,
        (&binary, &log),
        &database.url,
        &script,
        &org,
        &mut server,
        setup_started,
    ));
    drop(server);
    println!(
        "\nRun time (the build excluded): {:.0} s",
        run_started.elapsed().as_secs_f64()
    );
    drop(database);
}

async fn run(
    knobs: &Knobs,
    (binary, log): (&Path, &Path),
    database_url: &str,
    script: &Path,
    org: &OrgInfo,
    server: &mut Server,
    setup_started: Instant,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client");
    server.wait_ready(&client).await;
    let conn = connect(database_url, 1)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(database_url)));
    print_header(&conn, knobs, database_url).await;

    let mut ctx = setup_catalog(client, server.base.clone(), org.api_key.clone()).await;
    ctx.pool = enrol_customers(&ctx).await;
    let ctx = Arc::new(ctx);
    println!(
        "- setup (org, catalog, {CUSTOMERS} customers with one allocation each): {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );
    let mut overall_peak = server.peak_rss_kb();

    let grown = if knobs.growth > 0 {
        Some(
            grow(&conn, &ctx, org.org_id, knobs.growth)
                .await
                .unwrap_or_else(|e| panic!("growth fill failed: {e}")),
        )
    } else {
        None
    };
    // Every run, grown or not, starts measuring from the same state: statistics fresh, and a
    // checkpoint just taken. Without the checkpoint, the first write to each page after the
    // next one logs a full-page image, and that burst (large after a fill, smaller after the
    // setup and the template's copy) lands in the measured scenarios.
    let started = Instant::now();
    exec(
        &conn,
        &format!(
            "VACUUM ANALYZE {}, balances, customers",
            GROWTH_TABLES.join(", ")
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("VACUUM ANALYZE failed: {e}"));
    exec(&conn, "CHECKPOINT")
        .await
        .unwrap_or_else(|e| panic!("CHECKPOINT failed: {e}"));
    let settled = started.elapsed();
    match grown {
        Some(times) => println!(
            "- growth: {} rows each in {} in {:.1} s ({:.0} rows/s), then {} secondary indexes rebuilt in {:.1} s, VACUUM ANALYZE and CHECKPOINT in {:.1} s",
            knobs.growth,
            GROWTH_TABLES.join(", "),
            times.fill.as_secs_f64(),
            knobs.growth as f64 / times.fill.as_secs_f64(),
            times.indexes_rebuilt,
            times.indexes.as_secs_f64(),
            settled.as_secs_f64(),
        ),
        None => println!(
            "- before measuring: VACUUM ANALYZE and CHECKPOINT in {:.1} s",
            settled.as_secs_f64()
        ),
    }
    println!();

    let mut rows: Vec<RowResult> = Vec::new();
    let mut pgbench: Vec<PgbenchResult> = Vec::new();
    let mut rss_resets = true;
    let mut db_work: Vec<String> = Vec::new();
    let mut cpu_work: Vec<String> = Vec::new();
    let vars = [
        ("org", org.org_id),
        ("program", ctx.program_id),
        ("award", ctx.award_id),
        ("expiry", ctx.expiry_id),
    ];
    let passes = knobs.passes();
    for (i, (pass, env)) in passes.iter().enumerate() {
        let pass: &'static str = pass;
        if !pass.is_empty() {
            // Every pass has its own server, started from the same state as the first one: a
            // checkpoint just taken.
            if i > 0 {
                *server = Server::start(binary, database_url, log.to_path_buf(), env);
                server.wait_ready(&ctx.client).await;
                exec(&conn, "CHECKPOINT")
                    .await
                    .unwrap_or_else(|e| panic!("CHECKPOINT failed: {e}"));
            }
            let settings: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!(
                "pass {pass} ({} of {}): {}",
                i + 1,
                passes.len(),
                if settings.is_empty() {
                    "the environment's settings".to_owned()
                } else {
                    settings.join(" ")
                }
            );
        }
        for name in ALL_SCENARIOS.iter().filter(|n| knobs.runs(n)) {
            let scenario = Scenario::parse(name);
            for &c in &knobs.concurrency {
                server.check_alive();
                rss_resets &= server.reset_peak_rss();
                let before = DbCounters::read(&conn).await;
                let sampled = matches!(scenario, Scenario::Alloc | Scenario::Replay);
                let sampler = sampled.then(|| cpu::Sampler::start(server.pid, false));
                let mut row = run_load(
                    ctx.clone(),
                    &server.base,
                    scenario,
                    name,
                    c,
                    knobs.warmup(),
                    knobs.measure(),
                )
                .await;
                server.check_alive();
                row.pass = pass;
                row.peak_rss_kb = server.peak_rss_kb();
                overall_peak = overall_peak.max(row.peak_rss_kb);
                eprintln!(
                    "{name}{} c={c}: {:.0} req/s, p99 {} ms, {} errors",
                    labelled(pass),
                    row.per_second(row.ok),
                    fmt_opt(row.percentile_ms(0.99), 1),
                    row.errors
                );
                let used = sampler.map(cpu::Sampler::stop);
                let after = DbCounters::read(&conn).await;
                if let (Some(used), Some(b), Some(a)) = (used, before, after) {
                    let what = format!("{name}{} c={c}", labelled(pass));
                    let rate = row.per_second(row.ok);
                    cpu_work.push(match scenario {
                        Scenario::Replay => used.report(&what, "replay", row.answered as f64, rate),
                        _ => used.report(&what, "allocation", a.entries - b.entries, rate),
                    });
                }
                rows.push(row);
                if let (Some(b), Some(a)) = (before, after)
                    && let Some(per) = b.per_allocation(a)
                {
                    db_work.push(format!("{name}{} c={c}: {per}", labelled(pass)));
                }
                if matches!(scenario, Scenario::Alloc) {
                    let before = DbCounters::read(&conn).await;
                    let script = script.to_path_buf();
                    let url = database_url.to_owned();
                    let seconds = knobs.pgbench_seconds();
                    let sampler = cpu::Sampler::start(server.pid, true);
                    let mut result = tokio::task::spawn_blocking(move || {
                        run_pgbench(&script, &url, c, seconds, &vars)
                    })
                    .await
                    .expect("the pgbench thread panicked");
                    result.pass = pass;
                    let used = sampler.stop();
                    let after = DbCounters::read(&conn).await;
                    if let (Some(b), Some(a)) = (before, after) {
                        let what = format!("pgbench{} c={c}", labelled(pass));
                        let rate = result.tps.unwrap_or(0.0);
                        cpu_work.push(used.report(
                            &what,
                            "allocation",
                            a.entries - b.entries,
                            rate,
                        ));
                    }
                    if let (Some(b), Some(a)) = (before, after)
                        && let Some(per) = b.per_allocation(a)
                    {
                        db_work.push(format!("pgbench{} c={c}: {per}", labelled(pass)));
                    }
                    eprintln!(
                        "pgbench{} c={c}: {} tps{}",
                        labelled(pass),
                        fmt_opt(result.tps, 0),
                        result
                            .problem
                            .as_deref()
                            .map(|p| format!(" ({p})"))
                            .unwrap_or_default()
                    );
                    pgbench.push(result);
                }
            }
        }
    }

    // Results.
    println!(
        "| scenario | concurrency | req/s | items/s | p50 ms | p95 ms | p99 ms | errors | server peak RSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {}{} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            r.scenario,
            labelled(r.pass),
            r.concurrency,
            r.per_second(r.ok),
            r.per_second(r.items),
            fmt_opt(r.percentile_ms(0.50), 2),
            fmt_opt(r.percentile_ms(0.95), 2),
            fmt_opt(r.percentile_ms(0.99), 2),
            r.errors,
            if rss_resets {
                mb(r.peak_rss_kb)
            } else {
                "–".to_owned()
            },
        );
    }

    if !pgbench.is_empty() {
        println!();
        println!(
            "pgbench `tests/bench/allocation.sql` (the SQL of one allocation; -M prepared, -T {} s) against the same database:",
            knobs.pgbench_seconds()
        );
        println!();
        println!(
            "| pgbench | concurrency | tps | latency avg ms | p50 ms | p99 ms | failed | service alloc req/s | service/pgbench |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (j, p) in pgbench.iter().enumerate() {
            // The alloc row measured just before it: the same pass, concurrency and round.
            let same = |q: &&PgbenchResult| q.pass == p.pass && q.concurrency == p.concurrency;
            let round = pgbench[..j].iter().filter(same).count();
            let service = rows
                .iter()
                .filter(|r| {
                    r.scenario == "alloc" && r.pass == p.pass && r.concurrency == p.concurrency
                })
                .nth(round)
                .map(|r| r.per_second(r.ok));
            let ratio = match (service, p.tps) {
                (Some(s), Some(t)) if t > 0.0 => Some(s / t),
                _ => None,
            };
            println!(
                "| allocation.sql{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                labelled(p.pass),
                p.concurrency,
                fmt_opt(p.tps, 0),
                fmt_opt(p.latency_ms, 3),
                fmt_opt(p.p50_ms, 2),
                fmt_opt(p.p99_ms, 2),
                p.failed.as_deref().unwrap_or("–"),
                fmt_opt(service, 0),
                fmt_opt(ratio, 2),
            );
        }
        for p in pgbench.iter().filter(|p| p.problem.is_some()) {
            println!(
                "ERROR pgbench{} c={}: {}",
                labelled(p.pass),
                p.concurrency,
                p.problem.as_deref().unwrap_or_default()
            );
        }
    }

    println!();
    if rss_resets {
        let mut per_c: BTreeMap<usize, Option<u64>> = BTreeMap::new();
        for r in &rows {
            let e = per_c.entry(r.concurrency).or_default();
            *e = (*e).max(r.peak_rss_kb);
        }
        let levels: Vec<String> = per_c
            .iter()
            .map(|(c, kb)| format!("c={c}: {} MB", mb(*kb)))
            .collect();
        println!(
            "Server peak RSS per concurrency: {}; overall (setup included): {} MB",
            levels.join(", "),
            mb(overall_peak)
        );
    } else {
        println!(
            "Server peak RSS (the kernel refused to reset it, so only the overall peak): {} MB",
            mb(overall_peak)
        );
    }

    let p99 = |name: &str, pass: &str| -> Option<String> {
        let parts: Vec<String> = rows
            .iter()
            .filter(|r| r.scenario == name && r.pass == pass)
            .map(|r| {
                format!(
                    "c={} {} ms",
                    r.concurrency,
                    fmt_opt(r.percentile_ms(0.99), 2)
                )
            })
            .collect();
        (!parts.is_empty()).then(|| format!("{name} {}", parts.join(", ")))
    };
    for (pass, _) in passes.iter().take(2) {
        let mut summary: Vec<String> = ["alloc", "replay"]
            .iter()
            .filter_map(|n| p99(n, pass))
            .collect();
        let parts: Vec<String> = pgbench
            .iter()
            .filter(|p| p.pass == *pass)
            .map(|p| format!("c={} {} ms", p.concurrency, fmt_opt(p.p99_ms, 2)))
            .collect();
        if !parts.is_empty() {
            summary.push(format!("pgbench {}", parts.join(", ")));
        }
        if !summary.is_empty() {
            println!(
                "p99 with BENCH_GROWTH={}{} (compare with a run of another size): {}",
                knobs.growth,
                labelled(pass),
                summary.join("; ")
            );
        }
    }
    if !db_work.is_empty() {
        println!("PostgreSQL's work per allocation made (warm-up included):");
        for line in &db_work {
            println!("- {line}");
        }
    }
    if !cpu_work.is_empty() {
        println!();
        println!(
            "CPU per allocation made, or per replay answered (warm-up included; /proc every 50 ms, PostgreSQL's backends that came and went counted):"
        );
        for line in &cpu_work {
            println!("- {line}");
        }
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    let pg_problems = pgbench.iter().filter(|p| p.problem.is_some()).count();
    match invariant_violations(&conn).await {
        Ok(0) => println!("Ledger invariant (balance = ledger = lots) holds for every account."),
        Ok(n) => println!("ERROR: the ledger invariant is broken for {n} accounts"),
        Err(e) => println!("ERROR: could not check the ledger invariant: {e}"),
    }
    if errors > 0 || pg_problems > 0 {
        println!(
            "ERRORS: {errors} unexpected answers from the service, {pg_problems} pgbench runs with problems (see above)"
        );
    }
    let _ = conn.close().await;
}
