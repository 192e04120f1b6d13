//! Unit tests of `answer`.

use super::*;
use serde_json::json;

#[test]
fn a_fresh_answer_written_as_text_gets_the_same_body_as_one_built_as_a_tree() {
    let body = json!({"amount": "12.50", "nested": {"list": [1, "x"]}, "uniqueId": "u-1"});
    let key = IdempotencyKey::parse("k-1").unwrap();
    let as_text = |outcome| {
        let response = respond(Operation::CurrencyAllocation, outcome, Some(&key));
        let status = response.status();
        let header = response
            .headers()
            .get("Idempotent-Replayed")
            .map(|h| h.to_str().unwrap().to_owned());
        let bytes = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap();
        (
            status,
            header,
            serde_json::from_slice::<Value>(&bytes).unwrap(),
        )
    };
    let tree = as_text(Outcome::Created(Done::Created, body.clone()));
    let text = as_text(Outcome::CreatedText(
        Done::Created,
        Stored::from_text(body.to_string()),
    ));
    assert_eq!(tree, text);
    assert_eq!(text.0, StatusCode::CREATED);
    assert_eq!(text.1.as_deref(), Some("false"));
    assert_eq!(text.2["idempotentReplayed"], json!(false));
    assert_eq!(text.2["idempotencyKey"], json!("k-1"));
    assert_eq!(text.2["nested"], json!({"list": [1, "x"]}));
}
