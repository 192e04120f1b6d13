//! The `loyalty` command line: `serve` (the default), `migrate`, `orgs create`, `demo`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{DEFAULT_BIND, DEFAULT_DATABASE_URL, Settings};
use crate::engine::clock::{Clock, SystemClock};
use crate::startup::{Application, connect};
use crate::telemetry::{LogFormat, Sink};

#[derive(Debug, Parser)]
#[command(
    name = "loyalty",
    version,
    about = "Loyalty rewards and currency issuance, exactly once."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    db: DbArgs,
    /// Options of `serve`, also accepted without the subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Clone, Args)]
struct DbArgs {
    /// `postgres://…` or `sqlite://…`; default: the SQLite file loyalty.db in the working directory.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    database_url: String,
}

#[derive(Debug, Clone, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LOYALTY_BIND", default_value = DEFAULT_BIND)]
    bind: String,
    /// Do not apply pending migrations at start.
    #[arg(long, env = "LOYALTY_NO_MIGRATE", value_parser = switch, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    no_migrate: bool,
    /// Load the demo organisation into an empty database before serving.
    #[arg(long, env = "LOYALTY_DEMO", value_parser = switch, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    demo: bool,
    /// Log lines as text or as one JSON object per line (`text`, `json`).
    #[arg(long, env = "LOYALTY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "LOYALTY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// How long a request waits for a concurrent request holding its idempotency key, in ms.
    #[arg(long, env = "LOYALTY_IDEMPOTENCY_WAIT_MS", default_value_t = 5000)]
    idempotency_wait_ms: u64,
    /// Database connections (PostgreSQL).
    #[arg(long, env = "LOYALTY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    db_max_connections: u32,
    /// How long a batch of allocations or redemptions waits for a row lock before its
    /// requests run alone, in ms (PostgreSQL).
    #[arg(long, env = "LOYALTY_BATCH_LOCK_WAIT_MS", default_value_t = 200)]
    batch_lock_wait_ms: u64,
    /// The longest a group-commit batch may take before its requests are answered 503, in ms
    /// (never less than twice LOYALTY_IDEMPOTENCY_WAIT_MS).
    #[arg(long, env = "LOYALTY_WRITE_DEADLINE_MS", default_value_t = 10_000)]
    write_deadline_ms: u64,
    /// The longest one database statement may run, in ms (0: no bound).
    #[arg(
        long,
        env = "LOYALTY_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    db_statement_timeout_ms: u64,
    /// The most items one bulk issuance may carry.
    #[arg(long, env = "LOYALTY_BULK_MAX_ITEMS", default_value_t = 1000)]
    bulk_max_items: usize,
    /// Forget idempotency keys older than this (`48h`, `7d`); default: keep them forever.
    #[arg(long, env = "IDEMPOTENCY_RETENTION", value_parser = humantime::parse_duration)]
    idempotency_retention: Option<Duration>,
    /// How often expiry and the retention purge run, in seconds (0: never).
    #[arg(long, env = "LOYALTY_WORKER_INTERVAL_SECS", default_value_t = 60)]
    worker_interval_secs: u64,
    /// How long a request waits for a database connection before answering 503, in ms.
    #[arg(long, env = "LOYALTY_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5000)]
    db_acquire_timeout_ms: u64,
    /// Deliver webhooks to loopback, private and link-local addresses too.
    #[arg(long, env = "LOYALTY_WEBHOOK_ALLOW_PRIVATE", value_parser = switch, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    webhook_allow_private: bool,
    /// Waits before each automatic webhook retry, e.g. `5s,30s,2m,10m,1h,6h,24h`.
    #[arg(long, env = "LOYALTY_WEBHOOK_RETRY_SCHEDULE", value_parser = crate::engine::webhooks::parse_schedule)]
    webhook_retry_schedule: Option<crate::engine::webhooks::Schedule>,
    /// How long one webhook delivery may take, in ms.
    #[arg(long, env = "LOYALTY_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// The most webhook endpoints an organisation may have (deleted ones aside).
    #[arg(long, env = "LOYALTY_WEBHOOK_MAX_ENDPOINTS", default_value_t = 100)]
    webhook_max_endpoints: u64,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "LOYALTY_WORKERS", default_value_t = 0)]
    workers: usize,
    /// The most concurrent writes committed together in one transaction (0: each alone).
    #[arg(long, env = "LOYALTY_GROUP_COMMIT_MAX", default_value_t = 64)]
    group_commit_max: usize,
    /// How many allocation batches (and redemption batches) may be with the database at once.
    #[arg(long, env = "LOYALTY_GROUP_COMMIT_WRITERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    group_commit_writers: u16,
    /// How many of a writer's batches may be in flight (holding their locks, writing and
    /// committing) while its next batch runs its statements (0: one batch at a time).
    #[arg(long, env = "LOYALTY_GROUP_COMMIT_OVERLAP", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=4))]
    group_commit_overlap: u16,
    /// How long API keys, programs, strategies and webhook subscriptions are trusted in
    /// memory, in ms (0: not cached); API keys for at most 1000 whatever this says. Changes made
    /// on another instance are seen after this.
    #[arg(long, env = "LOYALTY_CACHE_TTL_MS", default_value_t = 1000)]
    cache_ttl_ms: u64,
    /// How many days before a lot expires its `currency.expiring` notice is written (0: no
    /// notices).
    #[arg(long, env = "LOYALTY_EXPIRY_NOTICE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=3650))]
    expiry_notice_days: u32,
    /// Requests per second each organisation may send to this instance, with bursts of twice
    /// that (0: no limit). Past it: 429 RATE_LIMITED with Retry-After.
    #[arg(long, env = "LOYALTY_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    rate_limit_per_second: u32,
    /// Failed authentications each client address may make per minute on this instance; past
    /// them, its requests with a key not already known here are 429 with Retry-After (0: no
    /// limit).
    #[arg(long, env = "LOYALTY_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    auth_failures_per_minute: u32,
    /// Take the client's address from the last X-Forwarded-For entry (only behind a proxy that
    /// sets it; otherwise a client could choose its own address).
    #[arg(long, env = "LOYALTY_TRUST_FORWARDED_FOR", value_parser = switch, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    trust_forwarded_for: bool,
}

