//! The OpenAPI 3.1 document, generated with utoipa from the handlers' `#[utoipa::path]`
//! annotations and from the request and response types the handlers themselves use.
//!
//! Nothing here is written twice: a field's constraint lives on the field (or in a schema
//! function below that the field names), the problems an operation can answer come from the
//! response groups below, and `tests/api/ops.rs` checks that the routes the app serves and the
//! paths of the document are the same set.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use crate::http::{
    allocations, api_keys, customer_lists, customers, health, holds, idempotency_keys, liability,
    ops, programs, rewards, transfers, webhooks,
};

/// The patterns the server applies, each written once for the schemas.
pub mod pattern {
    /// An id in a path or a query, or sent as a string: digits, no sign, no leading zero.
    pub const ID: &str = "^[1-9][0-9]{0,17}$";
    /// An idempotency key or `requestId`: printable, not only spaces.
    pub const KEY: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
    /// An idempotency key in a header: HTTP carries printable ASCII there.
    pub const HEADER_KEY: &str = "^[ -~]*[!-~][ -~]*$";
    /// Free text: no control characters.
    pub const TEXT: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
    /// A name: something besides spaces, no control characters (trimmed by the server).
    pub const NAME: &str = "^\\s*[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*\\s*$";
    /// A currency code.
    pub const CURRENCY: &str = "^[A-Z][A-Z0-9_]{0,31}$";
    /// 6 to 15 digits, with the separators people write.
    pub const MOBILE: &str = "^\\s*[+ ().-]*(?:[0-9][+ ().-]*){6,15}\\s*$";
    /// An ASCII address (an internationalised domain in its `xn--` form).
    pub const EMAIL: &str = "^[!-?A-~]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$";
    /// A customer id.
    pub const UUID: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    /// RFC 3339 with a date every month has (the server accepts any valid date; a generator
    /// should not make invalid ones such as February 30).
    pub const TIMESTAMP: &str = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$";
    /// A decimal written as a string: up to 14 digits before and 14 after the point, spaces,
    /// tabs and line breaks around (`crate::http::dto::plain_decimal`).
    pub const DECIMAL: &str = "^[ \\t\\n\\r]*\\+?[0-9]{1,14}(\\.[0-9]{1,14})?[ \\t\\n\\r]*$";
    /// The same, more than zero: not only zeros.
    pub const POSITIVE_DECIMAL: &str =
        "^(?![ \\t\\n\\r+0.]*$)[ \\t\\n\\r]*\\+?[0-9]{1,14}(\\.[0-9]{1,14})?[ \\t\\n\\r]*$";
}

/// A schema written as JSON. Used where utoipa's attributes cannot say it (`oneOf` between a
/// number and a string); `fragments_survive_a_round_trip` checks that utoipa's model keeps
/// every keyword.
pub fn fragment(value: Value) -> Schema {
    // ok: every fragment is a constant written in this crate (no request input reaches it),
    // the document is built once at start-up, and the tests build the whole document, so a
    // fragment utoipa cannot read fails the tests, never a request.
    let schema: Schema = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("an invalid schema fragment: {e}"));
    // utoipa's model drops a keyword it does not know; the tests (debug builds) build the whole
    // document, so a fragment that would lose one fails them.
    debug_assert_eq!(
        serde_json::to_value(&schema).ok().as_ref(),
        Some(&value),
        "utoipa's model changed this schema fragment"
    );
    schema
}

/// Text with no control characters, at most 255 characters; null allowed.
pub fn text255_schema() -> Schema {
    fragment(json!({"type": ["string", "null"], "maxLength": 255, "pattern": pattern::TEXT}))
}

/// The same with at most 500 characters.
pub fn text500_schema() -> Schema {
    fragment(json!({"type": ["string", "null"], "maxLength": 500, "pattern": pattern::TEXT}))
}

