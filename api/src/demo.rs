//! `loyalty demo` and `loyalty serve --demo`: a small organisation to `curl` against, and to
//! open in the console, within a minute. [`load`] writes the catalog in one transaction and a
//! bonus that has already expired; [`activity`] then gives it a history through the public API
//! of the running server.

mod activity;

pub use activity::{CUSTOMER, FRIEND, activity};

use chrono::{DateTime, Utc};
use persistence::catalog::{self, NewAwardStrategy};
use persistence::rewards::{self, NewReward};
use persistence::{Db, orgs};

/// The demo organisation's ids and key.
#[derive(Debug, Clone)]
pub struct Demo {
    pub org_id: i64,
    pub api_key: String,
    pub program_id: i64,
    pub award_strategy_id: i64,
    /// One year.
    pub expiry_strategy_id: i64,
    /// Thirty days: its lots show as expiring soon.
    pub short_expiry_strategy_id: i64,
    pub reward_ids: Vec<i64>,
}

/// The URL of the demo's webhook endpoint: nothing listens there, so every delivery fails.
pub const REFUSING_ENDPOINT: &str = "http://127.0.0.1:9/demo-hooks";

/// Loads the demo into an empty database and prints how to use it; leaves a non-empty one alone
/// (`None`).
pub async fn load_and_print(
    db: &Db,
    now: DateTime<Utc>,
    bind: &str,
) -> Result<Option<Demo>, String> {
    let err = |e: persistence::PersistenceError| e.to_string();
    if orgs::any_org(db.conn()).await.map_err(err)? {
        println!(
            "demo: the database already has organisations; nothing loaded \
             (create a key with `loyalty orgs create --name NAME`)"
        );
        return Ok(None);
    }
    let demo = load(db, now).await?;
    print(&demo, bind);
    Ok(Some(demo))
}

/// Writes the demo organisation, its key, program, strategies, rewards and a webhook endpoint
/// that refuses (registered here, past the address guard the API applies, so that the demo
/// shows a failed delivery), in one transaction.
pub async fn load(db: &Db, now: DateTime<Utc>) -> Result<Demo, String> {
    let err = |e: persistence::PersistenceError| e.to_string();
    let tx = db.begin().await.map_err(err)?;
    let (org, key) = orgs::create_org(&tx, "Demo Brand", Some("demo"), now)
        .await
        .map_err(err)?;
    let program = catalog::create_program(
        &tx,
        org.id,
        "Demo Rewards",
        &[("POINTS".to_owned(), 2), ("COINS".to_owned(), 0)],
        now,
    )
    .await
    .map_err(err)?;
    let pid = program.row.id;
    let rate = catalog::create_award_strategy(
        &tx,
        org.id,
        &NewAwardStrategy {
            program_id: pid,
            name: "1 point per 10 spent".into(),
            currency: "POINTS".into(),
            kind: "RATE".into(),
            multiplier: Some("0.1".into()),
            rounding: Some("FLOOR".into()),
            min_award: Some("0".into()),
            max_award: Some("5000".into()),
            points: None,
            caps: None,
        },
        now,
    )
    .await
    .map_err(err)?;
    let year = catalog::create_expiry_strategy(
        &tx,
        org.id,
        pid,
        "1 year",
        "AFTER_DAYS",
        Some(365),
        None,
        now,
    )
    .await
    .map_err(err)?;
    let month = catalog::create_expiry_strategy(
        &tx,
        org.id,
        pid,
        "30 days",
        "AFTER_DAYS",
        Some(30),
        None,
        now,
    )
    .await
    .map_err(err)?;
    catalog::create_expiry_strategy(&tx, org.id, pid, "Never", "NEVER", None, None, now)
        .await
        .map_err(err)?;
    let mut reward_ids = Vec::new();
    for (name, stock, limit) in [("Free coffee", 100, 2), ("Movie ticket", 10, 1)] {
        let reward = rewards::create(
            &tx,
            org.id,
            &NewReward {
                program_id: pid,
                name: name.into(),
                stock: Some(stock),
                per_customer_limit: Some(limit),
                valid_from: None,
                valid_until: None,
                status: "ACTIVE".into(),
                per_customer_limit_period: "LIFETIME".into(),
                period_limit: None,
                period_limit_period: None,
            },
            now,
        )
        .await
        .map_err(err)?;
        reward_ids.push(reward.id);
    }
    let events: Vec<String> = [
        "currency.allocated",
        "currency.redeemed",
        "currency.reversed",
        "reward.issued",
    ]
    .map(str::to_owned)
    .to_vec();
    persistence::webhooks::create_endpoint(
        &tx,
        org.id,
        REFUSING_ENDPOINT,
        &events,
        &crate::engine::webhooks::new_secret(),
        now,
        u64::MAX,
    )
    .await
    .map_err(err)?;
    Db::commit(tx).await.map_err(err)?;
    expired_bonus(db, org.id, pid, now).await.map_err(err)?;
    Ok(Demo {
        org_id: org.id,
        api_key: key.key,
        program_id: pid,
        award_strategy_id: rate.id,
        expiry_strategy_id: year.id,
        short_expiry_strategy_id: month.id,
        reward_ids,
    })
}

