//! Per-period reward limits: per customer and for everyone, race-proof in bulk and single
//! issuance, given back by cancellation to the period the units were issued in, reported by
//! the dry run, and new each calendar period.

use api::clock::ManualClock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tests::{Spawn, StatusCode, TestApp, create_reward, setup_catalog};

const BULK: &str = "/v1/rewards/issue/bulk";

async fn app() -> (TestApp, ManualClock, String, i64) {
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let app = TestApp::spawn_with(Spawn {
        clock: Some(clock.clone()),
        ..Spawn::default()
    })
    .await;
    let (_, key) = app.create_org("Periods").await;
    let c = setup_catalog(&app, &key).await;
    (app, clock, key, c.program_id)
}

fn bulk(mobile: &str, reward: i64, quantity: i64, request_id: &str) -> Value {
    json!({"mobile": mobile, "rewards": [{"rewardId": reward, "quantity": quantity, "requestId": request_id}]})
}

fn single(mobile: &str, reward: i64, request_id: &str) -> Value {
    json!({"mobile": mobile, "rewardId": reward, "quantity": 1, "requestId": request_id})
}

/// The item's status, or its error code when it failed.
fn label(reply: &tests::Reply) -> String {
    let item = if reply.body.get("results").is_some() {
        reply.body["results"][0].clone()
    } else {
        reply.body.clone()
    };
    if item["status"] == "FAILED" || item.get("code").is_some() {
        item["error"]["code"]
            .as_str()
            .or_else(|| item["code"].as_str())
            .unwrap_or("?")
            .to_owned()
    } else {
        item["status"].as_str().unwrap_or("?").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_issuances_never_pass_a_limit_for_everyone() {
    let (app, _clock, key, program) = app().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "100 coffees a day, here 7", "periodLimit": 7, "periodLimitPeriod": "DAY"}),
    )
    .await;
    // Forty customers at once, half through bulk issuance and half through single issuance.
    let replies = futures_util::future::join_all((0..40).map(|i| {
        let mobile = format!("91955500{i:04}");
        let id = format!("all-{i}");
        let app = &app;
        let key = &key;
        async move {
            if i % 2 == 0 {
                app.post(BULK, key, &bulk(&mobile, r, 1, &id)).await
            } else {
                app.post("/v1/rewards/issue", key, &single(&mobile, r, &id))
                    .await
            }
        }
    }))
    .await;
    let mut issued = 0;
    for reply in &replies {
        assert!(reply.status.as_u16() < 500, "{}", reply.text);
        match label(reply).as_str() {
            "ISSUED" => issued += 1,
            "PERIOD_LIMIT_EXCEEDED" => {}
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(issued, 7, "exactly the day's limit");
    let shown = app.get(&format!("/v1/rewards/{r}"), &key).await;
    assert_eq!(shown.body["periodLimit"], 7);
    assert_eq!(shown.body["periodLimitPeriod"], "DAY");
    assert_eq!(
        app.scalar("SELECT sum(issued)::bigint FROM reward_period_counters")
            .await,
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_customer_racing_a_daily_limit_gets_no_more_than_it_each_day() {
    let (app, clock, key, program) = app().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "Two a day", "perCustomerLimit": 2, "perCustomerLimitPeriod": "DAY"}),
    )
    .await;
    let mobile = "919555512345";
    let race = |day: u32| {
        let app = &app;
        let key = &key;
        futures_util::future::join_all((0..40).map(move |i| async move {
            let id = format!("d{day}-{i}");
            if i % 2 == 0 {
                app.post(BULK, key, &bulk(mobile, r, 1, &id)).await
            } else {
                app.post("/v1/rewards/issue", key, &single(mobile, r, &id))
                    .await
            }
        }))
    };
    let count = |replies: &[tests::Reply]| {
        let mut issued = 0;
        for reply in replies {
            match label(reply).as_str() {
                "ISSUED" => issued += 1,
                "CUSTOMER_LIMIT_EXCEEDED" => {}
                other => panic!("{other}: {}", reply.text),
            }
        }
        issued
    };
    assert_eq!(count(&race(1).await), 2);
    // The customer holds 2 now; a lifetime limit would refuse tomorrow, a daily one does not.
    clock.advance(Duration::days(1));
    assert_eq!(count(&race(2).await), 2);
    assert_eq!(
        app.scalar("SELECT max(held)::bigint FROM customer_reward_counts")
            .await,
        4
    );
}

