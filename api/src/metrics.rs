//! Prometheus metrics, kept by hand: a counter and a duration sum per (method, route pattern,
//! status), and how many answers were idempotent replays. Route patterns (`/v1/rewards/{rewardId}`)
//! keep the label set small and carry no tenant data.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug, Default, Clone, Copy)]
struct Series {
    count: u64,
    seconds: f64,
    replays: u64,
}

#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    http: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            http: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Escapes a label value for the text exposition format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64, replayed: bool) {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        let series = http
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        series.count += 1;
        series.seconds += seconds;
        series.replays += u64::from(replayed);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let http = self
            .http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP loyalty_up 1 while the process serves.");
        let _ = writeln!(out, "# TYPE loyalty_up gauge\nloyalty_up 1");
        let _ = writeln!(
            out,
            "# HELP loyalty_uptime_seconds Seconds since the process started."
        );
        let _ = writeln!(
            out,
            "# TYPE loyalty_uptime_seconds gauge\nloyalty_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP loyalty_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE loyalty_http_requests_total counter");
        for ((method, route, status), s) in &http {
            let _ = writeln!(
                out,
                "loyalty_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {}",
                label(method),
                label(route),
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP loyalty_http_request_duration_seconds Time to answer."
        );
        let _ = writeln!(out, "# TYPE loyalty_http_request_duration_seconds summary");
        for ((method, route, status), s) in &http {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                label(method),
                label(route)
            );
            let _ = writeln!(
                out,
                "loyalty_http_request_duration_seconds_sum{{{labels}}} {:.6}",
                s.seconds
            );
            let _ = writeln!(
                out,
                "loyalty_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP loyalty_idempotent_replays_total Answers that replayed an earlier request's outcome."
        );
        let _ = writeln!(out, "# TYPE loyalty_idempotent_replays_total counter");
        let mut replays: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, route, _), s) in &http {
            *replays.entry(route.as_str()).or_default() += s.replays;
        }
        for (route, n) in replays.into_iter().filter(|(_, n)| *n > 0) {
            let _ = writeln!(
                out,
                "loyalty_idempotent_replays_total{{route=\"{}\"}} {n}",
                label(route)
            );
        }
        out
    }
}
