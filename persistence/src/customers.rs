//! Customers: enrolled on first use, found by a normalised identifier.

use chrono::{DateTime, Utc};
use domain::customer::CustomerRef;
use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

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
fn column(customer: &CustomerRef) -> &'static str {
    match customer {
        CustomerRef::Mobile(_) => "mobile",
        CustomerRef::Email(_) => "email",
        CustomerRef::ExternalId(_) => "external_id",
        CustomerRef::CustomerId(_) => "id",
    }
}

/// Finds a customer without enrolling one.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
) -> Result<Option<CustomerRow>, PersistenceError> {
    let value = match customer {
        CustomerRef::CustomerId(id) => sea_orm::Value::from(*id),
        other => sea_orm::Value::from(other.value()),
    };
    Ok(CustomerRow::find_by_statement(stmt(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND {} = $2",
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
pub async fn find_or_enroll<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    customer: &CustomerRef,
    now: DateTime<Utc>,
) -> Result<Option<Enrolment>, PersistenceError> {
    let existing = |row: Option<CustomerRow>| row.map(|row| Enrolment { row, new: false });
    if matches!(customer, CustomerRef::CustomerId(_)) {
        return Ok(existing(find(conn, org_id, customer).await?));
    }
    let col = column(customer);
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
    match inserted {
        Some(row) => Ok(Some(Enrolment { row, new: true })),
        None => Ok(existing(find(conn, org_id, customer).await?)),
    }
}
