//! The server process, the bench database and what PostgreSQL counted.

use super::*;

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

pub(crate) fn build_server(root: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the release server (cargo build --release -p api --bin loyalty) ...");
    let started = Instant::now();
    let mut build = Command::new(&cargo);
    build
        .args(["build", "--release", "-q", "-p", "api", "--bin", "loyalty"])
        .current_dir(root);
    // `cargo bench` gave this process the variables it sets for a bench (CARGO_MANIFEST_DIR,
    // CARGO_PKG_*, ...). Build scripts (ring's, through cc) ask to be rerun when those change,
    // so passing them on rebuilt half the dependency tree on every run, and the next
    // `cargo bench` rebuilt it back.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_MAKEFLAGS",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name.as_ref())
        {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", cargo.to_string_lossy())));
    if !status.success() {
        fail(&format!("building the server failed ({status})"));
    }
    eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
}

/// The `loyalty serve` child; killed when dropped, also on a panic.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn start(
        binary: &Path,
        database_url: &str,
        log: PathBuf,
        env: &[(String, String)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        let out = File::create(&log)
            .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", log.display())));
        let err = out.try_clone().expect("duplicate the log file handle");
        let child = Command::new(binary)
            .args(["serve", "--database-url", database_url, "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start {}: {e}", binary.display())));
        Self {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Panics (with the log's tail) when the server has exited.
    pub(crate) fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "the server exited ({status}); end of {}:\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }

    pub(crate) async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.base);
        loop {
            self.check_alive();
            if let Ok(r) = client.get(&url).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become ready within 60 s (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `VmHWM` (peak resident set) in kB.
    pub(crate) fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets `VmHWM` to the current RSS; false when the kernel refuses.
    pub(crate) fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark's database; dropped (`WITH (FORCE)`) when this is dropped, unless kept.
pub(crate) struct BenchDatabase {
    pub(crate) url: String,
    pub(crate) server_url: String,
    pub(crate) keep: bool,
}

pub(crate) fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or_default().to_owned()
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if self.keep {
            println!("\ndatabase kept: {}", self.url);
            return;
        }
        let name = database_name(&self.url);
        let server = self.server_url.clone();
        // A runtime of its own, on a thread of its own: this may run while another runtime
        // unwinds.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let conn = connect(&server, 1).await.map_err(|e| e.to_string())?;
                exec(
                    &conn,
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                )
                .await
                .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("load bench: could not drop {}: {e}", self.url),
            Err(_) => eprintln!("load bench: could not drop {}", self.url),
        }
    }
}

pub(crate) async fn connect(
    url: &str,
    connections: u32,
) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(connections)
        .min_connections(0)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30));
    Database::connect(opts).await
}

pub(crate) async fn exec<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<u64, sea_orm::DbErr> {
    conn.execute_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .map(|r| r.rows_affected())
}

/// The first column of the first row, as text.
pub(crate) async fn query_text<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
) -> Result<String, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom(format!("no row from {sql}")))?;
    row.try_get_by_index::<String>(0)
}

/// What PostgreSQL wrote and read while a scenario ran, to say where a grown database's time
/// goes: WAL (and the full-page images in it, logged at the first change of a page after a
/// checkpoint), WAL flushes, and table or index pages not found in `shared_buffers`. Counted
/// per ledger entry id drawn from the sequence, i.e. per allocation made (the service's and
/// pgbench's alike); cluster-wide, so nothing else should run.
#[derive(Clone, Copy, Default)]
pub(crate) struct DbCounters {
    pub(crate) entries: f64,
    pub(crate) wal_bytes: f64,
    pub(crate) wal_fpi: f64,
    pub(crate) wal_syncs: f64,
    pub(crate) blocks_read: f64,
}

impl DbCounters {
    pub(crate) async fn read<C: ConnectionTrait>(conn: &C) -> Option<Self> {
        let text = query_text(
            conn,
            "SELECT concat_ws(' ', (SELECT last_value FROM ledger_entries_id_seq), \
                    w.wal_bytes, w.wal_fpi, w.wal_sync, \
                    (SELECT blks_read FROM pg_stat_database WHERE datname = current_database())) \
             FROM pg_stat_wal w",
        )
        .await
        .ok()?;
        let v: Vec<f64> = text
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match v[..] {
            [entries, wal_bytes, wal_fpi, wal_syncs, blocks_read] => Some(Self {
                entries,
                wal_bytes,
                wal_fpi,
                wal_syncs,
                blocks_read,
            }),
            _ => None,
        }
    }

    /// Per allocation between `self` (before) and `after`.
    pub(crate) fn per_allocation(self, after: Self) -> Option<String> {
        let n = after.entries - self.entries;
        (n > 0.0).then(|| {
            format!(
                "{:.1} KB WAL, {:.2} full-page images, {:.2} WAL flushes, {:.2} blocks read",
                (after.wal_bytes - self.wal_bytes) / n / 1024.0,
                (after.wal_fpi - self.wal_fpi) / n,
                (after.wal_syncs - self.wal_syncs) / n,
                (after.blocks_read - self.blocks_read) / n,
            )
        })
    }
}
