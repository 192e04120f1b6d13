//! Customers: lookup with balances, and the ledger.

use actix_web::{HttpResponse, web};
use domain::customer::CustomerRef;
use persistence::customers::{self, CustomerRow};
use persistence::ledger;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::{amount, ts};
use crate::error::{ApiError, FieldError};
use crate::extract::{PageQuery, Tenant};
use crate::routes::page_json;
use crate::startup::AppState;

async fn customer_json(state: &AppState, org_id: i64, c: &CustomerRow) -> Result<Value, ApiError> {
    let balances = ledger::balances_of(state.db.conn(), org_id, c.id).await?;
    Ok(json!({
        "customerId": c.id.to_string(),
        "mobile": c.mobile,
        "email": c.email,
        "externalId": c.external_id,
        "createdAt": ts(c.created_at),
        "balances": balances.iter().map(|b| json!({
            "programId": b.program_id,
            "currency": b.currency,
            "available": amount(b.available, b.scale),
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupQuery {
    pub identifier_type: Option<String>,
    pub identifier_value: Option<String>,
}

/// `GET /v1/customers/lookup?identifierType=mobile&identifierValue=…`; never enrolls.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn lookup(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<LookupQuery>,
) -> Result<HttpResponse, ApiError> {
    let (Some(kind), Some(value)) = (&query.identifier_type, &query.identifier_value) else {
        return Err(ApiError::Validation(vec![
            FieldError::new("identifierType", "is required"),
            FieldError::new("identifierValue", "is required"),
        ]));
    };
    // An unknown identifierType is a malformed request; a value that no customer can have (a
    // "mobile" with letters) is a search that finds nobody.
    let customer = match CustomerRef::parse(kind, value) {
        Ok(customer) => customer,
        Err(("identifierType", e)) => {
            return Err(ApiError::validation("identifierType", e.message));
        }
        Err(_) => return Err(ApiError::not_found("customer")),
    };
    let row = customers::find(state.db.conn(), tenant.org_id, &customer)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(HttpResponse::Ok().json(customer_json(&state, tenant.org_id, &row).await?))
}

async fn customer_by_path(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<CustomerRow, ApiError> {
    let id = Uuid::parse_str(raw).map_err(|_| ApiError::not_found("customer"))?;
    customers::find(state.db.conn(), org_id, &CustomerRef::CustomerId(id))
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))
}

#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = customer_by_path(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(customer_json(&state, tenant.org_id, &row).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerQuery {
    pub program_id: Option<String>,
    pub currency: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `GET /v1/customers/{id}/ledger`: newest first, keyset pages.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn ledger(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<LedgerQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page.parse()?;
    let program_id = match query.program_id.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        // Written as ids are given: digits, no sign, no leading zero.
        Some(p) => Some(
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && !p.starts_with(['0', '+']))
                .ok_or_else(|| ApiError::validation("programId", "must be a program id"))?,
        ),
    };
    let customer = customer_by_path(&state, tenant.org_id, &path).await?;
    let result = ledger::entries_of(
        state.db.conn(),
        tenant.org_id,
        customer.id,
        program_id,
        query.currency.as_deref().filter(|c| !c.is_empty()),
        page.cursor,
        page.limit,
    )
    .await?;
    let items = result
        .items
        .iter()
        .map(|e| {
            json!({
                "entryId": e.id.to_string(),
                "programId": e.program_id,
                "currency": e.currency,
                "kind": e.kind,
                "amount": amount(e.amount, e.scale),
                "balanceAfter": amount(e.balance_after, e.scale),
                "reference": e.reference,
                "expiresAt": e.expires_at.map(ts),
                "createdAt": ts(e.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(page_json(items, result.next_cursor)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomer {
    pub mobile: Option<crate::dto::LooseString>,
    pub email: Option<crate::dto::LooseString>,
    pub external_id: Option<crate::dto::LooseString>,
    pub customer_id: Option<crate::dto::LooseString>,
    pub lookup_params: Option<crate::dto::LookupParams>,
}

/// `POST /v1/customers`: enrols a customer by one identifier. 201 when enrolled now, 200 with
/// the existing customer when the identifier is known; the `Idempotency-Key` header applies.
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: crate::extract::IdempotencyHeader,
    crate::extract::Json(body): crate::extract::Json<CreateCustomer>,
) -> Result<HttpResponse, ApiError> {
    let customer = crate::customer_of!(body).parse()?;
    if matches!(customer, CustomerRef::CustomerId(_)) {
        return Err(ApiError::validation(
            "customerId",
            "a customer is enrolled by mobile, email or externalId",
        ));
    }
    let org_id = tenant.org_id;
    let now = state.now();
    let meaning = domain::idempotency::RequestMeaning::new().with("customer", Some(&customer));
    let outcome = crate::idempotent::execute(
        &state,
        org_id,
        domain::idempotency::Operation::CustomerCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let enrolment = customers::find_or_enroll(tx, org_id, &customer, now)
                .await?
                .ok_or_else(|| ApiError::Internal("enrolment returned no customer".into()))?;
            let row = enrolment.row;
            let body = json!({
                "customerId": row.id.to_string(),
                "mobile": row.mobile,
                "email": row.email,
                "externalId": row.external_id,
                "createdAt": ts(row.created_at),
            });
            let effect = crate::idempotent::Effect::created(body, row.id);
            Ok(if !enrolment.new {
                effect.with_status(actix_web::http::StatusCode::OK)
            } else {
                effect
            })
        },
    )
    .await?;
    Ok(crate::idempotent::respond(
        domain::idempotency::Operation::CustomerCreate,
        outcome,
        key.0.as_ref(),
    ))
}
