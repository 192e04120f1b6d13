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
    let (mut key, mut address, mut console) = (None, None, None);
    while address.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(k) = line.strip_prefix("demo API key: ") {
            key = Some(k.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("console: ") {
            console = url.split_whitespace().next().map(str::to_owned);
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
    // The console's address is printed, and the demo customer has a history to show there.
    let console = console.expect("the console's address is printed");
    assert_eq!(console, format!("http://{address}/console"));
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /v1/customers/lookup?identifierType=mobile&identifierValue=919876543210 HTTP/1.1\r\n\
         Host: x\r\nX-API-KEY: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""held":"100.00""#), "{response}");

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

/// Starts `loyalty serve` on a fresh embedded database with `env`; returns the child, the lines
/// it wrote before its ready line (that line included) and the address it serves on.
fn serve_with(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    Vec<String>,
    String,
    std::path::PathBuf,
    std::sync::mpsc::Receiver<String>,
) {
    let dir = temp_dir(name);
    let mut cmd = loyalty(&dir);
    cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let address = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a ready line");
        lines.push(line.clone());
        if let Some(i) = line.find("ready to serve on http://") {
            let rest = &line[i + "ready to serve on http://".len()..];
            break rest
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    (child, lines, address, dir, rx)
}

fn stop(mut child: std::process::Child, dir: std::path::PathBuf) {
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn switches_accept_one_zero_true_false_yes_no_on_off() {
    const WARNING: &str = "webhooks may be delivered to loopback";
    let cases = [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("on", true),
        ("ON", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("off", false),
    ];
    for (value, on) in cases {
        let (child, lines, _, dir, _) =
            serve_with("switch", &[], &[("LOYALTY_WEBHOOK_ALLOW_PRIVATE", value)]);
        assert_eq!(
            lines.iter().any(|l| l.contains(WARNING)),
            on,
            "LOYALTY_WEBHOOK_ALLOW_PRIVATE={value}: {lines:?}"
        );
        stop(child, dir);
    }
    // Anything else is refused at start, naming the accepted spellings.
    let dir = temp_dir("switch-bad");
    let out = loyalty(&dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("LOYALTY_WEBHOOK_ALLOW_PRIVATE", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1/0, true/false, yes/no or on/off"),
        "{stderr}"
    );
    // The flag alone still means on.
    let (child, lines, _, dir, _) = serve_with("switch-flag", &["--webhook-allow-private"], &[]);
    assert!(lines.iter().any(|l| l.contains(WARNING)), "{lines:?}");
    stop(child, dir);
}

#[test]
fn json_logs_carry_the_request_id_and_never_the_key() {
    let (mut child, before, address, dir, rx) = serve_with(
        "json-logs",
        &["--demo"],
        &[("LOYALTY_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let key = before
        .iter()
        .find_map(|l| l.strip_prefix("demo API key: "))
        .expect("the demo key is printed")
        .trim()
        .to_owned();
    let get = |key: &str, id: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "GET /v1/programs HTTP/1.1\r\nHost: x\r\nX-API-KEY: {key}\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let ok = get(&key, "cli-trace-1");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("x-request-id: cli-trace-1"),
        "{ok}"
    );
    let refused = get("lk_not_a_key_0000000000000000000000000000", "cli-trace-2");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    // Stop, then read everything the server wrote.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let after: Vec<String> = rx.into_iter().collect();
    // Log lines are JSON objects; the only other lines are what `--demo` prints for a person.
    let mut logs = Vec::new();
    for line in before.iter().chain(&after) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => logs.push((line, v)),
            _ => assert!(
                before.contains(line) && !line.contains("INFO") && !line.contains("DEBUG"),
                "a log line that is not JSON: {line}"
            ),
        }
    }
    let in_request = |id: &str| {
        logs.iter()
            .filter(|(_, v)| {
                v["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == id))
            })
            .count()
    };
    // The request's own line and the lines written while serving it (the key check's) name it.
    assert!(in_request("cli-trace-1") >= 2, "{after:?}");
    assert!(in_request("cli-trace-2") >= 2, "{after:?}");
    assert!(
        logs.iter()
            .any(|(_, v)| v["message"] == "request" && v["status"] == 200)
    );
    for (line, _) in &logs {
        assert!(!line.contains(&key), "the API key is logged: {line}");
        assert!(
            !line.contains("lk_not_a_key"),
            "a presented key is logged: {line}"
        );
    }
}
