//! Customers: lookup with balances, and the ledger.

use actix_web::{HttpResponse, web};
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::customers::{self as use_case, LedgerFilter, WITHIN_PATTERN};
use crate::http::answer::respond;
use crate::http::extract::{PageQuery, Tenant};
use crate::http::openapi::{
    CustomerPath, KeyHeader, Missing, PageParams, Read, Replayed, Write, email_schema,
    external_id_schema, mobile_schema, page, pattern, query_param,
};
use domain::idempotency::Operation;

/// The customer a `{customerId}` path names, for the handlers of other resources under it.
use crate::app::customers::{
    CustomerView, CustomerWithBalances, ErasureView, ExpiringLotView, LedgerEntry,
};

page!(LedgerPage, LedgerEntry);

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
    let customer = use_case::lookup(
        &state,
        tenant.org_id,
        query.identifier_type.as_deref(),
        query.identifier_value.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(customer))
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
    let customer = use_case::get(&state, tenant.org_id, &path).await?;
    Ok(HttpResponse::Ok().json(customer))
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
    let filter = LedgerFilter {
        program_id: query.program_id.as_deref(),
        currency: query.currency.as_deref(),
        cursor: page.cursor,
        limit: page.limit,
    };
    let entries = use_case::ledger(&state, tenant.org_id, &path, filter).await?;
    Ok(HttpResponse::Ok().json(LedgerPage::new(entries.items, entries.next_cursor)))
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
            ("Holds" = (operation_id = "customers_holds", parameters(("customerId" = "$response.body#/customerId")))),
            ("Allocations" = (operation_id = "customers_allocations", parameters(("customerId" = "$response.body#/customerId")))),
            ("Transfers" = (operation_id = "customers_transfers", parameters(("customerId" = "$response.body#/customerId")))),
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
    let outcome = use_case::create(&state, tenant.org_id, key.0.as_ref(), customer).await?;
    Ok(respond(Operation::CustomerCreate, outcome, key.0.as_ref()))
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
    let lots = use_case::expiring(
        &state,
        tenant.org_id,
        &path,
        query.within.as_deref(),
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ExpiringPage::new(lots.items, lots.next_cursor)))
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
    let document = use_case::export(&state, tenant.org_id, &path).await?;
    // A failure while reading cuts the answer short (it was logged where it happened).
    let body = document
        .map_ok(web::Bytes::from)
        .map_err(|_| actix_web::error::ErrorInternalServerError("export failed"));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(body))
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
    let (outcome, key) = use_case::erase(&state, tenant.org_id, &path).await?;
    Ok(respond(Operation::CustomerErase, outcome, Some(&key)))
}
