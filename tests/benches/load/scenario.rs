//! The scenarios and the closed loop that runs them.

use super::*;

/// SplitMix64: enough randomness for picking customers and values, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        Self(uuid::Uuid::new_v4().as_u128() as u64)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (close enough for a benchmark).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub(crate) fn index(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Scenario {
    Alloc,
    Replay,
    /// One replay in ten, the rest first-time allocations.
    Mixed,
    Issue,
    Bulk(usize),
}

impl Scenario {
    pub(crate) fn parse(name: &str) -> Self {
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

    pub(crate) fn items(self) -> u64 {
        match self {
            Self::Bulk(n) => n as u64,
            _ => 1,
        }
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Alloc | Self::Replay | Self::Mixed => "/v1/currency/allocations",
            Self::Issue => "/v1/rewards/issue",
            Self::Bulk(_) => "/v1/rewards/issue/bulk",
        }
    }

    pub(crate) fn expected(self, status: StatusCode) -> bool {
        match self {
            Self::Alloc | Self::Issue => status == StatusCode::CREATED,
            Self::Replay => status == StatusCode::ACCEPTED,
            Self::Mixed => status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
            Self::Bulk(_) => status == StatusCode::OK,
        }
    }

    pub(crate) fn body(self, ctx: &Ctx, rng: &mut Rng) -> Vec<u8> {
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
    pub(crate) fn check(self, status: StatusCode, body: &[u8]) -> Option<String> {
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
pub(crate) struct TaskResult {
    pub(crate) latencies: Vec<Duration>,
    /// Answers as expected, the warm-up's included.
    pub(crate) answered: u64,
    pub(crate) errors: u64,
    pub(crate) samples: Vec<String>,
    pub(crate) last_answer: Option<Instant>,
}

pub(crate) struct RowResult {
    /// The pass (`A`, `B`) with `BENCH_ALTERNATE`, else empty.
    pub(crate) pass: &'static str,
    pub(crate) scenario: String,
    pub(crate) concurrency: usize,
    pub(crate) ok: u64,
    /// Answers as expected, the warm-up's included (what the CPU sampler saw).
    pub(crate) answered: u64,
    pub(crate) items: u64,
    pub(crate) errors: u64,
    pub(crate) window: Duration,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) peak_rss_kb: Option<u64>,
}

impl RowResult {
    pub(crate) fn per_second(&self, n: u64) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            n as f64 / self.window.as_secs_f64()
        }
    }

    pub(crate) fn percentile_ms(&self, p: f64) -> Option<f64> {
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
pub(crate) async fn run_load(
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
