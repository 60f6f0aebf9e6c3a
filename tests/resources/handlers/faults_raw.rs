// A worker that speaks the protocol itself and breaks it on request: GET /raw/{mode}.
// Modes: ok, malformed, wrong_id, duplicate, oversized, stdout_spam, slow_drip, and two
// that arm the worker for the *next* request: arm_exit_before_read (it exits without
// reading it) and arm_ignore_stdin (it never reads it). FAULT_AT_START=before_ready makes
// it exit before its ready frame, FAULT_AT_START=after_ready right after it.
use edgebook_sdk::frame::{read_frame, Frame, Ready, RequestFrame, ResponseFrame};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

extern "C" {
    fn poll(fds: *mut PollFd, nfds: u64, timeout: i32) -> i32;
}

fn response(id: &str, status: u16, body: &str) -> Vec<u8> {
    Frame::Response(ResponseFrame {
        request_id: id.to_owned(),
        status,
        headers: HashMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        headers_all: None,
        body: Some(body.to_owned()),
        body_encoding: None,
        body_length: None,
        body_bytes: None,
    })
    .encode()
}

fn send(out: &mut impl Write, bytes: &[u8]) {
    out.write_all(bytes).expect("write stdout");
    out.flush().expect("flush stdout");
}

fn wait_readable() {
    let mut fd = PollFd { fd: 0, events: 1, revents: 0 };
    unsafe { poll(&mut fd, 1, -1) };
}

fn main() {
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let at_start = std::env::var("FAULT_AT_START").unwrap_or_default();
    if at_start == "before_ready" {
        eprintln!("faults_raw: exiting before the ready frame, as asked");
        std::process::exit(3);
    }
    send(&mut out, &Frame::Ready(Ready::current()).encode());
    if at_start == "after_ready" {
        std::process::exit(4);
    }
    loop {
        let request: RequestFrame = match read_frame(&mut input as &mut dyn Read, 1 << 20) {
            Ok(Some(Frame::Request(r))) => r,
            Ok(None) => return,
            Ok(Some(_)) | Err(_) => std::process::exit(2),
        };
        let id = request.request_id.as_str();
        let mode = request.params.get("mode").cloned().unwrap_or_default();
        let ok = format!("{{\"mode\":\"{mode}\",\"pid\":{}}}", std::process::id());
        match mode.as_str() {
            "malformed" => send(&mut out, b"\x00\x00\x00\x05nope!"),
            "wrong_id" => send(&mut out, &response("not-the-request-id", 200, &ok)),
            "duplicate" => {
                let mut twice = response(id, 200, &ok);
                twice.extend(response(id, 200, &ok));
                send(&mut out, &twice);
            }
            "oversized" => send(&mut out, b"\xff\xff\xff\xf0"),
            "stdout_spam" => {
                for _ in 0..1000 {
                    send(&mut out, b"hello from println! on the protocol stream\n");
                }
            }
            "slow_drip" => {
                for byte in response(id, 200, &ok) {
                    send(&mut out, &[byte]);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            "arm_exit_before_read" => {
                send(&mut out, &response(id, 200, &ok));
                wait_readable();
                std::process::exit(9);
            }
            "arm_ignore_stdin" => {
                send(&mut out, &response(id, 200, &ok));
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            _ => send(&mut out, &response(id, 200, &ok)),
        }
    }
}
