//! Building and running the HTTP server. `loyalty serve` and the integration tests both go
//! through [`Application::build`], so the tests exercise exactly what production runs.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use persistence::{Db, DbOptions};

use crate::app::AppError;
use crate::app::AppState;
use crate::config::Settings;
use crate::engine::clock::Clock;
use crate::http;

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
}

/// Connects to the database of `settings` and migrates it when asked to.
pub async fn connect(settings: &Settings) -> Result<Db, persistence::PersistenceError> {
    let db = Db::connect(
        &settings.database_url,
        &DbOptions {
            max_connections: settings.db_max_connections,
            lock_wait: settings.idempotency_wait,
            acquire_timeout: settings.db_acquire_timeout,
            batch_lock_wait: settings.batch_lock_wait,
            // Each writer of the allocations and of the redemptions has one batch running its
            // statements and up to `overlap` committing.
            batch_connections: u32::try_from(settings.group_commit_writers)
                .unwrap_or(u32::MAX)
                .saturating_mul(
                    u32::try_from(settings.group_commit_overlap)
                        .unwrap_or(u32::MAX)
                        .saturating_add(1),
                )
                .saturating_mul(2)
                .saturating_add(1),
            statement_timeout: settings.db_statement_timeout,
            ..DbOptions::default()
        },
    )
    .await?;
    if settings.migrate {
        db.migrate().await?;
    }
    Ok(db)
}

impl Application {
    /// Connects, migrates (unless told not to), binds `settings.bind` and prepares the server.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        crate::engine::metrics::install();
        let db = connect(&settings)
            .await
            .map_err(|e| StartupError(e.to_string()))?;
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| StartupError(format!("cannot bind {}: {e}", settings.bind)))?;
        Self::with_listener(settings, clock, db, listener)
    }

    pub fn with_listener(
        settings: Settings,
        clock: Arc<dyn Clock>,
        db: Db,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let port = listener
            .local_addr()
            .map_err(|e| StartupError(e.to_string()))?
            .port();
        let workers = settings.workers;
        let deadline = settings.batch_deadline();
        let writers = crate::engine::group_commit::Writers {
            max_batch: settings.group_commit_max,
            writers: settings.group_commit_writers,
            overlap: settings.group_commit_overlap,
            // Half a full batch: with fewer waiting, the batch in flight takes them next.
            overlap_from: (settings.group_commit_max / 2).max(1),
            deadline,
        };
        let one_writer = crate::engine::group_commit::Writers {
            writers: 1,
            overlap: 0,
            ..writers
        };
        let alone_runs = usize::try_from(settings.db_max_connections / 2)
            .unwrap_or(1)
            .max(1);
        let caches = crate::engine::cache::Caches::new(settings.cache_ttl);
        let rate_limiter = crate::engine::rate_limit::Limiter::new(settings.rate_limit_per_second);
        let auth_failures =
            crate::engine::rate_limit::FailureLimit::new(settings.auth_failures_per_minute);
        let state = web::Data::from(Arc::new_cyclic(|state| AppState {
            db: db.clone(),
            clock,
            settings,
            caches,
            allocations: crate::engine::group_commit::Queue::spawn(state.clone(), writers),
            allocation_replays: Default::default(),
            redemptions: crate::engine::group_commit::Queue::spawn(state.clone(), writers),
            redemption_replays: Default::default(),
            issuances: crate::engine::group_commit::Queue::spawn(state.clone(), one_writer),
            key_lookups: crate::engine::group_commit::Queue::spawn(
                state.clone(),
                crate::engine::group_commit::Writers {
                    max_batch: 256,
                    writers: 2,
                    ..one_writer
                },
            ),
            rate_limiter,
            auth_failures,
            alone_runs: Arc::new(tokio::sync::Semaphore::new(alone_runs)),
        }));
        if let Some(interval) = state.settings.worker_interval {
            crate::workers::spawn(state.clone().into_inner(), interval);
        }
        if let Some(interval) = state.settings.webhook_interval {
            crate::workers::spawn_webhooks(state.clone().into_inner(), interval);
        }
        // The OpenAPI document is built once, here, not by the first request that asks for it.
        crate::http::openapi::document();
        let mut server =
            HttpServer::new(move || {
                // Runs on each worker's thread: its key look-ups get a connection of their own.
                actix_web::rt::spawn(crate::app::write::lookups::serve_worker(
                    state.clone().into_inner(),
                ));
                App::new()
                    .app_data(state.clone())
                    .app_data(web::QueryConfig::default().error_handler(|err, _| {
                        AppError::validation("query", err.to_string()).into()
                    }))
                    .app_data(
                        web::PathConfig::default()
                            .error_handler(|_, _| AppError::not_found("resource").into()),
                    )
                    .configure(http::configure)
                    // Inside the observer, so a refused key is measured and logged too.
                    .wrap(actix_web::middleware::from_fn(
                        crate::http::auth::authenticate,
                    ))
                    .wrap_fn(crate::http::middleware::observe_request)
            })
            .listen(listener)
            .map_err(|e| StartupError(e.to_string()))?
            .shutdown_timeout(30);
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until SIGTERM/SIGINT (or the server handle is stopped), finishing requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// A handle to stop the server from elsewhere (tests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// Why the server could not start; printed by `main` and nothing else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);
