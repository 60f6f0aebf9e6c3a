//! Conversions to and from the `http` crate's types (feature `http`).
#![cfg(feature = "http")]

use edgebook_sdk::prelude::*;
use edgebook_sdk::IntoResponse;

#[test]
fn responses_round_trip_through_http_with_repeated_headers_and_binary_bodies() {
    let original = Response::binary(200, [0u8, 0x80, 0xff], "application/octet-stream")
        .append_header("Set-Cookie", "a=1")
        .append_header("Set-Cookie", "b=2");
    let converted: http::Response<Vec<u8>> = original.clone().try_into().unwrap();
    let cookies: Vec<&str> =
        converted.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(converted.headers().get("x-edgebook-body-encoding").is_none());
    assert_eq!(converted.body(), &vec![0u8, 0x80, 0xff]);

    let back = converted.into_response();
    assert_eq!(back.status, 200);
    assert_eq!(back.binary_body(), Some(vec![0u8, 0x80, 0xff]));
    assert_eq!(back.header_values("set-cookie"), ["a=1", "b=2"]);
}

#[test]
fn an_invalid_status_is_an_error_not_a_panic() {
    let result: Result<http::Response<Vec<u8>>, _> = Response::new(1000).try_into();
    assert!(result.is_err());
}

#[test]
fn requests_convert_both_ways() {
    let req = Request {
        method: "POST".into(),
        path: "/items".into(),
        query: [("q".to_string(), "ü x".to_string())].into(),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        body: Some(r#"{"a":1}"#.into()),
        request_id: "r-1".into(),
        ..Request::default()
    };
    let converted: http::Request<Vec<u8>> = req.clone().try_into().unwrap();
    assert_eq!(converted.uri(), "/items?q=%C3%BC%20x");
    let back = Request::from(converted);
    assert_eq!(back.query, req.query);
    assert_eq!(back.headers, req.headers);
    assert_eq!(back.body, req.body);
    assert_eq!((back.method, back.path), (req.method, req.path));
}
