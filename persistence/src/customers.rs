//! Customers: enrolled on first use, found by a normalised identifier.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use domain::customer::CustomerRef;
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::lock_order::Locks;
use crate::{PersistenceError, stmt};

#[derive(Debug, Clone, FromQueryResult)]
pub struct CustomerRow {
    pub id: Uuid,
    pub org_id: i64,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, mobile, email, external_id, created_at";

/// The column an identifier lives in; a fixed set, never client text.
pub(crate) fn column(customer: &CustomerRef) -> &'static str {
    match customer {
        CustomerRef::Mobile(_) => "mobile",
        CustomerRef::Email(_) => "email",
        CustomerRef::ExternalId(_) => "external_id",
        CustomerRef::CustomerId(_) => "id",
    }
}

/// What a write takes on the customer row it finds (PostgreSQL): `FOR KEY SHARE`, the lock an
/// allocation's foreign key to its customer takes anyway, taken when the customer is found
/// rather than when the rows are written. An erasure locks the row `FOR UPDATE` first, so a write
/// that found the customer commits before the erasure reads what to scrub, and one that comes
/// while it runs waits, then no longer finds the customer by an erased identifier. SQLite's
/// single writer serialises them without it.
fn key_share<C: ConnectionTrait>(conn: &C) -> &'static str {
    crate::row_lock(conn, " FOR KEY SHARE")
}

/// Finds a customer without enrolling one, for a write: the row is locked `FOR KEY SHARE`
/// until the caller's transaction ends, so that an erasure of the customer waits for the write
/// or the write for the erasure. Reads use [`lookup`].
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
) -> Result<Option<CustomerRow>, PersistenceError> {
    select_one(conn, org_id, customer, key_share(conn)).await
}

/// Finds a customer without enrolling one or locking anything (reads).
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn lookup<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
) -> Result<Option<CustomerRow>, PersistenceError> {
    select_one(conn, org_id, customer, "").await
}

async fn select_one<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
    lock: &str,
) -> Result<Option<CustomerRow>, PersistenceError> {
    let value = match customer {
        CustomerRef::CustomerId(id) => sea_orm::Value::from(*id),
        other => sea_orm::Value::from(other.value()),
    };
    Ok(CustomerRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND {} = $2{lock}",
            column(customer)
        ),
        vec![org_id.into(), value],
    ))
    .one(conn)
    .await?)
}

/// A customer found or enrolled, and whether this call enrolled them.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub row: CustomerRow,
    /// True when the customer was enrolled by this call (in the caller's transaction).
    pub new: bool,
}

/// Finds the customer, enrolling them if the identifier is new. A `CustomerId` never enrolls:
/// an unknown one is `None`.
///
/// Race-free: the insert is `ON CONFLICT DO NOTHING` on the identifier's unique index, and a
/// concurrent enrolment of the same identifier waits for the other transaction, then finds its row.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find_or_enroll<C: ConnectionTrait + Locks>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
    now: DateTime<Utc>,
) -> Result<Option<Enrolment>, PersistenceError> {
    if matches!(customer, CustomerRef::CustomerId(_)) {
        let row = find(conn, org_id, customer).await?;
        return Ok(row.map(|row| Enrolment { row, new: false }));
    }
    let col = column(customer);
    // Twice at most: the customer that made the insert conflict may be erased by the time it
    // is found (its identifier is gone), and then the second insert enrols someone new.
    for _ in 0..2 {
        let inserted = CustomerRow::find_by_statement(stmt(
            conn,
            &format!(
                "INSERT INTO customers (id, org_id, {col}, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, {col}) DO NOTHING RETURNING {COLUMNS}"
            ),
            vec![
                Uuid::now_v7().into(),
                org_id.into(),
                customer.value().into(),
                now.into(),
            ],
        ))
        .one(conn)
        .await?;
        if let Some(row) = inserted {
            if let Some(order) = conn.lock_order() {
                order.enrolled(org_id, row.id);
            }
            return Ok(Some(Enrolment { row, new: true }));
        }
        if let Some(row) = find(conn, org_id, customer).await? {
            return Ok(Some(Enrolment { row, new: false }));
        }
    }
    Ok(None)
}

/// [`find_or_enroll`] for many customers at once (group commit): one read of every customer
/// named, then, only for identifiers not found, one multi-row `INSERT … ON CONFLICT DO NOTHING
/// RETURNING`, and one more read for those a concurrent transaction enrolled meanwhile. Known
/// customers (the usual case) cost one statement. Returns the rows found or enrolled, keyed as
/// asked; an unknown `CustomerId` is absent.
///
/// Race-free like [`find_or_enroll`]: the insert is arbitrated by the identifiers' unique
/// indexes, never by the read before it. The inserts are made in `(organisation, identifier)`
/// order, so two batches enrolling the same new customers wait for each other in the same order
/// and cannot deadlock.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find_or_enroll_many<C: ConnectionTrait + Locks>(
    conn: &C,
    wanted: &[(i64, CustomerRef)],
    now: DateTime<Utc>,
) -> Result<HashMap<(i64, CustomerRef), Enrolment>, PersistenceError> {
    let distinct = distinct(wanted);
    let mut found: HashMap<Identifier, Enrolment> = HashMap::new();
    read_into(conn, &distinct, &mut found).await?;
    let enrol: Vec<Vec<sea_orm::Value>> = distinct
        .iter()
        .filter(|k| k.1 != "id" && !found.contains_key(*k))
        .map(|(org, col, value)| {
            let cell = |c: &str| sea_orm::Value::from((c == *col).then(|| value.clone()));
            vec![
                Uuid::now_v7().into(),
                (*org).into(),
                cell("mobile"),
                cell("email"),
                cell("external_id"),
                now.into(),
            ]
        })
        .collect();
    if !enrol.is_empty() {
        // No conflict target: a row is skipped when any of the identifier indexes refuses it.
        let tail = format!("ON CONFLICT DO NOTHING RETURNING {COLUMNS}");
        let columns = "id, org_id, mobile, email, external_id, created_at";
        for row in crate::insert_rows(conn, "customers", columns, &tail, enrol).await? {
            let row = CustomerRow::from_query_result(&row, "")?;
            if let Some(order) = conn.lock_order() {
                order.enrolled(row.org_id, row.id);
            }
            remember(&mut found, Enrolment { row, new: true });
        }
        // Those another transaction enrolled first: committed now, so a new read sees them.
        read_into(conn, &distinct, &mut found).await?;
    }
    Ok(as_asked(wanted, &found, Enrolment::clone))
}