/// A name: 1 to 200 characters once trimmed.
pub fn name_schema() -> Schema {
    fragment(json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": pattern::NAME}))
}

/// An optional name (PATCH).
pub fn optional_name_schema() -> Schema {
    fragment(
        json!({"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": pattern::NAME}),
    )
}

pub fn currency_schema() -> Schema {
    fragment(json!({"type": "string", "pattern": pattern::CURRENCY}))
}

/// An idempotency key in a body (`uniqueId`, `requestId`).
pub fn key_schema() -> Schema {
    fragment(json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern::KEY}))
}

/// An optional idempotency key in a body.
pub fn optional_key_schema() -> Schema {
    fragment(
        json!({"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": pattern::KEY}),
    )
}

/// An optional timestamp in a request.
pub fn timestamp_schema() -> Schema {
    fragment(
        json!({"type": ["string", "null"], "pattern": pattern::TIMESTAMP,
        "description": "RFC 3339, e.g. 2026-01-01T00:00:00Z."}),
    )
}

/// The largest decimal value a number may have (the string form allows 14 integer digits).
pub const DECIMAL_LIMIT: u64 = 100_000_000_000_000;

pub fn id_schema() -> Schema {
    fragment(json!({"oneOf": [
        {"type": "integer", "minimum": 1, "maximum": i64::MAX},
        {"type": "string", "pattern": pattern::ID},
    ], "description": "A positive whole number, or a string of its digits."}))
}

/// A decimal of zero or more: a JSON number or a string.
pub fn decimal_schema() -> Schema {
    fragment(json!({"oneOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": DECIMAL_LIMIT},
        {"type": "string", "pattern": pattern::DECIMAL},
    ], "description": "Zero or more, below 10^14, as a JSON number or a string (`\"12.5\"`). A value with more decimal places than can be held exactly (28) is refused with 422 AMOUNT_NOT_REPRESENTABLE."}))
}

/// An optional decimal of zero or more (null: absent).
pub fn optional_decimal_schema() -> Schema {
    fragment(json!({"oneOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": DECIMAL_LIMIT},
        {"type": "string", "pattern": pattern::DECIMAL},
        {"type": "null"},
    ], "description": "Zero or more, below 10^14, as a JSON number or a string; null or absent when not used."}))
}

/// An optional decimal of more than zero.
pub fn optional_positive_decimal_schema() -> Schema {
    fragment(json!({"oneOf": [
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": DECIMAL_LIMIT},
        {"type": "string", "pattern": pattern::POSITIVE_DECIMAL},
        {"type": "null"},
    ], "description": "More than zero, below 10^14, as a JSON number or a string; null or absent for the default."}))
}

/// A decimal of more than zero.
pub fn positive_decimal_schema() -> Schema {
    fragment(json!({"oneOf": [
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": DECIMAL_LIMIT},
        {"type": "string", "pattern": pattern::POSITIVE_DECIMAL},
    ], "description": "More than zero, below 10^14, as a JSON number or a string. More decimal places than the currency keeps: 422 AMOUNT_NOT_REPRESENTABLE."}))
}

/// A mobile: a string, or its digits as a whole number. (In JSON Schema `pattern` applies to
/// strings only and `minimum`/`maximum` to numbers only.)
fn mobile_value() -> Value {
    json!({"type": ["string", "integer"], "pattern": pattern::MOBILE,
        "minimum": 100_000, "maximum": 999_999_999_999_999_i64,
        "description": "6 to 15 digits; '+', spaces, dots, dashes and brackets are ignored. A whole number is taken as its digits."})
}

/// An external id: a string, or a whole number of zero or more taken as its digits.
fn external_id_value() -> Value {
    json!({"type": ["string", "integer"], "minLength": 1, "maxLength": 255, "pattern": pattern::NAME, "minimum": 0})
}

fn nullable(mut value: Value) -> Value {
    if let Some(Value::Array(types)) = value.get_mut("type") {
        types.push(json!("null"));
    }
    value
}

