//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! Recording is lock-free on the hot path (atomic counters and histogram buckets behind the
//! exporter's sharded registry), so a metric never serialises requests. Labels are route
//! patterns (`/v1/rewards/{rewardId}`), methods, statuses, operations, outcomes and codes: a
//! small set, and no tenant data (no organisation, customer, currency code or key). Every
//! value a client chooses is mapped onto a fixed set first: a path that matches no route is
//! `unmatched`, a method outside RFC 9110's (and PATCH) is `other`, so no request can add a
//! series.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder); several
//! applications in one process (the tests) share it, and read differences.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds, from 1 ms to 10 s: where a write's latency lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Major units, by decades.
const AMOUNT_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

struct Global {
    handle: PrometheusHandle,
    started: Instant,
}

static GLOBAL: OnceLock<Option<Global>> = OnceLock::new();

/// Installs the recorder once per process; later calls reuse it. `None` only if another
/// recorder was installed first (then nothing is recorded here, and `/metrics` says so).
fn global() -> Option<&'static Global> {
    GLOBAL
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(CURRENCY.to_owned()), AMOUNT_BUCKETS)
                })
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()?;
            describe();
            // Histograms keep samples until upkeep folds them into buckets.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(Global {
                handle,
                started: Instant::now(),
            })
        })
        .as_ref()
}

const HTTP_DURATION: &str = "loyalty_http_request_duration_seconds";
const IDEMPOTENCY: &str = "loyalty_idempotency_outcomes_total";
const REWARD_ITEMS: &str = "loyalty_reward_items_total";
const CURRENCY: &str = "loyalty_currency_amount";
const WEBHOOKS: &str = "loyalty_webhook_deliveries_total";
const WORKER_FAILURES: &str = "loyalty_worker_item_failures_total";
const BATCHES_ABANDONED: &str = "loyalty_batches_abandoned_total";
const POOL: &str = "loyalty_db_connections";
const POOL_WAITING: &str = "loyalty_db_connections_waiting";

fn describe() {
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method, route pattern and status."
    );
    describe_counter!(
        IDEMPOTENCY,
        "Keyed writes by operation and outcome: created, replayed, key_reused, key_in_use."
    );
    describe_counter!(
        REWARD_ITEMS,
        "Reward issuance items by status (issued, replayed, failed) and failure code."
    );
    describe_histogram!(
        CURRENCY,
        "Currency amounts moved, by kind (allocation, redemption, reversal, expiry), in major units."
    );
    describe_counter!(
        WEBHOOKS,
        "Webhook delivery attempts by outcome (delivered, failed, retry_scheduled)."
    );
    describe_counter!(
        BATCHES_ABANDONED,
        "Group-commit batches abandoned at their deadline (a database connection that stopped \
         answering); their requests were answered 503."
    );
    describe_counter!(
        WORKER_FAILURES,
        "Items a background job failed on (an error, not a lock held elsewhere) and skipped \
         until its next run, by job."
    );
    describe_gauge!(POOL, "Database pool connections by state (in_use, idle).");
    describe_gauge!(
        POOL_WAITING,
        "Requests waiting for a database connection to start a transaction."
    );
}

/// Installs the process's recorder (once; later calls are free).
pub fn install() {
    let _ = global();
}

/// The label of a request's method: one of the standard methods, else `other` (a client may
/// send any token as a method).
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

/// One HTTP answer. `route` is a route pattern or `unmatched`, never a raw path.
pub fn http(method: &str, route: &str, status: u16, seconds: f64) {
    histogram!(HTTP_DURATION, "method" => method_label(method), "route" => route.to_owned(), "status" => status.to_string())
        .record(seconds);
}

/// A keyed write's outcome: `created`, `replayed`, `key_reused` or `key_in_use`.
pub fn idempotency(operation: &'static str, outcome: &'static str) {
    counter!(IDEMPOTENCY, "operation" => operation, "outcome" => outcome).increment(1);
}

/// Reward items answered: `issued`, `replayed`, or `failed` with its code.
pub fn reward_items(status: &'static str, code: &str, n: u64) {
    counter!(REWARD_ITEMS, "status" => status, "code" => code.to_owned()).increment(n);
}

/// An amount of currency moved, in major units (`"12.50"` → 12.5). A histogram: its
/// `_sum` is the total moved and its `_count` the number of movements, by kind.
pub fn currency(kind: &'static str, amount: &str) {
    if let Ok(amount) = amount.parse::<f64>()
        && amount.is_finite()
        && amount > 0.0
    {
        histogram!(CURRENCY, "kind" => kind).record(amount);
    }
}

/// One webhook delivery attempt.
pub fn webhook(outcome: &'static str) {
    counter!(WEBHOOKS, "outcome" => outcome).increment(1);
}

/// A group-commit batch passed its deadline and was abandoned.
pub fn batch_abandoned() {
    counter!(BATCHES_ABANDONED).increment(1);
}

/// A background job failed on an item: `lot_expiry`, `activation`, `hold_expiry` or
/// `expiry_notice`.
pub fn worker_failure(job: &'static str) {
    counter!(WORKER_FAILURES, "job" => job).increment(1);
}

/// The text exposition format, with the pool's state read now.
pub fn render(pool: persistence::PoolState) -> String {
    let Some(global) = global() else {
        return "# metrics recorder unavailable in this process\n".to_owned();
    };
    gauge!(POOL, "state" => "in_use").set(f64::from(pool.in_use));
    gauge!(POOL, "state" => "idle").set(f64::from(pool.idle));
    gauge!(POOL_WAITING).set(f64::from(pool.waiting));
    gauge!("loyalty_up").set(1.0);
    gauge!("loyalty_uptime_seconds").set(global.started.elapsed().as_secs_f64());
    global.handle.render()
}
