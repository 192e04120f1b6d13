//! The operator console: a static page, its script and its style sheet, embedded in the binary
//! and served at `/console`. The page holds no secret and adds no permission: it speaks the
//! public API with the key the operator pastes, kept in the tab's `sessionStorage`. It is not
//! part of the API document.
//!
//! Every answer carries a strict Content-Security-Policy (no inline script or style, nothing
//! from elsewhere), `nosniff`, no referrer, no framing, and `Cache-Control: no-cache` with an
//! `ETag`, so a new binary's console is taken at once and an unchanged one costs a 304.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppError;

/// The console's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/app.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/pages.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/app.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/console/icon.svg"),
    ),
];

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// `GET /console`: the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

/// `GET /console/{file}`: one of the page's files; any other name is 404 (problem+json, with
/// the same headers).
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    if FILES.iter().any(|(name, _, _)| *name == file.as_str()) {
        serve(&req, &file)
    } else {
        protect(actix_web::ResponseError::error_response(
            &AppError::not_found("resource"),
        ))
    }
}

/// Adds the console's headers to an answer made elsewhere (a 404, a 405).
pub fn protect(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return HttpResponse::NotFound().finish();
    };
    let etag = format!("\"{:016x}\"", fnv1a(body));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((
        header::ETAG,
        HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
    ));
    if fresh {
        return protect(response.finish());
    }
    protect(response.content_type(*content_type).body(*body))
}

/// FNV-1a, 64 bits: enough to tell two builds' files apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
