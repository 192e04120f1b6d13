//! The organisation's own API keys: minted over HTTP and on the command line, the secret shown
//! once, revoked keys refused at once here and within the cache's life on another instance,
//! and never the last active key.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{Spawn, StatusCode, TestApp, loyalty_binary};

async fn mint(app: &TestApp, key: &str, name: &str, idempotency: Option<&str>) -> tests::Reply {
    let headers: Vec<(&str, &str)> = idempotency
        .map(|k| ("Idempotency-Key", k))
        .into_iter()
        .collect();
    app.post_with("/v1/api-keys", key, &json!({"name": name}), &headers)
        .await
}

fn listed<'a>(list: &'a tests::Reply, key_id: &str) -> &'a Value {
    list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == key_id)
        .unwrap_or_else(|| panic!("{key_id} is not listed: {}", list.text))
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_revoked_everywhere() {
    let app = TestApp::spawn().await;
    let (org, first) = app.create_org("Keys").await;
    // A second instance on the same database, caching keys for the default second.
    let other = TestApp::spawn_on(&app.database_url, Spawn::default()).await;

    let r = mint(&app, &first, "checkout", Some("mint-1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.body["apiKey"].as_str().unwrap().to_owned();
    let key_id = r.body["keyId"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(r.body["prefix"].as_str().unwrap()));
    // A replay answers the key without its secret; the secret is stored nowhere.
    let again = mint(&app, &first, "checkout", Some("mint-1")).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.body["keyId"], key_id.as_str());
    assert!(again.body.get("apiKey").is_none(), "{}", again.text);
    let stored = app
        .scalar(&format!(
            "SELECT count(*)::bigint FROM idempotency_records WHERE response::text LIKE '%{secret}%' \
             OR request_fields::text LIKE '%{secret}%'"
        ))
        .await;
    assert_eq!(stored, 0);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM api_keys WHERE key_hash = '{secret}' OR prefix = '{secret}'"
        ))
        .await,
        0
    );
    // Another name under the same key is a different request.
    let reused = mint(&app, &first, "other", Some("mint-1")).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The new key works on both instances (and is cached there now).
    for instance in [&app, &other] {
        assert_eq!(
            instance.get("/v1/programs", &secret).await.status,
            StatusCode::OK
        );
    }
    // lastUsedAt is kept, coarsely and off the request's path.
    let mut used = Value::Null;
    for _ in 0..50 {
        let list = app.get("/v1/api-keys", &first).await;
        used = listed(&list, &key_id)["lastUsedAt"].clone();
        if !used.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used.is_string(), "lastUsedAt was never recorded");
    let list = app.get("/v1/api-keys", &first).await;
    assert!(!list.text.contains(&secret), "a list never shows a secret");
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);

    // Revoked on this instance: refused here at once, and on the other within its cache's life.
    let revoked = app
        .delete(&format!("/v1/api-keys/{key_id}"), &first, None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert_eq!(
        app.get("/v1/programs", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        other.get("/v1/programs", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    let list = app.get("/v1/api-keys", &first).await;
    assert!(listed(&list, &key_id)["revokedAt"].is_string());
    // Revoked already: 404; another organisation's key: 404; the last active key: 409.
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{key_id}"), &first, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (_, foreign) = app.create_org("Foreign").await;
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{key_id}"), &foreign, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let own_id = app
        .scalar(&format!(
            "SELECT min(id) FROM api_keys WHERE org_id = {org}"
        ))
        .await;
    let last = app
        .delete(&format!("/v1/api-keys/{own_id}"), &first, None)
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.text);
    assert_eq!(last.code(), "LAST_ACTIVE_KEY");
    assert_eq!(app.get("/v1/programs", &first).await.status, StatusCode::OK);
    for bad in ["abc", "0", "-1"] {
        assert_eq!(
            app.delete(&format!("/v1/api-keys/{bad}"), &first, None)
                .await
                .status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    let empty = mint(&app, &first, "   ", None).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    other.stop().await;
}

#[tokio::test]
async fn racing_revocations_never_leave_an_organisation_without_a_key() {
    let app = TestApp::spawn().await;
    let (org, first) = app.create_org("Race").await;
    let second = mint(&app, &first, "second", None).await.body["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids: Vec<i64> = [
        app.scalar(&format!(
            "SELECT min(id) FROM api_keys WHERE org_id = {org}"
        ))
        .await,
        app.scalar(&format!(
            "SELECT max(id) FROM api_keys WHERE org_id = {org}"
        ))
        .await,
    ]
    .to_vec();
    // Each key revokes the other, and itself, at once, several times over.
    let mut tasks = Vec::new();
    for round in 0..4 {
        for (by, target) in [
            (&first, ids[1]),
            (&second, ids[0]),
            (&first, ids[0]),
            (&second, ids[1]),
        ] {
            let client = app.client.clone();
            let url = app.url(&format!("/v1/api-keys/{target}"));
            let by = by.clone();
            tasks.push(tokio::spawn(async move {
                let _ = round;
                client
                    .delete(url)
                    .header("X-API-KEY", by)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut revoked = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!([204, 401, 404, 409].contains(&status), "{status}");
        revoked += usize::from(status == 204);
    }
    assert_eq!(revoked, 1, "exactly one of the two keys is revoked");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM api_keys WHERE org_id = {org} AND revoked_at IS NULL"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn keys_are_managed_from_the_command_line_too() {
    let app = TestApp::spawn().await;
    let (org, first) = app.create_org("Cli").await;
    let run = |args: &[&str]| {
        let out = Command::new(loyalty_binary())
            .args(["keys"])
            .args(args)
            .args(["--database-url", &app.database_url])
            .output()
            .expect("run loyalty keys");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["create", "--org", &org.to_string(), "--name", "ops"]);
    assert!(ok, "{err}");
    let minted: Value = serde_json::from_str(out.trim()).unwrap();
    let secret = minted["apiKey"].as_str().unwrap();
    assert_eq!(app.get("/v1/programs", secret).await.status, StatusCode::OK);
    let (ok, out, _) = run(&["list", "--org", &org.to_string()]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2);
    assert!(!out.contains(secret));
    let key_id = minted["keyId"].as_str().unwrap();
    let (ok, _, err) = run(&["revoke", "--org", &org.to_string(), "--key-id", key_id]);
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/v1/programs", secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The last active key stays; an unknown organisation is an error.
    let own = app
        .scalar(&format!(
            "SELECT min(id) FROM api_keys WHERE org_id = {org}"
        ))
        .await
        .to_string();
    let (ok, _, err) = run(&["revoke", "--org", &org.to_string(), "--key-id", &own]);
    assert!(!ok && err.contains("last active key"), "{err}");
    assert_eq!(app.get("/v1/programs", &first).await.status, StatusCode::OK);
    let (ok, _, err) = run(&["list", "--org", "999999"]);
    assert!(!ok && err.contains("no such organisation"), "{err}");
}

#[tokio::test]
async fn a_refused_revocation_leaves_every_cached_key_alone() {
    let app = TestApp::spawn().await;
    // A key cached here and then revoked behind this instance's back (as another instance
    // would) still gets in until its cached entry is dropped: that shows whether the entry is
    // still there. Each attempt must finish within the key's second in the cache, or it proves
    // nothing and is tried again with fresh organisations.
    for attempt in 0..20 {
        let started = std::time::Instant::now();
        let (org_a, a) = app.create_org(&format!("Cached {attempt}")).await;
        let (_, b) = app.create_org(&format!("Refused {attempt}")).await;
        assert_eq!(app.get("/v1/programs", &a).await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/programs", &b).await.status, StatusCode::OK);
        app.scalar(&format!(
            "WITH r AS (UPDATE api_keys SET revoked_at = now() WHERE org_id = {org_a} \
             RETURNING id) SELECT count(*)::bigint FROM r"
        ))
        .await;
        // Another organisation's revocation that fails (no such key).
        let refused = app.delete("/v1/api-keys/999999", &b, None).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
        let after = app.get("/v1/programs", &a).await;
        if started.elapsed() >= Duration::from_millis(900) {
            continue;
        }
        assert_eq!(
            after.status,
            StatusCode::OK,
            "a failed revocation by another organisation dropped this key's cached entry"
        );
        return;
    }
    panic!("no attempt finished within the cache's life");
}

#[tokio::test]
async fn a_revoked_key_is_refused_everywhere_within_a_second_whatever_the_cache_ttl() {
    let long = || Spawn::settings(|s| s.cache_ttl = Duration::from_secs(120));
    let app = TestApp::spawn_with(long()).await;
    let other = TestApp::spawn_on(&app.database_url, long()).await;
    let (_, first) = app.create_org("Bound").await;
    let r = mint(&app, &first, "short-lived", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.body["apiKey"].as_str().unwrap().to_owned();
    let key_id = r.body["keyId"].as_str().unwrap().to_owned();
    // Cached on the other instance.
    assert_eq!(
        other.get("/v1/programs", &secret).await.status,
        StatusCode::OK
    );
    let revoked = app
        .delete(&format!("/v1/api-keys/{key_id}"), &first, None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert_eq!(
        app.get("/v1/programs", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The documented bound is one second; a generous wait only detects "never".
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = other.get("/v1/programs", &secret).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the other instance still accepts the revoked key"
    );
    other.stop().await;
}

#[tokio::test]
async fn api_keys_are_listed_in_pages() {
    let app = TestApp::spawn().await;
    let (_, first) = app.create_org("Paged").await;
    for i in 0..4 {
        let r = mint(&app, &first, &format!("key {i}"), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/api-keys?limit=2&cursor={c}"),
            None => "/v1/api-keys?limit=2".to_owned(),
        };
        let page = app.get(&path, &first).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{}", page.text);
        seen.extend(
            items
                .iter()
                .map(|k| k["keyId"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (5, 5), "{seen:?}");
    // Oldest first, like the other lists.
    let numbers: Vec<i64> = seen.iter().map(|s| s.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    // Without a limit: the default page holds them all here.
    let all = app.get("/v1/api-keys", &first).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 5);
    for bad in ["limit=0", "limit=201", "limit=x", "cursor=abc", "cursor=0"] {
        let r = app.get(&format!("/v1/api-keys?{bad}"), &first).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    // The document says so.
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let params = doc["paths"]["/v1/api-keys"]["get"]["parameters"].to_string();
    assert!(
        params.contains("\"limit\"") && params.contains("\"cursor\""),
        "{params}"
    );
}
