//! The golden frames of tests/vectors/: decoded, compared, re-encoded byte for byte.

use std::fs;
use std::path::PathBuf;

use edgebook_sdk::frame::{read_frame, Frame};
use serde_json::Value;

const ONE_MIB: usize = 1024 * 1024;

fn vectors(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(kind)
}

fn files_with(dir: &PathBuf, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn every_valid_vector_decodes_and_reencodes_byte_for_byte() {
    let bins = files_with(&vectors("valid"), "bin");
    assert!(bins.len() >= 10, "expected the golden vectors, found {}", bins.len());
    for bin in bins {
        let bytes = fs::read(&bin).unwrap();
        let mut stream = &bytes[..];
        let frame = read_frame(&mut stream, ONE_MIB)
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
            .unwrap_or_else(|| panic!("{}: empty", bin.display()));
        assert!(stream.is_empty(), "{}: trailing bytes", bin.display());

        let expected: Value =
            serde_json::from_slice(&fs::read(bin.with_extension("json")).unwrap()).unwrap();
        assert_eq!(frame.to_value(), expected, "{}: payload differs", bin.display());
        assert_eq!(frame.encode(), bytes, "{}: re-encoding differs", bin.display());
    }
}

#[test]
fn the_original_shape_decodes_as_an_untyped_request() {
    let bytes = fs::read(vectors("valid").join("request_original_shape.bin")).unwrap();
    match Frame::decode(&bytes[4..]).unwrap() {
        Frame::Request(request) => {
            assert!(request.untyped);
            assert_eq!(request.path, "/legacy");
            assert_eq!(request.body_encoding, None);
        }
        other => panic!("decoded as {other:?}"),
    }
}

#[test]
fn every_invalid_vector_is_refused_with_its_kind() {
    let dir = vectors("invalid");
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let manifest = manifest.as_object().unwrap();
    let bins = files_with(&dir, "bin");
    assert_eq!(bins.len(), manifest.len(), "manifest and .bin files disagree");
    for bin in bins {
        let name = bin.file_stem().unwrap().to_str().unwrap();
        let expected = manifest[name].as_str().unwrap();
        let bytes = fs::read(&bin).unwrap();
        let mut stream = &bytes[..];
        match read_frame(&mut stream, ONE_MIB) {
            Err(err) => assert_eq!(err.kind(), expected, "{name}: {err}"),
            Ok(frame) => panic!("{name}: accepted as {frame:?}"),
        }
    }
}
