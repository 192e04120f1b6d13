//! Customers: lookup with balances, and the ledger.

use actix_web::{HttpResponse, web};
use domain::customer::CustomerRef;
use persistence::customers::{self, CustomerRow};
use persistence::ledger;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::app::write::{Effect, execute};
use crate::http::answer::respond;
use crate::engine::format::{amount, ts};
use crate::http::extract::{PageQuery, Tenant};
use crate::http::openapi::{CustomerPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, email_schema, external_id_schema, mobile_schema, page, pattern, query_param};
use crate::engine::format::to_json;
use domain::idempotency::{Operation, RequestMeaning};

/// A customer's identifiers, as enrolment answers them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Customer, example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "mobile": "919999999999",
    "email": null, "externalId": null, "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct CustomerView {
    pub customer_id: String,
    /// Digits only.
    pub mobile: Option<String>,
    /// Lower case.
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub created_at: String,
}

/// A customer with a balance per program and currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "mobile": "919999999999",
    "email": null, "externalId": null, "createdAt": "2026-01-01T00:00:00Z",
    "balances": [{"programId": 1, "currency": "POINTS", "available": "100.00", "pending": "0.00", "held": "0.00"}]
}))]
pub struct CustomerWithBalances {
    pub customer_id: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub created_at: String,
    pub balances: Vec<AccountBalance>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountBalance {
    pub program_id: i64,
    pub currency: String,
    /// Spendable now; decimal strings at the currency's scale.
    pub available: String,
    /// Allocated with a future `maturesAt`, not yet spendable.
    pub pending: String,
    /// Reserved by holds until they are captured, voided or expire.
    pub held: String,
}

/// One change of a balance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "entryId": "1", "programId": 1, "currency": "POINTS", "kind": "CREDIT",
    "amount": "100.00", "balanceAfter": "100.00", "reference": "allocation:order-1001",
    "expiresAt": "2027-01-01T00:00:00Z", "createdAt": "2026-01-01T00:00:00Z"
}))]
pub struct LedgerEntry {
    pub entry_id: String,
    pub program_id: i64,
    pub currency: String,
    /// CREDIT, DEBIT, EXPIRE, REVERSAL, TRANSFER_IN, TRANSFER_OUT, HOLD (available to
    /// held) or RELEASE (held back to available).
    #[schema(pattern = "^(CREDIT|DEBIT|EXPIRE|REVERSAL|TRANSFER_IN|TRANSFER_OUT|HOLD|RELEASE)$")]
    pub kind: String,
    /// Always positive; `kind` gives the direction.
    pub amount: String,
    /// The available balance after the entry.
    pub balance_after: String,
    pub reference: Option<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
}

page!(LedgerPage, LedgerEntry);

async fn customer_view(
    state: &AppState,
    org_id: i64,
    c: &CustomerRow,
) -> Result<CustomerWithBalances, AppError> {
    let balances = ledger::balances_of(state.db.conn(), org_id, c.id).await?;
    Ok(CustomerWithBalances {
        customer_id: c.id.to_string(),
        mobile: c.mobile.clone(),
        email: c.email.clone(),
        external_id: c.external_id.clone(),
        created_at: ts(c.created_at),
        balances: balances
            .iter()
            .map(|b| AccountBalance {
                program_id: b.program_id,
                currency: b.currency.clone(),
                available: amount(b.available, b.scale),
                pending: amount(b.pending, b.scale),
                held: amount(b.held, b.scale),
            })
            .collect(),
    })
}

/// `identifierType` and `identifierValue`.
pub struct LookupParamsQuery;
impl utoipa::IntoParams for LookupParamsQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![
            query_param(
                "identifierType",
                true,
                None,
                json!({"type": "string", "enum": ["mobile", "email", "externalId", "customerId"]}),
            ),
            query_param(
                "identifierValue",
                true,
                Some("A value that cannot name a customer of that type finds nobody: 404."),
                json!({"type": "string"}),
            ),
        ]
    }
}