pub fn mobile_schema() -> Schema {
    fragment(nullable(mobile_value()))
}

pub fn email_schema() -> Schema {
    fragment(
        json!({"type": ["string", "null"], "maxLength": 254, "pattern": pattern::EMAIL,
        "description": "ASCII (an internationalised domain in its xn-- form), compared without case."}),
    )
}

pub fn external_id_schema() -> Schema {
    fragment(nullable(external_id_value()))
}

pub fn customer_id_schema() -> Schema {
    fragment(json!({"type": ["string", "null"], "pattern": pattern::UUID}))
}

/// Exactly one way of naming the customer, added to every body that names one.
fn customer_choice(with_customer_id: bool, with_lookup: bool) -> Schema {
    let mut choice = OneOfBuilder::new();
    // The way chosen is present and not null (null counts as absent).
    let mut ways = vec![
        ("mobile", json!(["string", "integer"])),
        ("email", json!("string")),
        ("externalId", json!(["string", "integer"])),
    ];
    if with_customer_id {
        ways.push(("customerId", json!("string")));
    }
    if with_lookup {
        ways.push(("lookupParams", json!("object")));
    }
    for (field, kind) in ways {
        choice = choice.item(fragment(json!({
            "type": "object",
            "required": [field],
            "properties": {field: {"type": kind}},
        })));
    }
    choice.build().into()
}

/// `lookupParams`: Capillary's way of naming a customer.
impl PartialSchema for crate::http::dto::LookupParams {
    fn schema() -> RefOr<Schema> {
        let way = |kind: &str, value: Value| {
            json!({"type": "object", "required": ["identifierType", "identifierValue"],
            "properties": {
                "entityType": {"type": ["string", "null"], "pattern": "^[Cc][Uu][Ss][Tt][Oo][Mm][Ee][Rr]$"},
                "identifierType": {"type": "string", "enum": [kind]},
                "identifierValue": value,
            }})
        };
        fragment(json!({"oneOf": [
            way("mobile", mobile_value()),
            way("email", json!({"type": "string", "maxLength": 254, "pattern": pattern::EMAIL})),
            way("externalId", external_id_value()),
            way("customerId", json!({"type": "string", "pattern": pattern::UUID})),
        ]}))
        .into()
    }
}
impl ToSchema for crate::http::dto::LookupParams {}

impl PartialSchema for crate::http::dto::FlexId {
    fn schema() -> RefOr<Schema> {
        id_schema().into()
    }
}
impl ToSchema for crate::http::dto::FlexId {
    fn name() -> std::borrow::Cow<'static, str> {
        "Id".into()
    }
}

impl PartialSchema for crate::http::dto::DecimalInput {
    fn schema() -> RefOr<Schema> {
        decimal_schema().into()
    }
}
impl ToSchema for crate::http::dto::DecimalInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "Decimal".into()
    }
}

/// Every problem: `application/problem+json` (RFC 9457).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "type": "https://loyalty.example/problems/idempotency-key-reused",
    "title": "Idempotency key reused",
    "status": 422,
    "code": "IDEMPOTENCY_KEY_REUSED",
    "detail": "The key was first used with another request.",
    "idempotencyKey": "order-1001",
    "mismatchedFields": ["sourceValue"],
    "retryable": false
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    pub r#type: String,
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// A stable machine-readable code (`VALIDATION_FAILED`, `INSUFFICIENT_BALANCE`, …).
    pub code: String,
    pub detail: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// For `VALIDATION_FAILED`: each field refused and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// For `IDEMPOTENCY_KEY_REUSED` and `IDEMPOTENCY_KEY_IN_USE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// For `IDEMPOTENCY_KEY_REUSED`: the fields that differ from the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched_fields: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldProblem {
    /// The JSON path of the field (`rewards[1].quantity`), or a header's name.
    pub field: String,
    pub message: String,
}

