//! Building and running the HTTP server. `loyalty serve` and the integration tests both go
//! through [`Application::build`], so the tests exercise exactly what production runs.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, web};
use persistence::{Db, DbOptions};

use crate::clock::Clock;
use crate::config::Settings;
use crate::error::ApiError;
use crate::routes;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// API keys, catalog and webhook subscriptions, trusted for `settings.cache_ttl`.
    pub caches: crate::cache::Caches,
    /// Currency allocations waiting to be group-committed.
    pub allocations: crate::group_commit::Queue<crate::allocate::AllocationRequest>,
    /// Currency redemptions waiting to be group-committed.
    pub redemptions: crate::group_commit::Queue<crate::redeem::RedemptionRequest>,
    /// Reward issuance requests (single and bulk) waiting to be group-committed.
    pub issuances: crate::group_commit::Queue<crate::issuance::IssueJob>,
    /// Idempotency-key look-ups (the replay path), answered a batch per query.
    pub key_lookups: crate::group_commit::Queue<crate::idempotent::KeyLookup>,
    /// Per-organisation rate limits of this instance; `None` when off.
    pub rate_limiter: Option<crate::rate_limit::Limiter>,
    /// Failed authentications per client address on this instance; `None` when unlimited.
    pub auth_failures: Option<crate::auth::FailureLimit>,
    /// How many requests that a batch could not decide may run alone at once (half the
    /// pool): they wait here rather than for a connection.
    pub alone_runs: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Keys created before this instant are forgotten (see `IDEMPOTENCY_RETENTION`).
    pub fn forget_before(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let retention = chrono::Duration::from_std(self.settings.idempotency_retention?).ok()?;
        self.now().checked_sub_signed(retention)
    }
}

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
            batch_connections: u32::try_from(settings.group_commit_writers)
                .unwrap_or(u32::MAX)
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
        crate::metrics::install();
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
        let group_commit_max = settings.group_commit_max;
        let writers = settings.group_commit_writers;
        let deadline = settings.batch_deadline();
        let alone_runs = usize::try_from(settings.db_max_connections / 2)
            .unwrap_or(1)
            .max(1);
        let caches = crate::cache::Caches::new(settings.cache_ttl);
        let rate_limiter = crate::rate_limit::Limiter::new(settings.rate_limit_per_second);
        let auth_failures = crate::auth::FailureLimit::new(settings.auth_failures_per_minute);
        let state = web::Data::from(Arc::new_cyclic(|state| AppState {
            db: db.clone(),
            clock,
            settings,
            caches,
            allocations: crate::group_commit::Queue::spawn(
                state.clone(),
                group_commit_max,
                writers,
                deadline,
            ),
            redemptions: crate::group_commit::Queue::spawn(
                state.clone(),
                group_commit_max,
                writers,
                deadline,
            ),
            issuances: crate::group_commit::Queue::spawn(
                state.clone(),
                group_commit_max,
                1,
                deadline,
            ),
            key_lookups: crate::group_commit::Queue::spawn(state.clone(), 256, 2, deadline),
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
        crate::openapi::document();
        let mut server =
            HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(web::QueryConfig::default().error_handler(|err, _| {
                        ApiError::validation("query", err.to_string()).into()
                    }))
                    .app_data(
                        web::PathConfig::default()
                            .error_handler(|_, _| ApiError::not_found("resource").into()),
                    )
                    .configure(routes::configure)
                    // Inside the observer, so a refused key is measured and logged too.
                    .wrap(actix_web::middleware::from_fn(crate::auth::authenticate))
                    .wrap_fn(observe_request)
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

/// The request id of a request: the client's `X-Request-Id` when it is 1 to 200 printable
/// ASCII characters, else a fresh UUID.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=200).contains(&v.len())
                && v.bytes().all(|b| (0x20..0x7f).contains(&b))
                && !v.trim().is_empty()
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

const REQUEST_ID: &str = "x-request-id";

/// Around every request: its id (taken or made, and returned as `X-Request-Id`), a root span
/// carrying that id so every log line written while serving it names it, the latency
/// histogram by method, route pattern and status, the idempotency outcome of keyed writes, and
/// one log line: method, path (never the query, which may carry identifiers), status and
/// duration. Headers are never logged, so neither is an API key.
fn observe_request<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    use tracing::Instrument as _;
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = std::time::Instant::now();
    let call = span.in_scope(|| srv.call(req));
    async move {
        let mut res = call.await?;
        let seconds = started.elapsed().as_secs_f64();
        let status = res.status().as_u16();
        crate::metrics::http(method.as_str(), &route, status, seconds);
        let mark = res
            .response()
            .extensions()
            .get::<crate::idempotent::IdempotencyMark>()
            .copied();
        if let Some(mark) = mark {
            crate::metrics::idempotency(mark.operation, mark.outcome);
        }
        let rate = res
            .request()
            .extensions()
            .get::<crate::rate_limit::RateState>()
            .copied();
        if let Some(rate) = rate {
            crate::rate_limit::headers(res.headers_mut(), rate);
        }
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
            res.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(REQUEST_ID),
                value,
            );
        }
        tracing::info!(%path, status, ms = seconds * 1e3, "request");
        Ok(res)
    }
    .instrument(span)
}

/// Why the server could not start; printed by `main` and nothing else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);
