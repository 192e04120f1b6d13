//! Bulk issuance throughput and latency against PostgreSQL.
//!
//! `cargo bench -p tests --bench bulk_issue` (DATABASE_URL as for the tests; the defaults:
//! 20 requests of 1000 items, one unit each, over 5 rewards). Each request is sent after the
//! previous one answered, so the latency is the request's own. Then the same requests are sent
//! again to measure replays. Results go to stdout; BENCHMARKS.md records them.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::{StatusCode, TestApp, create_reward, setup_catalog};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(label: &str, mut latencies: Vec<Duration>, items: usize, wall: Duration) {
    latencies.sort();
    println!(
        "{label}: {} requests x {items} items: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {:.0} items/s",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        (latencies.len() * items) as f64 / wall.as_secs_f64(),
    );
}

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let items: usize = std::env::var("BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = TestApp::spawn().await;
        let (_, key) = app.create_org("Bench").await;
        let catalog = setup_catalog(&app, &key).await;
        let mut rewards = Vec::new();
        for i in 0..5 {
            rewards.push(create_reward(&app, &key, catalog.program_id, json!({"name": format!("R{i}")})).await);
        }
        let bodies: Vec<serde_json::Value> = (0..requests)
            .map(|r| {
                json!({
                    "mobile": format!("9190{:08}", r),
                    "transactionNumber": format!("bench-{r}"),
                    "rewards": (0..items).map(|i| json!({
                        "rewardId": rewards[i % rewards.len()],
                        "quantity": 1,
                        "requestId": format!("bench-{r}-{i}"),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        // One warm-up request of its own, not counted.
        let warm = json!({"mobile": "919999999999", "rewards": [{"rewardId": rewards[0], "quantity": 1, "requestId": "warm"}]});
        app.post("/v1/rewards/issue/bulk", &key, &warm).await;
        for (label, expect) in [("first issue", "issued"), ("replay", "replayed")] {
            let mut latencies = Vec::with_capacity(requests);
            let started = Instant::now();
            for body in &bodies {
                let t = Instant::now();
                let reply = app.post("/v1/rewards/issue/bulk", &key, body).await;
                latencies.push(t.elapsed());
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
                assert_eq!(reply.body["summary"][expect], items, "{}", reply.body["summary"]);
            }
            report(label, latencies, items, started.elapsed());
        }
    });
}
