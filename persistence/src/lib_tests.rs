//! Unit tests of the batch-insert helpers (the JSON text `insert_rows` sends PostgreSQL) and of
//! the placeholder lists statements are built with.

use super::*;
use serde_json::json;

#[test]
fn rows_become_one_json_array_with_every_type_as_postgres_reads_it() {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:11:12.345678Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let id = uuid::Uuid::parse_str("0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04").unwrap();
    let rows = vec![
        vec![
            Value::BigInt(Some(7)),
            Value::String(Some("quote \" backslash \\ newline \n é".into())),
            Value::Json(Some(Box::new(json!({"a": [1, "x"], "b": null})))),
            Value::ChronoDateTimeUtc(Some(at)),
            Value::Uuid(Some(id)),
            Value::Decimal(Some("12.50".parse().unwrap())),
            Value::Bool(Some(true)),
            Value::SmallInt(Some(201)),
        ],
        vec![
            Value::BigInt(None),
            Value::String(None),
            Value::Json(None),
            Value::ChronoDateTimeUtc(None),
            Value::Uuid(None),
            Value::Decimal(None),
            Value::Bool(None),
            Value::SmallInt(None),
        ],
    ];
    let text = rows_as_json("n, s, j, t, u, d, b, c", cells(rows)).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed,
        json!([
            {"n": 7, "s": "quote \" backslash \\ newline \n é", "j": {"a": [1, "x"], "b": null},
             "t": "2026-11-23T10:11:12.345678Z", "u": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c04",
             "d": "12.50", "b": true, "c": 201},
            {"n": null, "s": null, "j": null, "t": null, "u": null, "d": null, "b": null,
             "c": null}
        ])
    );
}

#[test]
fn a_value_json_cannot_carry_hands_the_rows_back_whole() {
    let rows = vec![
        vec![Value::BigInt(Some(1)), Value::Double(Some(0.1))],
        vec![Value::BigInt(Some(2)), Value::Double(Some(0.2))],
    ];
    let back = rows_as_json("n, f", cells(rows.clone())).unwrap_err();
    assert_eq!(back, cells(rows));
    // A row of the wrong width, too.
    let short = vec![vec![Value::BigInt(Some(1))]];
    assert_eq!(
        rows_as_json("n, f", cells(short.clone())).unwrap_err(),
        cells(short)
    );
}

#[test]
fn json_text_goes_into_the_rows_as_it_is_and_binds_as_its_value() {
    let stored = r#"{"amount":"12.50","nested":{"list":[1,"é \" x"]}}"#;
    let rows = vec![vec![
        Cell::Value(Value::BigInt(Some(1))),
        Cell::JsonText(stored.to_owned()),
    ]];
    let text = rows_as_json("n, j", rows.clone()).unwrap();
    assert_eq!(text, format!(r#"[{{"n":1,"j":{stored}}}]"#));
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed,
        json!([{"n": 1, "j": {"amount": "12.50", "nested": {"list": [1, "é \" x"]}}}])
    );
    // Where rows are bound one by one (SQLite), the text becomes the JSON value it holds.
    let bound = Cell::JsonText(stored.to_owned()).into_value().unwrap();
    assert_eq!(
        bound,
        Value::Json(Some(Box::new(serde_json::from_str(stored).unwrap())))
    );
    assert!(Cell::JsonText("{not json".into()).into_value().is_err());
}

#[test]
fn values_rows_number_their_placeholders_on_from_the_first() {
    let (text, values) = values_rows(
        3,
        [
            vec![Value::BigInt(Some(1)), Value::String(Some("a".into()))],
            vec![Value::BigInt(Some(2)), Value::String(Some("b".into()))],
        ],
    );
    assert_eq!(text, "($3, $4), ($5, $6)");
    assert_eq!(
        values,
        vec![
            Value::BigInt(Some(1)),
            Value::String(Some("a".into())),
            Value::BigInt(Some(2)),
            Value::String(Some("b".into())),
        ]
    );
    assert_eq!(
        values_rows(1, Vec::<Vec<Value>>::new()),
        (String::new(), vec![])
    );
}

#[test]
fn a_skip_list_binds_after_the_other_values_and_an_empty_one_is_no_sql() {
    let mut values: Vec<Value> = vec![Value::BigInt(Some(0)), Value::BigInt(Some(10))];
    assert_eq!(and_not_in::<i64>("h.id", &[], &mut values), "");
    assert_eq!(values.len(), 2);
    assert_eq!(
        and_not_in("h.id", &[7i64, 8], &mut values),
        " AND h.id NOT IN ($3, $4)"
    );
    assert_eq!(
        &values[2..],
        &[Value::BigInt(Some(7)), Value::BigInt(Some(8))]
    );
}
