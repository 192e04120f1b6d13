//! The server killed (SIGKILL) while requests are in flight, then started again: retrying every
//! request gives each effect exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{StatusCode, fresh_database, loyalty_binary};

struct Server {
    child: Child,
    address: String,
}

fn start(database_url: &str) -> Server {
    let mut child = Command::new(loyalty_binary())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--worker-interval-secs",
            "0",
            "--database-url",
            database_url,
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start loyalty");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = lines.next().expect("server output").expect("line");
        if let Some(i) = line.find("ready to serve on http://") {
            let rest = &line[i + "ready to serve on http://".len()..];
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no ready line");
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        address: format!("http://{address}"),
    }
}

fn create_org(database_url: &str) -> String {
    let out = Command::new(loyalty_binary())
        .args([
            "orgs",
            "create",
            "--name",
            "Crash",
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
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    json["apiKey"].as_str().expect("apiKey").to_owned()
}

async fn post(
    client: &reqwest::Client,
    url: String,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let r = client
        .post(url)
        .header("X-API-KEY", key)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_request_never_issues_twice() {
    let database_url = fresh_database().await;
    let key = create_org(&database_url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = start(&database_url);
    let base = server.address.clone();
    let (s, program) = post(
        &client,
        format!("{base}/v1/programs"),
        &key,
        &json!({"name": "P", "currencies": [{"code": "POINTS", "scale": 2}]}),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let pid = program["programId"].as_i64().unwrap();
    let (_, award) = post(
        &client,
        format!("{base}/v1/programs/{pid}/award-strategies"),
        &key,
        &json!({"name": "fixed", "currency": "POINTS", "kind": "FIXED", "points": "1.25"}),
    )
    .await
    .unwrap();
    let (_, expiry) = post(
        &client,
        format!("{base}/v1/programs/{pid}/expiry-strategies"),
        &key,
        &json!({"name": "never", "kind": "NEVER"}),
    )
    .await
    .unwrap();
    let (_, reward) = post(
        &client,
        format!("{base}/v1/programs/{pid}/rewards"),
        &key,
        &json!({"name": "R", "stock": 4000}),
    )
    .await
    .unwrap();
    let rid = reward["rewardId"].as_i64().unwrap();

    let bulks: Vec<Value> = (0..4)
        .map(|b| json!({
            "mobile": format!("91980000{b:04}"),
            "rewards": (0..1000).map(|i| json!({"rewardId": rid, "quantity": 1, "requestId": format!("b{b}-{i}")})).collect::<Vec<_>>(),
        }))
        .collect();
    let allocations: Vec<Value> = (0..40)
        .map(|i| json!({"programId": pid, "awardStrategyId": award["awardStrategyId"], "expiryStrategyId": expiry["expiryStrategyId"],
                        "sourceValue": 1, "mobile": "919876543210", "uniqueId": format!("alloc-{i}")}))
        .collect();

    // Everything at once, and the server killed while it is working: once a few allocations
    // have answered, so that some effects are committed and others are cut off mid-way.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let in_flight = {
        let answered = answered.clone();
        let client = client.clone();
        let key = key.clone();
        let base = base.clone();
        let bulks = bulks.clone();
        let allocations = allocations.clone();
        tokio::spawn(async move {
            let a = futures_util::future::join_all(
                bulks
                    .iter()
                    .map(|b| post(&client, format!("{base}/v1/rewards/issue/bulk"), &key, b)),
            );
            let b = futures_util::future::join_all(allocations.iter().map(|b| async {
                let r = post(&client, format!("{base}/v1/currency/allocations"), &key, b).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            }));
            tokio::join!(a, b)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut server = server;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    if let Ok((bulk_replies, allocation_replies)) = in_flight.await {
        let answered = |v: &[Result<(StatusCode, Value), reqwest::Error>]| {
            v.iter().filter(|r| r.is_ok()).count()
        };
        eprintln!(
            "before the kill: {}/4 bulk requests and {}/40 allocations answered",
            answered(&bulk_replies),
            answered(&allocation_replies)
        );
    }

    // Start again and retry everything: every effect exactly once.
    let mut server = start(&database_url);
    let base = server.address.clone();
    for b in &bulks {
        let (s, body) = post(&client, format!("{base}/v1/rewards/issue/bulk"), &key, b)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["summary"]["failed"], 0, "{}", body["summary"]);
    }
    for a in &allocations {
        let (s, _) = post(&client, format!("{base}/v1/currency/allocations"), &key, a)
            .await
            .unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::ACCEPTED, "{s}");
    }
    let r = client
        .get(format!("{base}/v1/rewards/{rid}"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    let reward: Value = r.json().await.unwrap();
    assert_eq!(
        (reward["stock"].as_i64(), reward["issued"].as_i64()),
        (Some(0), Some(4000))
    );
    let r = client
        .get(format!(
            "{base}/v1/customers/lookup?identifierType=mobile&identifierValue=919876543210"
        ))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    let customer: Value = r.json().await.unwrap();
    assert_eq!(
        customer["balances"][0]["available"], "50.00",
        "40 allocations of 1.25, each once"
    );
    server.child.kill().ok();
    server.child.wait().ok();
}
