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
#[path = "load/grow.rs"]
mod grow;
#[path = "load/pgbench.rs"]
mod pgbench;
#[path = "load/scenario.rs"]
mod scenario;
#[path = "load/server.rs"]
mod server;
#[path = "load/setup.rs"]
mod setup;

use grow::*;
use pgbench::*;
use scenario::*;
use server::*;
use setup::*;

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
