//! `loyalty demo`: a small organisation to `curl` against within a minute.

use chrono::{DateTime, Utc};
use persistence::catalog::{self, NewAwardStrategy};
use persistence::rewards::{self, NewReward};
use persistence::{Db, orgs};

/// Loads the demo into an empty database and prints how to use it; leaves a non-empty one alone.
pub async fn load_and_print(db: &Db, now: DateTime<Utc>, bind: &str) -> Result<(), String> {
    let err = |e: persistence::PersistenceError| e.to_string();
    if orgs::any_org(db.conn()).await.map_err(err)? {
        println!(
            "demo: the database already has organisations; nothing loaded \
             (create a key with `loyalty orgs create --name NAME`)"
        );
        return Ok(());
    }
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
    Db::commit(tx).await.map_err(err)?;
    let k = &key.key;
    println!(
        "demo loaded: orgId {} programId {pid} awardStrategyId {} expiryStrategyId {} rewardIds {:?}",
        org.id, rate.id, year.id, reward_ids
    );
    println!("demo API key: {k}");
    println!(
        "try:\n  curl -s -X POST http://{bind}/v1/currency/allocations -H 'X-API-KEY: {k}' \\\n    \
         -H 'Content-Type: application/json' -d '{{\"programId\": {pid}, \"awardStrategyId\": {}, \
         \"expiryStrategyId\": {}, \"sourceValue\": 1000, \"lookupParams\": {{\"identifierType\": \"mobile\", \
         \"identifierValue\": \"919876543210\"}}, \"uniqueId\": \"demo-1\"}}'",
        rate.id, year.id
    );
    println!(
        "  curl -s -X POST http://{bind}/v1/rewards/issue/bulk -H 'X-API-KEY: {k}' \\\n    \
         -H 'Content-Type: application/json' -d '{{\"mobile\": \"919876543210\", \"transactionNumber\": \"T1\", \
         \"rewards\": [{{\"rewardId\": {}, \"quantity\": 2, \"requestId\": \"req-1\"}}, \
         {{\"rewardId\": {}, \"quantity\": 2, \"requestId\": \"req-2\"}}]}}'",
        reward_ids[0], reward_ids[1]
    );
    Ok(())
}
