//! The write pipeline: the one mechanism that makes a write exactly-once. Every keyed write goes
//! through it, alone ([`execute`]) or group-committed with others (`write::batch`); no use case
//! touches the idempotency store itself.
//!
//! One database transaction holds the claim on the key, the effect, and the stored outcome:
//! 1. claim the key (`INSERT … ON CONFLICT DO NOTHING`); a concurrent holder makes us wait,
//!    bounded by the lock wait, then 409;
//! 2. the key was already used: same meaning → replay the stored outcome (202), another
//!    meaning → 422 naming the fields that differ;
//! 3. otherwise run the effect; a definite failure rolls everything back, the key included,
//!    so a retry is evaluated afresh;
//! 4. store the outcome on the record and commit. A commit whose outcome is unknown is a 503:
//!    the retry finds the record if the commit happened, and performs the effect if not.

use domain::idempotency::{IdempotencyKey, Operation, RequestMeaning};
use persistence::idempotency::{self, Claim, RecordRow};
use persistence::{Db, PersistenceError, Tx};
use serde_json::Value;

use crate::app::AppError;

pub mod batch;
pub mod lookups;
pub mod recent;
use crate::app::AppState;
pub use lookups::KeyLookup;

/// What kind of effect a write had, which decides its first answer: something created (201),
/// updated (200) or removed (204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Created,
    Updated,
    Removed,
}

impl Done {
    /// The status code the key's record keeps for the first answer, as the idempotency-key
    /// resource shows it.
    pub fn recorded_status(self) -> u16 {
        match self {
            Done::Created => 201,
            Done::Updated => 200,
            Done::Removed => 204,
        }
    }
}

/// What an effect produced: the answer's body (without the idempotency fields, which are added
/// on the way out), the id of what it created, and what kind of effect it was.
#[derive(Debug)]
pub struct Effect {
    pub body: Value,
    pub resource_id: Option<String>,
    pub done: Done,
    /// What a replay answers, when it must not repeat all of `body` (a secret shown once).
    pub stored: Option<Value>,
}

impl Effect {
    /// Something was created: 201.
    pub fn created(body: Value, resource_id: impl ToString) -> Self {
        Self {
            body,
            resource_id: Some(resource_id.to_string()),
            done: Done::Created,
            stored: None,
        }
    }

    /// Replays answer `stored` instead of the body (which holds something shown once).
    pub fn replayed_as(mut self, stored: Value) -> Self {
        self.stored = Some(stored);
        self
    }

    /// Another kind of effect than a creation (an update, a removal).
    pub fn done(mut self, done: Done) -> Self {
        self.done = done;
        self
    }
}

/// The answer to a write.
#[derive(Debug)]
pub enum Outcome {
    /// The effect happened now.
    Created(Done, Value),
    /// The same, with the body as the JSON text that was stored with the key (a
    /// group-committed allocation serialises its answer once, for the key's record, the event
    /// and the client).
    CreatedText(Done, Stored),
    /// An earlier request with the same key and meaning performed it; this is its outcome.
    Replayed(Stored),
}

/// A stored outcome on its way back to a client: the JSON text of an object, as the store
/// keeps it. The replay path reads it as text and answers it with the idempotency fields
/// written in ([`Stored::with_flags`]), so a replay never parses or re-serialises the body.
#[derive(Debug, Clone)]
pub struct Stored(String);

impl Stored {
    pub fn from_value(value: &Value) -> Self {
        Self(value.to_string())
    }

