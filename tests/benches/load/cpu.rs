//! CPU time per allocation, read from `/proc` while a scenario runs: the server's process, every
//! PostgreSQL process (backends that start or end during the run included) and the load
//! generator (this process, or pgbench), so that a throughput can be set against the machine's
//! CPU limit for the same cost per allocation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the processes are read: a process that ends between two reads loses at most
/// this much of its CPU time from the count.
const EVERY: Duration = Duration::from_millis(50);

/// `USER_HZ`: the unit of `/proc/<pid>/stat`'s times, 100 on Linux whatever the kernel's HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds spent during a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSeconds {
    pub server: f64,
    pub postgres: f64,
    /// The load generator: this process, or pgbench's.
    pub client: f64,
}

/// A sampler running on its own thread until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<CpuSeconds>,
}

/// Whom a process counts for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Who {
    Server,
    Postgres,
    Client,
}

/// `(pid, command, utime + stime in ticks)` of every process readable in `/proc`.
fn processes() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split at the
            // last `)`; utime and stime are fields 14 and 15.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((pid, comm, utime + stime))
        })
        .collect()
}

impl Sampler {
    /// Starts counting the CPU time of `server` (its pid), of every `postgres` process and of
    /// the load generator (`pgbench` processes when `pgbench`, else this process).
    pub fn start(server: u32, pgbench: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let me = std::process::id();
        let who = move |pid: u32, comm: &str| -> Option<Who> {
            if pid == server {
                Some(Who::Server)
            } else if comm == "postgres" {
                Some(Who::Postgres)
            } else if (pgbench && comm == "pgbench") || (!pgbench && pid == me) {
                Some(Who::Client)
            } else {
                None
            }
        };
        // What each process had used when first seen: at the start for those running then,
        // nothing for those started later (all their time falls in the window).
        let mut first: HashMap<u32, (Who, u64)> = HashMap::new();
        for (pid, comm, ticks) in processes() {
            if let Some(w) = who(pid, &comm) {
                first.insert(pid, (w, ticks));
            }
        }
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last: HashMap<u32, u64> = HashMap::new();
            loop {
                let done = stopping.load(Ordering::Relaxed);
                for (pid, comm, ticks) in processes() {
                    if let Some(w) = who(pid, &comm) {
                        first.entry(pid).or_insert((w, 0));
                        last.insert(pid, ticks);
                    }
                }
                if done {
                    break;
                }
                std::thread::sleep(EVERY);
            }
            let mut total = CpuSeconds::default();
            for (pid, (w, start)) in first {
                let used = last.get(&pid).map_or(0, |end| end.saturating_sub(start));
                let seconds = used as f64 / TICKS_PER_SECOND;
                match w {
                    Who::Server => total.server += seconds,
                    Who::Postgres => total.postgres += seconds,
                    Who::Client => total.client += seconds,
                }
            }
            total
        });
        Self { stop, thread }
    }

    /// Stops and returns what was used since [`Sampler::start`].
    pub fn stop(self) -> CpuSeconds {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The machine's cores as the scheduler sees them.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

impl CpuSeconds {
    /// The line of the report for `what`, which made `count` of `unit` (allocations made,
    /// replays answered) at `rate` per second: microseconds of CPU per unit by whom, and the
    /// throughput the machine's cores would
    /// allow at that cost (server and PostgreSQL; the load generator left out, as it is not
    /// part of what is measured), with the share of it reached.
    pub fn report(&self, what: &str, unit: &str, count: f64, rate: f64) -> String {
        if count <= 0.0 {
            return format!("{what}: no {unit} counted");
        }
        let per = |s: f64| s / count * 1e6;
        let cost = per(self.server + self.postgres);
        let limit = if cost > 0.0 {
            cores() * 1e6 / cost
        } else {
            0.0
        };
        format!(
            "{what}: CPU per {unit} {:.0} µs server + {:.0} µs PostgreSQL = {cost:.0} µs \
             (+ {:.0} µs load generator); {:.0} {unit}s/s would use all {} cores; \
             {rate:.0}/s is {:.0}% of that",
            per(self.server),
            per(self.postgres),
            per(self.client),
            limit,
            cores(),
            if limit > 0.0 {
                rate / limit * 100.0
            } else {
                0.0
            },
        )
    }
}
