//! Earn caps on award strategies: what one customer earns per calendar period, race-proof, and
//! room given back by reversals.

use api::engine::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{Catalog, Spawn, StatusCode, TestApp, invariant_violations, setup_catalog};

const MOBILE: &str = "919811112222";

/// Wednesday 25 November 2026, 10:00 UTC.
fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn app_with_clock() -> (TestApp, ManualClock, String, Catalog) {
    let clock = ManualClock::new(start());
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
    let (_, key) = app.create_org("Caps").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c)
}

/// A RATE strategy of 0.1 points per unit on POINTS with `caps`; returns its id.
async fn capped_strategy(app: &TestApp, key: &str, c: &Catalog, caps: Value) -> i64 {
    let r = app
        .post(
            &format!("/v1/programs/{}/award-strategies", c.program_id),
            key,
            &json!({"name": "capped", "currency": "POINTS", "kind": "RATE", "multiplier": "0.1", "caps": caps}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["awardStrategyId"].as_i64().unwrap()
}

fn body(c: &Catalog, strategy: i64, source: i64, unique: &str) -> Value {
    json!({
        "programId": c.program_id, "awardStrategyId": strategy, "expiryStrategyId": c.expiry_id,
        "sourceValue": source, "mobile": MOBILE, "uniqueId": unique
    })
}

async fn allocate(app: &TestApp, key: &str, body: &Value) -> Value {
    let r = app.post("/v1/currency/allocations", key, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

async fn assert_invariant(app: &TestApp) {
    let broken = invariant_violations(app).await;
    assert!(broken.is_empty(), "{broken:?}");
}

#[tokio::test]
async fn an_award_past_a_cap_gets_what_is_left_and_a_reversal_gives_room_back() {
    let (app, clock, key, c) = app_with_clock().await;
    let s = capped_strategy(
        &app,
        &key,
        &c,
        json!([{"period": "DAY", "max": "100"}, {"period": "WEEK", "max": 250}]),
    )
    .await;
    let shown = app
        .get(
            &format!("/v1/programs/{}/award-strategies", c.program_id),
            &key,
        )
        .await;
    let listed = shown.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["awardStrategyId"] == s)
        .cloned()
        .unwrap();
    assert_eq!(
        listed["caps"],
        json!([{"period": "DAY", "max": "100"}, {"period": "WEEK", "max": "250"}])
    );

    // 60, then 40 of 60 (the day's cap), then nothing.
    let a = allocate(&app, &key, &body(&c, s, 600, "d1-a")).await;
    assert_eq!(
        (&a["amount"], &a["capped"], &a["uncappedAmount"]),
        (&json!("60.00"), &json!(false), &Value::Null)
    );
    let b = allocate(&app, &key, &body(&c, s, 600, "d1-b")).await;
    assert_eq!(
        (&b["amount"], &b["capped"], &b["uncappedAmount"]),
        (&json!("40.00"), &json!(true), &json!("60.00"))
    );
    let zero = allocate(&app, &key, &body(&c, s, 600, "d1-c")).await;
    assert_eq!(
        (&zero["amount"], &zero["capped"]),
        (&json!("0.00"), &json!(true))
    );
    assert_eq!(zero["balance"]["available"], "100.00");
    // A replay answers the capped allocation as it was.
    let again = app
        .post("/v1/currency/allocations", &key, &body(&c, s, 600, "d1-b"))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["amount"], "40.00");
    assert_eq!(again.body["capped"], true);
    // Another strategy of the same program is not capped by this one.
    let other = allocate(
        &app,
        &key,
        &json!({
            "programId": c.program_id, "awardStrategyId": c.rate_id, "expiryStrategyId": c.expiry_id,
            "sourceValue": 600, "mobile": MOBILE, "uniqueId": "uncapped"
        }),
    )
    .await;
    assert_eq!(other["amount"], "60.00");

    // Returning part of the first purchase gives the day (and the week) 25 back.
    let r = app
        .post(
            "/v1/currency/allocations/d1-a/reversal",
            &key,
            &json!({"amount": "25", "reversalId": "ret-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let d = allocate(&app, &key, &body(&c, s, 600, "d1-d")).await;
    assert_eq!(
        (&d["amount"], &d["capped"]),
        (&json!("25.00"), &json!(true))
    );

    // The next day has its own room; the week's cap (250) is what is left then: 150.
    clock.advance(Duration::days(1));
    let e = allocate(&app, &key, &body(&c, s, 1000, "d2-a")).await;
    assert_eq!(
        (&e["amount"], &e["capped"]),
        (&json!("100.00"), &json!(false))
    );
    clock.advance(Duration::days(1));
    let f = allocate(&app, &key, &body(&c, s, 1000, "d3-a")).await;
    assert_eq!(
        (&f["amount"], &f["capped"], &f["uncappedAmount"]),
        (&json!("50.00"), &json!(true), &json!("100.00")),
        "the week's 250 is spent: 100 on day one, 100 on day two, 50 now"
    );
    // Monday starts a new week.
    clock.advance(Duration::days(3));
    let g = allocate(&app, &key, &body(&c, s, 1000, "w2-a")).await;
    assert_eq!(
        (&g["amount"], &g["capped"]),
        (&json!("100.00"), &json!(false))
    );

    // A full reversal of a capped allocation gives back what it awarded to its own day, not to
    // today's.
    let r = app
        .post("/v1/currency/allocations/d3-a/reversal", &key, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let h = allocate(&app, &key, &body(&c, s, 1000, "w2-b")).await;
    assert_eq!((&h["amount"], &h["capped"]), (&json!("0.00"), &json!(true)));
    assert_eq!(
        app.scalar(
            "SELECT awarded FROM earn_cap_counters WHERE period = 'WEEK' \
             AND period_start = '2026-11-23T00:00:00Z'"
        )
        .await,
        20_000,
        "the first week: 250 awarded, 50 given back by the full reversal"
    );
    assert_invariant(&app).await;
    // The invariant does look at the counters: one off by a cent is reported.
    let changed = app
        .scalar(
            "WITH u AS (UPDATE earn_cap_counters SET awarded = awarded - 1 \
             WHERE period = 'DAY' AND awarded > 0 RETURNING 1) SELECT count(*)::bigint FROM u",
        )
        .await;
    assert!(changed > 0);
    let broken = invariant_violations(&app).await;
    assert_eq!(broken.len() as i64, changed, "{broken:?}");
}

#[tokio::test]
async fn concurrent_allocations_never_pass_a_cap_together() {
    let (app, _clock, key, c) = app_with_clock().await;
    let s = capped_strategy(&app, &key, &c, json!([{"period": "DAY", "max": "95"}])).await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/v1/currency/allocations");
            let key = key.clone();
            let body = body(&c, s, 100, &format!("race-{i}"));
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .header("X-API-KEY", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut awarded = 0_i64;
    let mut partial = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        let amount = body["amount"].as_str().unwrap();
        let minor: i64 = amount.replace('.', "").parse().unwrap();
        awarded += minor;
        if minor != 0 && minor != 1000 {
            partial += 1;
        }
    }
    assert_eq!(awarded, 9_500, "exactly the cap, never more");
    assert_eq!(partial, 1, "one allocation got the 5 that were left");
    assert_eq!(
        app.scalar("SELECT sum(awarded)::bigint FROM earn_cap_counters")
            .await,
        9_500
    );
    assert_invariant(&app).await;
}

#[tokio::test]
async fn a_pending_allocation_counts_against_its_cap_and_a_cancellation_gives_it_back() {
    let (app, clock, key, c) = app_with_clock().await;
    let s = capped_strategy(&app, &key, &c, json!([{"period": "LIFETIME", "max": "70"}])).await;
    let mut pending = body(&c, s, 1000, "promised");
    pending["maturesAt"] = json!(
        (clock.now_for_tests() + Duration::days(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let p = allocate(&app, &key, &pending).await;
    assert_eq!(
        (&p["status"], &p["amount"], &p["capped"]),
        (&json!("PENDING"), &json!("70.00"), &json!(true))
    );
    assert_eq!(p["balance"]["pending"], "70.00");
    let none = allocate(&app, &key, &body(&c, s, 100, "after")).await;
    assert_eq!(none["amount"], "0.00");
    let r = app
        .post(
            "/v1/currency/allocations/promised/reversal",
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["allocationStatus"], "CANCELLED");
    let back = allocate(&app, &key, &body(&c, s, 100, "after-cancel")).await;
    assert_eq!(
        (&back["amount"], &back["capped"]),
        (&json!("10.00"), &json!(false))
    );
    assert_invariant(&app).await;
}

#[tokio::test]
async fn bad_caps_are_refused_and_change_nothing() {
    let (app, _clock, key, c) = app_with_clock().await;
    let before = app.row_counts().await;
    let path = format!("/v1/programs/{}/award-strategies", c.program_id);
    let six: Vec<Value> = (0..6).map(|_| json!({"period": "DAY", "max": 1})).collect();
    for (caps, field) in [
        (json!([{"period": "HOUR", "max": 1}]), "caps[0].period"),
        (
            json!([{"period": "DAY", "max": 1}, {"period": "WEEK", "max": "-1"}]),
            "caps[1].max",
        ),
        (json!(six), "caps"),
    ] {
        let r = app
            .post(
                &path,
                &key,
                &json!({"name": "bad", "currency": "POINTS", "kind": "FIXED", "points": 5, "caps": caps}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{caps}: {}", r.text);
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
    assert_eq!(app.row_counts().await, before);
    // A cap with more decimals than the currency keeps is rounded down, as maxAward is.
    let r = app
        .post(
            &path,
            &key,
            &json!({"name": "fine", "currency": "COINS", "kind": "FIXED", "points": 5, "caps": [{"period": "DAY", "max": "12.9"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let s = r.body["awardStrategyId"].as_i64().unwrap();
    for (i, expected) in ["5", "5", "2", "0"].iter().enumerate() {
        let a = allocate(&app, &key, &body(&c, s, 1, &format!("coins-{i}"))).await;
        assert_eq!(a["amount"], *expected, "allocation {i}");
    }
}
