//! Lots about to expire: the notices written once per lot before its `expires_at` (or late,
//! when it expired before a notice round came), and the customer's list of what expires soon.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::{Page, PersistenceError, in_list, limit_value, page_fetch, stmt};

/// A lot with something left that expires soon (or that expired with something left).
#[derive(Debug, Clone, FromQueryResult)]
pub struct ExpiringLot {
    /// The lot's ledger entry.
    pub id: i64,
    pub org_id: i64,
    pub customer_id: Uuid,
    pub program_id: i64,
    pub currency: String,
    /// What is left of the lot (held parts included: they expire with it).
    pub remaining: i64,
    /// The part of `remaining` that holds reserve.
    pub held: i64,
    pub expires_at: DateTime<Utc>,
    /// When its `currency.expiring` notice was written.
    pub notified_at: Option<DateTime<Utc>>,
    /// What was left of it when it expired (`remaining` is 0 then); `None` before.
    pub expired_amount: Option<i64>,
    /// The currency's scale.
    pub scale: i16,
}

const COLUMNS: &str = "id, org_id, customer_id, program_id, currency, remaining, held, \
     expires_at, notified_at, expired_amount, \
     (SELECT pc.scale FROM program_currencies pc WHERE pc.org_id = ledger_entries.org_id \
       AND pc.program_id = ledger_entries.program_id AND pc.code = ledger_entries.currency) AS scale";

/// Which lots owe a notice: not noticed yet, and with something left or emptied by their
/// expiry (a lot spent to nothing owes none).
const OWED: &str = "notified_at IS NULL AND (remaining > 0 OR expired_amount IS NOT NULL)";

/// A lot that owes its `currency.expiring` notice, as [`notices_due`] reads it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct NoticeDue {
    pub id: i64,
    pub org_id: i64,
    pub expires_at: DateTime<Utc>,
}

/// Up to `limit` lots that owe a notice and expire after `from` and not after `horizon`, in
/// `(expires_at, id)` order after `after` (the last lot of the previous read). A read without
/// locks: [`claim_notices`] decides.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn notices_due<C: ConnectionTrait>(
    conn: &C,
    from: DateTime<Utc>,
    horizon: DateTime<Utc>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u64,
) -> Result<Vec<NoticeDue>, PersistenceError> {
    let (after_expiry, after_id) = after.unwrap_or((from, i64::MIN));
    Ok(NoticeDue::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT id, org_id, expires_at FROM ledger_entries \
             WHERE {OWED} AND expires_at > $1 AND expires_at <= $2 \
               AND expires_at >= $3 AND (expires_at > $3 OR id > $4) \
             ORDER BY expires_at, id LIMIT $5"
        ),
        vec![
            from.into(),
            horizon.into(),
            after_expiry.into(),
            after_id.into(),
            limit_value(limit),
        ],
    ))
    .all(conn)
    .await?)
}

/// Marks the lots `ids` of organisation `org_id` that still owe a notice as noticed at `now`;
/// returns them. Each lot is returned once across any number of concurrent callers: the update
/// only takes lots still unnoticed, and on PostgreSQL the lots another caller (or an expiry) is
/// changing are skipped (`SKIP LOCKED`), not waited for. The caller writes their notices in
/// the same transaction.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn claim_notices<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<ExpiringLot>, PersistenceError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let skip = crate::row_lock(conn, " FOR UPDATE SKIP LOCKED");
    let sql = format!(
        "UPDATE ledger_entries SET notified_at = $1 \
         WHERE notified_at IS NULL AND id IN ( \
           SELECT id FROM ledger_entries \
           WHERE org_id = $2 AND id IN ({}) AND {OWED}{skip}) \
         RETURNING {COLUMNS}",
        in_list(3, ids.len())
    );
    let mut values: Vec<sea_orm::Value> = vec![now.into(), org_id.into()];
    values.extend(ids.iter().map(|id| sea_orm::Value::from(*id)));
    let mut lots = ExpiringLot::find_by_statement(stmt(conn, &sql, values))
        .all(conn)
        .await?;
    lots.sort_by_key(|l| (l.expires_at, l.id));
    Ok(lots)
}

/// The customer's lots with something left that expire after `now` and not after `horizon`,
/// soonest first, `limit` at a time after the lot `after` (a cursor: the last lot of the
/// previous page).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn of_customer<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer_id: Uuid,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
    after: Option<i64>,
    limit: u64,
) -> Result<Page<ExpiringLot>, PersistenceError> {
    // Keyset on (expires_at, id): the cursor lot's own expiry is looked up, so the cursor stays
    // a plain id.
    let rows = ExpiringLot::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM ledger_entries \
             WHERE org_id = $1 AND customer_id = $2 AND remaining > 0 \
               AND expires_at > $3 AND expires_at <= $4 \
               AND ($5 = 0 OR expires_at > (SELECT c.expires_at FROM ledger_entries c WHERE c.org_id = $1 AND c.id = $5) \
                    OR (expires_at = (SELECT c.expires_at FROM ledger_entries c WHERE c.org_id = $1 AND c.id = $5) \
                        AND id > $5)) \
             ORDER BY expires_at, id LIMIT $6"
        ),
        vec![
            org_id.into(),
            customer_id.into(),
            now.into(),
            horizon.into(),
            after.unwrap_or(0).into(),
            page_fetch(limit),
        ],
    ))
    .all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |l| l.id))
}
