//! The frames of the worker protocol (docs/protocol.md): reading, checking and writing them.
//!
//! A frame is a 4-byte big-endian length `N` then `N` bytes of UTF-8 JSON whose top level
//! is an object. A *binary body frame* (negotiated: see [`Ready::binary_body`]) says
//! `"body_encoding": "binary"` and `"body_length": L` in its JSON, and the body's `L` raw
//! bytes follow the JSON ([`RequestFrame::body_bytes`], [`ResponseFrame::body_bytes`]).
//! Nothing here knows about handlers; [`crate::ipc`] builds the worker loop on it.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this SDK speaks (the `protocol` field of the ready frame).
pub const PROTOCOL_VERSION: u32 = 1;

/// The default maximum frame size, 32 MiB; `EDGEBOOK_MAX_FRAME` overrides it in a worker.
pub const DEFAULT_MAX_FRAME: usize = 32 * 1024 * 1024;

/// How a `body` string carries its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The string is the body.
    Utf8,
    /// The string is standard base64 (with padding) of the body bytes.
    Base64,
    /// No string: the body's raw bytes follow the frame's JSON (`body_length` of them).
    Binary,
}

/// The first frame a worker writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// SDK name, `edgebook-sdk`.
    pub sdk: String,
    /// SDK version.
    pub sdk_version: String,
    /// The worker's process id.
    pub pid: u32,
    /// The worker reads and writes binary body frames (only when the gateway offered them
    /// with `EDGEBOOK_BINARY_BODY=1`); absent means no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary_body: bool,
}

impl Ready {
    /// The ready frame of this process.
    ///
    /// # Examples
    ///
    /// ```
    /// let ready = edgebook_sdk::frame::Ready::current();
    /// assert_eq!(ready.protocol, 1);
    /// assert_eq!(ready.pid, std::process::id());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        Ready {
            protocol: PROTOCOL_VERSION,
            sdk: env!("CARGO_PKG_NAME").to_owned(),
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            binary_body: false,
        }
    }
}

/// A request frame, as it travels (see [`crate::Request`] for what a handler gets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Unique id of the request.
    #[serde(default)]
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// Raw path.
    pub path: String,
    /// Query, last value wins.
    #[serde(default)]
    pub query: HashMap<String, String>,
    /// All query values; present only when some key repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_all: Option<HashMap<String, Vec<String>>>,
    /// Headers, lower-case names, last value wins.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// All header values; present only when some header repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_all: Option<HashMap<String, Vec<String>>>,
    /// Path parameters.
    #[serde(default)]
    pub params: HashMap<String, String>,
    /// Body text or base64, or `None`.
    #[serde(default)]
    pub body: Option<String>,
    /// Encoding of `body`; absent means UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<BodyEncoding>,
    /// Length of the raw body after the JSON, for `body_encoding` `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_length: Option<u64>,
    /// The raw body of a binary body frame.
    #[serde(skip)]
    pub body_bytes: Option<Vec<u8>>,
    /// Peer address.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// True when the frame had no `"type"` field (the original gateway's shape).
    #[serde(skip)]
    pub untyped: bool,
}

/// A response frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// Id of the request answered.
    pub request_id: String,
    /// HTTP status.
    pub status: u16,
    /// Headers; for a header with several values the last one.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Every header as `[name, value]` pairs, in order; present only when some header has
    /// several values, and then holding every header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_all: Option<Vec<(String, String)>>,
    /// Body text or base64, or `None`.
    #[serde(default)]
    pub body: Option<String>,
    /// Encoding of `body`; absent means UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<BodyEncoding>,
    /// Length of the raw body after the JSON, for `body_encoding` `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_length: Option<u64>,
    /// The raw body of a binary body frame.
    #[serde(skip)]
    pub body_bytes: Option<Vec<u8>>,
}

/// A worker's request to run an operation on a bound service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceCall {
    /// Id of the request being handled.
    pub request_id: String,
    /// Worker-chosen id, unique within the request.
    pub call_id: u64,
    /// Name of the bound service instance.
    pub service: String,
    /// Operation, such as `db.query` (docs/services.md).
    pub op: String,
    /// Arguments of the operation.
    pub args: Value,
}

