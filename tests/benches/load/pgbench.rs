//! pgbench running `tests/bench/allocation.sql`.

use super::*;

pub(crate) struct PgbenchResult {
    pub(crate) pass: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) tps: Option<f64>,
    pub(crate) latency_ms: Option<f64>,
    /// p50 and p99 of the transactions' latencies (pgbench's per-transaction log), ms.
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) failed: Option<String>,
    pub(crate) problem: Option<String>,
}

pub(crate) fn run_pgbench(
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
pub(crate) fn transaction_latencies_us(dir: &Path) -> Vec<u64> {
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
pub(crate) fn parse_pgbench(out: &str) -> (Option<f64>, Option<f64>, Option<String>) {
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
