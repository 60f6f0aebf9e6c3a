//! Reads a byte stream on stdin and prints, one JSON line per frame, what the SDK's frame
//! reader makes of it: the frame's JSON object, or `{"error": kind}` at the first error.
//! The gateway's test suite runs it to check that the Python and Rust codecs agree.

use std::io::Read;

use edgebook_sdk::frame::{parse_object, read_payload, Frame, FrameError};
use serde_json::{json, Value};

fn main() {
    let max: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1 << 20);
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data).expect("read stdin");
    let mut stream: &[u8] = &data;
    loop {
        let outcome = read_payload(&mut stream, max).and_then(|payload| match payload {
            None => Ok(None),
            Some(payload) => {
                let object = parse_object(&payload)?;
                match Frame::from_object(object.clone()) {
                    Err(err @ FrameError::UnknownType(_)) => Err(err),
                    _ => Ok(Some(Value::Object(object))),
                }
            }
        });
        match outcome {
            Ok(Some(object)) => println!("{object}"),
            Ok(None) => break,
            Err(err) => {
                println!("{}", json!({"error": err.kind()}));
                break;
            }
        }
    }
}
