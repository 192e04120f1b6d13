//! A customer's holds, allocations and transfers, newest first.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::allocate::AllocationView;
use crate::app::customer_lists::{
    self as use_case, ALLOCATION_STATUSES, CustomerTransferView, HOLD_STATUSES, ListFilter,
};
use crate::app::holds::HoldView;
use crate::http::extract::{Tenant, UuidPageQuery};
use crate::http::openapi::{CustomerPath, Missing, Read, UuidPageParams, page, query_param};

page!(HoldPage, HoldView);
page!(AllocationPage, AllocationView);
page!(CustomerTransferPage, CustomerTransferView);

/// `status` (one of `statuses`), with the page.
fn status_and_page(
    statuses: &[&str],
    f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
) -> Vec<utoipa::openapi::path::Parameter> {
    let mut params = vec![query_param(
        "status",
        false,
        Some("Only the items of this status (absent: all)."),
        json!({"type": "string", "enum": statuses}),
    )];
    params.extend(<UuidPageParams as utoipa::IntoParams>::into_params(f));
    params
}

/// `status` of a hold, with the page.
pub struct HoldListParams;
impl utoipa::IntoParams for HoldListParams {
    fn into_params(
        f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        status_and_page(&HOLD_STATUSES, f)
    }
}

/// `status` of an allocation, with the page.
pub struct AllocationListParams;
impl utoipa::IntoParams for AllocationListParams {
    fn into_params(
        f: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        status_and_page(&ALLOCATION_STATUSES, f)
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusPageQuery {
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: UuidPageQuery,
}

/// `GET /v1/customers/{customerId}/holds`: newest first, keyset pages.
#[utoipa::path(get, path = "/v1/customers/{customerId}/holds", tag = "Customers",
    operation_id = "customers_holds", summary = "The customer's holds, newest first",
    params(CustomerPath, HoldListParams),
    responses((status = 200, description = "A page; each hold with its account's balance now",
        body = HoldPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn holds(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<StatusPageQuery>,
) -> Result<HttpResponse, AppError> {
    let (limit, cursor) = query.page.parse()?;
    let filter = ListFilter {
        status: query.status.as_deref(),
        cursor,
        limit,
    };
    let page = use_case::holds(&state, tenant.org_id, &path, filter).await?;
    Ok(HttpResponse::Ok().json(HoldPage::new(page.items, page.next_cursor)))
}

/// `GET /v1/customers/{customerId}/allocations`: newest first, keyset pages.
#[utoipa::path(get, path = "/v1/customers/{customerId}/allocations", tag = "Customers",
    operation_id = "customers_allocations", summary = "The customer's allocations, newest first",
    params(CustomerPath, AllocationListParams),
    responses((status = 200,
        description = "A page; each allocation with its account's balance now",
        body = AllocationPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn allocations(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<StatusPageQuery>,
) -> Result<HttpResponse, AppError> {
    let (limit, cursor) = query.page.parse()?;
    let filter = ListFilter {
        status: query.status.as_deref(),
        cursor,
        limit,
    };
    let page = use_case::allocations(&state, tenant.org_id, &path, filter).await?;
    Ok(HttpResponse::Ok().json(AllocationPage::new(page.items, page.next_cursor)))
}

/// `GET /v1/customers/{customerId}/transfers`: sent and received, newest first.
#[utoipa::path(get, path = "/v1/customers/{customerId}/transfers", tag = "Customers",
    operation_id = "customers_transfers",
    summary = "The transfers the customer sent and received, newest first",
    params(CustomerPath, UuidPageParams),
    responses((status = 200, description = "A page", body = CustomerTransferPage), Read, Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn transfers(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<UuidPageQuery>,
) -> Result<HttpResponse, AppError> {
    let (limit, cursor) = query.parse()?;
    let page = use_case::transfers(&state, tenant.org_id, &path, cursor, limit).await?;
    Ok(HttpResponse::Ok().json(CustomerTransferPage::new(page.items, page.next_cursor)))
}
