//! The organisation, catalog and customers the scenarios use, and the HTTP client.

use super::*;

pub(crate) struct OrgInfo {
    pub(crate) org_id: i64,
    pub(crate) api_key: String,
}

pub(crate) fn create_org(binary: &Path, database_url: &str) -> OrgInfo {
    let out = Command::new(binary)
        .args([
            "orgs",
            "create",
            "--name",
            "Bench",
            "--database-url",
            database_url,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run loyalty orgs create: {e}")));
    assert!(
        out.status.success(),
        "loyalty orgs create failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!("loyalty orgs create printed {line:?}, not one JSON object: {e}")
    });
    OrgInfo {
        org_id: v["orgId"]
            .as_i64()
            .expect("orgId in the output of orgs create"),
        api_key: v["apiKey"]
            .as_str()
            .expect("apiKey in the output of orgs create")
            .to_owned(),
    }
}

/// Everything the load tasks share.
pub(crate) struct Ctx {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: String,
    pub(crate) program_id: i64,
    pub(crate) award_id: i64,
    pub(crate) expiry_id: i64,
    pub(crate) rewards: Vec<i64>,
    pub(crate) mobiles: Vec<String>,
    /// Allocation bodies already sent once: replaying them answers 202.
    pub(crate) pool: Vec<Vec<u8>>,
}

impl Ctx {
    pub(crate) async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-API-KEY", &self.key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        Ok((status, body.to_vec()))
    }

    /// A setup request that must succeed with `expect`; returns the answer's JSON.
    pub(crate) async fn must_post(&self, path: &str, body: &Value, expect: StatusCode) -> Value {
        let bytes = serde_json::to_vec(body).expect("serialise a request body");
        match self.post(path, bytes).await {
            Ok((status, answer)) if status == expect => {
                serde_json::from_slice(&answer).expect("a JSON answer")
            }
            Ok((status, answer)) => panic!(
                "setup: POST {path} answered {status}, expected {expect}: {}",
                String::from_utf8_lossy(&answer)
            ),
            Err(e) => panic!("setup: POST {path}: {e}"),
        }
    }

    pub(crate) fn allocation_body(
        &self,
        mobile: &str,
        source_value: u64,
        unique_id: &str,
    ) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "programId": self.program_id,
            "awardStrategyId": self.award_id,
            "expiryStrategyId": self.expiry_id,
            "sourceValue": source_value,
            "eventName": "TransactionAdd",
            "eventSourceId": "BILL123",
            "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile", "identifierValue": mobile},
            "uniqueId": unique_id,
        }))
        .expect("serialise an allocation")
    }
}

/// One load task's own keep-alive HTTP/1.1 connection to the server: hyper's client connection,
/// without reqwest's pool, URL parsing and per-request header building, so that the load
/// generator takes less of the CPU it shares with the server and PostgreSQL (with reqwest it
/// took 37 µs per replay, a third of the machine's busy time). Reconnects after an error.
pub(crate) struct HttpConn {
    pub(crate) addr: String,
    pub(crate) host: HeaderValue,
    pub(crate) key: HeaderValue,
    pub(crate) sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    pub(crate) fn new(base: &str, ctx: &Ctx) -> Self {
        let addr = base.strip_prefix("http://").unwrap_or(base).to_owned();
        Self {
            host: HeaderValue::from_str(&addr).expect("the server's address as a Host header"),
            key: HeaderValue::from_str(&ctx.key).expect("the API key as a header value"),
            addr,
            sender: None,
        }
    }

    pub(crate) async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    pub(crate) async fn post(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let result = self.exchange(path, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    pub(crate) async fn exchange(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(self.connect().await?),
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        let mut request = hyper::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(hyper::header::HOST, self.host.clone());
        headers.insert("x-api-key", self.key.clone());
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    }
}

/// ` (A)` after a scenario's name in an alternating run, nothing otherwise.
pub(crate) fn labelled(pass: &str) -> String {
    if pass.is_empty() {
        String::new()
    } else {
        format!(" ({pass})")
    }
}

pub(crate) fn mobile(i: usize) -> String {
    format!("9190000{i:05}")
}

pub(crate) async fn setup_catalog(client: reqwest::Client, base: String, key: String) -> Ctx {
    let mut ctx = Ctx {
        client,
        base,
        key,
        program_id: 0,
        award_id: 0,
        expiry_id: 0,
        rewards: Vec::new(),
        mobiles: (0..CUSTOMERS).map(mobile).collect(),
        pool: Vec::new(),
    };
    let p = ctx
        .must_post(
            "/v1/programs",
            &json!({"name": "Bench", "currencies": [{"code": "POINTS", "scale": 2}]}),
            StatusCode::CREATED,
        )
        .await;
    ctx.program_id = p["programId"].as_i64().expect("programId");
    let a = ctx
        .must_post(
            &format!("/v1/programs/{}/award-strategies", ctx.program_id),
            &json!({"name": "1 point per 10", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1", "rounding": "FLOOR"}),
            StatusCode::CREATED,
        )
        .await;
    ctx.award_id = a["awardStrategyId"].as_i64().expect("awardStrategyId");
    let e = ctx
        .must_post(
            &format!("/v1/programs/{}/expiry-strategies", ctx.program_id),
            &json!({"name": "1 year", "kind": "AFTER_DAYS", "days": 365}),
            StatusCode::CREATED,
        )
        .await;
    ctx.expiry_id = e["expiryStrategyId"].as_i64().expect("expiryStrategyId");
    for i in 0..REWARDS {
        let r = ctx
            .must_post(
                &format!("/v1/programs/{}/rewards", ctx.program_id),
                &json!({"name": format!("Reward {i}"), "stock": null, "perCustomerLimit": null}),
                StatusCode::CREATED,
            )
            .await;
        ctx.rewards.push(r["rewardId"].as_i64().expect("rewardId"));
    }
    ctx
}

/// Enrolls the customers with one allocation each (8 at a time); returns the bodies sent.
pub(crate) async fn enrol_customers(ctx: &Ctx) -> Vec<Vec<u8>> {
    use futures_util::StreamExt;
    let mut rng = Rng::new();
    let bodies: Vec<Vec<u8>> = ctx
        .mobiles
        .iter()
        .enumerate()
        .map(|(i, m)| ctx.allocation_body(m, rng.range(1, 10_000), &format!("bench-pool-{i}")))
        .collect();
    let answers: Vec<Result<(StatusCode, Vec<u8>), String>> =
        futures_util::stream::iter(bodies.iter().cloned())
            .map(|body| ctx.post("/v1/currency/allocations", body))
            .buffer_unordered(8)
            .collect()
            .await;
    for answer in answers {
        match answer {
            Ok((StatusCode::CREATED, _)) => {}
            Ok((status, body)) => panic!(
                "setup: enrolling allocation answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => panic!("setup: enrolling allocation: {e}"),
        }
    }
    bodies
}
