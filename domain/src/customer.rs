//! Customer identifiers, normalised so that one person is one customer.

use std::fmt;

use uuid::Uuid;

use crate::Invalid;

/// A mobile number: digits only, 6 to 15 of them (E.164 allows 15).
/// `+`, spaces, dashes, dots and brackets are dropped; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mobile(String);

impl Mobile {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let mut digits = String::with_capacity(raw.len());
        for c in raw.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' | ' ' | '-' | '(' | ')' | '.' => {}
                _ => {
                    return Err(Invalid::new(
                        "must contain only digits, '+', spaces, dashes and brackets",
                    ));
                }
            }
        }
        if !(6..=15).contains(&digits.len()) {
            return Err(Invalid::new("must have 6 to 15 digits"));
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        let invalid = || Invalid::new("must be a valid email address");
        // ASCII only (an internationalised domain is sent in its `xn--` form): lengths are then
        // the same in bytes and in characters, as the OpenAPI document states them.
        if email.len() > 254 || !email.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The brand's own id for the customer: 1 to 255 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let id = raw.trim();
        // The length counts what was sent, surrounding white space included, as a schema does.
        if id.is_empty() || raw.chars().count() > 255 || id.chars().any(char::is_control) {
            return Err(Invalid::new(
                "must be 1 to 255 characters without control characters",
            ));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a request names its customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CustomerRef {
    Mobile(Mobile),
    Email(Email),
    ExternalId(ExternalId),
    /// The service's own id; never enrolls a new customer.
    CustomerId(Uuid),
}

impl CustomerRef {
    /// Parses `identifierType` / `identifierValue` as Capillary's `lookupParams` carry them.
    pub fn parse(identifier_type: &str, value: &str) -> Result<Self, (&'static str, Invalid)> {
        let value_err = |e| ("identifierValue", e);
        match identifier_type {
            "mobile" => Mobile::parse(value)
                .map(CustomerRef::Mobile)
                .map_err(value_err),
            "email" => Email::parse(value)
                .map(CustomerRef::Email)
                .map_err(value_err),
            "externalId" => ExternalId::parse(value)
                .map(CustomerRef::ExternalId)
                .map_err(value_err),
            "customerId" => Uuid::parse_str(value.trim())
                .map(CustomerRef::CustomerId)
                .map_err(|_| value_err(Invalid::new("must be a customer id"))),
            _ => Err((
                "identifierType",
                Invalid::new("must be one of mobile, email, externalId, customerId"),
            )),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            CustomerRef::Mobile(_) => "mobile",
            CustomerRef::Email(_) => "email",
            CustomerRef::ExternalId(_) => "externalId",
            CustomerRef::CustomerId(_) => "customerId",
        }
    }

    pub fn value(&self) -> String {
        match self {
            CustomerRef::Mobile(m) => m.as_str().to_owned(),
            CustomerRef::Email(e) => e.as_str().to_owned(),
            CustomerRef::ExternalId(x) => x.as_str().to_owned(),
            CustomerRef::CustomerId(id) => id.to_string(),
        }
    }
}

impl fmt::Display for CustomerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

#[cfg(test)]
#[path = "customer_tests.rs"]
mod tests;
