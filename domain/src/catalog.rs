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
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert!(CurrencyCode::parse("POINTS").is_ok());
        assert!(CurrencyCode::parse("COINS_2").is_ok());
        for bad in ["", "points", "1POINTS", "PO INTS", &"P".repeat(33)] {
            assert!(CurrencyCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("  Marvel ").unwrap(), "Marvel");
        assert!(parse_name("  ").is_err());
        assert!(parse_name("a\u{0}b").is_err());
    }
}
