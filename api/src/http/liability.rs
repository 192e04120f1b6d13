//! A program's liability in one of its currencies.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppError;
use crate::app::AppState;
use crate::app::liability::LiabilityView;
use crate::http::extract::{Tenant, path_id};
use crate::http::openapi::{Missing, ProgramPath, Read, pattern, query_param};

/// `currency`, required.
pub struct LiabilityParams;
impl utoipa::IntoParams for LiabilityParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![query_param(
            "currency",
            true,
            Some("One of the program's currencies (else 404 CURRENCY_NOT_FOUND)."),
            json!({"type": "string", "pattern": pattern::CURRENCY}),
        )]
    }
}

#[derive(Debug, Deserialize)]
pub struct LiabilityQuery {
    pub currency: Option<String>,
}

/// `GET /v1/programs/{programId}/liability?currency=POINTS`.
#[utoipa::path(get, path = "/v1/programs/{programId}/liability", tag = "Catalog",
    operation_id = "programs_liability",
    summary = "The program's liability in one currency: outstanding, expiring, month by month",
    params(ProgramPath, LiabilityParams),
    responses((status = 200, description = "The liability now", body = LiabilityView), Read,
        Missing))]
#[tracing::instrument(level = "debug", skip_all, fields(org_id = tenant.org_id))]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    query: web::Query<LiabilityQuery>,
) -> Result<HttpResponse, AppError> {
    let view = crate::app::liability::liability(
        &state,
        tenant.org_id,
        path_id(&path, "program").ok(),
        query.currency.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