/// An identifier as the database keeps it: (organisation, column, value).
type Identifier = (i64, &'static str, String);

/// The identifier `customer` names in organisation `org_id`.
fn identifier(org_id: i64, customer: &CustomerRef) -> Identifier {
    (org_id, column(customer), customer.value())
}

/// The identifiers of `wanted`, each once, in a fixed order.
fn distinct(wanted: &[(i64, CustomerRef)]) -> BTreeSet<Identifier> {
    wanted.iter().map(|(org, c)| identifier(*org, c)).collect()
}

/// What was `found` of `wanted`, keyed as asked (`pick` takes what the caller answers with).
fn as_asked<T>(
    wanted: &[(i64, CustomerRef)],
    found: &HashMap<Identifier, Enrolment>,
    pick: impl Fn(&Enrolment) -> T,
) -> HashMap<(i64, CustomerRef), T> {
    wanted
        .iter()
        .filter_map(|(org, c)| {
            found
                .get(&identifier(*org, c))
                .map(|e| ((*org, c.clone()), pick(e)))
        })
        .collect()
}

/// [`find`] for many customers at once, in one statement (locked likewise); never enrolls.
/// Unknown ones are absent from the answer.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find_many<C: ConnectionTrait>(
    conn: &C,
    wanted: &[(i64, CustomerRef)],
) -> Result<HashMap<(i64, CustomerRef), CustomerRow>, PersistenceError> {
    let mut found: HashMap<Identifier, Enrolment> = HashMap::new();
    read_into(conn, &distinct(wanted), &mut found).await?;
    Ok(as_asked(wanted, &found, |e| e.row.clone()))
}

/// Files a customer under each of its identifiers.
fn remember(found: &mut HashMap<Identifier, Enrolment>, customer: Enrolment) {
    let row = &customer.row;
    let keys = [
        ("id", Some(row.id.to_string())),
        ("mobile", row.mobile.clone()),
        ("email", row.email.clone()),
        ("external_id", row.external_id.clone()),
    ];
    for (col, value) in keys {
        if let Some(value) = value {
            found.insert((row.org_id, col, value), customer.clone());
        }
    }
}

/// Reads the customers of `wanted` not in `found` yet, into `found`, locking them
/// (`key_share`).
async fn read_into<C: ConnectionTrait>(
    conn: &C,
    wanted: &BTreeSet<Identifier>,
    found: &mut HashMap<Identifier, Enrolment>,
) -> Result<(), PersistenceError> {
    let missing: Vec<&Identifier> = wanted.iter().filter(|k| !found.contains_key(*k)).collect();
    for chunk in missing.chunks(1_000) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 2);
        let mut terms = Vec::with_capacity(chunk.len());
        for (org, col, value) in chunk {
            let bound: sea_orm::Value = if *col == "id" {
                match Uuid::parse_str(value) {
                    Ok(id) => id.into(),
                    Err(_) => continue,
                }
            } else {
                value.clone().into()
            };
            terms.push(format!(
                "(org_id = ${} AND {col} = ${})",
                values.len() + 1,
                values.len() + 2
            ));
            values.push((*org).into());
            values.push(bound);
        }
        if terms.is_empty() {
            continue;
        }
        let rows = CustomerRow::find_by_statement(stmt(
            conn,
            &format!(
                "SELECT {COLUMNS} FROM customers WHERE {}{}",
                terms.join(" OR "),
                key_share(conn)
            ),
            values,
        ))
        .all(conn)
        .await?;
        for row in rows {
            remember(found, Enrolment { row, new: false });
        }
    }
    Ok(())
}

/// Forgets customers this transaction enrolled after all (nothing was issued to them), with
/// the empty holding rows made for them: a refused request enrols nobody.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn forget_enrolled<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<(), PersistenceError> {
    if ids.is_empty() {
        return Ok(());
    }
    let values: Vec<sea_orm::Value> = ids.iter().map(|id| (*id).into()).collect();
    let list = crate::in_list(1, ids.len());
    for table in ["customer_reward_counts", "customers"] {
        let column = if table == "customers" {
            "id"
        } else {
            "customer_id"
        };
        conn.execute_raw(stmt(
            conn,
            &format!("DELETE FROM {table} WHERE {column} IN ({list})"),
            values.clone(),
        ))
        .await?;
    }
    Ok(())
}
