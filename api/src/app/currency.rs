//! What the currency use cases share: balances as answered, amounts checked against their currency, the refusal for a short balance.
