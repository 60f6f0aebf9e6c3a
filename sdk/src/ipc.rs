//! The worker loop: write `ready`, then read a request, call the handler, write its response.
//!
//! [`run_with`] takes any reader and writer, so the whole protocol runs in memory in tests;
//! [`run`] connects it to the process's stdin and stdout (after moving the handler's own
//! stdout to stderr) and exits with the status docs/protocol.md prescribes.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use base64::Engine;
use serde_json::Value;

use crate::error::{self, HandlerError};
use crate::extras::{self, RequestExtras};
use crate::frame::{
    self, BodyEncoding, Frame, FrameError, Ready, RequestFrame, ResponseFrame, ServiceCall,
    ServiceReply, DEFAULT_MAX_FRAME,
};
use crate::lossy;

/// Set to `1` by a gateway that reads and writes binary body frames.
pub const BINARY_BODY_ENV: &str = "EDGEBOOK_BINARY_BODY";
use crate::request::Request;
use crate::response::{IntoResponse, Response, BODY_ENCODING_HEADER};
use crate::services::{self, ServiceChannel};
use crate::stdio::{ProtocolReader, ProtocolWriter};

/// Settings of the worker loop.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::ipc::Config;
///
/// let config = Config { max_frame: 1 << 20, expose_errors: true };
/// assert!(config.max_frame < Config::default().max_frame);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest frame accepted from the gateway, and sent to it, in bytes.
    pub max_frame: usize,
    /// Whether a 5xx response carries the error's details to the client (development);
    /// otherwise they go to stderr only (see [`HandlerError::to_response`]).
    pub expose_errors: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_frame: DEFAULT_MAX_FRAME, expose_errors: false }
    }
}

impl Config {
    /// The defaults, with `max_frame` from `EDGEBOOK_MAX_FRAME` when it is set and
    /// `expose_errors` from `EDGEBOOK_EXPOSE_ERRORS` (`1`, `true`, `yes` or `on`).
    ///
    /// An unparsable value keeps the default and says so on stderr.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = edgebook_sdk::ipc::Config::from_env();
    /// assert!(config.max_frame > 0);
    /// ```
    #[must_use]
    pub fn from_env() -> Self {
        let mut config =
            Config { expose_errors: crate::error::expose_errors_from_env(), ..Config::default() };
        if let Ok(text) = std::env::var("EDGEBOOK_MAX_FRAME") {
            match text.trim().parse::<usize>() {
                Ok(max) if max > 0 => config.max_frame = max,
                _ => eprintln!(
                    "edgebook worker: ignoring EDGEBOOK_MAX_FRAME={text:?}; using {}",
                    config.max_frame
                ),
            }
        }
        config
    }
}

/// Why the worker loop stopped before a clean end of input.
#[derive(Debug)]
pub enum WorkerError {
    /// The gateway sent something the protocol does not allow.
    Protocol(FrameError),
    /// Writing to the gateway failed (stdout closed).
    StdoutClosed(io::Error),
}

impl WorkerError {
    /// The process exit status for this error: 3 oversized frame, 4 stdout closed, 2 others.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::frame::FrameError;
    /// use edgebook_sdk::ipc::WorkerError;
    ///
    /// assert_eq!(WorkerError::Protocol(FrameError::Empty).exit_code(), 2);
    /// ```
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Protocol(FrameError::Oversized { .. }) => 3,
            WorkerError::Protocol(_) => 2,
            WorkerError::StdoutClosed(_) => 4,
        }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Protocol(e) => write!(f, "edgebook worker: {e} ({})", e.kind()),
            WorkerError::StdoutClosed(e) => {
                write!(f, "edgebook worker: cannot write to the gateway: {e}")
            }
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Protocol(e) => Some(e),
            WorkerError::StdoutClosed(e) => Some(e),
        }
    }
}

impl From<FrameError> for WorkerError {
    fn from(err: FrameError) -> Self {
        WorkerError::Protocol(err)
    }
}

