//! Shapes shared by request bodies: ids sent as numbers or strings, decimals sent as numbers
//! or strings, and the ways a request names its customer.

use chrono::{DateTime, Utc};
use domain::Decimal;
use domain::customer::CustomerRef;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::app::error::{AppError, FieldError};

/// An id that Capillary's clients send as a JSON number or a string (`67890` or `"67890"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlexId(pub i64);

impl<'de> Deserialize<'de> for FlexId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let invalid = || D::Error::custom("must be a positive whole number, or a string of one");
        let id = match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => whole(&n).ok_or_else(invalid)?,
            // Written plainly, as ids are given: digits, no sign, no leading zero.
            serde_json::Value::String(s)
                if !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse::<i64>().map_err(|_| invalid())?
            }
            _ => return Err(invalid()),
        };
        if id <= 0 {
            return Err(invalid());
        }
        Ok(FlexId(id))
    }
}

/// A decimal sent as a JSON number or a string (`1000`, `"12.5"`), read exactly.
///
/// One grammar on both sides of the contract (`crate::http::openapi::decimal_schema`): a string is
/// plain decimal notation with up to 14 digits before and 14 after the point; a number is
/// below 10^14 in magnitude. Anything else is malformed (400). A number the grammar allows but
/// an exact decimal cannot hold (`1e-40`, or more than 28 significant digits) is well formed
/// but refused when used, with 422 `AMOUNT_NOT_REPRESENTABLE` ([`DecimalInput::get`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalInput(Option<Decimal>);

impl DecimalInput {
    /// The value, or 422 when it cannot be held exactly.
    pub fn get(self, field: &str) -> Result<Decimal, AppError> {
        self.0.ok_or_else(|| {
            AppError::not_representable(
                field,
                "has more decimal places than can be held exactly (28)",
            )
        })
    }
}

impl<'de> Deserialize<'de> for DecimalInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            // With serde_json's arbitrary_precision the number keeps its original text.
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                let magnitude = text.parse::<f64>().map(f64::abs).unwrap_or(f64::INFINITY);
                // NaN never parses from JSON; anything not below the limit is refused.
                if magnitude.is_nan() || magnitude >= crate::http::openapi::DECIMAL_LIMIT as f64 {
                    return Err(D::Error::custom("must be less than 10^14"));
                }
                // Below the limit, only precision can keep a decimal from holding it.
                Ok(DecimalInput(domain::money::parse_decimal(&text).ok()))
            }
            serde_json::Value::String(s) => {
                if !plain_decimal(&s) {
                    return Err(D::Error::custom(
                        "must be a decimal with at most 14 digits before and 14 after the point (\"12.5\")",
                    ));
                }
                domain::money::parse_decimal(&s)
                    .map(|d| DecimalInput(Some(d)))
                    .map_err(|e| D::Error::custom(e.message))
            }
            _ => Err(D::Error::custom(
                "must be a decimal number or a string of one",
            )),
        }
    }
}

/// `[+-]?digits[.digits]` with 1 to 14 digits on each side; spaces, tabs and line breaks
/// around allowed (`crate::http::openapi::pattern::DECIMAL`).
pub fn plain_decimal(text: &str) -> bool {
    let t = text.trim_matches([' ', '\t', '\n', '\r']);
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (whole, fraction) = match t.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (t, None),
    };
    let digits = |s: &str| (1..=14).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

/// A text field some clients send as a number (a mobile, say): a string, or a whole number of
/// zero or more written as digits (`919999999999`), taken as its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseString(pub String);

impl<'de> Deserialize<'de> for LooseString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(LooseString(s)),
            // Taken as its digits (`408.0` is 408): no sign, fraction or exponent turns into
            // the separators of a mobile.
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                if text.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(LooseString(text))
                } else {
                    match whole(&n) {
                        Some(i) if i >= 0 => Ok(LooseString(i.to_string())),
                        _ => Err(D::Error::custom(
                            "must be a string (or a whole number of zero or more)",
                        )),
                    }
                }
            }
            _ => Err(D::Error::custom(
                "must be a string (or a whole number of zero or more)",
            )),
        }
    }
}

/// Capillary's `lookupParams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupParams {
    pub entity_type: Option<String>,
    pub identifier_type: String,
    pub identifier_value: LooseString,
}

