//! Unit tests of `auth`.

use super::*;

#[actix_web::test]
async fn the_forwarded_address_counts_only_when_trusted() {
    let req = actix_web::test::TestRequest::default()
        .peer_addr("10.0.0.1:4000".parse().unwrap())
        .insert_header(("X-Forwarded-For", "192.0.2.9, 203.0.113.7"))
        .to_srv_request();
    assert_eq!(client_address(&req, false), IpAddr::from([10, 0, 0, 1]));
    assert_eq!(client_address(&req, true), IpAddr::from([203, 0, 113, 7]));
    let v6 = actix_web::test::TestRequest::default()
        .peer_addr("[2001:db8::1:2:3:4]:4000".parse().unwrap())
        .to_srv_request();
    assert_eq!(
        client_address(&v6, false),
        "2001:db8::".parse::<IpAddr>().unwrap()
    );
}
