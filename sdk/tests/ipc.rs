//! The worker loop driven in memory: bytes in, frames out.

use std::io::{self, Write};

use edgebook_sdk::frame::{read_frame, BodyEncoding, Frame, FrameError, ResponseFrame};
use edgebook_sdk::ipc::{run_with_config, Config, WorkerError};
use edgebook_sdk::prelude::*;
use edgebook_sdk::IntoResponse;
use serde_json::Value;

const CONFIG: Config = Config { max_frame: 1024 * 1024, expose_errors: false };
const DEVELOPMENT: Config = Config { expose_errors: true, ..CONFIG };

fn frame(value: Value) -> Vec<u8> {
    let payload = serde_json::to_vec(&value).unwrap();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

fn request(id: &str, path: &str) -> Value {
    json!({
        "type": "request", "request_id": id, "method": "GET", "path": path,
        "query": {}, "headers": {}, "params": {}, "body": null, "body_encoding": "utf8",
        "client_ip": "127.0.0.1",
    })
}

fn run<F, O>(input: &[u8], handler: F) -> (Result<(), WorkerError>, Vec<Frame>)
where
    F: FnMut(Request) -> O,
    O: IntoResponse,
{
    run_configured(input, CONFIG, handler)
}

fn run_configured<F, O>(
    input: &[u8],
    config: Config,
    handler: F,
) -> (Result<(), WorkerError>, Vec<Frame>)
where
    F: FnMut(Request) -> O,
    O: IntoResponse,
{
    let mut output = Vec::new();
    let result = run_with_config(input, &mut output, config, handler);
    let mut stream = &output[..];
    let mut frames = Vec::new();
    while let Some(frame) = read_frame(&mut stream, usize::MAX).unwrap() {
        frames.push(frame);
    }
    assert!(matches!(frames.first(), Some(Frame::Ready(_))), "first frame must be ready");
    frames.remove(0);
    (result, frames)
}

fn responses(frames: Vec<Frame>) -> Vec<ResponseFrame> {
    frames
        .into_iter()
        .map(|frame| match frame {
            Frame::Response(response) => response,
            other => panic!("expected a response, got {other:?}"),
        })
        .collect()
}

fn echo_path(req: Request) -> Response {
    Response::text(200, req.path)
}

#[test]
fn pipelined_requests_are_answered_in_order_with_their_ids() {
    let mut input = Vec::new();
    for i in 0..5 {
        input.extend(frame(request(&format!("id-{i}"), &format!("/p/{i}"))));
    }
    let (result, frames) = run(&input, echo_path);
    result.unwrap();
    let answered: Vec<(String, Option<String>)> =
        responses(frames).into_iter().map(|r| (r.request_id, r.body)).collect();
    let expected: Vec<(String, Option<String>)> =
        (0..5).map(|i| (format!("id-{i}"), Some(format!("/p/{i}")))).collect();
    assert_eq!(answered, expected);
}

#[test]
fn a_request_in_the_original_shape_is_answered() {
    let legacy = json!({"method": "GET", "path": "/legacy", "query": {}, "headers": {},
                        "body": null, "params": {}, "client_ip": null, "request_id": "old-1"});
    let (result, frames) = run(&frame(legacy), echo_path);
    result.unwrap();
    let responses = responses(frames);
    assert_eq!(responses[0].request_id, "old-1");
    assert_eq!(responses[0].body.as_deref(), Some("/legacy"));
}

fn panics_at(req: Request) -> Response {
    if req.path == "/panic" {
        panic!("boom at {}", req.path);
    }
    Response::text(200, "fine")
}

#[test]
fn a_panic_answers_a_generic_500_and_the_next_request_is_served() {
    let mut input = frame(request("p-1", "/panic"));
    input.extend(frame(request("p-2", "/fine")));
    let (result, frames) = run(&input, panics_at);
    result.unwrap();
    let responses = responses(frames);
    assert_eq!(responses[0].status, 500);
    let body: Value = serde_json::from_str(responses[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Internal Server Error"}));
    assert_eq!((responses[1].status, responses[1].body.as_deref()), (200, Some("fine")));
}

#[test]
fn with_exposed_errors_a_panic_answers_its_message() {
    let (result, frames) = run_configured(&frame(request("p-1", "/panic")), DEVELOPMENT, panics_at);
    result.unwrap();
    let body: Value = serde_json::from_str(responses(frames)[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Internal error: handler panicked: boom at /panic"}));
}

#[test]
fn server_error_details_stay_out_of_the_response_unless_exposed() {
    fn failing(_req: Request) -> Result<Response, HandlerError> {
        Err(HandlerError::DatabaseError("no such table: secrets".into()))
    }
    let input = frame(request("d-1", "/"));
    let body = |config| {
        let (result, frames) = run_configured(&input, config, failing);
        result.unwrap();
        let response = responses(frames).remove(0);
        assert_eq!(response.status, 500);
        serde_json::from_str::<Value>(response.body.as_deref().unwrap()).unwrap()
    };
    assert_eq!(body(CONFIG), json!({"error": "Internal Server Error"}));
    assert_eq!(body(DEVELOPMENT), json!({"error": "Database error: no such table: secrets"}));
}

#[test]
fn binary_bodies_arrive_and_leave_intact() {
    let bytes: Vec<u8> = vec![0, 1, 2, 0xff, 0xfe, 0x80, 0x7f, b'\n', b'\r'];
    let mut req = request("bin-1", "/blob");
    req["body"] = json!("AAEC//6AfwoN");
    req["body_encoding"] = json!("base64");
    req["headers"] = json!({"content-type": "application/octet-stream"});
    let seen = std::cell::RefCell::new(None);
    let (result, frames) = run(&frame(req), |req: Request| {
        *seen.borrow_mut() = Some((req.body_bytes(), req.body.clone()));
        let mut reversed = req.body_bytes();
        reversed.reverse();
        Response::binary(200, reversed, "image/png")
    });
    result.unwrap();
    let (body_bytes, body_text) = seen.into_inner().unwrap();
    assert_eq!(body_bytes, bytes);
    assert_eq!(body_text, Some(String::from_utf8_lossy(&bytes).into_owned()));

    let response = responses(frames).remove(0);
    assert_eq!(response.body_encoding, Some(BodyEncoding::Base64));
    assert_eq!(response.headers.len(), 1, "the marker header must be stripped");
    assert_eq!(response.headers["Content-Type"], "image/png");
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD.decode(response.body.unwrap()).unwrap();
    let mut expected = bytes.clone();
    expected.reverse();
    assert_eq!(sent, expected);
}

#[test]
fn a_body_that_is_not_utf8_reads_as_its_lossy_text_and_keeps_its_bytes() {
    // Random bytes with text between them: errors dense and sparse, in both body encodings.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut body = Vec::new();
    while body.len() < 100_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 3 {
            0 => body.extend_from_slice("grüße, 世界 🦀 ".as_bytes()),
            _ => body.extend_from_slice(&state.to_le_bytes()),
        }
    }
    let binary = Frame::Request(edgebook_sdk::frame::RequestFrame {
        request_id: "raw-1".into(),
        method: "PUT".into(),
        path: "/".into(),
        body_encoding: Some(BodyEncoding::Binary),
        body_length: Some(body.len() as u64),
        body_bytes: Some(body.clone()),
        ..Default::default()
    })
    .encode();
    let mut base64 = request("b64-1", "/");
    use base64::Engine;
    base64["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&body));
    base64["body_encoding"] = json!("base64");
    let input = [binary, frame(base64)].concat();
    let mut seen = Vec::new();
    let (result, _) = run(&input, |req: Request| {
        seen.push((req.body.clone(), req.try_body_bytes()));
        Response::no_content()
    });
    result.unwrap();
    let expected = (Some(String::from_utf8_lossy(&body).into_owned()), Some(body));
    assert_eq!(seen, [expected.clone(), expected]);
}

#[test]
fn a_text_response_is_sent_as_utf8() {
    let (result, frames) = run(&frame(request("t-1", "/é")), echo_path);
    result.unwrap();
    let response = responses(frames).remove(0);
    assert_eq!(response.body_encoding, Some(BodyEncoding::Utf8));
    assert_eq!(response.body.as_deref(), Some("/é"));
}

#[test]
fn repeated_query_keys_and_headers_are_visible_then_forgotten() {
    let mut req = request("rep-1", "/search");
    req["query"] = json!({"tag": "b"});
    req["query_all"] = json!({"tag": ["a", "b"]});
    req["headers"] = json!({"x-forwarded-for": "10.0.0.2"});
    req["headers_all"] = json!({"x-forwarded-for": ["10.0.0.1", "10.0.0.2"]});
    let seen = std::cell::RefCell::new(None);
    let (result, _) = run(&frame(req), |req: Request| {
        *seen.borrow_mut() = Some((req.query_all("tag"), req.header_all("X-Forwarded-For")));
        Response::no_content()
    });
    result.unwrap();
    let (query_all, header_all) = seen.into_inner().unwrap();
    assert_eq!(query_all, vec!["a", "b"]);
    assert_eq!(header_all, vec!["10.0.0.1", "10.0.0.2"]);

    // After the response the side table no longer holds this request.
    let later = Request {
        request_id: "rep-1".into(),
        query: [("tag".to_string(), "b".to_string())].into(),
        ..Request::default()
    };
    assert_eq!(later.query_all("tag"), vec!["b"]);
}

#[test]
fn a_service_call_waits_for_its_reply_and_queues_requests_meanwhile() {
    let mut input = frame(request("svc-1", "/pets"));
    input.extend(frame(request("svc-2", "/after")));
    input.extend(frame(json!({
        "type": "service_reply", "request_id": "svc-1", "call_id": 1, "ok": true,
        "result": {"rows": [{"id": 1, "name": "Rex"}], "rows_affected": 0},
    })));
    let (result, frames) = run(&input, |req: Request| -> Result<Response, HandlerError> {
        if req.path == "/after" {
            return Ok(Response::text(200, "after"));
        }
        let db = DbPool { pool_id: "default".into() };
        let result = db.query("select * from pets where status = ?", &["sold"])?;
        Ok(Response::ok(json!({"rows": result.rows})))
    });
    result.unwrap();
    let mut frames = frames.into_iter();
    match frames.next().unwrap() {
        Frame::ServiceCall(call) => {
            assert_eq!((call.request_id.as_str(), call.call_id), ("svc-1", 1));
            assert_eq!((call.service.as_str(), call.op.as_str()), ("default", "db.query"));
            assert_eq!(
                call.args,
                json!({"sql": "select * from pets where status = ?", "params": ["sold"]})
            );
        }
        other => panic!("expected a service call, got {other:?}"),
    }
    let responses = responses(frames.collect());
    assert_eq!(responses[0].request_id, "svc-1");
    let body: Value = serde_json::from_str(responses[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"rows": [{"id": 1, "name": "Rex"}]}));
    assert_eq!(
        (responses[1].request_id.as_str(), responses[1].body.as_deref()),
        ("svc-2", Some("after"))
    );
}

#[test]
fn call_ids_count_up_within_a_request() {
    let mut input = frame(request("ids-1", "/"));
    input.extend(frame(json!({"type": "service_reply", "request_id": "ids-1", "call_id": 1,
                              "ok": true, "result": null})));
    input.extend(frame(json!({"type": "service_reply", "request_id": "ids-1", "call_id": 2,
                              "ok": true, "result": "v"})));
    let (result, frames) = run(&input, |_req: Request| -> Result<Response, HandlerError> {
        let cache = RedisPool { pool_id: "cache".into() };
        cache.set("k", "v")?;
        Ok(Response::text(200, cache.get("k")?.unwrap_or_default()))
    });
    result.unwrap();
    let calls: Vec<(u64, String)> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::ServiceCall(c) => Some((c.call_id, c.op.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![(1, "redis.set".to_string()), (2, "redis.get".to_string())]);
    assert_eq!(responses(frames[2..].to_vec())[0].body.as_deref(), Some("v"));
}

#[test]
fn a_failed_service_call_becomes_the_mapped_handler_error() {
    let mut input = frame(request("err-1", "/"));
    input.extend(frame(json!({
        "type": "service_reply", "request_id": "err-1", "call_id": 1, "ok": false,
        "error": {"kind": "unavailable", "message": "redis 'cache' is not reachable"},
    })));
    let (result, frames) = run(&input, |_req: Request| -> Result<Response, HandlerError> {
        let value = RedisPool { pool_id: "cache".into() }.get("k")?;
        Ok(Response::ok(json!({ "value": value })))
    });
    result.unwrap();
    let response = responses(frames[1..].to_vec()).remove(0);
    assert_eq!(response.status, 503);
    let body: Value = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": "Service Unavailable"}));
}

#[test]
fn end_of_input_while_waiting_for_a_reply_answers_then_stops_cleanly() {
    let (result, frames) = run(&frame(request("eof-1", "/")), |_req: Request| {
        let db = DbPool { pool_id: "default".into() };
        match db.execute("delete from t", &[]) {
            Ok(n) => Response::ok(json!({ "deleted": n })),
            Err(err) => err.to_response(),
        }
    });
    result.unwrap();
    let response = responses(frames[1..].to_vec()).remove(0);
    assert_eq!(response.status, 500);
    assert_eq!(response.body.as_deref(), Some(r#"{"error":"Internal Server Error"}"#));
}

#[test]
fn a_service_call_outside_a_handler_is_refused() {
    let err = edgebook_sdk::call_service("default", "db.query", json!({})).unwrap_err();
    assert!(matches!(err, HandlerError::IpcError(_)), "{err}");
}

fn stream_error(input: &[u8]) -> WorkerError {
    let (result, _) = run(input, echo_path);
    result.expect_err("the stream must be refused")
}

#[test]
fn an_oversized_length_is_refused_with_exit_status_3() {
    let mut input = frame(request("ok-1", "/"));
    input.extend((CONFIG.max_frame as u32 + 1).to_be_bytes());
    let (result, frames) = run(&input, echo_path);
    assert_eq!(responses(frames).len(), 1, "the request before it is still answered");
    let err = result.unwrap_err();
    assert!(matches!(err, WorkerError::Protocol(FrameError::Oversized { .. })), "{err}");
    assert_eq!(err.exit_code(), 3);
}

#[test]
fn truncated_bad_json_and_bad_utf8_input_exit_with_status_2() {
    let mut truncated = frame(request("tr-1", "/"));
    truncated.truncate(truncated.len() - 3);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated),
        ("truncated", vec![0, 0]),
        ("bad_json", b"\x00\x00\x00\x05{nope".to_vec()),
        ("bad_utf8", b"\x00\x00\x00\x03\"\xff\"".to_vec()),
        ("not_object", b"\x00\x00\x00\x02[]".to_vec()),
        ("empty", b"\x00\x00\x00\x00".to_vec()),
    ];
    for (kind, input) in cases {
        let err = stream_error(&input);
        match &err {
            WorkerError::Protocol(frame_err) => assert_eq!(frame_err.kind(), kind),
            other => panic!("{kind}: {other}"),
        }
        assert_eq!(err.exit_code(), 2, "{kind}");
        assert!(err.to_string().starts_with("edgebook worker: "), "{err}");
    }
}

#[test]
fn a_reply_nobody_waits_for_is_a_protocol_error() {
    let reply = frame(json!({"type": "service_reply", "request_id": "x", "call_id": 1,
                             "ok": true, "result": null}));
    let err = stream_error(&reply);
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("service_reply"), "{err}");
}

#[test]
fn a_clean_end_of_input_stops_without_error() {
    let (result, frames) = run(&[], echo_path);
    result.unwrap();
    assert!(frames.is_empty());
}

struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_stdout_exits_with_status_4() {
    let err = run_with_config(&frame(request("c-1", "/"))[..], ClosedPipe, CONFIG, echo_path)
        .unwrap_err();
    assert!(matches!(err, WorkerError::StdoutClosed(_)));
    assert_eq!(err.exit_code(), 4);
}

#[test]
fn the_ready_frame_names_the_sdk_and_protocol() {
    let mut output = Vec::new();
    run_with_config(&[][..], &mut output, CONFIG, echo_path).unwrap();
    let mut stream = &output[..];
    match read_frame(&mut stream, CONFIG.max_frame).unwrap() {
        Some(Frame::Ready(ready)) => {
            assert_eq!(ready.protocol, 1);
            assert_eq!(ready.sdk, "edgebook-sdk");
            assert_eq!(ready.sdk_version, env!("CARGO_PKG_VERSION"));
            assert_eq!(ready.pid, std::process::id());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn async_handlers_run_on_the_built_in_executor() {
    async fn handle(req: Request) -> Result<Response, HandlerError> {
        let n: u32 = req.require_path_param("n")?;
        Ok(Response::text(200, (n * 2).to_string()))
    }
    let mut req = request("a-1", "/double/21");
    req["params"] = json!({"n": "21"});
    let (result, frames) = run(&frame(req), |req| edgebook_sdk::block_on(handle(req)));
    result.unwrap();
    assert_eq!(responses(frames)[0].body.as_deref(), Some("42"));
}

#[test]
fn an_oversized_response_answers_500_and_the_worker_keeps_serving() {
    let mut input = frame(request("big-1", "/big"));
    input.extend(frame(request("big-2", "/small")));
    let (result, frames) = run(&input, |req: Request| {
        if req.path == "/big" {
            return Response::text(200, "x".repeat(CONFIG.max_frame + 1));
        }
        Response::text(200, "small")
    });
    result.unwrap();
    let responses = responses(frames);
    assert_eq!(responses[0].request_id, "big-1");
    assert_eq!(responses[0].status, 500);
    assert!(responses[0].body.as_deref().unwrap().len() < 1000);
    assert_eq!((responses[1].status, responses[1].body.as_deref()), (200, Some("small")));
}

#[test]
fn an_oversized_service_call_is_an_error_for_the_handler_not_a_frame() {
    let (result, frames) = run(&frame(request("put-1", "/upload")), |_req: Request| {
        let store = edgebook_sdk::ObjectStore { pool_id: "files".into() };
        match store.put("big.bin", vec![7u8; CONFIG.max_frame], "application/octet-stream") {
            Ok(()) => Response::text(200, "stored"),
            Err(err) => Response::text(299, format!("{} {err}", err.status_code())),
        }
    });
    result.unwrap();
    assert_eq!(frames.len(), 1, "no service call may be written: {frames:?}");
    let response = responses(frames).remove(0);
    assert_eq!(response.status, 299);
    let body = response.body.unwrap();
    assert!(body.starts_with("413 Payload too large: service call objects.put"), "{body}");
}

#[test]
fn a_request_kept_past_its_response_never_returns_wrong_bytes() {
    // Two requests with the same id (clients may choose X-Request-Id) and binary bodies.
    let mut first = request("dup", "/one");
    first["body"] = json!("AAEC//6A"); // 00 01 02 ff fe 80
    first["body_encoding"] = json!("base64");
    let mut second = request("dup", "/two");
    second["body"] = json!("/wABAg=="); // ff 00 01 02
    second["body_encoding"] = json!("base64");
    let mut input = frame(first);
    input.extend(frame(second));

    let kept: std::cell::RefCell<Option<Request>> = Default::default();
    let seen = std::cell::RefCell::new(Vec::new());
    let (result, _) = run(&input, |req: Request| {
        seen.borrow_mut().push(req.try_body_bytes());
        if let Some(old) = kept.borrow().as_ref() {
            // The first request's clone, while the second (same id) is handled.
            seen.borrow_mut().push(old.try_body_bytes());
        }
        kept.borrow_mut().get_or_insert(req.clone());
        Response::no_content()
    });
    result.unwrap();
    let seen = seen.into_inner();
    assert_eq!(seen[0], Some(vec![0, 1, 2, 0xff, 0xfe, 0x80]));
    assert_eq!(seen[1], Some(vec![0xff, 0, 1, 2]));
    assert_eq!(seen[2], None, "the clone must not get the other request's bytes");
    assert_eq!(kept.into_inner().unwrap().try_body_bytes(), None);
}

#[test]
fn a_text_body_with_a_replacement_character_stays_exact() {
    let mut req = request("fffd-1", "/");
    req["body"] = json!("caf\u{fffd}");
    let seen = std::cell::RefCell::new(None);
    let (result, _) = run(&frame(req), |req: Request| {
        *seen.borrow_mut() = Some(req.try_body_bytes());
        Response::no_content()
    });
    result.unwrap();
    assert_eq!(seen.into_inner().unwrap(), Some("caf\u{fffd}".as_bytes().to_vec()));
}

#[test]
fn repeated_response_headers_travel_as_headers_all() {
    let (result, frames) = run(&frame(request("ck-1", "/login")), |_req: Request| {
        Response::text(200, "signed in")
            .append_header("Set-Cookie", "session=abc123; HttpOnly; Path=/")
            .append_header("Set-Cookie", "theme=dark; Path=/")
    });
    result.unwrap();
    let response = responses(frames).remove(0);
    assert_eq!(response.headers["Set-Cookie"], "theme=dark; Path=/", "last value for old gateways");
    assert_eq!(
        response.headers_all.unwrap(),
        vec![
            ("Content-Type".to_string(), "text/plain; charset=utf-8".to_string()),
            ("Set-Cookie".to_string(), "session=abc123; HttpOnly; Path=/".to_string()),
            ("Set-Cookie".to_string(), "theme=dark; Path=/".to_string()),
        ]
    );
}

#[test]
fn single_valued_response_headers_send_no_headers_all() {
    let (result, frames) = run(&frame(request("ck-2", "/")), echo_path);
    result.unwrap();
    assert_eq!(responses(frames)[0].headers_all, None);
}
