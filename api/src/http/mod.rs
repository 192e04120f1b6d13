//! The HTTP edge: the route table (below), extractors, request and response bodies,
//! problem+json, the OpenAPI document and the middleware; then one module of handlers per
//! resource. A handler parses, calls one use case, and shapes its answer.

use actix_web::{HttpResponse, web};

use crate::app::AppError;
use crate::http::problem::HttpError;

pub mod answer;
pub mod auth;
pub mod dto;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod problem;

pub mod allocations;
pub mod api_keys;
pub mod console;
pub mod customer_lists;
pub mod customers;
pub mod health;
pub mod holds;
pub mod idempotency_keys;
pub mod liability;
pub mod ops;
pub mod programs;
pub mod rewards;
pub mod transfers;
pub mod webhooks;

/// Declares every route once: the route table ([`TABLE`], which the OpenAPI test checks
/// against the document) and the actix configuration built from it. Each resource answers a
/// method it does not serve with 405 problem+json and the `Allow` header RFC 9110 asks for.
macro_rules! routes {
    ($( $path:literal => [ $( $method:ident => $handler:path ),+ $(,)? ] ),* $(,)?) => {
        /// Every route the app serves: its path pattern and its methods (lower case).
        pub const TABLE: &[(&str, &[&str])] = &[ $( ($path, &[ $( stringify!($method) ),+ ]) ),* ];

        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(
                cfg.service(
                    web::resource($path)
                        $( .route(web::$method().to($handler)) )+
                        .default_service(web::to(|| async {
                            method_not_allowed(&[ $( stringify!($method) ),+ ])
                        })),
                );
            )*
            outside_the_document(cfg);
            cfg.default_service(web::to(not_found));
        }
    };
}

// actix tries the resources in this order, and the metrics middleware matches the path once
// more for its route label; every `{param}` pattern is a regex match. The writes that carry the
// traffic come first, as static paths, so they are found without one. (A static path listed
// before a pattern that would also match it wins, as `/v1/rewards/issue` must over
// `/v1/rewards/{rewardId}`.)
routes! {
    "/v1/currency/allocations" => [post => allocations::create],
    "/v1/currency/redemptions" => [post => allocations::redeem],
    "/v1/rewards/issue" => [post => rewards::issue_single],
    "/v1/rewards/issue/bulk" => [post => rewards::issue_bulk],
    "/v1/currency/holds" => [post => holds::create],
    "/v1/currency/transfers" => [post => transfers::create],
    "/healthz" => [get => health::healthz],
    "/readyz" => [get => health::readyz],
    "/metrics" => [get => ops::metrics],
    "/openapi.json" => [get => ops::openapi],
    "/docs" => [get => ops::docs],
    "/v1/programs" => [post => programs::create, get => programs::list],
    "/v1/programs/{programId}" => [get => programs::get],
    "/v1/programs/{programId}/award-strategies" => [
        post => programs::create_award_strategy,
        get => programs::list_award_strategies,
    ],
    "/v1/programs/{programId}/expiry-strategies" => [
        post => programs::create_expiry_strategy,
        get => programs::list_expiry_strategies,
    ],
    "/v1/programs/{programId}/rewards" => [post => rewards::create, get => rewards::list],
    "/v1/programs/{programId}/liability" => [get => liability::get],
    "/v1/rewards/issuances/{issuanceId}/cancel" => [post => rewards::cancel],
    "/v1/rewards/{rewardId}" => [get => rewards::get, patch => rewards::patch],
    "/v1/customers" => [post => customers::create],
    "/v1/customers/lookup" => [get => customers::lookup],
    "/v1/customers/{customerId}" => [get => customers::get],
    "/v1/customers/{customerId}/ledger" => [get => customers::ledger],
    "/v1/customers/{customerId}/expiring" => [get => customers::expiring],
    "/v1/customers/{customerId}/holds" => [get => customer_lists::holds],
    "/v1/customers/{customerId}/allocations" => [get => customer_lists::allocations],
    "/v1/customers/{customerId}/transfers" => [get => customer_lists::transfers],
    "/v1/customers/{customerId}/export" => [get => customers::export],
    "/v1/customers/{customerId}/erase" => [post => customers::erase],
    "/v1/customers/{customerId}/rewards" => [get => rewards::customer_rewards],
    "/v1/currency/allocations/{uniqueId}" => [get => allocations::get],
    "/v1/currency/allocations/{uniqueId}/reversal" => [post => allocations::reverse],
    "/v1/currency/allocations/{uniqueId}/activate" => [post => allocations::activate],
    "/v1/currency/holds/{holdId}" => [get => holds::get],
    "/v1/currency/holds/{holdId}/capture" => [post => holds::capture],
    "/v1/currency/holds/{holdId}/void" => [post => holds::void],
    "/v1/webhook-endpoints" => [
        post => webhooks::create_endpoint,
        get => webhooks::list_endpoints,
    ],
    "/v1/webhook-endpoints/{endpointId}" => [
        patch => webhooks::update_endpoint,
        delete => webhooks::delete_endpoint,
    ],
    "/v1/webhook-events" => [get => webhooks::list_events],
    "/v1/webhook-events/{id}" => [get => webhooks::get_event],
    "/v1/webhook-events/{id}/actions/retry" => [post => webhooks::retry_event],
    "/v1/idempotency-keys/{operation}/{key}" => [get => idempotency_keys::get],
    "/v1/api-keys" => [post => api_keys::create, get => api_keys::list],
    "/v1/api-keys/{keyId}" => [delete => api_keys::revoke],
}

/// Routes served but not part of the API document (the operator console, a page and its
/// files, which speaks the API like any client): path and its one method, GET.
pub const OUTSIDE_THE_DOCUMENT: &[(&str, &[&str])] =
    &[("/console", &["get"]), ("/console/{file}", &["get"])];

fn outside_the_document(cfg: &mut web::ServiceConfig) {
    let get_only = || web::to(|| async { console::protect(method_not_allowed(&["get", "head"])) });
    cfg.service(
        web::resource("/console")
            .route(web::get().to(console::index))
            .route(web::head().to(console::index))
            .default_service(get_only()),
    );
    cfg.service(
        web::resource("/console/{file}")
            .route(web::get().to(console::asset))
            .route(web::head().to(console::asset))
            .default_service(get_only()),
    );
}

/// 405 with `Allow`.
fn method_not_allowed(methods: &[&str]) -> HttpResponse {
    let allow = methods
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = actix_web::ResponseError::error_response(&HttpError::MethodNotAllowed);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::not_found("resource"))
}
