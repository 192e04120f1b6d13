//! What an erasure changes besides the customer row: the stored idempotency records and the
//! recorded webhook events that concern the customer, found by reference and scrubbed value by
//! value.
//!
//! A record or event concerns a customer when one of its JSON string values, at any depth, is
//! a reference to them: their id (the `customerId` of an answer or an event, the
//! `from`/`to` of a transfer), or a stored request's name for them (`customerId:<id>`,
//! `mobile:<m>`, `email:<e>`, `externalId:<x>`, the normalised form every write stores). The
//! rows are read window by window of ids (each statement's work bounded), through a textual
//! pre-filter on those references (which only narrows the read: the decision is the exact
//! comparison of whole values, made here), and locked as they are read, so a concurrent erasure of the other party of a transfer scrubs the row after this
//! one, never over it. Within a row, only whole string values that are an identifier of the
//! customer (as stored, or as a client may have written it) or one of its references by
//! identifier are replaced by [`ERASED`]; numbers, keys and longer strings stay as they are.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, JsonValue, Statement, Value};
use uuid::Uuid;

use crate::{PersistenceError, for_update, stmt};

/// The text an erased identifier is replaced with.
pub const ERASED: &str = "[erased]";

/// A customer being erased: its id and the identifiers it had.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: Uuid,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

impl Identity {
    /// `(kind, identifier)` as requests name them (`kind:identifier`).
    fn identifiers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("mobile", self.mobile.as_deref()),
            ("email", self.email.as_deref()),
            ("externalId", self.external_id.as_deref()),
        ]
        .into_iter()
        .filter_map(|(kind, v)| v.filter(|v| !v.is_empty()).map(|v| (kind, v)))
    }

    pub fn has_identifiers(&self) -> bool {
        self.identifiers().next().is_some()
    }

    /// Whether `value` names this customer: its id, or a stored request's name for it.
    fn is_reference(&self, value: &str) -> bool {
        let id = self.id.to_string();
        if value == id || value.strip_prefix("customerId:") == Some(id.as_str()) {
            return true;
        }
        self.identifiers()
            .any(|(kind, v)| value.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) == Some(v))
    }

    /// Whether `value` is one of the identifiers of `kind`, as stored or as a client may have
    /// written it (an email in any case, a mobile with `+`, spaces, dashes or brackets, either
    /// with surrounding white space).
    fn is_identifier_of(kind: &str, stored: &str, value: &str) -> bool {
        let value = value.trim();
        match kind {
            "mobile" => {
                let digits: String = value
                    .chars()
                    .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
                    .collect();
                digits == stored
            }
            "email" => value.to_lowercase() == stored,
            _ => value == stored,
        }
    }

    /// Whether `value` is, as a whole, one of the identifiers or a reference by one of them.
    fn is_erasable(&self, value: &str) -> bool {
        self.identifiers().any(|(kind, stored)| {
            Self::is_identifier_of(kind, stored, value)
                || value
                    .strip_prefix(kind)
                    .and_then(|r| r.strip_prefix(':'))
                    .is_some_and(|v| Self::is_identifier_of(kind, stored, v))
        })
    }

    /// Whether `text` holds one of the identifiers anywhere (for text that is not JSON).
    fn appears_in(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        self.identifiers()
            .any(|(kind, v)| text.contains(v) || (kind == "email" && lower.contains(v)))
    }

    /// The texts the pre-filter looks for in a row's JSON text: the id, and each reference by
    /// identifier as JSON writes it inside a string.
    fn needles(&self) -> Vec<String> {
        let mut needles = vec![self.id.to_string()];
        for (kind, v) in self.identifiers() {
            let json = serde_json::to_string(&format!("{kind}:{v}")).unwrap_or_default();
            needles.push(json.trim_matches('"').to_owned());
        }
        needles
    }
}

/// Whether any string value of `doc`, at any depth, is a reference to `who`.
fn names(doc: &JsonValue, who: &Identity) -> bool {
    match doc {
        JsonValue::String(s) => who.is_reference(s),
        JsonValue::Array(items) => items.iter().any(|v| names(v, who)),
        JsonValue::Object(map) => map.values().any(|v| names(v, who)),
        _ => false,
    }
}

