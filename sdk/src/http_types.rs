//! Conversions between the SDK's `Request`/`Response` and the `http` crate's types
//! (feature `http`), for code shared with other Rust HTTP stacks and for tests.

use base64::Engine;

use crate::request::Request;
use crate::response::{header_lines, IntoResponse, Response, BODY_ENCODING_HEADER};

/// The `http` response: status, every header value (one per line of a multi-value header),
/// and the body's bytes (a binary body decoded).
///
/// # Errors
///
/// `http::Error` for a status outside 100-999 or a header name or value `http` refuses.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::Response;
///
/// let response = Response::binary(201, [0u8, 0xff], "image/png").append_header("Vary", "a");
/// let converted: http::Response<Vec<u8>> = response.try_into().unwrap();
/// assert_eq!(converted.status(), 201);
/// assert_eq!(converted.body(), &vec![0u8, 0xff]);
/// assert_eq!(converted.headers()["content-type"], "image/png");
/// ```
impl TryFrom<Response> for http::Response<Vec<u8>> {
    type Error = http::Error;

    fn try_from(response: Response) -> Result<Self, http::Error> {
        let body = response
            .binary_body()
            .unwrap_or_else(|| response.body.clone().unwrap_or_default().into_bytes());
        let mut builder = http::Response::builder().status(response.status);
        for (name, value) in &response.headers {
            if name.eq_ignore_ascii_case(BODY_ENCODING_HEADER) {
                continue;
            }
            for line in header_lines(value) {
                builder = builder.header(name.as_str(), line);
            }
        }
        builder.body(body)
    }
}

/// The SDK response of an `http` response: repeated headers kept, a body that is not UTF-8
/// kept as a binary body.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::Response;
///
/// let source = http::Response::builder()
///     .status(200)
///     .header("set-cookie", "a=1")
///     .header("set-cookie", "b=2")
///     .body(b"ok".to_vec())
///     .unwrap();
/// let response = Response::from(source);
/// assert_eq!(response.header_values("Set-Cookie"), ["a=1", "b=2"]);
/// assert_eq!(response.body.as_deref(), Some("ok"));
/// ```
impl From<http::Response<Vec<u8>>> for Response {
    fn from(source: http::Response<Vec<u8>>) -> Self {
        let (parts, body) = source.into_parts();
        let mut response = Response::new(parts.status.as_u16());
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            response = response.append_header(name.as_str(), value);
        }
        match String::from_utf8(body) {
            Ok(text) if text.is_empty() => response,
            Ok(text) => response.with_body(text),
            Err(err) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(err.as_bytes());
                response.with_header(BODY_ENCODING_HEADER, "base64").with_body(encoded)
            }
        }
    }
}

impl IntoResponse for http::Response<Vec<u8>> {
    fn into_response(self) -> Response {
        Response::from(self)
    }
}

/// The `http` request: method, path with the query (every value of a repeated key), every
/// header value, and the exact body bytes.
///
/// # Errors
///
/// `http::Error` for a method, path, header name or value `http` refuses.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::Request;
///
/// let req = Request {
///     method: "POST".into(),
///     path: "/search".into(),
///     query: [("q".to_string(), "a b&c".to_string())].into(),
///     body: Some("hi".into()),
///     ..Request::default()
/// };
/// let converted: http::Request<Vec<u8>> = req.try_into().unwrap();
/// assert_eq!(converted.uri(), "/search?q=a%20b%26c");
/// assert_eq!(converted.body(), b"hi");
/// ```
impl TryFrom<Request> for http::Request<Vec<u8>> {
    type Error = http::Error;

    fn try_from(req: Request) -> Result<Self, http::Error> {
        let mut keys: Vec<&String> = req.query.keys().collect();
        keys.sort();
        let query: Vec<String> = keys
            .into_iter()
            .flat_map(|key| {
                req.query_all(key)
                    .into_iter()
                    .map(move |value| format!("{}={}", encode(key), encode(&value)))
            })
            .collect();
        let uri = if query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, query.join("&"))
        };
        let mut builder = http::Request::builder().method(req.method.as_str()).uri(uri);
        for name in req.headers.keys() {
            for value in req.header_all(name) {
                builder = builder.header(name.as_str(), value);
            }
        }
        let body = req.body_bytes();
        builder.body(body)
    }
}

/// The SDK request of an `http` request: the query decoded (last value of a repeated key),
/// headers with lower-case names (last value), the request id from `x-request-id`.
///
/// Only the original fields are filled: a body that is not UTF-8 becomes its lossy text
/// (so [`Request::try_body_bytes`] says `None`), and repeated keys keep their last value.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::Request;
///
/// let source = http::Request::builder()
///     .method("PUT")
///     .uri("/pets/7?name=Rex%20II&tag=a+b")
///     .header("X-Request-Id", "r-7")
///     .body(b"{}".to_vec())
///     .unwrap();
/// let req = Request::from(source);
/// assert_eq!((req.method.as_str(), req.path.as_str()), ("PUT", "/pets/7"));
/// assert_eq!(req.query["name"], "Rex II");
/// assert_eq!(req.query["tag"], "a b");
/// assert_eq!(req.request_id, "r-7");
/// assert_eq!(req.body.as_deref(), Some("{}"));
/// ```
impl From<http::Request<Vec<u8>>> for Request {
    fn from(source: http::Request<Vec<u8>>) -> Self {
        let (parts, body) = source.into_parts();
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        let headers: std::collections::HashMap<String, String> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect();
        Request {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query,
            request_id: headers.get("x-request-id").cloned().unwrap_or_default(),
            headers,
            body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
            params: Default::default(),
            client_ip: None,
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); bad escapes stay.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