/// The gateway's answer to a [`ServiceCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReply {
    /// Id of the request being handled.
    pub request_id: String,
    /// The call answered.
    pub call_id: u64,
    /// Whether the operation succeeded.
    pub ok: bool,
    /// The result when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The failure when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ServiceFailure>,
}

/// Why a service call failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceFailure {
    /// `not_bound`, `unavailable`, `timeout`, `bad_request`, `database`, `redis`, `storage`
    /// or `internal`.
    pub kind: String,
    /// Human-readable detail.
    pub message: String,
}

/// Any frame of the protocol.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::frame::{Frame, Ready};
///
/// let bytes = Frame::Ready(Ready::current()).encode();
/// let decoded = Frame::decode(&bytes[4..]).unwrap();
/// assert!(matches!(decoded, Frame::Ready(_)));
/// ```
// A request frame is much larger than a ready frame; frames are built and moved once each,
// so boxing the large variants would only make matching on them clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Worker -> gateway, first frame.
    Ready(Ready),
    /// Gateway -> worker.
    Request(RequestFrame),
    /// Worker -> gateway.
    Response(ResponseFrame),
    /// Worker -> gateway.
    ServiceCall(ServiceCall),
    /// Gateway -> worker.
    ServiceReply(ServiceReply),
}