/// Runs the worker protocol over `reader` and `writer` until a clean end of input.
///
/// Writes the ready frame, then answers each request frame with one response frame, in
/// order. A panicking handler answers 500 and the loop goes on. The maximum frame size
/// comes from `EDGEBOOK_MAX_FRAME` ([`Config::from_env`]).
///
/// # Errors
///
/// [`WorkerError`] for a broken stream or a failed write.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::frame::{read_frame, Frame, RequestFrame};
/// use edgebook_sdk::prelude::*;
///
/// let request = RequestFrame {
///     request_id: "r1".into(), method: "GET".into(), path: "/".into(), ..Default::default()
/// };
/// let input = Frame::Request(request).encode();
/// let mut output = Vec::new();
/// edgebook_sdk::run_with(&input[..], &mut output, |req: Request| Response::text(200, req.path))
///     .unwrap();
///
/// let mut frames = &output[..];
/// assert!(matches!(read_frame(&mut frames, 1 << 20).unwrap(), Some(Frame::Ready(_))));
/// match read_frame(&mut frames, 1 << 20).unwrap() {
///     Some(Frame::Response(r)) => assert_eq!((r.status, r.body.as_deref()), (200, Some("/"))),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn run_with<R, W, F, O>(reader: R, writer: W, handler: F) -> Result<(), WorkerError>
where
    R: Read,
    W: Write,
    F: FnMut(Request) -> O,
    O: IntoResponse,
{
    run_with_config(reader, writer, Config::from_env(), handler)
}

/// [`run_with`] with explicit settings.
///
/// # Errors
///
/// As for [`run_with`].
pub fn run_with_config<R, W, F, O>(
    reader: R,
    writer: W,
    config: Config,
    mut handler: F,
) -> Result<(), WorkerError>
where
    R: Read,
    W: Write,
    F: FnMut(Request) -> O,
    O: IntoResponse,
{
    let mut link = Link::new(reader, writer, config);
    link.send_ready()?;
    while let Some(request) = link.next_request()? {
        let id = request.request_id.clone();
        let response = link.answer(request, &mut handler);
        link.respond(&id, response)?;
    }
    Ok(())
}

/// Runs `handler` as a worker on stdin/stdout and exits; what the handler macros call.
///
/// On unix the protocol takes close-on-exec copies of stdin and stdout first; then fd 1 is
/// stderr (the handler's `println!` goes to the endpoint's log) and fd 0 is `/dev/null`, so
/// neither the handler nor a program it starts can read or write the frames. Exit status 0 at a clean end of input, otherwise as in
/// [`WorkerError::exit_code`], with one line on stderr saying why.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn main() {
///     edgebook_sdk::run(|req: Request| Response::ok(json!({"path": req.path})));
/// }
/// ```
pub fn run<F, O>(handler: F) -> !
where
    F: FnMut(Request) -> O,
    O: IntoResponse,
{
    let (reader, writer) = protocol_pipes_or_exit();
    match run_with(reader, writer, handler) {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(err.exit_code());
        }
    }
}

/// The worker's side of the pipe pair: frames in, frames out, requests read ahead.
pub(crate) struct Link<R, W> {
    reader: R,
    writer: W,
    config: Config,
    /// Requests that arrived while a service call waited for its reply.
    queue: VecDeque<Request>,
    /// The input ended cleanly; answer what is queued, then stop.
    eof: bool,
    /// A fatal error met during a service call, reported once the response is written.
    broken: Option<WorkerError>,
    /// Response bodies go as binary body frames: the gateway offered them
    /// (`EDGEBOOK_BINARY_BODY=1`) and the ready frame accepts.
    binary: bool,
}

impl<R: Read, W: Write> Link<R, W> {
    pub(crate) fn new(reader: R, writer: W, config: Config) -> Self {
        let binary = std::env::var(BINARY_BODY_ENV).is_ok_and(|v| v == "1");
        Link { reader, writer, config, queue: VecDeque::new(), eof: false, broken: None, binary }
    }

    /// The ready frame, announcing binary body frames when the gateway offered them.
    pub(crate) fn send_ready(&mut self) -> Result<(), WorkerError> {
        let mut ready = Ready::current();
        ready.binary_body = self.binary;
        self.send(&Frame::Ready(ready))
    }

    /// The frame's bytes, or `Oversized` when the gateway would refuse its length.
    fn encode(&self, frame: &Frame) -> Result<Vec<u8>, FrameError> {
        frame.encode_within(self.config.max_frame)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WorkerError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .map_err(WorkerError::StdoutClosed)
    }

    /// Writes a frame the SDK itself made (ready); these are always far below any limit.
    pub(crate) fn send(&mut self, frame: &Frame) -> Result<(), WorkerError> {
        let bytes = self.encode(frame).map_err(WorkerError::Protocol)?;
        self.write(&bytes)
    }

