//! Binary body frames: the golden frames of tests/vectors/binary/, and the negotiation
//! (`EDGEBOOK_BINARY_BODY=1` offered, `binary_body` announced in the ready frame).

use std::fs;
use std::path::PathBuf;

use edgebook_sdk::frame::{read_frame, BodyEncoding, Frame, RequestFrame};
use edgebook_sdk::ipc::BINARY_BODY_ENV;
use edgebook_sdk::prelude::*;
use serde_json::Value;

const ONE_MIB: usize = 1024 * 1024;

fn binary(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/binary").join(name)
}

#[test]
fn golden_binary_frames_decode_and_reencode_byte_for_byte() {
    for name in ["request_binary_body", "response_binary_body", "ready_binary_body"] {
        let bytes = fs::read(binary(&format!("{name}.bin"))).unwrap();
        let mut stream = &bytes[..];
        let frame = read_frame(&mut stream, ONE_MIB).unwrap().unwrap();
        assert!(stream.is_empty(), "{name}: trailing bytes");
        let header: Value =
            serde_json::from_slice(&fs::read(binary(&format!("{name}.json"))).unwrap()).unwrap();
        assert_eq!(frame.to_value(), header, "{name}: header differs");
        if let Ok(body) = fs::read(binary(&format!("{name}.body"))) {
            assert_eq!(frame.body_bytes(), Some(&body[..]), "{name}: body differs");
        }
        assert_eq!(frame.encode(), bytes, "{name}: re-encoding differs");
    }
}

#[test]
fn invalid_binary_frames_are_refused_with_their_kind() {
    let manifest: Value =
        serde_json::from_slice(&fs::read(binary("manifest.json")).unwrap()).unwrap();
    for (name, kind) in manifest.as_object().unwrap() {
        let bytes = fs::read(binary(name)).unwrap();
        let err = read_frame(&mut &bytes[..], ONE_MIB).expect_err(name);
        assert_eq!(err.kind(), kind.as_str().unwrap(), "{name}: {err}");
    }
}

#[test]
fn offered_binary_bodies_are_announced_and_used_both_ways() {
    std::env::set_var(BINARY_BODY_ENV, "1"); // this test binary's only test that runs a worker
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let request = Frame::Request(RequestFrame {
        request_id: "b1".into(),
        method: "PUT".into(),
        path: "/".into(),
        body_encoding: Some(BodyEncoding::Binary),
        body_length: Some(body.len() as u64),
        body_bytes: Some(body.clone()),
        ..Default::default()
    });
    let input = request.encode();
    let mut output = Vec::new();
    edgebook_sdk::run_with(&input[..], &mut output, |req: Request| {
        Response::binary(200, req.body_bytes(), "application/octet-stream")
    })
    .unwrap();
    let mut frames = &output[..];
    match read_frame(&mut frames, ONE_MIB).unwrap() {
        Some(Frame::Ready(ready)) => assert!(ready.binary_body),
        other => panic!("{other:?}"),
    }
    match read_frame(&mut frames, ONE_MIB).unwrap() {
        Some(Frame::Response(response)) => {
            assert_eq!(response.body_encoding, Some(BodyEncoding::Binary));
            assert_eq!(response.body, None);
            assert_eq!(response.body_bytes.as_deref(), Some(&body[..]));
        }
        other => panic!("{other:?}"),
    }
}