/// Replaces every string value of `doc` that is an identifier of `who` (or a reference by one)
/// with [`ERASED`]; whether anything changed.
fn scrub(doc: &mut JsonValue, who: &Identity) -> bool {
    match doc {
        JsonValue::String(s) if who.is_erasable(s) => {
            *s = ERASED.to_owned();
            true
        }
        JsonValue::Array(items) => items.iter_mut().fold(false, |c, v| scrub(v, who) | c),
        JsonValue::Object(map) => map.values_mut().fold(false, |c, v| scrub(v, who) | c),
        _ => false,
    }
}

/// A receiver's answer to a delivery of an event of `who`: JSON is scrubbed value by value;
/// other text that holds an identifier is replaced as a whole. `None` when nothing changed.
fn scrub_answer(text: &str, who: &Identity) -> Option<String> {
    match serde_json::from_str::<JsonValue>(text) {
        Ok(mut doc) if doc.is_object() || doc.is_array() || doc.is_string() => {
            scrub(&mut doc, who).then(|| doc.to_string())
        }
        _ => who.appears_in(text).then(|| ERASED.to_owned()),
    }
}

/// `(condition, values)`: any of `columns`' text contains one of the needles, with the
/// needles bound from placeholder `first` on.
fn prefilter(
    backend: DbBackend,
    columns: &[&str],
    needles: &[String],
    first: usize,
) -> (String, Vec<Value>) {
    let contains = |col: &str, n: usize| match backend {
        DbBackend::Postgres => format!("strpos({col}, ${n}) > 0"),
        _ => format!("instr({col}, ${n}) > 0"),
    };
    let mut terms = Vec::new();
    for (i, _) in needles.iter().enumerate() {
        for col in columns {
            terms.push(contains(col, first + i));
        }
    }
    let values = needles.iter().map(|n| Value::from(n.clone())).collect();
    (format!("({})", terms.join(" OR ")), values)
}

#[derive(Debug, FromQueryResult)]
struct RecordText {
    id: i64,
    request_fields: JsonValue,
    response: Option<JsonValue>,
}

#[derive(Debug, Default, FromQueryResult)]
struct Bounds {
    low: Option<i64>,
    high: Option<i64>,
}

/// The windows `(after, up_to]` of `WINDOW` ids that cover the ids from `low` to `high`, as
/// `bounds` reads them (none when it reads none).
async fn windows_of<C: ConnectionTrait>(
    conn: &C,
    bounds: Statement,
) -> Result<impl Iterator<Item = (i64, i64)>, PersistenceError> {
    let bounds = Bounds::find_by_statement(bounds)
        .one(conn)
        .await?
        .unwrap_or_default();
    Ok(windows(&bounds))
}

/// The windows `(after, up_to]` of `WINDOW` ids that cover `low..=high`.
fn windows(bounds: &Bounds) -> impl Iterator<Item = (i64, i64)> + use<> {
    let (low, high) = match (bounds.low, bounds.high) {
        (Some(l), Some(h)) => (l.saturating_sub(1), h),
        _ => (0, 0),
    };
    let mut after = low;
    std::iter::from_fn(move || {
        (after < high).then(|| {
            let up_to = after.saturating_add(WINDOW).min(high);
            let w = (after, up_to);
            after = up_to;
            w
        })
    })
}

/// Ids (of records, or sequence numbers of events) one statement looks at: the scan is done
/// window by window, so that each statement's work is bounded whatever the size of the table
/// and wherever the customer's rows are in it.
const WINDOW: i64 = 5_000;

/// The values of a windowed read of organisation `org_id`: `$1` the organisation, `$2` and `$3`
/// the window, then the pre-filter's needles.
fn window_values(org_id: i64, (after, up_to): (i64, i64), needles: &[Value]) -> Vec<Value> {
    let mut values: Vec<Value> = vec![org_id.into(), after.into(), up_to.into()];
    values.extend(needles.iter().cloned());
    values
}

