use serde_json::json;
use uuid::Uuid;

use super::{ERASED, Identity, names, scrub, scrub_answer};

fn ann() -> Identity {
    Identity {
        id: Uuid::nil(),
        mobile: Some("919800000001".into()),
        email: Some("ann@example.com".into()),
        external_id: Some("1".into()),
    }
}

#[test]
fn a_record_concerns_the_customer_only_by_a_whole_reference() {
    let who = ann();
    let id = Uuid::nil().to_string();
    assert!(names(&json!({"customerId": id}), &who));
    assert!(names(&json!({"to": {"customerId": id}}), &who));
    assert!(names(&json!({"customer": "email:ann@example.com"}), &who));
    assert!(names(
        &json!({"customer": format!("customerId:{id}")}),
        &who
    ));
    assert!(!names(
        &json!({"customer": "email:joann@example.com"}),
        &who
    ));
    assert!(!names(
        &json!({"customer": "externalId:11", "amount": 1}),
        &who
    ));
    assert!(!names(
        &json!({"reference": format!("allocation:{id}")}),
        &who
    ));
}

#[test]
fn only_whole_string_values_are_scrubbed() {
    let who = ann();
    let mut doc = json!({
        "customer": "email:ann@example.com", "email": "Ann@Example.com ", "mobile": "+91 98000-00001",
        "other": "email:joann@example.com", "friend": "joann@example.com", "quantity": 1,
        "amount": "1.00", "externalId": "1", "note": "11", "list": ["ann@example.com", 1]
    });
    assert!(scrub(&mut doc, &who));
    assert_eq!(
        doc,
        json!({
            "customer": ERASED, "email": ERASED, "mobile": ERASED,
            "other": "email:joann@example.com", "friend": "joann@example.com", "quantity": 1,
            "amount": "1.00", "externalId": ERASED, "note": "11", "list": [ERASED, 1]
        })
    );
    let mut untouched = json!({"customer": "email:joann@example.com", "n": 1});
    assert!(!scrub(&mut untouched, &who));
}

#[test]
fn a_receivers_answer_is_scrubbed_as_json_or_replaced_as_text() {
    let who = ann();
    assert_eq!(
        scrub_answer(r#"{"echo": {"email": "ann@example.com"}, "n": 1}"#, &who).as_deref(),
        Some(r#"{"echo":{"email":"[erased]"},"n":1}"#)
    );
    assert_eq!(
        scrub_answer("thanks, ANN@example.com", &who).as_deref(),
        Some(ERASED)
    );
    assert_eq!(scrub_answer("answered 200", &who), None);
    assert_eq!(scrub_answer(r#"{"ok": true}"#, &who), None);
}

#[test]
fn the_windows_cover_the_range_once() {
    use super::{Bounds, WINDOW, windows};
    let w: Vec<_> = windows(&Bounds {
        low: Some(5),
        high: Some(5 + 2 * WINDOW),
    })
    .collect();
    assert_eq!(
        w,
        vec![
            (4, 4 + WINDOW),
            (4 + WINDOW, 4 + 2 * WINDOW),
            (4 + 2 * WINDOW, 5 + 2 * WINDOW)
        ]
    );
    assert_eq!(
        windows(&Bounds {
            low: None,
            high: None
        })
        .count(),
        0
    );
    assert_eq!(
        windows(&Bounds {
            low: Some(1),
            high: Some(1)
        })
        .collect::<Vec<_>>(),
        vec![(0, 1)]
    );
}
