//! The `loyalty` binary as operators use it: the embedded default, `orgs create`, `migrate`,
//! `demo`, and a clean exit on SIGTERM. (The HTTP behaviour is tested on PostgreSQL in `tests/`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn loyalty(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loyalty"));
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info");
    cmd
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loyalty-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn orgs_create_prints_one_json_object_and_defaults_to_an_embedded_file() {
    let dir = temp_dir("orgs");
    let out = loyalty(&dir)
        .args(["orgs", "create", "--name", "Acme", "--brand", "acme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(json["name"], "Acme");
    assert!(json["orgId"].is_i64());
    assert!(json["apiKey"].as_str().unwrap().starts_with("lk_"));
    assert!(
        dir.join("loyalty.db").exists(),
        "the default database is loyalty.db in the working directory"
    );
    let db = std::fs::read(dir.join("loyalty.db")).unwrap();
    let key = json["apiKey"].as_str().unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "API keys are stored hashed"
    );
    let migrate = loyalty(&dir).arg("migrate").output().unwrap();
    assert!(migrate.status.success());
    let bad = loyalty(&dir)
        .args(["orgs", "create", "--name", "   "])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_with_demo_logs_ready_answers_and_exits_cleanly_on_sigterm() {
    let dir = temp_dir("serve");
    let mut child = loyalty(&dir)
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut key, mut address) = (None, None);
    while address.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(k) = line.strip_prefix("demo API key: ") {
            key = Some(k.trim().to_owned());
        }
        if let Some(i) = line.find("ready to serve on http://") {
            let rest = &line[i + "ready to serve on http://".len()..];
            address = Some(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let address = address.expect("a ready line");
    let key = key.expect("the demo key is printed");
    // The demo key works: list the demo programs over plain HTTP.
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /v1/programs HTTP/1.1\r\nHost: x\r\nX-API-KEY: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Demo Rewards"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