/// `programId` and `currency`, with the page.
pub struct LedgerParams;
impl utoipa::IntoParams for LedgerParams {
    fn into_params(
        f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = vec![
            query_param(
                "programId",
                false,
                Some("Only this program's entries (empty: all)."),
                json!({"type": "string", "pattern": format!("^({})?$", &pattern::ID[1..pattern::ID.len() - 1])}),
            ),
            query_param(
                "currency",
                false,
                Some("Only this currency's entries (empty: all)."),
                json!({"type": "string"}),
            ),
        ];
        params.extend(<PageParams as utoipa::IntoParams>::into_params(f));
        params
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupQuery {
    pub identifier_type: Option<String>,
    pub identifier_value: Option<String>,
}

/// `GET /v1/customers/lookup?identifierType=mobile&identifierValue=…`; never enrols.
#[utoipa::path(get, path = "/v1/customers/lookup", tag = "Customers",
    operation_id = "customers_lookup",
    summary = "Find a customer by identifier, with balances (never enrols)",
    params(LookupParamsQuery),
    responses((status = 200, description = "The customer", body = CustomerWithBalances), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn lookup(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<LookupQuery>,
) -> Result<HttpResponse, AppError> {
    let (Some(kind), Some(value)) = (&query.identifier_type, &query.identifier_value) else {
        return Err(AppError::Validation(vec![
            FieldError::new("identifierType", "is required"),
            FieldError::new("identifierValue", "is required"),
        ]));
    };
    // An unknown identifierType is a malformed request; a value that no customer can have (a
    // "mobile" with letters) is a search that finds nobody.
    let customer = match CustomerRef::parse(kind, value) {
        Ok(customer) => customer,
        Err(("identifierType", e)) => {
            return Err(AppError::validation("identifierType", e.message));
        }
        Err(_) => return Err(AppError::not_found("customer")),
    };
    let row = customers::lookup(state.db.conn(), tenant.org_id, &customer)
        .await?
        .ok_or_else(|| AppError::not_found("customer"))?;
    Ok(HttpResponse::Ok().json(customer_view(&state, tenant.org_id, &row).await?))
}

/// The customer a `{customerId}` path names, in this organisation; 404 when it names none.
pub(crate) async fn customer_by_path(
    state: &AppState,
    org_id: i64,
    raw: &str,
) -> Result<CustomerRow, AppError> {
    let id = Uuid::parse_str(raw).map_err(|_| AppError::not_found("customer"))?;
    customers::lookup(state.db.conn(), org_id, &CustomerRef::CustomerId(id))
        .await?
        .ok_or_else(|| AppError::not_found("customer"))
}

#[utoipa::path(get, path = "/v1/customers/{customerId}", tag = "Customers",
    operation_id = "customers_get", summary = "Get a customer with balances", params(CustomerPath),
    responses((status = 200, description = "The customer", body = CustomerWithBalances), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let row = customer_by_path(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(customer_view(&state, tenant.org_id, &row).await?))
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
#[utoipa::path(get, path = "/v1/customers/{customerId}/ledger", tag = "Customers",
    operation_id = "customers_ledger", summary = "The customer's ledger, newest first",
    params(CustomerPath, LedgerParams),
    responses((status = 200, description = "A page", body = LedgerPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn ledger(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<LedgerQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.parse()?;
    let program_id = match query.program_id.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        // Written as ids are given: digits, no sign, no leading zero.
        Some(p) => Some(
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && !p.starts_with(['0', '+']))
                .ok_or_else(|| AppError::validation("programId", "must be a program id"))?,
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
        .map(|e| LedgerEntry {
            entry_id: e.id.to_string(),
            program_id: e.program_id,
            currency: e.currency.clone(),
            kind: e.kind.clone(),
            amount: amount(e.amount, e.scale),
            balance_after: amount(e.balance_after, e.scale),
            reference: e.reference.clone(),
            expires_at: e.expires_at.map(ts),
            created_at: ts(e.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(LedgerPage::new(items, result.next_cursor)))
}

/// A customer is enrolled by exactly one of mobile, email or externalId.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"mobile": "919999999999"}))]
pub struct CreateCustomer {
    #[schema(schema_with = mobile_schema)]
    pub mobile: Option<crate::http::dto::LooseString>,
    #[schema(schema_with = email_schema)]
    pub email: Option<crate::http::dto::LooseString>,
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<crate::http::dto::LooseString>,
    /// Refused: a customer id is given by the service.
    #[schema(ignore)]
    pub customer_id: Option<crate::http::dto::LooseString>,
    #[schema(ignore)]
    pub lookup_params: Option<crate::http::dto::LookupParams>,
}

/// `POST /v1/customers`: enrols a customer by one identifier. 201 when enrolled now, 200 with
/// the existing customer when the identifier is known; the `Idempotency-Key` header applies.
#[utoipa::path(post, path = "/v1/customers", tag = "Customers", operation_id = "customers_create",
    summary = "Enrol a customer (200 when already known)", params(KeyHeader),
    request_body = CreateCustomer,
    responses(
        (status = 200, description = "Known already: the customer", body = CustomerView),
        (status = 201, description = "Enrolled now", body = CustomerView, links(
            ("GetCustomer" = (operation_id = "customers_get", parameters(("customerId" = "$response.body#/customerId")))),
            ("Ledger" = (operation_id = "customers_ledger", parameters(("customerId" = "$response.body#/customerId")))),
        )),
        Replayed<CustomerView>, Write))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    key: crate::http::extract::IdempotencyHeader,
    crate::http::extract::Json(body): crate::http::extract::Json<CreateCustomer>,
) -> Result<HttpResponse, AppError> {
    let customer = crate::customer_of!(body).parse()?;
    if matches!(customer, CustomerRef::CustomerId(_)) {
        return Err(AppError::validation(
            "customerId",
            "a customer is enrolled by mobile, email or externalId",
        ));
    }
    let org_id = tenant.org_id;
    let now = state.now();
    let meaning = domain::idempotency::RequestMeaning::new().with("customer", Some(&customer));
    let outcome = crate::app::write::execute(
        &state,
        org_id,
        domain::idempotency::Operation::CustomerCreate,
        key.0.as_ref(),
        &meaning,
        async |tx| {
            let enrolment = customers::find_or_enroll(tx, org_id, &customer, now)
                .await?
                .ok_or_else(|| AppError::Internal("enrolment returned no customer".into()))?;
            let row = enrolment.row;
            let body = to_json(&CustomerView {
                customer_id: row.id.to_string(),
                mobile: row.mobile.clone(),
                email: row.email.clone(),
                external_id: row.external_id.clone(),
                created_at: ts(row.created_at),
            });
            let effect = crate::app::write::Effect::created(body, row.id);
            Ok(if !enrolment.new {
                effect.done(crate::app::write::Done::Updated)
            } else {
                effect
            })
        },
    )
    .await?;
    Ok(crate::http::answer::respond(
        domain::idempotency::Operation::CustomerCreate,
        outcome,
        key.0.as_ref(),
    ))
}

/// A lot that expires soon: what is left of it and when it goes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "lotId": "7", "programId": 1, "currency": "POINTS", "amount": "40.00", "held": "0.00",
    "expiresAt": "2026-12-01T00:00:00Z", "notifiedAt": null
}))]
pub struct ExpiringLotView {
    /// The ledger entry that credited the lot.
    pub lot_id: String,
    pub program_id: i64,
    pub currency: String,
    /// What is left of the lot, held parts included (they expire with it).
    pub amount: String,
    /// The part of `amount` that holds reserve.
    pub held: String,
    pub expires_at: String,
    /// When the `currency.expiring` notice of the lot was written; null before.
    pub notified_at: Option<String>,
}

page!(ExpiringPage, ExpiringLotView);

/// `within`, with the page.
pub struct ExpiringParams;
impl utoipa::IntoParams for ExpiringParams {
    fn into_params(
        f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = vec![query_param(
            "within",
            false,
            Some("How far ahead to look: days (`30d`) or hours (`12h`); 30d when absent."),
            json!({"type": "string", "pattern": WITHIN_PATTERN}),
        )];
        params.extend(<PageParams as utoipa::IntoParams>::into_params(f));
        params
    }
}

const WITHIN_PATTERN: &str = "^[1-9][0-9]{0,3}[dh]$";

/// `30d`, `12h`: a window of 1 to 9999 days or hours.
fn parse_within(raw: Option<&str>) -> Result<chrono::Duration, AppError> {
    let Some(raw) = raw else {
        return Ok(chrono::Duration::days(30));
    };
    let invalid = || AppError::validation("within", "must be days or hours, like 30d or 12h");
    let (digits, hours) = match (raw.strip_suffix('d'), raw.strip_suffix('h')) {
        (Some(d), _) => (d, false),
        (None, Some(h)) => (h, true),
        (None, None) => return Err(invalid()),
    };
    if digits.is_empty()
        || digits.len() > 4
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    Ok(if hours {
        chrono::Duration::hours(n)
    } else {
        chrono::Duration::days(n)
    })
}

#[derive(Debug, Deserialize)]
pub struct ExpiringQuery {
    pub within: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `GET /v1/customers/{id}/expiring?within=30d`: the customer's lots with something left that
/// expire within the window, soonest first.
#[utoipa::path(get, path = "/v1/customers/{customerId}/expiring", tag = "Customers",
    operation_id = "customers_expiring",
    summary = "The customer's points that expire soon, soonest first",
    params(CustomerPath, ExpiringParams),
    responses((status = 200, description = "A page", body = ExpiringPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn expiring(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<ExpiringQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.parse()?;
    let within = parse_within(query.within.as_deref())?;
    let customer = customer_by_path(&state, tenant.org_id, &path).await?;
    let now = state.now();
    let result = persistence::expiring::of_customer(
        state.db.conn(),
        tenant.org_id,
        customer.id,
        now,
        now + within,
        page.cursor,
        page.limit,
    )
    .await?;
    let items = result
        .items
        .iter()
        .map(|l| ExpiringLotView {
            lot_id: l.id.to_string(),
            program_id: l.program_id,
            currency: l.currency.clone(),
            amount: amount(l.remaining, l.scale),
            held: amount(l.held, l.scale),
            expires_at: ts(l.expires_at),
            notified_at: l.notified_at.map(ts),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ExpiringPage::new(items, result.next_cursor)))
}

/// `GET /v1/customers/{customerId}/export`: everything held about the customer, as one JSON
/// document (amounts in minor units with each row's `scale`), streamed a page of rows at a time.
#[utoipa::path(get, path = "/v1/customers/{customerId}/export", tag = "Customers",
    operation_id = "customers_export",
    summary = "Everything held about a customer, as one JSON document",
    params(CustomerPath),
    responses((status = 200, description = "customer, balances, ledger, allocations, redemptions, holds, transfers, issuances, vouchers, rewardHoldings",
        body = Object), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn export(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path).map_err(|_| AppError::not_found("customer"))?;
    let customer = persistence::customer_data::export_customer(state.db.conn(), tenant.org_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("customer"))?;
    let stream = crate::app::export::stream(
        state.db.clone(),
        tenant.org_id,
        id,
        customer,
        ts(state.now()),
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream))
}

/// What an erasure did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Erasure, example = json!({
    "customerId": "0190f5f2-5b7e-7c4e-9a59-2f4f1e8b1c02", "erasedAt": "2026-01-01T00:00:00Z",
    "identifiersErased": 2, "idempotencyRecordsScrubbed": 3, "webhookEventsScrubbed": 0
}))]
pub struct ErasureView {
    pub customer_id: String,
    pub erased_at: String,
    /// Mobile, email and externalId removed (those the customer had).
    pub identifiers_erased: usize,
    /// Stored idempotency requests and answers that held an identifier.
    pub idempotency_records_scrubbed: u64,
    /// Recorded webhook payloads that held an identifier.
    pub webhook_events_scrubbed: u64,
}

