//! Per-period reward limits: per customer and for everyone, race-proof in bulk and single
//! issuance, given back by cancellation to the counters and period the units were counted in
//! (whatever the reward's settings became since), reported by the dry run, and new each
//! calendar period.

use api::engine::clock::ManualClock;
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
    let app = TestApp::spawn_with(Spawn::clock(clock.clone())).await;
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

/// What the counters of `reward` for `period` from `start` count: everyone's, or the customers'.
async fn counted(app: &TestApp, reward: i64, period: &str, start: &str, everyone: bool) -> i64 {
    let who = if everyone {
        "customer_id = '00000000-0000-0000-0000-000000000000'"
    } else {
        "customer_id <> '00000000-0000-0000-0000-000000000000'"
    };
    app.scalar(&format!(
        "SELECT COALESCE(sum(issued), 0)::bigint FROM reward_period_counters \
         WHERE reward_id = {reward} AND period = '{period}' AND period_start = '{start}' AND {who}"
    ))
    .await
}

async fn cancel(app: &TestApp, key: &str, issuance: &str) {
    let r = app
        .post(
            &format!("/v1/rewards/issuances/{issuance}/cancel"),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn cancelling_an_issuance_made_before_a_limit_was_set_frees_no_room_under_it() {
    let (app, _clock, key, program) = app().await;
    let issue = |mobile: &'static str, r: i64, id: &'static str| {
        let app = &app;
        let key = &key;
        async move {
            app.post("/v1/rewards/issue", key, &single(mobile, r, id))
                .await
        }
    };
    // A limit for everyone, set after a unit was issued.
    let r = create_reward(&app, &key, program, json!({"name": "Later a day"})).await;
    let before = issue("919555500001", r, "before").await;
    assert_eq!(before.status, StatusCode::CREATED, "{}", before.text);
    let patched = app
        .patch(
            &format!("/v1/rewards/{r}"),
            &key,
            &json!({"periodLimit": 1, "periodLimitPeriod": "DAY"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        issue("919555500002", r, "after-1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        label(&issue("919555500003", r, "after-2").await),
        "PERIOD_LIMIT_EXCEEDED"
    );
    cancel(&app, &key, before.body["issuanceId"].as_str().unwrap()).await;
    assert_eq!(
        label(&issue("919555500003", r, "after-3").await),
        "PERIOD_LIMIT_EXCEEDED",
        "the cancelled unit was never counted in today's limit"
    );
    assert_eq!(
        counted(&app, r, "DAY", "2026-11-25T00:00:00Z", true).await,
        1
    );

    // The same with a per-customer limit set after the customer got a unit.
    let mine = create_reward(&app, &key, program, json!({"name": "Later one each"})).await;
    let before = issue("919555500001", mine, "mine-before").await;
    assert_eq!(before.status, StatusCode::CREATED, "{}", before.text);
    let patched = app
        .patch(
            &format!("/v1/rewards/{mine}"),
            &key,
            &json!({"perCustomerLimit": 1, "perCustomerLimitPeriod": "DAY"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        issue("919555500001", mine, "mine-1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        label(&issue("919555500001", mine, "mine-2").await),
        "CUSTOMER_LIMIT_EXCEEDED"
    );
    cancel(&app, &key, before.body["issuanceId"].as_str().unwrap()).await;
    assert_eq!(
        label(&issue("919555500001", mine, "mine-3").await),
        "CUSTOMER_LIMIT_EXCEEDED",
        "the cancelled unit was never counted in the customer's day"
    );
    assert_eq!(
        counted(&app, mine, "DAY", "2026-11-25T00:00:00Z", false).await,
        1
    );
}

#[tokio::test]
async fn a_cancellation_gives_back_to_the_period_its_issuance_was_counted_in_after_the_period_changed()
 {
    let (app, _clock, key, program) = app().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "One a week", "periodLimit": 1, "periodLimitPeriod": "WEEK"}),
    )
    .await;
    let weekly = app
        .post(
            "/v1/rewards/issue",
            &key,
            &single("919555500001", r, "weekly"),
        )
        .await;
    assert_eq!(weekly.status, StatusCode::CREATED, "{}", weekly.text);
    let patched = app
        .patch(
            &format!("/v1/rewards/{r}"),
            &key,
            &json!({"periodLimitPeriod": "DAY"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let daily = app
        .post(
            "/v1/rewards/issue",
            &key,
            &single("919555500002", r, "daily"),
        )
        .await;
    assert_eq!(daily.status, StatusCode::CREATED, "{}", daily.text);
    cancel(&app, &key, weekly.body["issuanceId"].as_str().unwrap()).await;
    // The week (from Monday 2026-11-23) gets its unit back; today keeps the one it counted.
    assert_eq!(
        counted(&app, r, "WEEK", "2026-11-23T00:00:00Z", true).await,
        0
    );
    assert_eq!(
        counted(&app, r, "DAY", "2026-11-25T00:00:00Z", true).await,
        1
    );
    assert_eq!(
        label(
            &app.post(
                "/v1/rewards/issue",
                &key,
                &single("919555500003", r, "daily-2")
            )
            .await
        ),
        "PERIOD_LIMIT_EXCEEDED"
    );
}

#[tokio::test]
async fn issuances_made_before_counters_were_recorded_count_in_the_periods_set_when_migrated() {
    use migration::{MigratorTrait, SchemaManager};
    let (app, _clock, key, program) = app().await;
    let r = create_reward(
        &app,
        &key,
        program,
        json!({"name": "One a day", "periodLimit": 1, "periodLimitPeriod": "DAY"}),
    )
    .await;
    let plain = create_reward(&app, &key, program, json!({"name": "Plain"})).await;
    let old = app
        .post("/v1/rewards/issue", &key, &single("919555500001", r, "old"))
        .await;
    assert_eq!(old.status, StatusCode::CREATED, "{}", old.text);
    let unlimited = app
        .post(
            "/v1/rewards/issue",
            &key,
            &single("919555500001", plain, "plain"),
        )
        .await;
    assert_eq!(unlimited.status, StatusCode::CREATED, "{}", unlimited.text);
    // The database as an earlier version left it (nothing recorded), then migrated.
    let recording = migration::Migrator::migrations()
        .into_iter()
        .find(|m| m.name().ends_with("_issuance_counted_periods"))
        .expect("the migration that records counted periods");
    let schema = SchemaManager::new(app.db.conn().inner());
    recording.down(&schema).await.expect("down");
    recording.up(&schema).await.expect("up");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM issuances \
             WHERE reward_id = {r} AND period_limit_period = 'DAY' AND customer_limit_period IS NULL"
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*)::bigint FROM issuances WHERE reward_id = {plain} \
             AND (period_limit_period IS NOT NULL OR customer_limit_period IS NOT NULL)"
        ))
        .await,
        0
    );
    // The period changes after the migration: the old issuance still gives back to its day.
    let patched = app
        .patch(
            &format!("/v1/rewards/{r}"),
            &key,
            &json!({"periodLimitPeriod": "WEEK"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let weekly = app
        .post(
            "/v1/rewards/issue",
            &key,
            &single("919555500002", r, "weekly"),
        )
        .await;
    assert_eq!(weekly.status, StatusCode::CREATED, "{}", weekly.text);
    cancel(&app, &key, old.body["issuanceId"].as_str().unwrap()).await;
    assert_eq!(
        counted(&app, r, "DAY", "2026-11-25T00:00:00Z", true).await,
        0
    );
    assert_eq!(
        counted(&app, r, "WEEK", "2026-11-23T00:00:00Z", true).await,
        1
    );
}