/// What a keyed write adds to the resource it answers with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Idempotency {
    /// `false` for the first answer (201), `true` for a replay (202).
    pub idempotent_replayed: bool,
    /// The key of the request, when it had one.
    pub idempotency_key: Option<String>,
}

fn problem(description: &str) -> RefOr<Response> {
    Response::builder()
        .description(description)
        .content(
            "application/problem+json",
            utoipa::openapi::content::Content::new(Some(RefOr::Ref(
                utoipa::openapi::Ref::from_schema_name("Problem"),
            ))),
        )
        .into()
}

fn responses(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| ((*status).to_owned(), problem(description)))
        .collect()
}

/// The problems of every operation that needs an API key.
pub struct Authed;
impl IntoResponses for Authed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            ("401", "UNAUTHORIZED: no API key, or one not recognised"),
            (
                "429",
                "RATE_LIMITED (retryable, Retry-After): past the organisation's rate limit on this instance (when LOYALTY_RATE_LIMIT_PER_SECOND is set; with RateLimit-*), or past the failed authentications the client's address may make a minute (LOYALTY_AUTH_FAILURES_PER_MINUTE)",
            ),
            (
                "503",
                "SERVICE_UNAVAILABLE (retryable, Retry-After): the database did not answer in time",
            ),
        ])
    }
}

/// The problems of a read with a path or query to check.
pub struct Read;
impl IntoResponses for Read {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = Authed::responses();
        all.extend(responses(&[(
            "400",
            "VALIDATION_FAILED: a query parameter is malformed",
        )]));
        all
    }
}

/// The problems of every write with a JSON body.
pub struct Write;
impl IntoResponses for Write {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = Authed::responses();
        all.extend(responses(&[
            ("400", "VALIDATION_FAILED: a field is malformed (errors lists each)"),
            (
                "409",
                "IDEMPOTENCY_KEY_IN_USE (retryable, Retry-After): the same key is being processed",
            ),
            ("413", "PAYLOAD_TOO_LARGE"),
            ("415", "UNSUPPORTED_MEDIA_TYPE: the body is not application/json"),
            (
                "422",
                "IDEMPOTENCY_KEY_REUSED (with mismatchedFields), or a refusal that depends on what is stored",
            ),
        ]));
        all
    }
}

/// 404 for operations that name something that may not exist.
pub struct Missing;
impl IntoResponses for Missing {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[("404", "NOT_FOUND (or a more precise *_NOT_FOUND code)")])
    }
}

/// The replay of a keyed write: 202 with the first answer's body.
pub struct Replayed<T>(std::marker::PhantomData<T>);
impl<T: ToSchema> IntoResponses for Replayed<T> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut map = BTreeMap::new();
        map.insert(
            "202".to_owned(),
            written::<T>(
                "Replay of an earlier request with the same key: the first answer, with idempotentReplayed true and the header Idempotent-Replayed: true",
            ),
        );
        map
    }
}

/// A keyed write's answer: the resource with the idempotency fields, `{T}Written` (the
/// schema itself is made by [`Finish`], from `T`'s and [`Idempotency`]'s).
pub fn written<T: ToSchema>(description: &str) -> RefOr<Response> {
    Response::builder()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::content::Content::new(Some(RefOr::Ref(
                utoipa::openapi::Ref::from_schema_name(format!("{}Written", T::name())),
            ))),
        )
        .header(
            "Idempotent-Replayed",
            utoipa::openapi::header::Header::new(fragment(
                json!({"type": "string", "enum": ["true", "false"]}),
            )),
        )
        .into()
}