    /// The next request to answer: a queued one, else one read from the input.
    pub(crate) fn next_request(&mut self) -> Result<Option<Request>, WorkerError> {
        if let Some(err) = self.broken.take() {
            return Err(err);
        }
        if let Some(request) = self.queue.pop_front() {
            return Ok(Some(request));
        }
        if self.eof {
            return Ok(None);
        }
        match frame::read_frame(&mut self.reader, self.config.max_frame)? {
            None => Ok(None),
            Some(Frame::Request(frame)) => Ok(Some(accept(frame)?)),
            Some(other) => Err(unexpected(&other, "a request").into()),
        }
    }

    /// Calls the handler with the service channel in place; a panic becomes a 500.
    pub(crate) fn answer<F, O>(&mut self, request: Request, handler: &mut F) -> Response
    where
        F: FnMut(Request) -> O,
        O: IntoResponse,
    {
        let id = request.request_id.clone();
        let expose = self.config.expose_errors;
        let mut channel = Channel { link: self, request_id: id.clone(), calls: 0 };
        error::in_request(&id, expose, || {
            let outcome = services::with_channel(&mut channel, || {
                catch_unwind(AssertUnwindSafe(|| handler(request).into_response()))
            });
            outcome.unwrap_or_else(|panic| panic_response(panic.as_ref()))
        })
    }

    /// Writes the response to request `id` and forgets the request's extras.
    ///
    /// A response whose frame would be over the maximum frame size (the gateway would kill
    /// the worker for it) is replaced by a 500 that says so; the worker keeps serving.
    pub(crate) fn respond(&mut self, id: &str, response: Response) -> Result<(), WorkerError> {
        let bytes = match self.encode(&Frame::Response(response_frame(id, response, self.binary))) {
            Ok(bytes) => bytes,
            Err(err) => {
                let refusal = HandlerError::InternalError(format!(
                    "the handler's response was not sent: its {err}"
                ));
                let expose = self.config.expose_errors;
                let response = error::in_request(id, expose, || refusal.to_response());
                let frame = Frame::Response(response_frame(id, response, self.binary));
                self.encode(&frame).map_err(WorkerError::Protocol)?
            }
        };
        let sent = self.write(&bytes);
        extras::remove(id);
        sent?;
        match self.broken.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl<R, W> Drop for Link<R, W> {
    fn drop(&mut self) {
        for request in &self.queue {
            extras::remove(&request.request_id);
        }
    }
}

/// The service channel of one request: sends calls and waits for their replies.
struct Channel<'a, R, W> {
    link: &'a mut Link<R, W>,
    request_id: String,
    calls: u64,
}

impl<R: Read, W: Write> ServiceChannel for Channel<'_, R, W> {
    fn call(&mut self, service: &str, op: &str, args: Value) -> Result<Value, HandlerError> {
        if self.link.broken.is_some() || self.link.eof {
            return Err(HandlerError::IpcError("the connection to the gateway is closed".into()));
        }
        self.calls += 1;
        let call = ServiceCall {
            request_id: self.request_id.clone(),
            call_id: self.calls,
            service: service.to_owned(),
            op: op.to_owned(),
            args,
        };
        let bytes = self.link.encode(&Frame::ServiceCall(call)).map_err(|err| {
            HandlerError::PayloadTooLarge(format!(
                "service call {op} on '{service}' not sent: {err}"
            ))
        })?;
        if let Err(err) = self.link.write(&bytes) {
            return Err(self.fail(err));
        }
        loop {
            match frame::read_frame(&mut self.link.reader, self.link.config.max_frame) {
                Ok(Some(Frame::Request(frame))) => match accept(frame) {
                    Ok(request) => self.link.queue.push_back(request),
                    Err(err) => return Err(self.fail(err.into())),
                },
                Ok(Some(Frame::ServiceReply(reply)))
                    if reply.request_id == self.request_id && reply.call_id == self.calls =>
                {
                    return reply_result(reply);
                }
                Ok(Some(other)) => {
                    let err =
                        unexpected(&other, &format!("the reply to service call {}", self.calls));
                    return Err(self.fail(err.into()));
                }
                Ok(None) => {
                    self.link.eof = true;
                    return Err(HandlerError::IpcError(format!(
                        "the gateway closed the connection before replying to {op}"
                    )));
                }
                Err(err) => return Err(self.fail(err.into())),
            }
        }
    }
}