/// The customer fields of a request body, borrowed (see [`customer_of!`]); exactly one way of
/// naming the customer is allowed.
///
/// Request bodies declare the five fields themselves rather than `#[serde(flatten)]`-ing a
/// struct: serde buffers flattened fields, and their errors would lose their path
/// (`lookupParams.identifierValue` would become `body`).
#[derive(Debug, Clone, Default)]
pub struct CustomerFields<'a> {
    pub mobile: Option<&'a LooseString>,
    pub email: Option<&'a LooseString>,
    pub external_id: Option<&'a LooseString>,
    pub customer_id: Option<&'a LooseString>,
    pub lookup_params: Option<&'a LookupParams>,
}

/// The [`CustomerFields`] of a request body that has `mobile`, `email`, `external_id`,
/// `customer_id` and `lookup_params` fields.
#[macro_export]
macro_rules! customer_of {
    ($body:expr) => {
        $crate::http::dto::CustomerFields {
            mobile: $body.mobile.as_ref(),
            email: $body.email.as_ref(),
            external_id: $body.external_id.as_ref(),
            customer_id: $body.customer_id.as_ref(),
            lookup_params: $body.lookup_params.as_ref(),
        }
    };
}

impl CustomerFields<'_> {
    pub fn parse(&self) -> Result<CustomerRef, AppError> {
        let mut given: Vec<(&str, &str, &str)> = Vec::new();
        if let Some(v) = self.mobile {
            given.push(("mobile", "mobile", &v.0));
        }
        if let Some(v) = self.email {
            given.push(("email", "email", &v.0));
        }
        if let Some(v) = self.external_id {
            given.push(("externalId", "externalId", &v.0));
        }
        if let Some(v) = self.customer_id {
            given.push(("customerId", "customerId", &v.0));
        }
        if let Some(lp) = self.lookup_params {
            if let Some(et) = &lp.entity_type
                && !et.eq_ignore_ascii_case("CUSTOMER")
            {
                return Err(AppError::validation(
                    "lookupParams.entityType",
                    "must be CUSTOMER",
                ));
            }
            given.push(("lookupParams", &lp.identifier_type, &lp.identifier_value.0));
        }
        match given.as_slice() {
            [] => Err(AppError::validation(
                "customer",
                "name the customer with one of mobile, email, externalId, customerId or lookupParams",
            )),
            [(field, kind, value)] => CustomerRef::parse(kind, value).map_err(|(part, e)| {
                let name = if *field == "lookupParams" {
                    format!("lookupParams.{part}")
                } else {
                    (*field).to_owned()
                };
                AppError::Validation(vec![FieldError::new(name, e.message)])
            }),
            _ => Err(AppError::validation(
                "customer",
                "name the customer in one way only (mobile, email, externalId, customerId or lookupParams)",
            )),
        }
    }
}

/// A free text field with a bound on its length.
pub fn bounded_text(
    field: &str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, AppError> {
    match value {
        None => Ok(None),
        Some(v) if v.chars().count() > max_chars => Err(AppError::validation(
            field,
            format!("must be at most {max_chars} characters"),
        )),
        Some(v) if v.chars().any(char::is_control) => Err(AppError::validation(
            field,
            "must not contain control characters",
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// Runs `validator` rules and reports every failure with its JSON path (`currencies[1].scale`).
pub fn validate<T: validator::Validate>(value: &T) -> Result<(), AppError> {
    fn camel(name: &str) -> String {
        let mut out = String::with_capacity(name.len());
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }
    fn walk(prefix: &str, errors: &validator::ValidationErrors, out: &mut Vec<FieldError>) {
        for (field, kind) in errors.errors() {
            let path = if prefix.is_empty() {
                camel(field)
            } else {
                format!("{prefix}.{}", camel(field))
            };
            match kind {
                validator::ValidationErrorsKind::Field(list) => {
                    for e in list {
                        let message = e
                            .message
                            .as_ref()
                            .map_or_else(|| describe(e), |m| m.to_string());
                        out.push(FieldError::new(path.clone(), message));
                    }
                }
                validator::ValidationErrorsKind::Struct(inner) => walk(&path, inner, out),
                validator::ValidationErrorsKind::List(items) => {
                    for (i, inner) in items {
                        walk(&format!("{path}[{i}]"), inner, out);
                    }
                }
            }
        }
    }
    fn describe(e: &validator::ValidationError) -> String {
        let p = |k: &str| e.params.get(k).map(|v| v.to_string());
        match e.code.as_ref() {
            "length" => match (p("min"), p("max")) {
                (Some(min), Some(max)) => {
                    format!("must have from {min} to {max} entries or characters")
                }
                (Some(min), None) => format!("must have at least {min} entries or characters"),
                (None, Some(max)) => format!("must have at most {max} entries or characters"),
                _ => "has an invalid length".to_owned(),
            },
            "range" => match (p("min"), p("max")) {
                (Some(min), Some(max)) => format!("must be from {min} to {max}"),
                _ => "is out of range".to_owned(),
            },
            code => format!("is invalid ({code})"),
        }
    }
    match value.validate() {
        Ok(()) => Ok(()),
        Err(errors) => {
            let mut out = Vec::new();
            walk("", &errors, &mut out);
            out.sort_by(|a, b| a.field.cmp(&b.field));
            Err(AppError::Validation(out))
        }
    }
}

/// For PATCH bodies: absent → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
/// Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An RFC 3339 timestamp, converted to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|_| {
                D::Error::custom("must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
            })
    }
}

/// A whole number, sent as a JSON integer or as a number with nothing after the point (`3`,
/// `3.0`, `3e2`): JSON Schema's `integer` counts `3.0` as one, so clients and generators may
/// send it. Anything with a fraction, or beyond `i64`, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let invalid = || D::Error::custom("must be a whole number");
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => whole(&n).map(WholeNumber).ok_or_else(invalid),
            _ => Err(invalid()),
        }
    }
}

