//! Unit tests of the write pipeline: the replay body written into the stored text.

use super::*;
use serde_json::json;

fn replayed(stored: &str, key: Option<&str>) -> Result<Value, String> {
    let key = key.map(|k| IdempotencyKey::parse(k).unwrap());
    Stored(stored.to_owned())
        .with_flags(true, key.as_ref())
        .map(|body| serde_json::from_str(&body).unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn a_stored_object_is_answered_with_the_flags_written_in() {
    // PostgreSQL's jsonb text: spaces after separators, keys by length.
    let stored =
        r#"{"amount": "12.50", "customer": {"id": 7, "mobile": "9190"}, "uniqueId": "u-1"}"#;
    assert_eq!(
        replayed(stored, Some("k-1")).unwrap(),
        json!({"amount": "12.50", "customer": {"id": 7, "mobile": "9190"}, "uniqueId": "u-1",
               "idempotentReplayed": true, "idempotencyKey": "k-1"})
    );
    assert_eq!(
        replayed("  { }\n", None).unwrap(),
        json!({"idempotentReplayed": true, "idempotencyKey": null})
    );
}

#[test]
fn the_key_is_escaped_as_a_json_string() {
    let key = "a \"quoted\" \\ key ü";
    let body = replayed(r#"{"a": 1}"#, Some(key)).unwrap();
    assert_eq!(body["idempotencyKey"], json!(key));
    assert_eq!(body["a"], json!(1));
}

#[test]
fn a_text_that_is_not_a_plain_object_is_parsed_or_refused() {
    // A stored object that already names a flag (never written so) is parsed, and the flags
    // replace what it had rather than appearing twice.
    let body = replayed(
        r#"{"idempotencyKey": "old", "idempotentReplayed": false, "x": [1]}"#,
        Some("new"),
    )
    .unwrap();
    assert_eq!(
        body,
        json!({"x": [1], "idempotentReplayed": true, "idempotencyKey": "new"})
    );
    assert!(replayed("[1, 2]", None).is_err());
    assert!(replayed("null", None).is_err());
    assert!(replayed("{\"a\": ", None).is_err());
}