/// `POST /v1/customers/{customerId}/erase`: the customer's identifiers are removed for good;
/// the ledger and its amounts stay. Keyed by the customer: a second erase replays (202).
#[utoipa::path(post, path = "/v1/customers/{customerId}/erase", tag = "Customers",
    operation_id = "customers_erase",
    summary = "Erase a customer's identifiers for good (the ledger stays)",
    params(CustomerPath),
    responses((status = 201, description = "Erased now", body = ErasureView),
        Replayed<ErasureView>, Write, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn erase(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&path).map_err(|_| AppError::not_found("customer"))?;
    let key = domain::idempotency::IdempotencyKey::parse(&id.to_string())
        .map_err(|e| AppError::Internal(e.message))?;
    let org_id = tenant.org_id;
    let now = state.now();
    let outcome = execute(
        &state,
        org_id,
        Operation::CustomerErase,
        Some(&key),
        &RequestMeaning::new().with("customerId", Some(id)),
        async |tx| {
            let done = persistence::customer_data::erase(tx, org_id, id, now)
                .await?
                .ok_or_else(|| AppError::not_found("customer"))?;
            let body = to_json(&ErasureView {
                customer_id: id.to_string(),
                erased_at: ts(now),
                identifiers_erased: done.identifiers,
                idempotency_records_scrubbed: done.idempotency_records,
                webhook_events_scrubbed: done.webhook_events,
            });
            Ok(Effect::created(body, id))
        },
    )
    .await?;
    Ok(respond(Operation::CustomerErase, outcome, Some(&key)))
}