    /// The JSON text of an object, as `serde_json` wrote it.
    pub fn from_text(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body of an answer: the stored object with `"idempotentReplayed"` and
    /// `"idempotencyKey"` added, written into the text. A stored text that does not look like
    /// a plain object without those fields (never written so) goes the long way, through a
    /// parse, rather than being spliced blindly.
    pub fn with_flags(
        self,
        replayed: bool,
        key: Option<&IdempotencyKey>,
    ) -> Result<String, AppError> {
        let key = key.map_or(Value::Null, |k| Value::String(k.to_string()));
        let text = self.0.trim();
        let spliceable = text.starts_with('{')
            && text.ends_with('}')
            && !text.contains("\"idempotentReplayed\"")
            && !text.contains("\"idempotencyKey\"");
        if !spliceable {
            return match serde_json::from_str(text) {
                Ok(Value::Object(mut map)) => {
                    insert_flags(&mut map, replayed, key);
                    Ok(Value::Object(map).to_string())
                }
                _ => Err(AppError::Internal(
                    "a stored outcome is not a JSON object".into(),
                )),
            };
        }
        let inner = text[1..text.len() - 1].trim();
        let key = key.to_string();
        let mut body = String::with_capacity(text.len() + key.len() + 48);
        body.push('{');
        if !inner.is_empty() {
            body.push_str(inner);
            body.push(',');
        }
        body.push_str(if replayed {
            "\"idempotentReplayed\":true,\"idempotencyKey\":"
        } else {
            "\"idempotentReplayed\":false,\"idempotencyKey\":"
        });
        body.push_str(&key);
        body.push('}');
        Ok(body)
    }
}

/// The request the key was used for, compared with this one.
pub fn replay_or_refuse(
    record: &RecordRow,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
) -> Result<Stored, AppError> {
    if record.fingerprint != meaning.fingerprint(operation) {
        return Err(AppError::IdempotencyKeyReused {
            operation: operation.as_str(),
            key: key.to_string(),
            mismatched_fields: record.meaning().mismatched_fields(meaning),
        });
    }
    // The text the database keeps, as the replay path answers it: every replay of a key is the
    // same bytes, whichever path found the record.
    record
        .response_text
        .clone()
        .map(Stored::from_text)
        .ok_or_else(|| {
            AppError::Internal(format!("idempotency record {} has no outcome", record.id))
        })
}

/// Maps an error of claiming a key: a lock wait that ran out means another request holds it.
pub fn claim_error(err: PersistenceError, operation: Operation, key: &IdempotencyKey) -> AppError {
    match err {
        PersistenceError::LockTimeout => AppError::IdempotencyKeyInUse {
            operation: operation.as_str(),
            key: key.to_string(),
        },
        other => other.into(),
    }
}

/// The replay path: one indexed read of the key, outside any transaction. A key used before
/// (and not forgotten by the retention) is replayed or refused here; `None` means the request
/// must run. Only committed records are seen, so a key whose first request is still running
/// is `None` too: the claim then waits for it, as rule 5 says.
///
/// Concurrent look-ups share one query ([`lookups`]): under load a replay costs a fraction of
/// a round trip.
pub async fn replay_if_used(
    state: &AppState,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
) -> Result<Option<Outcome>, AppError> {
    let lookup = KeyLookup {
        org_id,
        operation,
        key: key.as_str().to_owned(),
    };
    let Some(record) = lookups::find(state, lookup).await? else {
        return Ok(None);
    };
    if state
        .forget_before()
        .is_some_and(|cutoff| record.created_at < cutoff)
    {
        return Ok(None);
    }
    if record.fingerprint != meaning.fingerprint(operation) {
        // Another request used the key: read the whole record to name the fields that differ.
        // Gone meanwhile (forgotten by the retention): the claim decides, as for a new key.
        let Some(full) = idempotency::get(state.db.conn(), org_id, operation, key.as_str()).await?
        else {
            return Ok(None);
        };
        return replay_or_refuse(&full, operation, key, meaning)
            .map(|v| Some(Outcome::Replayed(v)));
    }
    stored_answer(record.id, record.response.as_deref()).map(Some)
}

/// The replay of a used key whose request meant the same (its fingerprint matched): the
/// stored answer, as the text the database keeps.
pub fn stored_answer(record_id: i64, response: Option<&str>) -> Result<Outcome, AppError> {
    match response {
        Some(text) => Ok(Outcome::Replayed(Stored(text.to_owned()))),
        None => Err(AppError::Internal(format!(
            "idempotency record {record_id} has no outcome"
        ))),
    }
}

/// Runs `effect` exactly once per `(organisation, operation, key)`; without a key, just once.
/// A key used before is answered by [`replay_if_used`] without opening a transaction.
pub async fn execute<F>(
    state: &AppState,
    org_id: i64,
    operation: Operation,
    key: Option<&IdempotencyKey>,
    meaning: &RequestMeaning,
    effect: F,
) -> Result<Outcome, AppError>
where
    F: AsyncFnOnce(&Tx) -> Result<Effect, AppError>,
{
    if let Some(key) = key
        && let Some(replayed) = replay_if_used(state, org_id, operation, key, meaning).await?
    {
        return Ok(replayed);
    }
    let tx = state.db.begin().await?;
    let claimed = match key {
        None => None,
        Some(key) => match idempotency::claim(
            &tx,
            org_id,
            operation,
            key,
            meaning,
            state.now(),
            state.forget_before(),
        )
        .await
        {
            Ok(Claim::Claimed { id }) => Some(id),
            Ok(Claim::Existing(record)) => {
                drop(tx);
                return replay_or_refuse(&record, operation, key, meaning).map(Outcome::Replayed);
            }
            Err(e) => return Err(claim_error(e, operation, key)),
        },
    };
    // On error the transaction is dropped, which rolls it back: no effect, no key.
    let done = effect(&tx).await?;
    if let Some(id) = claimed {
        complete(&tx, id, &done).await?;
    }
    Db::commit(tx).await?;
    Ok(Outcome::Created(done.done, done.body))
}

/// A keyed write in a transaction that already holds a lock the key's holder may be waiting
/// for (an account's balance lock, taken by [`crate::app::settle`]): the key is claimed without
/// waiting, in a savepoint of `tx`, and `effect` runs in that savepoint, which keeps its
/// stored answer with it. `None` when the key was used before or is held by a transaction in
/// flight: nothing changed, and that other request does the work (waiting for the key here
/// would be a deadlock).
pub async fn at_once<F>(
    tx: &Tx,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: chrono::DateTime<chrono::Utc>,
    effect: F,
) -> Result<Option<Value>, AppError>
where
    F: AsyncFnOnce(&Tx) -> Result<Effect, AppError>,
{
    let Some((savepoint, record)) =
        idempotency::claim_at_once(tx, org_id, operation, key, meaning, now).await?
    else {
        return Ok(None);
    };
    let done = effect(&savepoint).await?;
    complete(&savepoint, record, &done).await?;
    savepoint.commit().await.map_err(PersistenceError::from)?;
    Ok(Some(done.body))
}

/// A keyed write of a background round (a worker's, which has no request and no
/// [`AppState`]): in a transaction of its own, the key claimed first (the lock order of every
/// keyed write), then `effect`, stored and committed. The key used before is
/// [`Step::Settled`](crate::engine::rounds::Step) (a request or another instance did it); a
/// key held by a transaction in flight is `Busy` (looked at again next round). An effect that
/// answers a step instead (`Err(step)`: a balance busy elsewhere, nothing left to do) rolls
/// back, the claim with it.
pub async fn in_round<F>(
    db: &Db,
    org_id: i64,
    operation: Operation,
    key: &IdempotencyKey,
    meaning: &RequestMeaning,
    now: chrono::DateTime<chrono::Utc>,
    effect: F,
) -> Result<crate::engine::rounds::Step, AppError>
where
    F: AsyncFnOnce(&Tx) -> Result<Result<Effect, crate::engine::rounds::Step>, AppError>,
{
    use crate::engine::rounds::Step;
    let tx = db.begin().await?;
    let record = match idempotency::claim(&tx, org_id, operation, key, meaning, now, None).await {
        Ok(Claim::Claimed { id }) => id,
        Ok(Claim::Existing(_)) => return Ok(Step::Settled),
        Err(PersistenceError::LockTimeout) => return Ok(Step::Busy),
        Err(e) => return Err(e.into()),
    };
    let done = match effect(&tx).await? {
        Ok(done) => done,
        // Dropping the transaction rolls it back, the claim included.
        Err(step) => return Ok(step),
    };
    complete(&tx, record, &done).await?;
    Db::commit(tx).await?;
    Ok(Step::Done)
}

/// Stores an effect's answer on its claimed key record.
async fn complete(tx: &Tx, record: i64, done: &Effect) -> Result<(), PersistenceError> {
    idempotency::complete(
        tx,
        record,
        done.done.recorded_status(),
        done.stored.as_ref().unwrap_or(&done.body),
        done.resource_id.as_deref(),
    )
    .await
}

/// `body` with the idempotency fields every keyed write's answer carries.
pub fn with_flags(mut body: Value, replayed: bool, key: Option<&IdempotencyKey>) -> Value {
    if let Value::Object(map) = &mut body {
        insert_flags(
            map,
            replayed,
            key.map_or(Value::Null, |k| Value::String(k.to_string())),
        );
    }
    body
}

/// The idempotency fields every keyed write's answer carries.
fn insert_flags(map: &mut serde_json::Map<String, Value>, replayed: bool, key: Value) {
    map.insert("idempotentReplayed".into(), Value::Bool(replayed));
    map.insert("idempotencyKey".into(), key);
}

#[cfg(test)]
mod tests;
