//! What has come due in an account: lots past their expiry, holds past their `expiresAt`,
//! pending allocations past their `maturesAt`. The workers settle these for every account;
//! whatever takes an account's balance lock settles that account's too (so an account busy
//! with its own traffic, which the workers skip, is never left behind). These are the reads
//! that say what there is to do.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::ledger::{Account, account_tuples};
use crate::{PersistenceError, stmt};

/// Which of `accounts` have anything due at `now` (usually none), in account order.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn accounts_with_due_work<C: ConnectionTrait>(
    conn: &C,
    accounts: &[Account],
    now: DateTime<Utc>,
) -> Result<Vec<Account>, PersistenceError> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let (tuples, mut values) = account_tuples(accounts, 2);
    values.insert(0, now.into());
    let key = "(org_id, customer_id, program_id, currency)";
    Ok(Account::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT DISTINCT org_id, customer_id, program_id, currency FROM ( \
               SELECT org_id, customer_id, program_id, currency FROM ledger_entries \
               WHERE {key} IN (VALUES {tuples}) AND remaining > 0 AND expires_at <= $1 \
               UNION ALL \
               SELECT org_id, customer_id, program_id, currency FROM holds \
               WHERE {key} IN (VALUES {tuples}) AND status = 'HELD' AND expires_at <= $1 \
               UNION ALL \
               SELECT org_id, customer_id, program_id, currency FROM allocations \
               WHERE {key} IN (VALUES {tuples}) AND status = 'PENDING' AND matures_at <= $1 \
             ) due ORDER BY org_id, customer_id, program_id, currency"
        ),
        values,
    ))
    .all(conn)
    .await?)
}

/// The holds and the pending allocations of `account` that are due at `now`: holds past
/// their `expiresAt` still `HELD`, and allocations past their `maturesAt` still `PENDING`,
/// each soonest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueItems {
    pub holds: Vec<Uuid>,
    pub pending: Vec<Uuid>,
}

/// [`DueItems`] of one account, in one read.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn items_of<C: ConnectionTrait>(
    conn: &C,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<DueItems, PersistenceError> {
    #[derive(Debug, FromQueryResult)]
    struct Row {
        hold: bool,
        id: Uuid,
    }
    let rows = Row::find_by_statement(stmt(
        conn,
        "SELECT true AS hold, id, expires_at AS due FROM holds WHERE org_id = $1 \
           AND customer_id = $2 AND program_id = $3 AND currency = $4 AND status = 'HELD' \
           AND expires_at <= $5 \
         UNION ALL \
         SELECT false AS hold, id, matures_at AS due FROM allocations WHERE org_id = $1 \
           AND customer_id = $2 AND program_id = $3 AND currency = $4 AND status = 'PENDING' \
           AND matures_at <= $5 \
         ORDER BY due, id",
        account.values([now.into()]),
    ))
    .all(conn)
    .await?;
    let mut due = DueItems::default();
    for r in rows {
        if r.hold {
            due.holds.push(r.id);
        } else {
            due.pending.push(r.id);
        }
    }
    Ok(due)
}
