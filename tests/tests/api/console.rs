//! The operator console at `/console`: its files and headers over HTTP, and the page itself
//! driven in headless Chromium through chromedriver (both must be installed:
//! `apt-get install chromium chromium-driver`; `.ci/run` does it). Screenshots of each page are
//! saved under `<target>/console-screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};
use tests::{StatusCode, TestApp};

mod browser;

use browser::{
    ENTER, browser, click, close_dialog, confirm, find_when, screenshot_dir, shot, type_into, until,
};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[tokio::test]
async fn the_console_is_served_with_strict_headers_and_is_not_in_the_api_document() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/pages.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(get("content-type").starts_with(content_type), "{path}");
        assert_eq!(get("content-security-policy"), CSP, "{path}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert_eq!(get("cache-control"), "no-cache", "{path}");
        // An unchanged file costs a 304, with the same headers.
        let etag = get("etag").to_owned();
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["content-security-policy"], CSP, "{path}");
        let body = r.text().await.unwrap();
        // No inline script or style anywhere (the policy would refuse them).
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{path}"
        );
    }
    let page = app
        .client
        .get(app.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("/console/app.js") && !page.contains("http"),
        "{page}"
    );
    let missing = app
        .client
        .get(app.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Its refusals carry the same headers.
    assert_eq!(missing.headers()["content-security-policy"], CSP);
    let post = app.client.post(app.url("/console")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["content-security-policy"], CSP);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, _) in api::http::OUTSIDE_THE_DOCUMENT {
        assert!(
            doc["paths"][*path].is_null(),
            "{path} is in the API document"
        );
    }
}

