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
        allocations, api_keys, customers, holds, programs, rewards, transfers, webhooks,
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
            "Program" => check::<crate::app::programs::ProgramView>(name, example),
            "CreateAwardStrategy" => check::<programs::CreateAwardStrategy>(name, example),
            "AwardStrategy" => check::<crate::app::programs::AwardStrategyView>(name, example),
            "CreateExpiryStrategy" => check::<programs::CreateExpiryStrategy>(name, example),
            "ExpiryStrategy" => check::<crate::app::programs::ExpiryStrategyView>(name, example),
            "CreateReward" => check::<rewards::CreateReward>(name, example),
            "RewardPatch" => check::<rewards::PatchReward>(name, example),
            "Reward" => check::<crate::app::rewards::RewardView>(name, example),
            "BulkIssue" => check::<rewards::BulkIssue>(name, example),
            "BulkResult" => check::<crate::app::issuance::BulkResult>(name, example),
            "SingleIssue" => check::<rewards::SingleIssue>(name, example),
            "SingleResult" => check::<crate::app::issuance::SingleResult>(name, example),
            "ItemResult" => check::<crate::app::issuance::ItemResult>(name, example),
            "Issuance" => check::<crate::app::rewards::IssuanceView>(name, example),
            "Reason" => check::<crate::http::extract::ReasonBody>(name, example),
            "ReversalBody" => check::<allocations::ReversalBody>(name, example),
            "CreateCustomer" => check::<customers::CreateCustomer>(name, example),
            "Customer" => check::<crate::app::customers::CustomerView>(name, example),
            "CustomerWithBalances" => {
                check::<crate::app::customers::CustomerWithBalances>(name, example)
            }
            "LedgerEntry" => check::<crate::app::customers::LedgerEntry>(name, example),
            "AllocationBody" => check::<allocations::AllocationBody>(name, example),
            "Allocation" => check::<crate::app::allocate::AllocationView>(name, example),
            "Reversal" => check::<crate::app::reversal::ReversalView>(name, example),
            "RedemptionBody" => check::<allocations::RedemptionBody>(name, example),
            "Redemption" => check::<crate::app::redeem::RedemptionView>(name, example),
            "Balance" => check::<crate::app::currency::Balance>(name, example),
            "ExpiringLotView" => check::<crate::app::customers::ExpiringLotView>(name, example),
            "Erasure" => check::<crate::app::customers::ErasureView>(name, example),
            "EarnCapInput" => check::<programs::EarnCapInput>(name, example),
            "HoldBody" => check::<holds::HoldBody>(name, example),
            "CaptureBody" => check::<holds::CaptureBody>(name, example),
            "Hold" => check::<crate::app::holds::HoldView>(name, example),
            "TransferBody" => check::<transfers::TransferBody>(name, example),
            "Transfer" => check::<crate::app::transfers::TransferView>(name, example),
            "WebhookEndpointInput" => check::<webhooks::CreateEndpoint>(name, example),
            "WebhookEndpoint" => check::<crate::app::endpoints::EndpointView>(name, example),
            "WebhookEndpointPatch" => check::<webhooks::PatchEndpoint>(name, example),
            "ApiKeyInput" => check::<api_keys::CreateKey>(name, example),
            "ApiKey" => check::<crate::app::keys::KeyView>(name, example),
            "WebhookEvent" => check::<crate::app::endpoints::EventView>(name, example),
            "KeyRecord" => check::<crate::app::keys::idempotency::KeyRecord>(name, example),
            "CustomerTransfer" => {
                check::<crate::app::customer_lists::CustomerTransferView>(name, example)
            }
            "Liability" => check::<crate::app::liability::LiabilityView>(name, example),
            other => panic!("{other} has an example but no type to check it against here"),
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} examples found");
}
