//! Unit tests of `openapi`.

use super::*;

/// Builds the whole document, which checks every fragment against utoipa's model.
#[test]
fn the_document_builds_with_every_fragment_intact() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // `Finish` adds these rules by schema name: a renamed type must not lose its rule.
    for name in [
        "AllocationBody",
        "RedemptionBody",
        "HoldBody",
        "CustomerSelector",
        "BulkIssue",
        "SingleIssue",
        "CreateCustomer",
        "CreateExpiryStrategy",
        "CreateAwardStrategy",
    ] {
        assert!(
            doc["components"]["schemas"][name]["allOf"].is_array(),
            "{name} lost the rule Finish adds to it"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["ReversalBody"]["dependentRequired"],
        json!({"amount": ["reversalId"]}),
        "ReversalBody lost the rule Finish adds to it"
    );
    assert_eq!(
        doc["components"]["schemas"]["ReversalBody"]["dependentSchemas"]["amount"],
        json!({"properties": {"reversalId": {"type": "string"}}}),
        "ReversalBody lost the rule Finish adds to it"
    );
    let lookup =
        serde_json::to_value(<crate::http::dto::LookupParams as PartialSchema>::schema()).unwrap();
    assert!(lookup.to_string().contains("entityType"), "{lookup}");
}

/// Every example in the document is read back into the type it documents (response types
/// refuse unknown fields), so an example cannot drift from the code.
#[test]
fn every_documented_example_deserialises_into_its_type() {
    use crate::http::{
        allocations, api_keys, customers, holds, idempotency_keys, programs, rewards, transfers,
        webhooks,
    };

    fn check<T: serde::de::DeserializeOwned>(name: &str, example: &Value) {
        if let Err(e) = serde_json::from_value::<T>(example.clone()) {
            panic!("the example of {name} is not a {name}: {e}\n{example}");
        }
    }
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut checked = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        // A composed schema (allOf) keeps its example on its first part.
        let example = schema
            .get("example")
            .or_else(|| schema.pointer("/allOf/0/example"));
        let Some(example) = example else { continue };
        match name.as_str() {
            "Problem" => check::<Problem>(name, example),
            "Health" => check::<health::Health>(name, example),
            "CreateProgram" => check::<programs::CreateProgram>(name, example),
            "Program" => check::<programs::ProgramView>(name, example),
            "CreateAwardStrategy" => check::<programs::CreateAwardStrategy>(name, example),
            "AwardStrategy" => check::<programs::AwardStrategyView>(name, example),
            "CreateExpiryStrategy" => check::<programs::CreateExpiryStrategy>(name, example),
            "ExpiryStrategy" => check::<programs::ExpiryStrategyView>(name, example),
            "CreateReward" => check::<rewards::CreateReward>(name, example),
            "RewardPatch" => check::<rewards::PatchReward>(name, example),
            "Reward" => check::<rewards::RewardView>(name, example),
            "BulkIssue" => check::<rewards::BulkIssue>(name, example),
            "BulkResult" => check::<rewards::BulkResult>(name, example),
            "SingleIssue" => check::<rewards::SingleIssue>(name, example),
            "SingleResult" => check::<rewards::SingleResult>(name, example),
            "ItemResult" => check::<crate::app::issuance::ItemResult>(name, example),
            "Issuance" => check::<rewards::IssuanceView>(name, example),
            "Reason" => check::<crate::http::extract::ReasonBody>(name, example),
            "ReversalBody" => check::<allocations::ReversalBody>(name, example),
            "CreateCustomer" => check::<customers::CreateCustomer>(name, example),
            "Customer" => check::<customers::CustomerView>(name, example),
            "CustomerWithBalances" => check::<customers::CustomerWithBalances>(name, example),
            "LedgerEntry" => check::<customers::LedgerEntry>(name, example),
            "AllocationBody" => check::<allocations::AllocationBody>(name, example),
            "Allocation" => check::<allocations::AllocationView>(name, example),
            "Reversal" => check::<allocations::ReversalView>(name, example),
            "RedemptionBody" => check::<allocations::RedemptionBody>(name, example),
            "Redemption" => check::<crate::app::redeem::RedemptionView>(name, example),
            "Balance" => check::<allocations::Balance>(name, example),
            "ExpiringLotView" => check::<customers::ExpiringLotView>(name, example),
            "Erasure" => check::<customers::ErasureView>(name, example),
            "EarnCapInput" => check::<programs::EarnCapInput>(name, example),
            "HoldBody" => check::<holds::HoldBody>(name, example),
            "CaptureBody" => check::<holds::CaptureBody>(name, example),
            "Hold" => check::<holds::HoldView>(name, example),
            "TransferBody" => check::<transfers::TransferBody>(name, example),
            "Transfer" => check::<transfers::TransferView>(name, example),
            "WebhookEndpointInput" => check::<webhooks::CreateEndpoint>(name, example),
            "WebhookEndpoint" => check::<webhooks::EndpointView>(name, example),
            "WebhookEndpointPatch" => check::<webhooks::PatchEndpoint>(name, example),
            "ApiKeyInput" => check::<api_keys::CreateKey>(name, example),
            "ApiKey" => check::<api_keys::KeyView>(name, example),
            "WebhookEvent" => check::<webhooks::EventView>(name, example),
            "KeyRecord" => check::<idempotency_keys::KeyRecord>(name, example),
            other => panic!("{other} has an example but no type to check it against here"),
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} examples found");
}
