//! The demo's history, made through the public API of the running server, as a client would:
//! credits (one expiring within the month), a redemption, a hold, a pending allocation, a
//! transfer, a reward issued, a reversal; the refusing endpoint gets their events.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Demo;

/// The demo customer's mobile; the transfer's recipient is [`FRIEND`].
pub const CUSTOMER: &str = "919876543210";
pub const FRIEND: &str = "919800000001";

/// Sends the demo's requests to `base` (`http://127.0.0.1:8080`); each is keyed, so running
/// it twice changes nothing.
pub async fn activity(base: &str, demo: &Demo, now: DateTime<Utc>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let call = |path: &str, body: Value| {
        let request = client
            .post(format!("{base}{path}"))
            .header("X-API-KEY", &demo.api_key)
            .json(&body);
        let path = path.to_owned();
        async move {
            let r = request.send().await.map_err(|e| format!("{path}: {e}"))?;
            let status = r.status();
            if status.is_success() {
                Ok(())
            } else {
                let text = r.text().await.unwrap_or_default();
                Err(format!("demo: {path} answered {status}: {text}"))
            }
        }
    };
    let pid = demo.program_id;
    let customer = json!({"identifierType": "mobile", "identifierValue": CUSTOMER});
    let allocation = |value: i64, expiry: i64, unique_id: &str| {
        json!({"programId": pid, "awardStrategyId": demo.award_strategy_id,
            "expiryStrategyId": expiry, "sourceValue": value, "eventName": "TransactionAdd",
            "eventSourceId": unique_id.to_uppercase(), "lookupParams": customer, "uniqueId": unique_id})
    };
    let allocations = "/v1/currency/allocations";
    call(
        allocations,
        allocation(12_000, demo.expiry_strategy_id, "demo-order-1001"),
    )
    .await?;
    call(
        allocations,
        allocation(5_000, demo.short_expiry_strategy_id, "demo-order-1002"),
    )
    .await?;
    call(
        allocations,
        allocation(3_000, demo.expiry_strategy_id, "demo-order-1003"),
    )
    .await?;
    call(
        allocations,
        allocation(4_000, demo.expiry_strategy_id, "demo-order-1005"),
    )
    .await?;
    let mut pending = allocation(2_000, demo.expiry_strategy_id, "demo-order-1004");
    pending["maturesAt"] = json!((now + chrono::Duration::days(7)).to_rfc3339());
    call(allocations, pending).await?;
    call(
        "/v1/currency/redemptions",
        json!({"programId": pid, "currency": "POINTS", "amount": "250", "mobile": CUSTOMER,
            "uniqueId": "demo-redemption-1", "reason": "Checkout BILL-2001"}),
    )
    .await?;
    call(
        "/v1/currency/holds",
        json!({"programId": pid, "currency": "POINTS", "amount": "100", "mobile": CUSTOMER,
            "uniqueId": "demo-hold-1", "expiresInSeconds": 604_800, "reason": "Table booking"}),
    )
    .await?;
    call(
        "/v1/currency/transfers",
        json!({"programId": pid, "currency": "POINTS", "amount": "150",
            "from": {"mobile": CUSTOMER}, "to": {"mobile": FRIEND},
            "uniqueId": "demo-transfer-1", "reason": "Gift to a friend"}),
    )
    .await?;
    call(
        "/v1/currency/allocations/demo-order-1005/reversal",
        json!({"reason": "Order returned"}),
    )
    .await?;
    if let Some(reward) = demo.reward_ids.first() {
        call(
            "/v1/rewards/issue/bulk",
            json!({"mobile": CUSTOMER, "transactionNumber": "BILL-2002",
                "rewards": [{"rewardId": reward, "quantity": 1, "requestId": "demo-reward-1"}]}),
        )
        .await?;
    }
    Ok(())
}