/// A JSON number's value when it is a whole number that fits `i64` (`3`, `3.0`, `3e2`).
fn whole(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    // With serde_json's arbitrary_precision the number keeps its text (`3.0`, `3e2`).
    let text = n.to_string();
    let value = text
        .parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()?;
    if !value.fract().is_zero() {
        return None;
    }
    i64::try_from(value).ok()
}

#[cfg(test)]
mod decimal_input_tests {
    use super::DecimalInput;

    fn parse(json: &str) -> Result<Option<String>, ()> {
        serde_json::from_str::<DecimalInput>(json)
            .map(|d| d.0.map(|v| v.to_string()))
            .map_err(|_| ())
    }

    #[test]
    fn strings_are_plain_decimals_of_fourteen_digits_each_side() {
        assert_eq!(parse("\"12.5\""), Ok(Some("12.5".into())));
        assert_eq!(parse("\" +7 \""), Ok(Some("7".into())));
        assert_eq!(parse("\"-2\""), Ok(Some("-2".into())));
        assert_eq!(
            parse("\"99999999999999.99999999999999\"").map(|v| v.is_some()),
            Ok(true)
        );
        for bad in [
            "\"1e3\"",
            "\"123456789012345\"",
            "\"1.123456789012345\"",
            "\".5\"",
            "\"5.\"",
            "\"\"",
            "\"NaN\"",
        ] {
            assert_eq!(parse(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn numbers_below_the_limit_are_exact_or_not_representable() {
        assert_eq!(parse("1000"), Ok(Some("1000".into())));
        assert_eq!(parse("1e3"), Ok(Some("1000".into())));
        assert_eq!(parse("0.1"), Ok(Some("0.1".into())));
        assert_eq!(
            parse("99999999999999.98"),
            Ok(Some("99999999999999.98".into()))
        );
        // Well formed, but no exact decimal holds them: refused later with 422.
        assert_eq!(parse("3.28e-51"), Ok(None));
        assert_eq!(parse("1.2345678901234567890123456789"), Ok(None));
        // Too large: malformed.
        assert_eq!(parse("1e14"), Err(()));
        assert_eq!(parse("-1e14"), Err(()));
        assert_eq!(parse("1e400"), Err(()));
    }
}

#[cfg(test)]
mod whole_number_tests {
    use super::WholeNumber;

    fn parse(json: &str) -> Option<i64> {
        serde_json::from_str::<WholeNumber>(json).ok().map(|w| w.0)
    }

    #[test]
    fn integers_and_integral_numbers_are_whole() {
        assert_eq!(parse("3"), Some(3));
        assert_eq!(parse("-2"), Some(-2));
        assert_eq!(parse("3.0"), Some(3));
        assert_eq!(parse("3.000"), Some(3));
        assert_eq!(parse("3e2"), Some(300));
        assert_eq!(parse("9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn fractions_text_and_overflow_are_refused() {
        assert_eq!(parse("3.5"), None);
        assert_eq!(parse("1e-1"), None);
        assert_eq!(parse("\"3\""), None);
        assert_eq!(parse("null"), None);
        assert_eq!(parse("9223372036854775808"), None);
        assert_eq!(parse("1e40"), None);
    }
}
