//! Unit tests of `idempotency`.

use super::*;

#[test]
fn keys_are_bounded_and_printable() {
    assert!(IdempotencyKey::parse("currency-issue-001").is_ok());
    assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    assert!(IdempotencyKey::parse("").is_err());
    assert!(IdempotencyKey::parse("   ").is_err());
    assert!(IdempotencyKey::parse("a\nb").is_err());
}

#[test]
fn operations_round_trip() {
    for op in Operation::ALL {
        assert_eq!(Operation::parse(op.as_str()), Some(op));
    }
    assert_eq!(Operation::parse("nope"), None);
}

#[test]
fn fingerprint_depends_on_meaning_and_operation() {
    let a = RequestMeaning::new()
        .with("amount", Some("1000"))
        .with("customer", Some("mobile:1"));
    let b = RequestMeaning::new()
        .with("customer", Some("mobile:1"))
        .with("amount", Some("1000"));
    assert_eq!(
        a.fingerprint(Operation::CurrencyAllocation),
        b.fingerprint(Operation::CurrencyAllocation)
    );
    assert_ne!(
        a.fingerprint(Operation::CurrencyAllocation),
        a.fingerprint(Operation::CurrencyRedemption)
    );
    let c = RequestMeaning::new()
        .with("amount", Some("999"))
        .with("customer", Some("mobile:1"));
    assert_ne!(
        a.fingerprint(Operation::CurrencyAllocation),
        c.fingerprint(Operation::CurrencyAllocation)
    );
    assert_eq!(a.mismatched_fields(&c), vec!["amount".to_owned()]);
    let d = RequestMeaning::new().with("amount", Some("1000"));
    assert_eq!(a.mismatched_fields(&d), vec!["customer".to_owned()]);
    let ambiguous1 = RequestMeaning::new().with("a", Some("bc"));
    let ambiguous2 = RequestMeaning::new().with("ab", Some("c"));
    assert_ne!(
        ambiguous1.fingerprint(Operation::ProgramCreate),
        ambiguous2.fingerprint(Operation::ProgramCreate)
    );
}