impl Frame {
    /// The `"type"` of this frame.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Ready(_) => "ready",
            Frame::Request(_) => "request",
            Frame::Response(_) => "response",
            Frame::ServiceCall(_) => "service_call",
            Frame::ServiceReply(_) => "service_reply",
        }
    }

    /// Decodes one frame's payload (without the length prefix).
    ///
    /// # Errors
    ///
    /// `BadUtf8`, `BadJson`, `NotObject`, `UnknownType`, or `Invalid` when a known frame
    /// type lacks a field or has one of the wrong type.
    pub fn decode(payload: &[u8]) -> Result<Frame, FrameError> {
        Frame::from_object(parse_object(payload)?)
    }

    /// The typed frame of a JSON object; an object without `"type"` is a request.
    ///
    /// # Errors
    ///
    /// As for [`Frame::decode`].
    pub fn from_object(object: Map<String, Value>) -> Result<Frame, FrameError> {
        let kind = match object.get("type") {
            None => None,
            Some(Value::String(kind)) => Some(kind.clone()),
            Some(other) => return Err(FrameError::UnknownType(other.to_string())),
        };
        let value = Value::Object(object);
        let invalid = |e: serde_json::Error| FrameError::Invalid(e.to_string());
        Ok(match kind.as_deref() {
            None => {
                let mut request: RequestFrame = serde_json::from_value(value).map_err(invalid)?;
                request.untyped = true;
                Frame::Request(request)
            }
            Some("request") => Frame::Request(serde_json::from_value(value).map_err(invalid)?),
            Some("ready") => Frame::Ready(serde_json::from_value(value).map_err(invalid)?),
            Some("response") => Frame::Response(serde_json::from_value(value).map_err(invalid)?),
            Some("service_call") => {
                Frame::ServiceCall(serde_json::from_value(value).map_err(invalid)?)
            }
            Some("service_reply") => {
                Frame::ServiceReply(serde_json::from_value(value).map_err(invalid)?)
            }
            Some(other) => return Err(FrameError::UnknownType(format!("{other:?}"))),
        })
    }

    /// The frame as a JSON value, with its `"type"` (except an untyped request).
    #[must_use]
    pub fn to_value(&self) -> Value {
        let value = match self {
            Frame::Ready(f) => serde_json::to_value(f),
            Frame::Request(f) => serde_json::to_value(f),
            Frame::Response(f) => serde_json::to_value(f),
            Frame::ServiceCall(f) => serde_json::to_value(f),
            Frame::ServiceReply(f) => serde_json::to_value(f),
        };
        // Every field is a string, integer, bool, map with string keys or JSON value.
        let mut value = value.expect("frame types always serialize");
        let untyped = matches!(self, Frame::Request(r) if r.untyped);
        if let (Value::Object(map), false) = (&mut value, untyped) {
            map.insert("type".to_owned(), Value::String(self.type_name().to_owned()));
        }
        if let (Value::Object(map), Some(_)) = (&mut value, self.binary_body_length()) {
            map.remove("body"); // the body follows the JSON
        }
        value
    }

    /// The canonical payload bytes (sorted keys, compact, raw UTF-8).
    #[must_use]
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("a JSON value always serializes")
    }

    /// The complete frame: length prefix and canonical payload (then the raw body, for a
    /// binary body frame).
    ///
    /// The length is not checked; a payload over 4 GiB gets a wrong prefix. What is sent
    /// to a peer goes through [`Frame::encode_within`].
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.to_payload();
        let body = self.body_bytes().unwrap_or_default();
        let mut out = Vec::with_capacity(payload.len() + 4 + body.len());
        // A length over u32::MAX is refused by `encode_within`; `encode` documents the wrap.
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(body);
        out
    }

    /// The complete frame, refused when it (its payload and, for a binary body frame, the
    /// raw body after it) is over `max_frame` bytes (the limit the receiving side enforces)
    /// or the payload does not fit the 4-byte length.
    ///
    /// # Errors
    ///
    /// `Oversized` with the frame's length.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::frame::{Frame, FrameError, Ready};
    ///
    /// let ready = Frame::Ready(Ready::current());
    /// assert!(ready.encode_within(1024).is_ok());
    /// assert!(matches!(ready.encode_within(10), Err(FrameError::Oversized { max: 10, .. })));
    /// ```
    pub fn encode_within(&self, max_frame: usize) -> Result<Vec<u8>, FrameError> {
        let payload_len = self.to_payload().len();
        let body_len = self.body_bytes().map_or(0, <[u8]>::len);
        let max = max_frame.min(u32::MAX as usize);
        let length = payload_len + body_len;
        if length > max || payload_len > u32::MAX as usize {
            return Err(FrameError::Oversized { length: length as u64, max });
        }
        Ok(self.encode())
    }

    /// The raw body that follows the JSON of a binary body frame.
    #[must_use]
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Request(RequestFrame {
                body_encoding: Some(BodyEncoding::Binary),
                body_bytes,
                ..
            })
            | Frame::Response(ResponseFrame {
                body_encoding: Some(BodyEncoding::Binary),
                body_bytes,
                ..
            }) => body_bytes.as_deref(),
            _ => None,
        }
    }

    fn set_body_bytes(&mut self, bytes: Vec<u8>) {
        match self {
            Frame::Request(f) => f.body_bytes = Some(bytes),
            Frame::Response(f) => f.body_bytes = Some(bytes),
            _ => {}
        }
    }

    /// For a binary body frame, how many raw bytes follow its JSON.
    fn binary_body_length(&self) -> Option<Option<u64>> {
        match self {
            Frame::Request(RequestFrame {
                body_encoding: Some(BodyEncoding::Binary),
                body_length,
                ..
            })
            | Frame::Response(ResponseFrame {
                body_encoding: Some(BodyEncoding::Binary),
                body_length,
                ..
            }) => Some(*body_length),
            _ => None,
        }
    }
}

/// Why a byte stream or frame was refused.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended inside a frame.
    Truncated(String),
    /// The length is over the maximum frame size.
    Oversized {
        /// Announced length.
        length: u64,
        /// The maximum in force.
        max: usize,
    },
    /// A frame of length 0.
    Empty,
    /// The payload is not UTF-8.
    BadUtf8(String),
    /// The payload is not JSON.
    BadJson(String),
    /// The payload is JSON but not an object.
    NotObject(String),
    /// The `"type"` is not one this side knows.
    UnknownType(String),
    /// A known frame type with missing or mistyped fields, or one not expected here.
    Invalid(String),
    /// Reading the stream failed.
    Io(io::Error),
}