impl<R, W> Channel<'_, R, W> {
    fn fail(&mut self, err: WorkerError) -> HandlerError {
        let message = err.to_string();
        self.link.broken = Some(err);
        HandlerError::IpcError(message)
    }
}

/// The handler's `Request` for a request frame; its extras go to the side table.
fn accept(frame: RequestFrame) -> Result<Request, FrameError> {
    let mut extras =
        RequestExtras { body: None, query_all: frame.query_all, headers_all: frame.headers_all };
    let body = match (frame.body, frame.body_encoding) {
        (_, Some(BodyEncoding::Binary)) => match frame.body_bytes {
            Some(bytes) if !bytes.is_empty() => match lossy::to_string_lossy(bytes) {
                Ok(text) => Some(text),
                Err((text, bytes)) => {
                    extras.body = Some(bytes);
                    Some(text)
                }
            },
            _ => None,
        },
        (Some(encoded), Some(BodyEncoding::Base64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| FrameError::Invalid(format!("request body is not base64: {e}")))?;
            let (text, bytes) = match lossy::to_string_lossy(bytes) {
                Ok(text) => (text.clone(), text.into_bytes()),
                Err(decoded) => decoded,
            };
            extras.body = Some(bytes);
            Some(text)
        }
        (Some(text), _) if text.contains(char::REPLACEMENT_CHARACTER) => {
            // Such a body looks like a binary body's rendering: keep its bytes so that
            // `try_body_bytes` can tell them apart while the request is handled.
            extras.body = Some(text.clone().into_bytes());
            Some(text)
        }
        (body, _) => body,
    };
    let request = Request {
        method: frame.method,
        path: frame.path,
        query: frame.query,
        headers: frame.headers,
        body,
        params: frame.params,
        client_ip: frame.client_ip,
        request_id: frame.request_id,
    };
    extras::insert(&request.request_id, request.fingerprint(), extras);
    Ok(request)
}

/// The response frame for a handler's response: with `binary`, the body's raw bytes follow
/// the JSON; otherwise a binary body travels as base64.
fn response_frame(request_id: &str, mut response: Response, binary: bool) -> ResponseFrame {
    let mut encoding = BodyEncoding::Utf8;
    let marker: Vec<String> = response
        .headers
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(BODY_ENCODING_HEADER))
        .cloned()
        .collect();
    for key in marker {
        if response.headers.remove(&key).is_some_and(|v| v.eq_ignore_ascii_case("base64")) {
            encoding = BodyEncoding::Base64;
        }
    }
    let (headers, headers_all) = wire_headers(response.headers);
    let mut frame = ResponseFrame {
        request_id: request_id.to_owned(),
        status: response.status,
        headers,
        headers_all,
        body: response.body,
        body_encoding: Some(encoding),
        body_length: None,
        body_bytes: None,
    };
    if binary {
        let bytes = match (frame.body.take(), encoding) {
            (Some(text), BodyEncoding::Base64) => {
                match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
                    Ok(bytes) => Some(bytes),
                    Err(_) => {
                        frame.body = Some(text); // not base64 after all: send it as it is
                        None
                    }
                }
            }
            (Some(text), _) => Some(text.into_bytes()),
            (None, _) => None,
        };
        if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
            frame.body_encoding = Some(BodyEncoding::Binary);
            frame.body_length = Some(bytes.len() as u64);
            frame.body_bytes = Some(bytes);
        }
    }
    frame
}

/// A response frame's `headers` and `headers_all`.
type WireHeaders = (HashMap<String, String>, Option<Vec<(String, String)>>);

/// `headers` (last value of each) and, when some header has several values (lines of its
/// map value, see [`Response::append_header`]), `headers_all` with every pair, by name.
fn wire_headers(headers: HashMap<String, String>) -> WireHeaders {
    if !headers.values().any(|value| value.contains('\n')) {
        return (headers, None);
    }
    let mut names: Vec<&String> = headers.keys().collect();
    names.sort();
    let all: Vec<(String, String)> = names
        .into_iter()
        .flat_map(|name| {
            crate::response::header_lines(&headers[name]).map(|v| (name.clone(), v.to_owned()))
        })
        .collect();
    let last = headers
        .iter()
        .map(|(name, value)| {
            let last = crate::response::header_lines(value).last().unwrap_or_default();
            (name.clone(), last.to_owned())
        })
        .collect();
    (last, Some(all))
}