/// A switch: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, in any case. Anything else is
/// refused at start, so a typo never silently means "off".
pub fn switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!(
            "{other:?} is not a switch: use 1/0, true/false, yes/no or on/off"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the HTTP server (the default).
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage organisations.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Load a demo organisation, program, strategies into an empty database; print its API key.
    Demo,
    /// Manage an organisation's API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a key; prints {"keyId", "name", "prefix", "apiKey", …} (the secret only this once).
    Create {
        #[arg(long)]
        org: i64,
        #[arg(long, default_value = "command line")]
        name: String,
    },
    /// List the organisation's keys, one JSON object per line (never their secrets).
    List {
        #[arg(long)]
        org: i64,
    },
    /// Revoke a key (not the organisation's last active one); running servers refuse it within
    /// a second.
    Revoke {
        #[arg(long)]
        org: i64,
        #[arg(long)]
        key_id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    /// Create an organisation with a fresh API key; prints {"orgId", "name", "apiKey"}.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        brand: Option<String>,
    },
}

fn settings(db: &DbArgs, serve: &ServeArgs) -> Settings {
    let mut s = Settings::new(db.database_url.clone(), serve.bind.clone());
    s.migrate = !serve.no_migrate;
    s.max_body_bytes = serve.max_body_bytes;
    s.idempotency_wait = Duration::from_millis(serve.idempotency_wait_ms.max(1));
    s.db_max_connections = serve.db_max_connections.max(1);
    s.batch_lock_wait = Duration::from_millis(serve.batch_lock_wait_ms.max(1));
    s.write_deadline = Duration::from_millis(serve.write_deadline_ms.max(1));
    s.db_statement_timeout = Duration::from_millis(serve.db_statement_timeout_ms);
    s.workers = serve.workers;
    s.bulk_max_items = serve.bulk_max_items.max(1);
    s.idempotency_retention = serve.idempotency_retention;
    s.worker_interval =
        (serve.worker_interval_secs > 0).then(|| Duration::from_secs(serve.worker_interval_secs));
    s.db_acquire_timeout = Duration::from_millis(serve.db_acquire_timeout_ms.max(1));
    s.webhooks.allow_private = serve.webhook_allow_private;
    if let Some(schedule) = &serve.webhook_retry_schedule {
        s.webhooks.retry_schedule = schedule.0.clone();
    } else if serve.demo {
        // The demo's endpoint refuses every delivery: without retries its events show FAILED
        // (and can be retried from the console) within seconds.
        s.webhooks.retry_schedule = Vec::new();
    }
    s.webhooks.timeout = Duration::from_millis(serve.webhook_timeout_ms.max(1));
    s.webhooks.max_endpoints = serve.webhook_max_endpoints.max(1);
    s.group_commit_max = serve.group_commit_max;
    s.group_commit_writers = usize::from(serve.group_commit_writers);
    s.group_commit_overlap = usize::from(serve.group_commit_overlap);
    s.cache_ttl = Duration::from_millis(serve.cache_ttl_ms);
    s.expiry_notice_days = serve.expiry_notice_days;
    s.rate_limit_per_second = serve.rate_limit_per_second;
    s.auth_failures_per_minute = serve.auth_failures_per_minute;
    s.trust_forwarded_for = serve.trust_forwarded_for;
    s
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loyalty: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loyalty: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        None => serve(&cli.db, &cli.serve, clock).await,
        Some(Command::Serve(args)) => serve(&cli.db, &args, clock).await,
        Some(Command::Migrate) => {
            crate::telemetry::init("warn", Sink::Stderr, cli.serve.log_format);
            let db = connect(&settings(&cli.db, &cli.serve))
                .await
                .map_err(|e| e.to_string())?;
            db.close().await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Orgs {
            command: OrgsCommand::Create { name, brand },
        }) => {
            crate::telemetry::init("warn", Sink::Stderr, cli.serve.log_format);
            let name = domain::catalog::parse_name(&name).map_err(|e| format!("--name {e}"))?;
            let db = connect(&settings(&cli.db, &cli.serve))
                .await
                .map_err(|e| e.to_string())?;
            let (org, key) =
                persistence::orgs::create_org(db.conn(), &name, brand.as_deref(), clock.now())
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::json!({"orgId": org.id, "name": org.name, "brand": org.brand, "apiKey": key.key})
            );
            db.close().await.map_err(|e| e.to_string())
        }
        Some(Command::Keys { command }) => {
            crate::telemetry::init("warn", Sink::Stderr, cli.serve.log_format);
            let db = connect(&settings(&cli.db, &cli.serve))
                .await
                .map_err(|e| e.to_string())?;
            let result = keys(&db, command, clock.now()).await;
            db.close().await.map_err(|e| e.to_string())?;
            result
        }
        Some(Command::Demo) => {
            crate::telemetry::init("warn", Sink::Stderr, cli.serve.log_format);
            let db = connect(&settings(&cli.db, &cli.serve))
                .await
                .map_err(|e| e.to_string())?;
            crate::demo::load_and_print(&db, clock.now(), &cli.serve.bind).await?;
            println!(
                "serve it and open the console: loyalty serve, then http://{}/console",
                cli.serve.bind
            );
            db.close().await.map_err(|e| e.to_string())
        }
    }
}