#[tokio::test]
async fn an_operator_drives_the_console_with_the_keyboard() {
    let app = TestApp::spawn_with(tests::Spawn::settings(|s| {
        // The demo's endpoint refuses: without retries its events are FAILED at once.
        s.webhooks.retry_schedule = Vec::new();
        s.webhook_interval = Some(Duration::from_millis(200));
    }))
    .await;
    let now = chrono::Utc::now();
    let demo = api::demo::load(&app.db, now).await.unwrap();
    api::demo::activity(&app.address, &demo, now).await.unwrap();
    let key = demo.api_key.clone();
    let customer = app
        .get(
            &format!(
                "/v1/customers/lookup?identifierType=mobile&identifierValue={}",
                api::demo::CUSTOMER
            ),
            &key,
        )
        .await;
    assert_eq!(customer.status, StatusCode::OK, "{}", customer.text);
    let available = customer.body["balances"][0]["available"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_driver, c) = browser().await;
    let run = async {
        c.goto(&app.url("/console")).await.unwrap();
        until(
            &c,
            "the key prompt",
            "return document.activeElement && document.activeElement.id === 'api-key'",
        )
        .await;
        shot(&c, 1280, "0-key").await;
        // The key, pasted and sent with Enter; kept in sessionStorage, never in the URL.
        c.active_element()
            .await
            .unwrap()
            .send_keys(&format!("{key}{ENTER}"))
            .await
            .unwrap();
        until(
            &c,
            "the find form",
            "return document.getElementById('find-value')",
        )
        .await;
        let stored = c
            .execute("return [sessionStorage.getItem('loyalty.apiKey'), localStorage.length, location.href]", vec![])
            .await
            .unwrap();
        assert_eq!(stored[0], json!(key));
        assert_eq!(stored[1], json!(0));
        assert!(!stored[2].as_str().unwrap().contains(&key));

        // Find the customer by mobile (typed, then Enter).
        type_into(
            &c,
            "#find-value",
            &format!("{}{ENTER}", api::demo::CUSTOMER),
        )
        .await;
        let shown = until(
            &c,
            "the customer's balance",
            "const b = document.querySelector('.balance-available'); return b && b.textContent",
        )
        .await;
        assert_eq!(shown, json!(available));
        let ledger = until(
            &c,
            "the ledger",
            "const t = document.querySelector('#slot-ledger table'); return t && t.innerText",
        )
        .await;
        let ledger = ledger.as_str().unwrap();
        for kind in ["CREDIT", "DEBIT", "HOLD", "TRANSFER_OUT", "REVERSAL"] {
            assert!(
                ledger.contains(kind),
                "{kind} missing from the ledger:\n{ledger}"
            );
        }
        until(
            &c,
            "the expiring lots",
            "return document.querySelector('#slot-expiring tr.next')",
        )
        .await;
        until(
            &c,
            "the vouchers",
            "return document.querySelector('#slot-rewards .vouchers code')",
        )
        .await;
        // The lists: allocations (one pending), holds, transfers.
        for (slot, word) in [
            ("allocations", "PENDING"),
            ("holds", "HELD"),
            ("transfers", "SENT"),
        ] {
            until(
                &c,
                slot,
                &format!(
                    "const t = document.querySelector('#slot-{slot} table'); \
                     return t && t.innerText.includes('{word}')"
                ),
            )
            .await;
        }
        shot(&c, 1280, "1-customer").await;
        shot(&c, 390, "1-customer-phone").await;
        // And what a phone shows first.
        c.set_window_size(390, 844).await.unwrap();
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join("1-customer-phone-top.png"), png).unwrap();
        c.set_window_size(1280, 1000).await.unwrap();

        // A refused action is shown in words, with its field errors, and the dialog stays.
        type_into(&c, "#rev-unique", "demo-order-1003").await;
        type_into(&c, "#rev-amount", &format!("ten{ENTER}")).await;
        until(
            &c,
            "the confirmation dialog",
            "return document.getElementById('confirm').open",
        )
        .await;
        c.active_element()
            .await
            .unwrap()
            .send_keys(ENTER)
            .await
            .unwrap();
        let refused = until(
            &c,
            "the refusal",
            "const p = document.querySelector('#confirm-result .problem'); return p && p.innerText",
        )
        .await;
        let refused = refused.as_str().unwrap();
        assert!(
            refused.contains("400") && refused.contains("amount:"),
            "{refused}"
        );
        shot(&c, 1280, "2-reversal-refused").await;
        c.set_window_size(1280, 1000).await.unwrap();
        // Nothing was done: the dialog closes and the page stays as it was.
        click(&c, "#confirm-cancel").await;
        until(
            &c,
            "the dialog to close",
            "return !document.getElementById('confirm').open",
        )
        .await;

        // Reverse part of an allocation: the console makes the key and shows it.
        type_into(&c, "#rev-unique", "demo-order-1003").await;
        type_into(&c, "#rev-amount", "10").await;
        c.find(Locator::Css("#rev-amount"))
            .await
            .unwrap()
            .send_keys(ENTER)
            .await
            .unwrap();
        let part_key = confirm(&c).await;
        assert!(
            part_key.starts_with(char::is_alphanumeric) && part_key.contains('-'),
            "{part_key}"
        );
        shot(&c, 1280, "2-reversal-confirmed").await;
        close_dialog(&c).await;
        let before: f64 = available.parse().unwrap();
        let expected = format!("{:.2}", before - 10.0);
        until(
            &c,
            "the balance after the reversal",
            &format!("const b = document.querySelector('.balance-available'); return b && b.textContent === '{expected}'"),
        )
        .await;
        let after = app
            .get("/v1/currency/allocations/demo-order-1003", &key)
            .await;
        assert_eq!(
            after.body["reversedAmount"],
            json!("10.00"),
            "{}",
            after.text
        );

        // Activate the pending allocation, then void the hold: each from its row (once the
        // page, drawn again after the reversal, has its lists).
        until(
            &c,
            "the pending allocation's row",
            "return [...document.querySelectorAll('#slot-allocations button')]\
             .some(b => b.textContent.startsWith('Activate'))",
        )
        .await;
        let activate = find_when(
            &c,
            "//div[@id='slot-allocations']//button[starts-with(., 'Activate')]",
        )
        .await;
        activate.send_keys(ENTER).await.unwrap();
        confirm(&c).await;
        close_dialog(&c).await;
        let pending = app
            .get("/v1/currency/allocations/demo-order-1004", &key)
            .await;
        assert_eq!(pending.body["status"], "ACTIVE", "{}", pending.text);
        until(
            &c,
            "the hold's row",
            "return [...document.querySelectorAll('#slot-holds button')]\
             .some(b => b.textContent.startsWith('Void'))",
        )
        .await;
        let void = find_when(
            &c,
            "//div[@id='slot-holds']//button[starts-with(., 'Void')]",
        )
        .await;
        void.send_keys(ENTER).await.unwrap();
        confirm(&c).await;
        close_dialog(&c).await;
        let holds = app
            .get(
                &format!(
                    "/v1/customers/{}/holds",
                    customer.body["customerId"].as_str().unwrap()
                ),
                &key,
            )
            .await;
        assert_eq!(holds.body["items"][0]["status"], "VOIDED", "{}", holds.text);
        let expected = format!("{:.2}", before - 10.0 + 200.0 + 100.0);
        until(
            &c,
            "the balance after the activation and the void",
            &format!(
                "const b = document.querySelector('.balance-available'); \
                 return b && b.textContent === '{expected}'"
            ),
        )
        .await;

        // Webhooks: the refusing endpoint's failed events; retry one.
        let deadline = Instant::now() + Duration::from_secs(15);
        while app.get("/v1/webhook-events?status=failed", &key).await.body["items"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            assert!(Instant::now() < deadline, "no failed webhook event");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c.goto(&app.url("/console#/webhooks")).await.unwrap();
        until(
            &c,
            "the failed events",
            "return document.querySelector('#slot-events .status-failed')",
        )
        .await;
        let retry = find_when(
            &c,
            "//div[@id='slot-events']//button[starts-with(., 'Retry')]",
        )
        .await;
        retry.send_keys(ENTER).await.unwrap();
        let retry_key = confirm(&c).await;
        close_dialog(&c).await;
        let events = app.get("/v1/webhook-events?limit=200", &key).await;
        assert!(
            events.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| !e["retryOf"].is_null()),
            "no retried event (key {retry_key}): {}",
            events.text
        );
        let details = find_when(&c, "//div[@id='slot-events']//button[.='Details']").await;
        details.send_keys(ENTER).await.unwrap();
        until(
            &c,
            "the event's details",
            "return document.getElementById('event-detail-h')",
        )
        .await;
        shot(&c, 1280, "3-webhooks").await;

        // Disable the endpoint.
        find_when(
            &c,
            "//div[@id='slot-endpoints']//button[starts-with(., 'Disable')]",
        )
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
        confirm(&c).await;
        close_dialog(&c).await;
        let endpoints = app.get("/v1/webhook-endpoints", &key).await;
        assert_eq!(
            endpoints.body["items"][0]["status"], "DISABLED",
            "{}",
            endpoints.text
        );

        // Cancel the issued reward, then erase the friend (a typed confirmation).
        let customer_id = customer.body["customerId"].as_str().unwrap();
        c.goto(&app.url(&format!("/console#/customer/{customer_id}")))
            .await
            .unwrap();
        find_when(
            &c,
            "//div[@id='slot-rewards']//button[starts-with(., 'Cancel')]",
        )
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
        confirm(&c).await;
        close_dialog(&c).await;
        let rewards = app
            .get(&format!("/v1/customers/{customer_id}/rewards"), &key)
            .await;
        assert_eq!(
            rewards.body["items"][0]["status"], "CANCELLED",
            "{}",
            rewards.text
        );
        let drawn = c
            .execute("return Number(document.body.dataset.drawn || 0)", vec![])
            .await
            .unwrap();
        find_when(&c, "//div[@id='slot-transfers']//a")
            .await
            .send_keys(ENTER)
            .await
            .unwrap();
        // The friend's page, not the one it replaces (whose Erase button would go stale).
        until(
            &c,
            "the friend's page drawn",
            &format!(
                "return !document.querySelector('main[aria-busy]') \
                 && Number(document.body.dataset.drawn || 0) > {drawn}"
            ),
        )
        .await;
        find_when(&c, "//button[starts-with(., 'Erase')]")
            .await
            .send_keys(ENTER)
            .await
            .unwrap();
        until(
            &c,
            "the typed confirmation",
            "return document.activeElement && document.activeElement.id === 'confirm-typed'",
        )
        .await;
        let go_disabled = c
            .execute(
                "return document.getElementById('confirm-go').disabled",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(go_disabled, json!(true), "erasure must be typed first");
        c.active_element()
            .await
            .unwrap()
            .send_keys("ERASE")
            .await
            .unwrap();
        confirm(&c).await;
        shot(&c, 1280, "7-erased").await;
        c.set_window_size(1280, 1000).await.unwrap();
        close_dialog(&c).await;
        let friend = app
            .get(
                &format!(
                    "/v1/customers/lookup?identifierType=mobile&identifierValue={}",
                    api::demo::FRIEND
                ),
                &key,
            )
            .await;
        assert_eq!(friend.status, StatusCode::NOT_FOUND, "{}", friend.text);

        // API keys: create one (its secret shown once), then revoke it.
        c.goto(&app.url("/console#/keys")).await.unwrap();
        until(
            &c,
            "the keys",
            "return document.querySelector('#slot-keys table')",
        )
        .await;
        type_into(&c, "#key-name", &format!("till 7{ENTER}")).await;
        confirm(&c).await;
        let secret = c
            .execute(
                "return document.getElementById('new-secret').textContent",
                vec![],
            )
            .await
            .unwrap();
        assert!(secret.as_str().unwrap().starts_with("lk_"), "{secret}");
        close_dialog(&c).await;
        let revoke = until(
            &c,
            "the new key's row",
            "return [...document.querySelectorAll('#slot-keys tr')].some(r => r.innerText.includes('till 7'))",
        )
        .await;
        assert_eq!(revoke, json!(true));
        let button = find_when(&c, "//div[@id='slot-keys']//tr[td[.='till 7']]//button").await;
        button.send_keys(ENTER).await.unwrap();
        confirm(&c).await;
        close_dialog(&c).await;
        until(
            &c,
            "the revoked row",
            "return document.querySelector('#slot-keys tr.revoked')",
        )
        .await;
        let keys = app.get("/v1/api-keys", &key).await;
        let new = keys.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "till 7")
            .unwrap();
        assert!(!new["revokedAt"].is_null(), "{}", keys.text);
        shot(&c, 1280, "4-keys").await;

        // What became of a key.
        c.goto(&app.url("/console#/idempotency?operation=currency-allocation&key=demo-order-1001"))
            .await
            .unwrap();
        c.find(Locator::Css("#idem-key"))
            .await
            .unwrap()
            .send_keys(ENTER)
            .await
            .unwrap();
        let status = until(
            &c,
            "the key's record",
            "const r = document.getElementById('idem-result'); return r.querySelector('dl') && r.innerText",
        )
        .await;
        assert!(status.as_str().unwrap().contains("COMPLETED"), "{status}");
        shot(&c, 1280, "5-idempotency").await;

        // Liability: the currency with something outstanding is chosen; totals, two charts.
        c.goto(&app.url("/console#/liability")).await.unwrap();
        let totals = until(
            &c,
            "the liability answer",
            "const r = document.querySelector('#liability-result dl.totals'); \
             return r && document.querySelectorAll('#liability-result svg.chart').length === 2 \
             && r.innerText",
        )
        .await;
        let outstanding = app
            .get(
                &format!("/v1/programs/{}/liability?currency=POINTS", demo.program_id),
                &key,
            )
            .await;
        let available = outstanding.body["outstanding"]["available"]
            .as_str()
            .unwrap();
        assert!(
            totals.as_str().unwrap().contains(available),
            "{totals} {}",
            outstanding.text
        );
        let bars = c
            .execute(
                "return document.querySelectorAll('#liability-result svg.chart rect').length",
                vec![],
            )
            .await
            .unwrap();
        assert!(bars.as_u64().unwrap() >= 12 * 6, "{bars}");
        shot(&c, 1280, "6-liability").await;

        // A problem+json in words: an unknown customer id.
        c.goto(&app.url("/console#/customer/00000000-0000-0000-0000-000000000000"))
            .await
            .unwrap();
        let problem = until(
            &c,
            "the problem",
            "const p = document.querySelector('.problem'); return p && p.innerText",
        )
        .await;
        assert!(problem.as_str().unwrap().contains("404"), "{problem}");
    };
    run.await;
    c.close().await.unwrap();
}