#[tokio::test]
async fn a_cancellation_gives_units_back_to_the_period_they_were_issued_in() {
    let (app, clock, key, program) = app().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "One a week", "perCustomerLimit": 1, "perCustomerLimitPeriod": "WEEK",
               "periodLimit": 2, "periodLimitPeriod": "WEEK"}),
    )
    .await;
    let a = app
        .post(BULK, &key, &bulk("919555500001", r, 1, "w1-a"))
        .await;
    assert_eq!(label(&a), "ISSUED");
    let a_issuance = a.body["results"][0]["issuanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500001", r, 1, "w1-a2"))
                .await
        ),
        "CUSTOMER_LIMIT_EXCEEDED"
    );
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500002", r, 1, "w1-b"))
                .await
        ),
        "ISSUED"
    );
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500003", r, 1, "w1-c"))
                .await
        ),
        "PERIOD_LIMIT_EXCEEDED"
    );
    // The dry run reports the same without changing anything.
    let before = app.row_counts().await;
    let dry = app
        .post(
            &format!("{BULK}?dryRun=true"),
            &key,
            &bulk("919555500003", r, 1, "w1-c-dry"),
        )
        .await;
    assert_eq!(label(&dry), "PERIOD_LIMIT_EXCEEDED", "{}", dry.text);
    assert_eq!(app.row_counts().await, before);

    // Next week: room again, for the customer and for everyone.
    clock.advance(Duration::days(7));
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500001", r, 1, "w2-a"))
                .await
        ),
        "ISSUED"
    );
    // Cancelling last week's issuance gives last week its units back, not this week.
    let cancel = app
        .post(
            &format!("/v1/rewards/issuances/{a_issuance}/cancel"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::CREATED, "{}", cancel.text);
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500001", r, 1, "w2-a2"))
                .await
        ),
        "CUSTOMER_LIMIT_EXCEEDED",
        "this week's one is still taken"
    );
    assert_eq!(
        app.scalar(
            "SELECT issued FROM reward_period_counters \
             WHERE period_start = '2026-11-23T00:00:00Z' AND customer_id = '00000000-0000-0000-0000-000000000000'"
        )
        .await,
        1,
        "last week's count for everyone went from 2 to 1"
    );
    // Bad periods are refused and change nothing.
    let before = app.row_counts().await;
    for body in [
        json!({"name": "x", "perCustomerLimitPeriod": "HOUR"}),
        json!({"name": "x", "periodLimit": -1}),
        json!({"name": "x", "periodLimit": 3, "periodLimitPeriod": "day"}),
    ] {
        let bad = app
            .post(&format!("/v1/programs/{program}/rewards"), &key, &body)
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{body}: {}", bad.text);
    }
    assert_eq!(app.row_counts().await, before);
    // The limit for everyone can be lifted.
    let patched = app
        .patch(
            &format!("/v1/rewards/{r}"),
            &key,
            &json!({"periodLimit": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["periodLimit"], Value::Null);
    assert_eq!(
        label(
            &app.post(BULK, &key, &bulk("919555500009", r, 1, "w2-z"))
                .await
        ),
        "ISSUED",
        "no limit for everyone any more"
    );
    // A period limit set by PATCH without its period counts per day; one with a period keeps it.
    let plain = create_reward(&app, &key, program, json!({"name": "Plain"})).await;
    let daily = app
        .patch(
            &format!("/v1/rewards/{plain}"),
            &key,
            &json!({"periodLimit": 1}),
        )
        .await;
    assert_eq!(daily.status, StatusCode::OK, "{}", daily.text);
    assert_eq!(daily.body["periodLimitPeriod"], "DAY");
    let weekly = app
        .patch(
            &format!("/v1/rewards/{r}"),
            &key,
            &json!({"periodLimit": 9}),
        )
        .await;
    assert_eq!(weekly.body["periodLimitPeriod"], "WEEK");
}
