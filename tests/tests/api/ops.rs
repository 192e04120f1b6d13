use serde_json::{Value, json};
use tests::{StatusCode, TestApp, allocation_body, setup_catalog};

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_docs_render_it() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every route the app serves is in the document, and the document has nothing else.
    let mut served = std::collections::BTreeSet::new();
    for (path, methods) in api::http::TABLE {
        for method in *methods {
            assert!(
                doc["paths"][*path][*method].is_object(),
                "{method} {path} is missing from openapi.json"
            );
            served.insert((path.to_string(), method.to_string()));
        }
    }
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(docs.text().await.unwrap().contains("/openapi.json"));
}

/// The value of the sample of `name` whose labels include every one of `labels`
/// (`route="/v1/programs"`); `None` when there is no such sample.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels_part, value) = match rest.strip_prefix('{') {
            Some(r) => r.rsplit_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|l| labels_part.split(',').any(|p| p == *l))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn metrics_move_with_requests_and_show_no_tenant_data() {
    let app = tests::TestApp::spawn_with(tests::Spawn::settings(|s| {
        s.idempotency_wait = std::time::Duration::from_millis(300)
    }))
    .await;
    let (org, key) = app.create_org("Acme").await;
    let c = setup_catalog(&app, &key).await;
    let body = allocation_body(&c, "919876543210", json!(1000), "m-1");
    let first = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let replay = app.post("/v1/currency/allocations", &key, &body).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    let other = allocation_body(&c, "919876543210", json!(5), "m-1");
    let reused = app.post("/v1/currency/allocations", &key, &other).await;
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    // A key held by a transaction that does not finish: 409 after the bounded wait.
    let (_holder, tx) = tests::hold_key(&app, org, "program-create", "held").await;
    let program = json!({"name": "Held", "currencies": [{"code": "POINTS", "scale": 2}]});
    let held = app
        .post_with(
            "/v1/programs",
            &key,
            &program,
            &[("Idempotency-Key", "held")],
        )
        .await;
    assert_eq!(held.code(), "IDEMPOTENCY_KEY_IN_USE");
    drop(tx);
    let reward =
        tests::create_reward(&app, &key, c.program_id, json!({"name": "Cap", "stock": 1})).await;
    let bulk = json!({"mobile": "919876543210", "rewards": [
        {"rewardId": reward, "quantity": 1, "requestId": "b-1"},
        {"rewardId": reward, "quantity": 1, "requestId": "b-2"},
    ]});
    let r = app.post("/v1/rewards/issue/bulk", &key, &bulk).await;
    assert_eq!(r.body["summary"]["issued"], 1, "{}", r.text);

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let h = "loyalty_http_request_duration_seconds";
    let alloc = r#"route="/v1/currency/allocations""#;
    let post = r#"method="POST""#;
    for status in ["201", "202", "422"] {
        let status = format!("status=\"{status}\"");
        assert_eq!(
            sample(&text, &format!("{h}_count"), &[post, alloc, &status]),
            Some(1.0),
            "{status} {text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("{h}_bucket"),
                &[post, alloc, &status, r#"le="+Inf""#]
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            sample(&text, &format!("{h}_sum"), &[post, alloc, &status]).is_some_and(|s| s > 0.0)
        );
    }
    let o = "loyalty_idempotency_outcomes_total";
    let op = r#"operation="currency-allocation""#;
    for outcome in ["created", "replayed", "key_reused"] {
        let outcome = format!("outcome=\"{outcome}\"");
        assert_eq!(
            sample(&text, o, &[op, &outcome]),
            Some(1.0),
            "{outcome} {text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            o,
            &[r#"operation="program-create""#, r#"outcome="key_in_use""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            o,
            &[r#"operation="reward-issuance""#, r#"outcome="created""#]
        ),
        Some(1.0),
        "{text}"
    );
    let items = "loyalty_reward_items_total";
    assert_eq!(
        sample(&text, items, &[r#"status="issued""#]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            items,
            &[r#"status="failed""#, r#"code="OUT_OF_STOCK""#]
        ),
        Some(1.0),
        "{text}"
    );
    // 1000 points at rate 1 per unit… whatever the strategy gave, the sum is the answer's amount.
    let amount: f64 = first.body["amount"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        sample(
            &text,
            "loyalty_currency_amount_sum",
            &[r#"kind="allocation""#]
        ),
        Some(amount),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "loyalty_currency_amount_count",
            &[r#"kind="allocation""#]
        ),
        Some(1.0)
    );
    assert!(
        sample(&text, "loyalty_db_connections", &[r#"state="idle""#]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "loyalty_db_connections_waiting", &[]).is_some(),
        "{text}"
    );
    assert_eq!(sample(&text, "loyalty_up", &[]), Some(1.0));
    assert!(!text.contains(first.body["customerId"].as_str().unwrap()));
    assert!(!text.contains("919876543210"));
    assert!(!text.contains(&key));
    // No label names a tenant or a customer (the organisation's id is too small a number to
    // search for in the text).
    for label in ["org", "tenant", "customer", "currency=", "key="] {
        assert!(!text.contains(label), "{label} in {text}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let (_, key) = app.create_org("Acme").await;
    // The client's own id comes back, on success and on error alike.
    for path in ["/v1/programs", "/v1/programs/999999", "/nowhere"] {
        let r = app
            .client
            .get(app.url(path))
            .header("X-API-KEY", &key)
            .header("X-Request-Id", "trace-42")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "trace-42", "{path}");
    }
    // Without one, or with one that is too long or not printable, a fresh UUID.
    for given in [None, Some("x".repeat(201)), Some("tab\there".to_owned())] {
        let mut req = app.client.get(app.url("/healthz"));
        if let Some(v) = &given {
            req = req.header("X-Request-Id", v.as_str());
        }
        let r = req.send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{given:?} gave {id}");
    }
    // A 405 too.
    let r = app
        .client
        .delete(app.url("/v1/programs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().contains_key("x-request-id"));
}
