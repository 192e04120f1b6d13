//! Request extractors. Each turns raw HTTP into a checked value or a precise problem+json.

use actix_web::HttpMessage as _;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use domain::idempotency::IdempotencyKey;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::app::error::{AppError, FieldError};
use crate::http::problem::HttpError;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("application state missing".into()))
}

/// The organisation of the request's API key (`X-API-KEY` or `Authorization: Bearer`), found
/// by the authentication middleware before anything else of the request was looked at (see
/// `auth`).
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    pub org_id: i64,
    /// The API key the request was made with.
    pub key_id: i64,
}

impl FromRequest for Tenant {
    type Error = HttpError;
    type Future = std::future::Ready<Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Every route with a Tenant is authenticated by the middleware; none found is a 401.
        std::future::ready(
            req.extensions()
                .get::<Tenant>()
                .copied()
                .ok_or(HttpError::Unauthorized),
        )
    }
}

/// The optional `Idempotency-Key` header, checked (1 to 255 printable characters).
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl FromRequest for IdempotencyHeader {
    type Error = HttpError;
    type Future = std::future::Ready<Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.headers().get("idempotency-key") {
            None => Ok(IdempotencyHeader(None)),
            Some(v) => v
                .to_str()
                .map_err(|_| "must consist of printable characters".to_owned())
                .and_then(|s| IdempotencyKey::parse(s).map_err(|e| e.message))
                .map(|k| IdempotencyHeader(Some(k)))
                .map_err(|m| AppError::validation("Idempotency-Key", m)),
        };
        std::future::ready(result.map_err(HttpError::from))
    }
}

/// A request's key: `uniqueId` in the body or the `Idempotency-Key` header; both must agree.
pub fn request_key(
    body_key: Option<&str>,
    header: &IdempotencyHeader,
) -> Result<Option<IdempotencyKey>, AppError> {
    let body_key = body_key
        .map(|k| IdempotencyKey::parse(k).map_err(|e| AppError::validation("uniqueId", e.message)))
        .transpose()?;
    match (body_key, &header.0) {
        (Some(b), Some(h)) if &b != h => Err(AppError::validation(
            "uniqueId",
            "differs from the Idempotency-Key header; send one, or the same value in both",
        )),
        (Some(b), _) => Ok(Some(b)),
        (None, Some(h)) => Ok(Some(h.clone())),
        (None, None) => Ok(None),
    }
}

/// Like [`request_key`], for operations that cannot run without a key.
pub fn required_key(
    body_key: Option<&str>,
    header: &IdempotencyHeader,
) -> Result<IdempotencyKey, AppError> {
    request_key(body_key, header)?.ok_or_else(|| {
        AppError::validation(
            "uniqueId",
            "is required (or send an Idempotency-Key header)",
        )
    })
}

/// The optional body of a cancellation or reversal: `{"reason", "uniqueId"}`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Reason, example = json!({"reason": "order returned"}))]
pub struct ReasonBody {
    #[schema(schema_with = crate::http::openapi::text500_schema)]
    pub reason: Option<String>,
    /// The key may be sent here instead of the Idempotency-Key header (the same value if both);
    /// left out of the document so that a generator does not send two different keys.
    #[schema(ignore)]
    pub unique_id: Option<String>,
}

impl ReasonBody {
    /// Checks the body (a client key, when sent, must be well formed and agree with the header;
    /// the operation itself is keyed by the object it acts on) and returns the reason.
    pub fn reason(
        body: Option<ReasonBody>,
        header: &IdempotencyHeader,
    ) -> Result<Option<String>, AppError> {
        let body = body.unwrap_or_default();
        request_key(body.unique_id.as_deref(), header)?;
        crate::http::dto::bounded_text("reason", body.reason.as_deref(), 500)
    }
}

/// A JSON body: `application/json` only (415), at most `max_body_bytes` (413), and every
/// deserialization error reported with the path of the field (`rewards[1].quantity`).
#[derive(Debug)]
pub struct Json<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// What a body extractor needs to know about the request before reading its body.
struct BodyFacts {
    limit: usize,
    json: bool,
    declared: Option<usize>,
}