fn panic_response(panic: &(dyn Any + Send)) -> Response {
    let message = if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic payload".to_owned()
    };
    HandlerError::InternalError(format!("handler panicked: {message}")).to_response()
}

fn reply_result(reply: ServiceReply) -> Result<Value, HandlerError> {
    if reply.ok {
        return Ok(reply.result.unwrap_or(Value::Null));
    }
    let (kind, message) = match reply.error {
        Some(failure) => (failure.kind, failure.message),
        None => ("internal".to_owned(), "service call failed without an error".to_owned()),
    };
    Err(services::error_for(&kind, message))
}

fn unexpected(frame: &Frame, wanted: &str) -> FrameError {
    FrameError::Invalid(format!("got a {} frame while waiting for {wanted}", frame.type_name()))
}

/// The worker state of a handler that writes its own loop with
/// [`read_request`] and [`send_response`].
struct Manual {
    link: Link<ProtocolReader, ProtocolWriter>,
    current: Option<String>,
    /// Service calls made so far for the current request.
    calls: u64,
}

static MANUAL: Mutex<Option<Manual>> = Mutex::new(None);

fn with_manual<T>(f: impl FnOnce(&mut Manual) -> T) -> T {
    let mut guard = MANUAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let manual = guard.get_or_insert_with(|| {
        let (reader, writer) = protocol_pipes_or_exit();
        let mut link = Link::new(reader, writer, Config::from_env());
        exit_on_error(link.send_ready());
        services::register_fallback(manual_call);
        Manual { link, current: None, calls: 0 }
    });
    f(manual)
}

fn protocol_pipes_or_exit() -> (ProtocolReader, ProtocolWriter) {
    crate::stdio::protocol_pipes().unwrap_or_else(|err| {
        eprintln!("edgebook worker: cannot set up the protocol stream: {err}");
        std::process::exit(4)
    })
}

fn exit_on_error<T>(result: Result<T, WorkerError>) -> T {
    result.unwrap_or_else(|err| {
        eprintln!("{err}");
        std::process::exit(err.exit_code())
    })
}

/// Reads the next request from the gateway, for handlers that write their own loop.
///
/// The first call sets up the worker (takes stdin and stdout for the protocol as [`run`]
/// does, sends `ready`). Anything written to stdout before that first call still lands in
/// the protocol stream and breaks it: log with `eprintln!` before the loop. Service
/// calls made between `read_request` and [`send_response`] work as in the macros.
/// A protocol violation ends the process with the status of docs/protocol.md.
///
/// # Errors
///
/// `IpcError("end of input")` when the gateway closed stdin: time to return from `main`.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn main() {
///     while let Ok(req) = read_request() {
///         let response = Response::text(200, format!("you asked for {}", req.path));
///         if send_response(response).is_err() {
///             break;
///         }
///     }
/// }
/// ```
pub fn read_request() -> Result<Request, HandlerError> {
    with_manual(|manual| match exit_on_error(manual.link.next_request()) {
        Some(request) => {
            manual.current = Some(request.request_id.clone());
            manual.calls = 0;
            Ok(request)
        }
        None => Err(HandlerError::IpcError("end of input".into())),
    })
}

/// Sends the response to the request last returned by [`read_request`].
///
/// # Errors
///
/// `IpcError` when no request is waiting for a response or stdout is closed.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// let req = read_request().unwrap();
/// send_response(Response::ok(json!({"method": req.method}))).unwrap();
/// ```
pub fn send_response(response: Response) -> Result<(), HandlerError> {
    with_manual(|manual| {
        let id = manual
            .current
            .take()
            .ok_or_else(|| HandlerError::IpcError("no request is waiting for a response".into()))?;
        manual.link.respond(&id, response).map_err(|e| HandlerError::IpcError(e.to_string()))
    })
}

/// A service call made outside the macros' loop, on the manual worker's current request;
/// registered with [`services`] as its fallback when the manual worker starts.
fn manual_call(service: &str, op: &str, args: Value) -> Result<Value, HandlerError> {
    let mut guard = MANUAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let manual = guard.as_mut().ok_or_else(services::no_channel)?;
    let request_id = manual.current.clone().ok_or_else(services::no_channel)?;
    let mut channel = Channel { link: &mut manual.link, request_id, calls: manual.calls };
    let result = channel.call(service, op, args);
    manual.calls = channel.calls;
    result
}