/// Points that came and went before the demo began: the demo customer, enrolled forty days ago,
/// got a welcome bonus of 50 points that expired yesterday; the expiry job that the workers run
/// takes them now. So the ledger, the lots, the liability and the webhooks show an expiry at
/// once, without waiting for a date to pass.
async fn expired_bonus(
    db: &Db,
    org_id: i64,
    program_id: i64,
    now: DateTime<Utc>,
) -> Result<(), persistence::PersistenceError> {
    use persistence::{customers, ledger};
    let invalid = |e: domain::Invalid| persistence::PersistenceError::Other(e.message);
    let mobile = domain::customer::Mobile::parse(CUSTOMER).map_err(invalid)?;
    let then = now - chrono::Duration::days(40);
    let tx = db.begin().await?;
    let customer = customers::find_or_enroll(
        &tx,
        org_id,
        &domain::customer::CustomerRef::Mobile(mobile),
        then,
    )
    .await?
    .ok_or_else(|| persistence::PersistenceError::Other("the demo customer".into()))?;
    let account = ledger::Account {
        org_id,
        customer_id: customer.row.id,
        program_id,
        currency: "POINTS".into(),
    };
    ledger::credit(
        &tx,
        &account,
        ledger::EntryKind::Credit,
        5_000,
        Some(now - chrono::Duration::days(1)),
        Some("demo:welcome-bonus"),
        then,
    )
    .await?;
    Db::commit(tx).await?;
    crate::workers::expire_all(db, now).await?;
    Ok(())
}

fn print(demo: &Demo, bind: &str) {
    let k = &demo.api_key;
    let pid = demo.program_id;
    let reward_ids = &demo.reward_ids;
    println!(
        "demo loaded: orgId {} programId {pid} awardStrategyId {} expiryStrategyId {} rewardIds {:?}",
        demo.org_id, demo.award_strategy_id, demo.expiry_strategy_id, reward_ids
    );
    println!("demo API key: {k}");
    println!(
        "try:\n  curl -s -X POST http://{bind}/v1/currency/allocations -H 'X-API-KEY: {k}' \\\n    \
         -H 'Content-Type: application/json' -d '{{\"programId\": {pid}, \"awardStrategyId\": {}, \
         \"expiryStrategyId\": {}, \"sourceValue\": 1000, \"lookupParams\": {{\"identifierType\": \"mobile\", \
         \"identifierValue\": \"919876543210\"}}, \"uniqueId\": \"demo-1\"}}'",
        demo.award_strategy_id, demo.expiry_strategy_id
    );
    println!(
        "  curl -s -X POST http://{bind}/v1/rewards/issue/bulk -H 'X-API-KEY: {k}' \\\n    \
         -H 'Content-Type: application/json' -d '{{\"mobile\": \"919876543210\", \"transactionNumber\": \"T1\", \
         \"rewards\": [{{\"rewardId\": {}, \"quantity\": 2, \"requestId\": \"req-1\"}}, \
         {{\"rewardId\": {}, \"quantity\": 2, \"requestId\": \"req-2\"}}]}}'",
        reward_ids[0], reward_ids[1]
    );
}