impl BodyFacts {
    fn of(req: &HttpRequest) -> Self {
        Self {
            limit: state(req).map_or(1024 * 1024, |s| s.settings.max_body_bytes),
            json: is_json(req),
            declared: req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
        }
    }
}

/// Reads the whole body, refusing it as soon as it passes `limit`.
async fn read_body(
    mut payload: Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<web::BytesMut, HttpError> {
    if declared.is_some_and(|len| len > limit) {
        return Err(HttpError::PayloadTooLarge { limit_bytes: limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| AppError::validation("body", "the body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(HttpError::PayloadTooLarge { limit_bytes: limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a serde error into field errors with paths.
pub fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !inner.is_data() {
        return AppError::validation("body", format!("malformed JSON: {inner}"));
    }
    let message = inner.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    // "missing field `x`" belongs to the field, not to its parent.
    let field = match message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        Some(name) if path == "." => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None if path == "." => "body".to_owned(),
        None => path,
    };
    AppError::Validation(vec![FieldError::new(field, message)])
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // Every body is an object; serde would read a struct from an array too.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AppError::validation("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|e| AppError::validation("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let BodyFacts {
            limit,
            json,
            declared,
        } = BodyFacts::of(req);
        let payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(HttpError::PayloadTooLarge { limit_bytes: limit });
            }
            if !json {
                return Err(HttpError::UnsupportedMediaType);
            }
            let body = read_body(payload, declared, limit).await?;
            Ok(parse_json(&body).map(Json)?)
        })
    }
}

/// `?limit=&cursor=` of a list endpoint: limit 1 to 200 (default 50), cursor opaque.
#[derive(Debug, Clone, Copy)]
pub struct PageParams {
    pub limit: u64,
    pub cursor: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// `limit`: 1 to 200, 50 when absent.
fn parse_limit(limit: Option<&str>) -> Result<u64, AppError> {
    match limit {
        None => Ok(50),
        Some(l) => match l.parse::<u64>() {
            Ok(n) if (1..=200).contains(&n) => Ok(n),
            _ => Err(AppError::validation(
                "limit",
                "must be a whole number from 1 to 200",
            )),
        },
    }
}

/// `?limit=&cursor=` of a list keyed by uuid (holds, allocations, transfers): the cursor is
/// the id of the last item of the previous page.
#[derive(Debug, serde::Deserialize)]
pub struct UuidPageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl UuidPageQuery {
    pub fn parse(&self) -> Result<(u64, Option<uuid::Uuid>), AppError> {
        let limit = parse_limit(self.limit.as_deref())?;
        let cursor = match &self.cursor {
            None => None,
            // Written as the service gives ids: hyphenated, 36 characters.
            Some(c) => Some(
                uuid::Uuid::parse_str(c)
                    .ok()
                    .filter(|_| c.len() == 36)
                    .ok_or_else(|| {
                        AppError::validation("cursor", "is not a cursor this service gave")
                    })?,
            ),
        };
        Ok((limit, cursor))
    }
}

impl PageQuery {
    pub fn parse(&self) -> Result<PageParams, AppError> {
        let limit = parse_limit(self.limit.as_deref())?;
        let cursor = match &self.cursor {
            None => None,
            // Cursors are positive ids written plainly (`^[1-9][0-9]{0,17}$`), as the service gives them.
            Some(c) => Some(
                c.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0 && !c.starts_with('+') && !c.starts_with('0'))
                    .ok_or_else(|| {
                        AppError::validation("cursor", "is not a cursor this service gave")
                    })?,
            ),
        };
        Ok(PageParams { limit, cursor })
    }
}

/// A path id that must be a number; anything else cannot name an object, so it is a 404.
pub fn path_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::not_found(what))
}

/// A JSON body that may be absent: an empty body is `None`; a non-empty one must be JSON.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let BodyFacts {
            limit,
            json,
            declared,
        } = BodyFacts::of(req);
        let payload = payload.take();
        Box::pin(async move {
            let body = read_body(payload, declared, limit).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            if !json {
                return Err(HttpError::UnsupportedMediaType);
            }
            // A JSON `null` is no body, as an empty one is.
            Ok(parse_json::<Option<T>>(&body).map(OptionalJson)?)
        })
    }
}