/// `{T}Written`: `T`'s properties and the idempotency fields (`T` may not allow other
/// properties, so an `allOf` of the two would allow nothing).
fn written_schema(schemas: &BTreeMap<String, RefOr<Schema>>, base: &str) -> Option<RefOr<Schema>> {
    let (Some(RefOr::T(Schema::Object(object))), Some(RefOr::T(Schema::Object(flags)))) =
        (schemas.get(base), schemas.get("Idempotency"))
    else {
        return None;
    };
    let mut object = object.clone();
    for (name, property) in &flags.properties {
        object.properties.insert(name.clone(), property.clone());
    }
    object.required.extend(flags.required.iter().cloned());
    object.description = Some(format!(
        "{base}, with the fields every keyed write answers with."
    ));
    object.example = None;
    Some(RefOr::T(Schema::Object(object)))
}

/// `Idempotency-Key`: optional on the writes that take it.
pub struct KeyHeader;
impl IntoParams for KeyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![param(
            ParameterIn::Header,
            "Idempotency-Key",
            false,
            Some(
                "Makes the write exactly-once per organisation and operation (1 to 255 printable characters).",
            ),
            json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern::HEADER_KEY}),
        )]
    }
}

/// `limit` and `cursor`: keyset pages.
pub struct PageParams;
impl IntoParams for PageParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query_param(
                "limit",
                false,
                Some("1 to 200, default 50"),
                json!({"type": "integer", "minimum": 1, "maximum": 200}),
            ),
            query_param(
                "cursor",
                false,
                Some("nextCursor of the previous page"),
                json!({"type": "string", "pattern": pattern::ID}),
            ),
        ]
    }
}

/// `limit` and `cursor` of the lists keyed by uuid: the cursor is the id of the last item.
pub struct UuidPageParams;
impl IntoParams for UuidPageParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query_param(
                "limit",
                false,
                Some("1 to 200, default 50"),
                json!({"type": "integer", "minimum": 1, "maximum": 200}),
            ),
            query_param(
                "cursor",
                false,
                Some("nextCursor of the previous page"),
                json!({"type": "string", "format": "uuid"}),
            ),
        ]
    }
}

/// A path parameter.
pub fn path_param(name: &str, schema: Value) -> Parameter {
    param(ParameterIn::Path, name, true, None, schema)
}

/// A query parameter, optional unless `required`.
pub fn query_param(
    name: &str,
    required: bool,
    description: Option<&str>,
    schema: Value,
) -> Parameter {
    param(ParameterIn::Query, name, required, description, schema)
}

fn param(
    place: ParameterIn,
    name: &str,
    required: bool,
    description: Option<&str>,
    schema: Value,
) -> Parameter {
    Parameter::builder()
        .name(name)
        .parameter_in(place)
        .required(if required {
            utoipa::openapi::Required::True
        } else {
            utoipa::openapi::Required::False
        })
        .description(description)
        .schema(Some(fragment(schema)))
        .build()
}

macro_rules! path_params {
    ($name:ident, $( $param:literal => $schema:expr ),+ $(,)?) => {
        pub struct $name;
        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![ $( path_param($param, $schema) ),+ ]
            }
        }
    };
}

path_params!(ProgramPath, "programId" => json!({"type": "string", "pattern": pattern::ID}));
path_params!(RewardPath, "rewardId" => json!({"type": "string", "pattern": pattern::ID}));
path_params!(IssuancePath, "issuanceId" => json!({"type": "string", "format": "uuid"}));
path_params!(CustomerPath, "customerId" => json!({"type": "string", "format": "uuid"}));
path_params!(EventPath, "id" => json!({"type": "string", "format": "uuid"}));
path_params!(HoldPath, "holdId" => json!({"type": "string", "format": "uuid"}));
path_params!(EndpointPath, "endpointId" => json!({"type": "string", "format": "uuid"}));
path_params!(ApiKeyPath, "keyId" => json!({"type": "string", "pattern": pattern::ID}));
path_params!(AllocationPath, "uniqueId" => json!({
    "type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern::KEY,
}));
path_params!(
    KeyPath,
    "operation" => json!({"type": "string", "enum": domain::idempotency::Operation::ALL.map(domain::idempotency::Operation::as_str)}),
    "key" => json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": pattern::KEY}),
);

