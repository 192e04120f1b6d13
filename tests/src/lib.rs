//! Test harness: a fresh PostgreSQL database per test, cloned from a migrated template, and the
//! real application started on port 0 exactly as `loyalty serve` builds it.
//!
//! The server is `DATABASE_URL` when set, else `postgres://postgres@127.0.0.1:5432/postgres`
//! (`scripts/test` starts a throwaway cluster and sets `DATABASE_URL` when none answers there).

pub mod instances;

use std::sync::Arc;
use std::time::Duration;

use api::config::Settings;
pub use api::engine::clock;
use api::engine::clock::{Clock, ManualClock, SystemClock};
use api::startup::Application;
use persistence::{Db, DbOptions};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use serde_json::Value;

pub use reqwest::StatusCode;

/// The `loyalty` binary next to the test binary (scripts/test builds it first).
pub fn loyalty_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("loyalty");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p api --bin loyalty` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The PostgreSQL server the tests use (its maintenance database).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

async fn admin() -> DatabaseConnection {
    let mut opts = ConnectOptions::new(server_url());
    opts.max_connections(1)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30));
    Database::connect(opts)
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL (or 127.0.0.1:5432); run the suite with scripts/test")
}

async fn exec(conn: &DatabaseConnection, sql: &str) -> Result<(), sea_orm::DbErr> {
    conn.execute_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .map(|_| ())
}

/// The template's name: a stable hash (FNV-1a) of the migrations' names and sources.
fn template_name() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in migration::schema_version().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("loyalty_tpl_{hash:016x}")
}

/// Makes sure the migrated template exists, building it once under an advisory lock so that
/// parallel test processes build it only once. Templates of other schema versions are dropped.
async fn ensure_template(admin: &DatabaseConnection, template: &str) {
    exec(admin, "SELECT pg_advisory_lock(727274)")
        .await
        .expect("advisory lock");
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [template.into()],
        ))
        .await
        .expect("query pg_database")
        .is_some();
    if !exists {
        let stale = admin
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT datname FROM pg_database WHERE datname LIKE 'loyalty\\_tpl\\_%'".to_owned(),
            ))
            .await
            .unwrap_or_default();
        for row in stale {
            if let Ok(name) = row.try_get_by_index::<String>(0) {
                let _ = exec(admin, &format!("DROP DATABASE IF EXISTS \"{name}\"")).await;
            }
        }
        let building = format!("{template}_build");
        exec(admin, &format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .expect("drop build db");
        exec(admin, &format!("CREATE DATABASE {building}"))
            .await
            .expect("create build db");
        let db = Db::connect(
            &with_database(&server_url(), &building),
            &DbOptions::default(),
        )
        .await
        .expect("connect to template");
        db.migrate().await.expect("migrate template");
        db.close().await.expect("close template");
        exec(
            admin,
            &format!("ALTER DATABASE {building} RENAME TO {template}"),
        )
        .await
        .expect("rename template");
    }
    exec(admin, "SELECT pg_advisory_unlock(727274)")
        .await
        .expect("advisory unlock");
}

/// Creates a fresh database from the migrated template and returns its URL. Its name starts
/// with `loyalty_test_` and the run id `scripts/test` sets (`LOYALTY_TEST_RUN`), so that a run
/// drops its own databases and no one else's.
pub async fn fresh_database() -> String {
    let admin = admin().await;
    let template = template_name();
    let run = std::env::var("LOYALTY_TEST_RUN").unwrap_or_else(|_| "adhoc".to_owned());
    let run: String = run
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let name = format!("loyalty_test_{run}_{}", uuid::Uuid::new_v4().simple());
    // A concurrent clone of the same template can briefly make it "in use", and a concurrent
    // run may have replaced it: make sure it is there, and try again.
    let mut attempt = 0;
    loop {
        ensure_template(&admin, &template).await;
        match exec(
            &admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await
        {
            Ok(()) => break,
            Err(_) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database: {e}"),
        }
    }
    let _ = admin.close().await;
    with_database(&server_url(), &name)
}

/// Creates an empty database (no schema) and returns its URL.
pub async fn empty_database() -> String {
    let admin = admin().await;
    let run = std::env::var("LOYALTY_TEST_RUN").unwrap_or_else(|_| "adhoc".to_owned());
    let run: String = run
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let name = format!("loyalty_test_{run}_{}", uuid::Uuid::new_v4().simple());
    exec(
        &admin,
        &format!("CREATE DATABASE {name} TEMPLATE template0"),
    )
    .await
    .expect("create empty database");
    let _ = admin.close().await;
    with_database(&server_url(), &name)
}

/// A running application on its own database.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub database_url: String,
    pub client: reqwest::Client,
    /// A direct connection to the app's database, for checking what was written.
    pub db: Db,
    pub clock: Option<ManualClock>,
    handle: actix_web::dev::ServerHandle,
}

/// Options for [`TestApp::spawn_with`].
pub struct Spawn {
    pub clock: Option<ManualClock>,
    pub settings: Box<dyn FnOnce(&mut Settings)>,
}

impl Spawn {
    /// The default options with `settings` applied to the application's settings.
    pub fn settings(settings: impl FnOnce(&mut Settings) + 'static) -> Self {
        Self::default().with_settings(settings)
    }

    /// The default options with the application's time given by `clock`.
    pub fn clock(clock: ManualClock) -> Self {
        Self {
            clock: Some(clock),
            ..Self::default()
        }
    }

    /// These options with `settings` applied to the application's settings too (after any
    /// given before).
    pub fn with_settings(self, settings: impl FnOnce(&mut Settings) + 'static) -> Self {
        let before = self.settings;
        Self {
            settings: Box::new(move |s| {
                before(s);
                settings(s);
            }),
            ..self
        }
    }
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            clock: None,
            settings: Box::new(|_| {}),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Spawn::default()).await
    }

    pub async fn spawn_with(options: Spawn) -> Self {
        if std::env::var("TEST_LOG").is_ok() {
            api::telemetry::init(
                "debug",
                api::telemetry::Sink::Stdout,
                api::telemetry::LogFormat::Text,
            );
        }
        let database_url = fresh_database().await;
        Self::spawn_on(&database_url, options).await
    }

    /// Starts another instance of the application on an existing database.
    pub async fn spawn_on(database_url: &str, options: Spawn) -> Self {
        let mut settings = Settings::new(database_url, "127.0.0.1:0");
        settings.workers = 2;
        settings.migrate = false;
        // Background workers are driven by hand in tests (api::workers::expire_all …).
        settings.worker_interval = None;
        settings.webhook_interval = None;
        (options.settings)(&mut settings);
        let clock: Arc<dyn Clock> = match &options.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let app = Application::build(settings, clock)
            .await
            .expect("build application");
        let port = app.port();
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let db = Db::connect(
            database_url,
            &DbOptions {
                max_connections: 2,
                application_name: "loyalty-test",
                ..DbOptions::default()
            },
        )
        .await
        .expect("connect test db");
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            database_url: database_url.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            db,
            clock: options.clock,
            handle,
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Creates an organisation as `loyalty orgs create` does; returns (orgId, apiKey).
    pub async fn create_org(&self, name: &str) -> (i64, String) {
        let (org, key) =
            persistence::orgs::create_org(self.db.conn(), name, None, chrono::Utc::now())
                .await
                .expect("create org");
        (org.id, key.key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.post_with(path, key, body, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        key: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .header("X-API-KEY", key)
            .json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let req = self
            .client
            .post(self.url(path))
            .header("X-API-KEY", key)
            .header("Content-Type", content_type)
            .body(body);
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: &Value) -> Reply {
        Reply::from(
            self.client
                .patch(self.url(path))
                .header("X-API-KEY", key)
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// `DELETE path`, with an `Idempotency-Key` when given.
    pub async fn delete(&self, path: &str, key: &str, idempotency_key: Option<&str>) -> Reply {
        let mut req = self.client.delete(self.url(path)).header("X-API-KEY", key);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        Reply::from(
            self.client
                .get(self.url(path))
                .header("X-API-KEY", key)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Runs a query returning one integer (a count, a sum).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .conn()
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await
            .expect("query")
            .expect("one row");
        row.try_get_by_index::<Option<i64>>(0)
            .expect("integer")
            .unwrap_or(0)
    }

    /// Waits until a backend of the app's database waits on a lock (a request blocked on a
    /// transaction the test holds open), for at most 20 s.
    pub async fn until_a_backend_waits_on_a_lock(&self) {
        for _ in 0..2000 {
            let waiting = self
                .scalar(
                    "SELECT count(*)::bigint FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .await;
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nothing ever waited on the test's transaction");
    }

    /// Row counts of every table a write can touch: equal before and after a refused request.
    pub async fn row_counts(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for table in [
            "organisations",
            "programs",
            "program_currencies",
            "award_strategies",
            "expiry_strategies",
            "customers",
            "balances",
            "ledger_entries",
            "allocations",
            "idempotency_records",
            "rewards",
            "customer_reward_counts",
            "issuances",
            "vouchers",
            "redemptions",
            "holds",
            "hold_lots",
            "transfers",
            "earn_cap_counters",
            "reward_period_counters",
        ] {
            out.push((
                table.to_owned(),
                self.scalar(&format!("SELECT count(*)::bigint FROM {table}"))
                    .await,
            ));
        }
        out
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem's `code`.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// A catalog to allocate against: a program with POINTS (scale 2) and COINS (scale 0), a RATE
/// strategy of 0.1 (FLOOR, max 5000) on POINTS, and a 365-day expiry.
pub struct Catalog {
    pub program_id: i64,
    pub rate_id: i64,
    pub expiry_id: i64,
}

pub async fn setup_catalog(app: &TestApp, key: &str) -> Catalog {
    let p = app
        .post(
            "/v1/programs",
            key,
            &serde_json::json!({"name": "Marvel Rewards", "currencies": [{"code": "POINTS", "scale": 2}, {"code": "COINS", "scale": 0}]}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let program_id = p.body["programId"].as_i64().expect("programId");
    let a = app
        .post(
            &format!("/v1/programs/{program_id}/award-strategies"),
            key,
            &serde_json::json!({"name": "1 point per 10", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1", "rounding": "FLOOR", "minAward": "0", "maxAward": "5000"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let e = app
        .post(
            &format!("/v1/programs/{program_id}/expiry-strategies"),
            key,
            &serde_json::json!({"name": "1 year", "kind": "AFTER_DAYS", "days": 365}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.text);
    Catalog {
        program_id,
        rate_id: a.body["awardStrategyId"].as_i64().expect("awardStrategyId"),
        expiry_id: e.body["expiryStrategyId"]
            .as_i64()
            .expect("expiryStrategyId"),
    }
}

/// Creates a reward in `program_id`; returns its id.
pub async fn create_reward(app: &TestApp, key: &str, program_id: i64, body: Value) -> i64 {
    let r = app
        .post(&format!("/v1/programs/{program_id}/rewards"), key, &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["rewardId"].as_i64().expect("rewardId")
}

/// `"12.34"` (an amount of scale 2, as the API writes it) in minor units.
pub fn minor_units(v: &Value) -> i64 {
    let text = v.as_str().expect("a decimal string");
    let (whole, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().expect("whole") * 100 + frac[..2].parse::<i64>().expect("fraction")
}

/// The Capillary allocation body of API.md, for this catalog.
pub fn allocation_body(c: &Catalog, mobile: &str, source_value: Value, unique_id: &str) -> Value {
    serde_json::json!({
        "programId": c.program_id,
        "awardStrategyId": c.rate_id,
        "expiryStrategyId": c.expiry_id,
        "sourceValue": source_value,
        "eventName": "TransactionAdd",
        "eventSourceId": "BILL123",
        "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile", "identifierValue": mobile},
        "uniqueId": unique_id
    })
}

/// The ledger invariant for every account of the database, extended by the points lifecycle:
/// `available + held` = the sum of the ledger (credits and transfers in, minus debits,
/// expiries, reversals and transfers out; `HOLD` and `RELEASE` move between the two and count
/// for nothing) = the remaining of the lots; `held` = the held parts of the lots = what the
/// active holds hold; `pending` = what the pending allocations will credit; none negative;
/// each earn cap counter = what the strategy's allocations in its period still award.
/// Returns the accounts that break it, as text; empty when it holds.
pub async fn invariant_violations(app: &TestApp) -> Vec<String> {
    let sql = "WITH ledger AS ( \
          SELECT org_id, customer_id, program_id, currency, \
                 sum(CASE WHEN kind IN ('CREDIT', 'TRANSFER_IN') THEN amount \
                          WHEN kind IN ('HOLD', 'RELEASE') THEN 0 ELSE -amount END) AS net, \
                 sum(COALESCE(remaining, 0)) AS lots, sum(held) AS lots_held \
          FROM ledger_entries GROUP BY org_id, customer_id, program_id, currency), \
        holding AS ( \
          SELECT org_id, customer_id, program_id, currency, sum(held) AS held FROM holds \
          WHERE status = 'HELD' GROUP BY org_id, customer_id, program_id, currency), \
        promised AS ( \
          SELECT org_id, customer_id, program_id, currency, sum(amount - reversed_amount) AS pending \
          FROM allocations WHERE status = 'PENDING' GROUP BY org_id, customer_id, program_id, currency) \
        SELECT b.customer_id::text || '/' || b.currency || ': available ' || b.available || \
               ' held ' || b.held || ' pending ' || b.pending || ' ledger ' || COALESCE(l.net, 0) || \
               ' lots ' || COALESCE(l.lots, 0) || ' lots held ' || COALESCE(l.lots_held, 0) || \
               ' holds ' || COALESCE(h.held, 0) || ' pending allocations ' || COALESCE(p.pending, 0) \
        FROM balances b FULL JOIN ledger l USING (org_id, customer_id, program_id, currency) \
        LEFT JOIN holding h USING (org_id, customer_id, program_id, currency) \
        LEFT JOIN promised p USING (org_id, customer_id, program_id, currency) \
        WHERE COALESCE(b.available + b.held, -1) <> COALESCE(l.net, 0) \
           OR COALESCE(b.available + b.held, -1) <> COALESCE(l.lots, 0) \
           OR COALESCE(b.held, 0) <> COALESCE(l.lots_held, 0) \
           OR COALESCE(b.held, 0) <> COALESCE(h.held, 0) \
           OR COALESCE(b.pending, 0) <> COALESCE(p.pending, 0) \
           OR b.available < 0 OR b.held < 0 OR b.pending < 0";
    let mut broken: Vec<String> = app
        .db
        .conn()
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .expect("invariant query")
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap_or_default())
        .collect();
    // A lot never holds more than it has left, and every earmark points at a real lot part.
    let lots = "SELECT 'lot ' || e.id || ': remaining ' || e.remaining || ' held ' || e.held || \
          ' earmarked ' || COALESCE((SELECT sum(amount) FROM hold_lots hl WHERE hl.lot_id = e.id), 0) \
        FROM ledger_entries e WHERE e.held > COALESCE(e.remaining, 0) \
           OR e.held <> COALESCE((SELECT sum(amount) FROM hold_lots hl WHERE hl.lot_id = e.id), 0)";
    // Every earn cap counter holds what its strategy's allocations to that customer in that
    // period still award (their amounts less what reversals took back).
    let caps = "SELECT 'earn cap ' || c.period || ' ' || c.period_start || ' of ' || c.customer_id || \
          ': counted ' || c.awarded || ' allocated ' || COALESCE(( \
            SELECT sum(a.amount - a.reversed_amount) FROM allocations a \
            WHERE a.org_id = c.org_id AND a.award_strategy_id = c.award_strategy_id \
              AND a.customer_id = c.customer_id \
              AND CASE WHEN c.period = 'LIFETIME' THEN true \
                  ELSE date_trunc(lower(c.period), a.created_at, 'UTC') = c.period_start END), 0) \
        FROM earn_cap_counters c WHERE c.awarded <> COALESCE(( \
            SELECT sum(a.amount - a.reversed_amount) FROM allocations a \
            WHERE a.org_id = c.org_id AND a.award_strategy_id = c.award_strategy_id \
              AND a.customer_id = c.customer_id \
              AND CASE WHEN c.period = 'LIFETIME' THEN true \
                  ELSE date_trunc(lower(c.period), a.created_at, 'UTC') = c.period_start END), 0)";
    let sums = liability_sums_violations(DbBackend::Postgres);
    for (name, sql) in [
        ("lot", lots),
        ("earn cap", caps),
        ("liability sums", sums.as_str()),
    ] {
        broken.extend(
            app.db
                .conn()
                .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
                .await
                .unwrap_or_else(|e| panic!("{name} invariant query: {e}"))
                .into_iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap_or_default()),
        );
    }
    broken
}

/// SQL listing where the liability's sums (`ledger_month_sums`, `lot_month_sums`, merged or
/// not) differ from the ledger they sum: by organisation, program, currency, month written
/// and kind for the entries' amounts, and by month of expiry for the lots' points left.
pub fn liability_sums_violations(backend: DbBackend) -> String {
    let month = |c: &str| match backend {
        DbBackend::Postgres => format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM')"),
        _ => format!("strftime('%Y-%m', {c})"),
    };
    let (written, expires) = (month("created_at"), month("expires_at"));
    format!(
        "WITH want AS (SELECT org_id, program_id, currency, {written} AS month, kind, SUM(amount) AS amount \
           FROM ledger_entries GROUP BY 1, 2, 3, 4, 5 \
           UNION ALL SELECT org_id, program_id, currency, {expires}, 'lots', SUM(remaining) \
           FROM ledger_entries WHERE expires_at IS NOT NULL AND remaining > 0 GROUP BY 1, 2, 3, 4), \
         have AS (SELECT org_id, program_id, currency, month, kind, SUM(amount) AS amount \
           FROM ledger_month_sums GROUP BY 1, 2, 3, 4, 5 \
           UNION ALL SELECT org_id, program_id, currency, month, 'lots', SUM(remaining) \
           FROM lot_month_sums GROUP BY 1, 2, 3, 4), \
         w AS (SELECT org_id, program_id, currency, month, kind, SUM(amount) AS amount FROM want GROUP BY 1, 2, 3, 4, 5), \
         h AS (SELECT org_id, program_id, currency, month, kind, SUM(amount) AS amount FROM have GROUP BY 1, 2, 3, 4, 5), \
         keys AS (SELECT org_id, program_id, currency, month, kind FROM w UNION SELECT org_id, program_id, currency, month, kind FROM h) \
         SELECT 'liability sums ' || k.program_id || ' ' || k.currency || ' ' || k.month || ' ' || k.kind || \
                ': ledger ' || COALESCE(w.amount, 0) || ' sums ' || COALESCE(h.amount, 0) \
         FROM keys k \
         LEFT JOIN w ON w.org_id = k.org_id AND w.program_id = k.program_id AND w.currency = k.currency \
           AND w.month = k.month AND w.kind = k.kind \
         LEFT JOIN h ON h.org_id = k.org_id AND h.program_id = k.program_id AND h.currency = k.currency \
           AND h.month = k.month AND h.kind = k.kind \
         WHERE COALESCE(w.amount, 0) <> COALESCE(h.amount, 0)"
    )
}

/// Starts a transaction on its own connection that claims `operation`/`key` of `org` and does
/// not finish, as a concurrent request holding the key would. Dropping the returned pair rolls
/// it back.
pub async fn hold_key(
    app: &TestApp,
    org: i64,
    operation: &str,
    key: &str,
) -> (persistence::Db, persistence::Tx) {
    use persistence::ConnectionTrait;
    let holder = persistence::Db::connect(
        &app.database_url,
        &persistence::DbOptions {
            application_name: "loyalty-test",
            ..persistence::DbOptions::default()
        },
    )
    .await
    .expect("connect the key holder");
    let tx = holder.begin().await.expect("begin");
    tx.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "INSERT INTO idempotency_records (org_id, operation, key, fingerprint, request_fields, created_at) \
         VALUES ($1, $2, $3, 'x', '{}', now())",
        [org.into(), operation.into(), key.into()],
    ))
    .await
    .expect("claim the key");
    (holder, tx)
}
