//! Unit tests of `customer`.

use super::*;

#[test]
fn mobiles_are_normalised_to_digits() {
    assert_eq!(
        Mobile::parse("+91 (98) 765-43210").unwrap().as_str(),
        "919876543210"
    );
    assert_eq!(Mobile::parse("123456").unwrap().as_str(), "123456");
    assert!(Mobile::parse("12345").is_err());
    assert!(Mobile::parse("1234567890123456").is_err());
    assert!(Mobile::parse("98765abc43").is_err());
    assert!(Mobile::parse("").is_err());
}

#[test]
fn emails_are_trimmed_and_lower_cased() {
    assert_eq!(
        Email::parse("  Jane.Doe@Example.COM ").unwrap().as_str(),
        "jane.doe@example.com"
    );
    for bad in [
        "",
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "ja ne@example.com",
        "a@b@c.com",
        "jane@-x.com",
        "jane@x_y.com",
        // ASCII only: an internationalised domain is sent in its xn-- form.
        "jäne@example.com",
        "jane@exämple.com",
        "jane\u{7f}@example.com",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad} should be refused");
    }
    assert!(Email::parse("jane+tag@xn--exmple-cua.com").is_ok());
    // The local part may be 64 bytes, the whole address 254.
    let local = "a".repeat(64);
    assert!(Email::parse(&format!("{local}@example.com")).is_ok());
    assert!(Email::parse(&format!("a{local}@example.com")).is_err());
}

#[test]
fn lookup_params_parse_by_type() {
    assert!(matches!(
        CustomerRef::parse("mobile", "919876543210"),
        Ok(CustomerRef::Mobile(_))
    ));
    assert!(matches!(
        CustomerRef::parse("email", "a@b.co"),
        Ok(CustomerRef::Email(_))
    ));
    assert!(matches!(
        CustomerRef::parse("externalId", "C-1"),
        Ok(CustomerRef::ExternalId(_))
    ));
    assert!(CustomerRef::parse("customerId", "nope").is_err());
    assert_eq!(
        CustomerRef::parse("phone", "1").unwrap_err().0,
        "identifierType"
    );
}
