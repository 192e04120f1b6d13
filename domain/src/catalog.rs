//! Catalog values: currency codes and names.

use crate::Invalid;

/// A currency code such as `POINTS` or `COINS`: 1 to 32 of `A-Z`, `0-9`, `_`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode(String);

impl CurrencyCode {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = (1..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_uppercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid::new(
                "must be 1 to 32 upper-case letters, digits or '_', starting with a letter",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 200 characters after trimming, no control characters.
pub fn parse_name(raw: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    // The length counts what was sent, surrounding white space included, as a schema does.
    if name.is_empty() || raw.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