async fn keys(
    db: &persistence::Db,
    command: KeysCommand,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    use persistence::orgs;
    let show = |k: &orgs::ApiKeyRow, secret: Option<&str>| {
        let mut v = serde_json::json!({
            "keyId": k.id.to_string(), "orgId": k.org_id, "name": k.name,
            "prefix": format!("lk_{}", k.prefix), "createdAt": crate::engine::format::ts(k.created_at),
            "lastUsedAt": k.last_used_at.map(crate::engine::format::ts),
            "revokedAt": k.revoked_at.map(crate::engine::format::ts),
        });
        if let Some(secret) = secret {
            v["apiKey"] = secret.into();
        }
        v.to_string()
    };
    let known = |org: i64| async move {
        let exists = persistence::orgs::org_exists(db.conn(), org)
            .await
            .map_err(|e| e.to_string())?;
        if exists {
            Ok(())
        } else {
            Err(format!("--org {org}: no such organisation"))
        }
    };
    match command {
        KeysCommand::Create { org, name } => {
            let name = domain::catalog::parse_name(&name).map_err(|e| format!("--name {e}"))?;
            known(org).await?;
            let minted = orgs::create_api_key(db.conn(), org, &name, now)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", show(&minted.row, Some(&minted.key)));
        }
        KeysCommand::List { org } => {
            known(org).await?;
            let mut after = None;
            loop {
                let page = orgs::list_api_keys(db.conn(), org, after, 200)
                    .await
                    .map_err(|e| e.to_string())?;
                for k in &page.items {
                    println!("{}", show(k, None));
                }
                match page.next_cursor {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        KeysCommand::Revoke { org, key_id } => {
            let tx = db.begin().await.map_err(|e| e.to_string())?;
            match orgs::revoke_api_key(&tx, org, key_id, now)
                .await
                .map_err(|e| e.to_string())?
            {
                orgs::Revocation::Revoked(k) => {
                    persistence::Db::commit(tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("{}", show(&k, None));
                }
                orgs::Revocation::NotFound => {
                    return Err(format!("no active key {key_id} in organisation {org}"));
                }
                orgs::Revocation::LastActive => {
                    return Err(format!(
                        "key {key_id} is organisation {org}'s last active key; mint another first"
                    ));
                }
            }
        }
    }
    Ok(())
}

async fn serve(db: &DbArgs, args: &ServeArgs, clock: Arc<dyn Clock>) -> Result<(), String> {
    crate::telemetry::init("info", Sink::Stdout, args.log_format);
    let settings = settings(db, args);
    let app = Application::build(settings.clone(), clock.clone())
        .await
        .map_err(|e| e.to_string())?;
    let demo = if args.demo {
        crate::demo::load_and_print(app.db(), clock.now(), &settings.bind).await?
    } else {
        None
    };
    let backend = if settings.database_url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let host = settings
        .bind
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    if settings.webhooks.allow_private {
        tracing::warn!("webhooks may be delivered to loopback, private and link-local addresses");
    }
    let port = app.port();
    let local = match host {
        "0.0.0.0" | "[::]" => format!("http://127.0.0.1:{port}"),
        _ => format!("http://{host}:{port}"),
    };
    let server = tokio::spawn(app.run_until_stopped());
    if let Some(demo) = demo {
        crate::demo::activity(&local, &demo, clock.now()).await?;
        println!(
            "demo history made: customer mobile {} (try the console)",
            crate::demo::CUSTOMER
        );
    }
    if args.demo {
        println!("console: http://{host}:{port}/console (paste an API key)");
    }
    // Ready once the demo, if any, is in place.
    tracing::info!("loyalty ready to serve on http://{host}:{port} ({backend})");
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!("loyalty stopped");
    Ok(())
}
