//! Several `loyalty serve` processes on one database, as a deployment runs them: started from
//! the real binary, killed without warning (SIGKILL) and started again, and their database
//! connections cut from the server's side.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

use crate::{loyalty_binary, server_url};

/// One running `loyalty serve`. Dropping it kills it.
pub struct Instance {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

/// Starts `loyalty serve` on `database_url` (already migrated) with `args` added, on a free
/// port, and waits for its "ready to serve on" line. Everything it prints (stdout and stderr)
/// is appended to `log`. Blocking: call it from `spawn_blocking` in async code.
pub fn start(database_url: &str, args: &[&str], log: &Path) -> Instance {
    let err = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the instance's log");
    let mut child = Command::new(loyalty_binary())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--no-migrate",
            "--database-url",
            database_url,
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start loyalty");
    let stdout = child.stdout.take().expect("stdout");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the instance's log");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("loyalty exited before it was ready; see {}", log.display()))
            .expect("a line of output");
        let _ = writeln!(out, "{line}");
        if let Some(i) = line.find("ready to serve on http://") {
            let rest = &line[i + "ready to serve on http://".len()..];
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no ready line in {}",
            log.display()
        );
    };
    // Keep draining stdout into the log so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
        }
    });
    Instance {
        child,
        address: format!("http://{address}"),
    }
}

impl Instance {
    /// How the process ended, if it has (a process this test did not kill must not have).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reaps the process: no request in flight is finished, nothing is flushed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log file for instance `n` of a run named `run`, emptied, in the temporary directory.
pub fn log_path(run: &str, n: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("loyalty-{run}-instance-{n}.log"));
    let _ = File::create(&path);
    path
}

/// Creates an organisation as `loyalty orgs create` does; returns its API key.
pub fn create_org(database_url: &str, name: &str) -> String {
    let out = Command::new(loyalty_binary())
        .args([
            "orgs",
            "create",
            "--name",
            name,
            "--database-url",
            database_url,
        ])
        .output()
        .expect("orgs create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    json["apiKey"].as_str().expect("apiKey").to_owned()
}

/// The database name of a URL (`postgres://…/name?…` → `name`).
fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Terminates every connection to `database_url`'s database (`pg_terminate_backend`), as a
/// failover or a network cut would; returns how many were cut.
pub async fn cut_connections(database_url: &str) -> Result<i64, sea_orm::DbErr> {
    let admin = Database::connect(server_url()).await?;
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            [database_name(database_url).into()],
        ))
        .await?;
    let _ = admin.close().await;
    Ok(row
        .and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .unwrap_or(0))
}
