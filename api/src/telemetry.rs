//! Logging, set up once per process.

use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The server logs to stdout.
    Stdout,
    /// Commands that print a result on stdout (`orgs create`) log to stderr.
    Stderr,
}

/// Logs filtered by `RUST_LOG` (default `default_filter`), in colour only on a terminal.
pub fn init(default_filter: &str, sink: Sink) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second call (tests start many apps in one process) keeps the first subscriber.
    let _ = match sink {
        Sink::Stdout => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
        Sink::Stderr => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