impl FrameError {
    /// The error's kind, as named in docs/protocol.md and tests/vectors/invalid/manifest.json.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Truncated(_) => "truncated",
            FrameError::Oversized { .. } => "oversized",
            FrameError::Empty => "empty",
            FrameError::BadUtf8(_) => "bad_utf8",
            FrameError::BadJson(_) => "bad_json",
            FrameError::NotObject(_) => "not_object",
            FrameError::UnknownType(_) => "unknown_type",
            FrameError::Invalid(_) => "invalid",
            FrameError::Io(_) => "io",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated(m) => write!(f, "truncated frame: {m}"),
            FrameError::Oversized { length, max } => {
                write!(f, "frame of {length} bytes exceeds the maximum of {max}")
            }
            FrameError::Empty => f.write_str("frame of length 0"),
            FrameError::BadUtf8(m) => write!(f, "frame is not valid UTF-8: {m}"),
            FrameError::BadJson(m) => write!(f, "frame is not valid JSON: {m}"),
            FrameError::NotObject(m) => write!(f, "frame is a JSON {m}, not an object"),
            FrameError::UnknownType(m) => write!(f, "unknown frame type {m}"),
            FrameError::Invalid(m) => write!(f, "invalid frame: {m}"),
            FrameError::Io(e) => write!(f, "reading frames failed: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Checks a payload's UTF-8 and JSON and that it is an object.
///
/// # Errors
///
/// `BadUtf8`, `BadJson` or `NotObject`.
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, FrameError> {
    let text = std::str::from_utf8(payload).map_err(|e| FrameError::BadUtf8(e.to_string()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(FrameError::NotObject(json_type_name(&other).to_owned())),
        Err(e) => Err(FrameError::BadJson(e.to_string())),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads one frame's payload; `Ok(None)` at a clean end of stream (between frames).
///
/// The length is checked against `max_frame` before any payload buffer is allocated.
///
/// # Errors
///
/// `Truncated`, `Oversized`, `Empty` or `Io`.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::frame::read_payload;
///
/// let mut stream: &[u8] = b"\x00\x00\x00\x02{}";
/// assert_eq!(read_payload(&mut stream, 1024).unwrap(), Some(b"{}".to_vec()));
/// assert_eq!(read_payload(&mut stream, 1024).unwrap(), None);
/// ```
pub fn read_payload<R: Read + ?Sized>(
    reader: &mut R,
    max_frame: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < 4 {
        return Err(FrameError::Truncated(format!("stream ended after {got} of 4 length bytes")));
    }
    let length = u32::from_be_bytes(header);
    if length == 0 {
        return Err(FrameError::Empty);
    }
    if length as u64 > max_frame as u64 {
        return Err(FrameError::Oversized { length: length as u64, max: max_frame });
    }
    let mut payload = vec![0u8; length as usize];
    let got = read_full(reader, &mut payload)?;
    if got < payload.len() {
        return Err(FrameError::Truncated(format!(
            "stream ended after {got} of {length} payload bytes"
        )));
    }
    Ok(Some(payload))
}

/// Reads and decodes one frame; `Ok(None)` at a clean end of stream.
///
/// # Errors
///
/// Any [`FrameError`].
pub fn read_frame<R: Read + ?Sized>(
    reader: &mut R,
    max_frame: usize,
) -> Result<Option<Frame>, FrameError> {
    let payload = match read_payload(reader, max_frame)? {
        Some(payload) => payload,
        None => return Ok(None),
    };
    let mut frame = Frame::decode(&payload)?;
    if let Some(length) = frame.binary_body_length() {
        let length = length.ok_or_else(|| {
            FrameError::Invalid("binary body frame without body_length".to_owned())
        })?;
        let total = payload.len() as u64 + length;
        if total > max_frame as u64 {
            return Err(FrameError::Oversized { length: total, max: max_frame });
        }
        let mut body = vec![0u8; length as usize];
        let got = read_full(reader, &mut body)?;
        if got < body.len() {
            return Err(FrameError::Truncated(format!(
                "stream ended after {got} of {length} body bytes"
            )));
        }
        frame.set_body_bytes(body);
    }
    Ok(Some(frame))
}

/// Writes one frame (not flushed).
///
/// # Errors
///
/// The writer's error.
pub fn write_frame<W: Write + ?Sized>(writer: &mut W, frame: &Frame) -> io::Result<()> {
    writer.write_all(&frame.encode())
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(filled)
}