/// Scrubs the stored requests and answers of the idempotency records of `org_id` that concern
/// `who`; a record that changed gets the fingerprint `erased`, so that no request matches it
/// again (its key is refused as reused, never replayed). Returns how many changed.
pub async fn scrub_records<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    who: &Identity,
) -> Result<u64, PersistenceError> {
    let backend = conn.get_database_backend();
    let (filter, needles) = prefilter(
        backend,
        &["CAST(request_fields AS TEXT)", "CAST(response AS TEXT)"],
        &who.needles(),
        4,
    );
    // The primary key's range: read from its index at once (there is no index of an
    // organisation's records by id, and one would cost every write).
    let bounds = stmt(
        conn,
        "SELECT min(id) AS low, max(id) AS high FROM idempotency_records",
        vec![],
    );
    let sql = format!(
        "SELECT id, request_fields, response FROM idempotency_records \
         WHERE id > $2 AND id <= $3 AND org_id = $1 AND {filter} ORDER BY id{}",
        for_update(conn)
    );
    let mut changed = 0;
    for window in windows_of(conn, bounds).await? {
        let values = window_values(org_id, window, &needles);
        let rows = RecordText::find_by_statement(stmt(conn, &sql, values))
            .all(conn)
            .await?;
        let mut updates: Vec<(i64, JsonValue, Option<JsonValue>)> = Vec::new();
        for mut row in rows {
            let concerns = names(&row.request_fields, who)
                || row.response.as_ref().is_some_and(|r| names(r, who));
            if !concerns {
                continue;
            }
            let request = scrub(&mut row.request_fields, who);
            let response = row.response.as_mut().is_some_and(|r| scrub(r, who));
            if request || response {
                updates.push((row.id, row.request_fields, row.response));
            }
        }
        changed += u64::try_from(updates.len()).unwrap_or(0);
        update_records(conn, &updates).await?;
    }
    Ok(changed)
}

/// Writes scrubbed records back, a few hundred per statement.
async fn update_records<C: ConnectionTrait>(
    conn: &C,
    updates: &[(i64, JsonValue, Option<JsonValue>)],
) -> Result<(), PersistenceError> {
    for chunk in updates.chunks(500) {
        let (tuples, values) = crate::values_rows(
            1,
            chunk.iter().map(|(id, request, response)| {
                vec![
                    (*id).into(),
                    request.clone().into(),
                    response.clone().into(),
                ]
            }),
        );
        conn.execute_raw(stmt(
            conn,
            &format!(
                "WITH v(id, request_fields, response) AS (VALUES {tuples}) \
                 UPDATE idempotency_records SET request_fields = v.request_fields, \
                 response = v.response, fingerprint = 'erased' \
                 FROM v WHERE idempotency_records.id = v.id"
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct EventText {
    seq: i64,
    body: String,
    last_response_body: Option<String>,
}

/// Scrubs the recorded webhook events of `org_id` that concern `who`: their payloads and the
/// receivers' answers recorded with them (`lastResponseBody`). Returns how many changed.
pub async fn scrub_events<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    who: &Identity,
) -> Result<u64, PersistenceError> {
    let backend = conn.get_database_backend();
    let (filter, needles) = prefilter(backend, &["body"], &who.needles(), 4);
    // The organisation's range of events, from its index (org_id, seq).
    let bounds = stmt(
        conn,
        "SELECT min(seq) AS low, max(seq) AS high FROM webhook_events WHERE org_id = $1",
        vec![org_id.into()],
    );
    let sql = format!(
        "SELECT seq, body, last_response_body FROM webhook_events \
         WHERE org_id = $1 AND seq > $2 AND seq <= $3 AND {filter} ORDER BY seq{}",
        for_update(conn)
    );
    let mut changed = 0;
    for window in windows_of(conn, bounds).await? {
        let values = window_values(org_id, window, &needles);
        let rows = EventText::find_by_statement(stmt(conn, &sql, values))
            .all(conn)
            .await?;
        for row in rows {
            let Ok(mut body) = serde_json::from_str::<JsonValue>(&row.body) else {
                continue;
            };
            if !names(&body, who) {
                continue;
            }
            let new_body = scrub(&mut body, who).then(|| body.to_string());
            let answer = row
                .last_response_body
                .as_deref()
                .and_then(|text| scrub_answer(text, who));
            if new_body.is_none() && answer.is_none() {
                continue;
            }
            changed += 1;
            conn.execute_raw(stmt(
                conn,
                "UPDATE webhook_events SET body = COALESCE($2, body), \
                 last_response_body = COALESCE($3, last_response_body) WHERE seq = $1",
                vec![row.seq.into(), new_body.into(), answer.into()],
            ))
            .await?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
#[path = "erasure_tests.rs"]
mod tests;