/// A page of `$item`s: `{"items": [...], "nextCursor": "…"}`.
macro_rules! page {
    ($name:ident, $item:ty) => {
        #[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            pub items: Vec<$item>,
            /// The `cursor` of the next page; null on the last.
            pub next_cursor: Option<String>,
        }

        impl $name {
            pub fn new(items: Vec<$item>, next: Option<impl std::fmt::Display>) -> Self {
                Self {
                    items,
                    next_cursor: next.map(|c| c.to_string()),
                }
            }
        }
    };
}
pub(crate) use page;

/// Security schemes, the struct-level rules utoipa's attributes cannot state, and the
/// `X-Request-Id` header every answer carries.
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-KEY"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Bodies that name a customer name exactly one way (customers are enrolled by mobile,
        // email or externalId only).
        for (name, with_customer_id, with_lookup) in [
            ("AllocationBody", true, true),
            ("RedemptionBody", true, true),
            ("HoldBody", true, true),
            ("CustomerSelector", true, true),
            ("BulkIssue", true, true),
            ("SingleIssue", true, true),
            ("CreateCustomer", false, false),
        ] {
            if let Some(schema) = components.schemas.remove(name) {
                let all = AllOfBuilder::new()
                    .item(schema)
                    .item(customer_choice(with_customer_id, with_lookup))
                    .build();
                components
                    .schemas
                    .insert(name.to_owned(), Schema::AllOf(all).into());
            }
        }
        // A strategy's kind decides which field it needs (present and not null).
        let kind = |kind: &str, needs: Option<(&str, Value)>| {
            let mut branch = json!({"type": "object", "properties": {"kind": {"type": "string", "enum": [kind]}}});
            if let Some((field, schema)) = needs {
                branch["properties"][field] = schema;
                branch["required"] = json!([field]);
            }
            branch
        };
        let decimal = || json!({"type": ["number", "string"]});
        for (name, kinds) in [
            (
                "CreateExpiryStrategy",
                json!({"oneOf": [
                    kind("NEVER", None),
                    kind("AFTER_DAYS", Some(("days", json!({"type": "integer"})))),
                    kind("END_OF_MONTH_AFTER_MONTHS", Some(("months", json!({"type": "integer"})))),
                ]}),
            ),
            (
                "CreateAwardStrategy",
                json!({"oneOf": [
                    kind("RATE", Some(("multiplier", decimal()))),
                    kind("FIXED", Some(("points", decimal()))),
                ]}),
            ),
        ] {
            if let Some(schema) = components.schemas.remove(name) {
                let all = AllOfBuilder::new()
                    .item(schema)
                    .item(fragment(kinds))
                    .build();
                components
                    .schemas
                    .insert(name.to_owned(), Schema::AllOf(all).into());
            }
        }
        // A partial reversal (`amount`) is keyed by `reversalId`, a string then (not null).
        // OpenAPI 3.1 is JSON Schema 2020-12, which has `dependentRequired` and
        // `dependentSchemas`; utoipa's model has no field for them, so they go where utoipa
        // writes unknown keywords as they are. The Idempotency-Key header stands in for
        // `reversalId` too, which a schema of the body cannot say.
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("ReversalBody") {
            let rules = body.extensions.get_or_insert_with(Default::default);
            rules.insert(
                "dependentRequired".to_owned(),
                json!({"amount": ["reversalId"]}),
            );
            rules.insert(
                "dependentSchemas".to_owned(),
                json!({"amount": {"properties": {"reversalId": {"type": "string"}}}}),
            );
        }
        let request_id = utoipa::openapi::header::HeaderBuilder::new()
            .schema(Some(fragment(json!({"type": "string"}))))
            .description(Some(
                "The client's X-Request-Id (1 to 200 printable ASCII characters) or a new UUID.",
            ))
            .build();
        let mut written_names = std::collections::BTreeSet::new();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                // A keyed write's first answer carries the idempotency fields as its replay does.
                let replay = match op.responses.responses.get("202") {
                    Some(RefOr::T(r)) => r
                        .content
                        .get("application/json")
                        .and_then(|c| match c {
                            RefOr::T(c) => c.schema.clone(),
                            RefOr::Ref(_) => None,
                        })
                        .filter(
                            |s| matches!(s, RefOr::Ref(r) if r.ref_location.ends_with("Written")),
                        ),
                    _ => None,
                };
                if let Some(RefOr::Ref(r)) = &replay {
                    written_names.insert(
                        r.ref_location
                            .trim_start_matches("#/components/schemas/")
                            .to_owned(),
                    );
                }
                if let Some(schema) = replay {
                    for status in ["200", "201"] {
                        if let Some(RefOr::T(first)) = op.responses.responses.get_mut(status)
                            && let Some(RefOr::T(content)) =
                                first.content.get_mut("application/json")
                        {
                            content.schema = Some(schema.clone());
                        }
                    }
                }
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("X-Request-Id".to_owned(), request_id.clone().into());
                    }
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        for name in written_names {
            let base = name.trim_end_matches("Written");
            if let Some(schema) = written_schema(&components.schemas, base) {
                components.schemas.insert(name, schema);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "loyalty",
        description = "Loyalty rewards and currency issuance, exactly once per idempotency key. Errors are application/problem+json (RFC 9457).",
    ),
    servers((url = "/")),
    security(("apiKey" = []), ("bearer" = [])),
    paths(
        health::healthz,
        health::readyz,
        ops::metrics,
        ops::openapi,
        ops::docs,
        programs::create,
        programs::list,
        programs::get,
        programs::create_award_strategy,
        programs::list_award_strategies,
        programs::create_expiry_strategy,
        programs::list_expiry_strategies,
        liability::get,
        rewards::create,
        rewards::list,
        rewards::get,
        rewards::patch,
        rewards::issue_bulk,
        rewards::issue_single,
        rewards::cancel,
        rewards::customer_rewards,
        customers::create,
        customers::lookup,
        customers::get,
        customers::ledger,
        customers::expiring,
        customer_lists::holds,
        customer_lists::allocations,
        customer_lists::transfers,
        customers::export,
        customers::erase,
        allocations::create,
        allocations::get,
        allocations::reverse,
        allocations::activate,
        allocations::redeem,
        transfers::create,
        holds::create,
        holds::get,
        holds::capture,
        holds::void,
        webhooks::create_endpoint,
        webhooks::list_endpoints,
        webhooks::update_endpoint,
        webhooks::delete_endpoint,
        api_keys::create,
        api_keys::list,
        api_keys::revoke,
        webhooks::list_events,
        webhooks::get_event,
        webhooks::retry_event,
        idempotency_keys::get,
    ),
    components(schemas(Problem, FieldProblem, Idempotency)),
    modifiers(&Finish),
    tags(
        (name = "Operations", description = "Health, metrics and this document; no key needed."),
        (name = "Catalog", description = "Programs, currencies, strategies and rewards."),
        (name = "Issuance", description = "Reward issuance, exactly once per requestId."),
        (name = "Customers", description = "Customers, balances and the ledger."),
        (name = "Currency", description = "Allocation, redemption and reversal of currencies."),
        (name = "Webhooks", description = "Endpoints and the events delivered to them."),
        (name = "Idempotency", description = "What became of an idempotency key."),
        (name = "Organisation", description = "The organisation's own API keys."),
    ),
)]
pub struct ApiDoc;

/// The document as served, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_string(&ApiDoc::openapi()).unwrap_or_else(|e| {
            // Serialising the model of the document cannot fail; keep the service up anyway.
            tracing::error!(error = %e, "the OpenAPI document could not be written");
            "{}".to_owned()
        })
    })
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
