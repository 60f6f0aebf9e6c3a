//! `Response`: what a handler answers, with constructors for the common shapes.

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{self, HandlerError};

/// Internal header that marks a body as base64 of raw bytes.
///
/// [`Response::binary`] sets it; the worker loop removes it and sends the frame with
/// `"body_encoding": "base64"`, so the client receives the raw bytes, never this header.
pub const BODY_ENCODING_HEADER: &str = "x-edgebook-body-encoding";

/// An HTTP response from a handler.
///
/// The fields are public so a response can also be written as a struct literal.
/// Constructors set `Content-Type` for their body; [`Response::with_header`] replaces a
/// header whose name matches case-insensitively, [`Response::append_header`] adds a value.
/// A header with several values holds them one per line in `headers` (a newline is never
/// part of a valid header value); the client receives one header line for each.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
///
/// let response = Response::created(json!({"id": 7})).with_header("Location", "/items/7");
/// assert_eq!(response.status, 201);
/// assert_eq!(response.headers["Content-Type"], "application/json");
/// assert_eq!(response.body.as_deref(), Some(r#"{"id":7}"#));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Response body; `None` sends an empty body.
    #[serde(default)]
    pub body: Option<String>,
}

impl Response {
    /// A response with this status, no headers and no body.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::new(202);
    /// assert_eq!((response.status, response.body), (202, None));
    /// ```
    #[must_use]
    pub fn new(status: u16) -> Self {
        Response { status, headers: HashMap::new(), body: None }
    }

    /// 200 with `v` as JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// let response = Response::ok(json!({"ok": true}));
    /// assert_eq!(response.status, 200);
    /// assert_eq!(response.body.as_deref(), Some(r#"{"ok":true}"#));
    /// ```
    #[must_use]
    pub fn ok<T: Serialize>(body: T) -> Self {
        Self::json(200, body)
    }

    /// 201 with `v` as JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// assert_eq!(Response::created(json!({"id": 1})).status, 201);
    /// ```
    #[must_use]
    pub fn created<T: Serialize>(body: T) -> Self {
        Self::json(201, body)
    }

    /// 202 with `v` as JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// assert_eq!(Response::accepted(json!({"queued": true})).status, 202);
    /// ```
    #[must_use]
    pub fn accepted<T: Serialize>(body: T) -> Self {
        Self::json(202, body)
    }

    /// `status` with `v` serialized as JSON (`Content-Type: application/json`).
    ///
    /// A value that cannot be serialized (a map with non-string keys, say) gives a 500
    /// with a JSON error body instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// #[derive(Serialize)]
    /// struct Pet { name: String }
    ///
    /// let response = Response::json(200, Pet { name: "Rex".into() });
    /// assert_eq!(response.body.as_deref(), Some(r#"{"name":"Rex"}"#));
    /// ```
    #[must_use]
    pub fn json<T: Serialize>(status: u16, body: T) -> Self {
        match serde_json::to_string(&body) {
            Ok(text) => {
                Self::new(status).with_header("Content-Type", "application/json").with_body(text)
            }
            Err(err) => HandlerError::SerializationError(err).to_response(),
        }
    }

    /// 204 with no body.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::no_content().status, 204);
    /// ```
    #[must_use]
    pub fn no_content() -> Self {
        Self::new(204)
    }

    /// `status` with a plain-text body (`text/plain; charset=utf-8`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::text(200, "hi");
    /// assert_eq!(response.headers["Content-Type"], "text/plain; charset=utf-8");
    /// ```
    #[must_use]
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status).with_header("Content-Type", "text/plain; charset=utf-8").with_body(body)
    }

    /// `status` with an HTML body (`text/html; charset=utf-8`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::html(200, "<h1>hi</h1>");
    /// assert_eq!(response.headers["Content-Type"], "text/html; charset=utf-8");
    /// ```
    #[must_use]
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::new(status).with_header("Content-Type", "text/html; charset=utf-8").with_body(body)
    }

    /// `status` with raw bytes as the body and `content_type`.
    ///
    /// The bytes travel base64-encoded inside the frame and reach the client unchanged.
    /// `body` holds the base64 text and [`BODY_ENCODING_HEADER`] marks it; use
    /// [`Response::binary_body`] to get the bytes back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::binary(200, [0u8, 0xff, 0x10], "application/octet-stream");
    /// assert_eq!(response.headers["Content-Type"], "application/octet-stream");
    /// assert_eq!(response.binary_body(), Some(vec![0u8, 0xff, 0x10]));
    /// ```
    #[must_use]
    pub fn binary(status: u16, data: impl AsRef<[u8]>, content_type: impl Into<String>) -> Self {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data.as_ref());
        Self::new(status)
            .with_header("Content-Type", content_type)
            .with_header(BODY_ENCODING_HEADER, "base64")
            .with_body(encoded)
    }

    /// The raw bytes of a body made by [`Response::binary`]; `None` for other responses.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::text(200, "x").binary_body(), None);
    /// ```
    #[must_use]
    pub fn binary_body(&self) -> Option<Vec<u8>> {
        let marked = self
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(BODY_ENCODING_HEADER) && v == "base64");
        if !marked {
            return None;
        }
        let body = self.body.as_deref().unwrap_or("");
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    }

    /// `status` (a 3xx) with a `Location` header and no body.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::redirect(302, "/login");
    /// assert_eq!(response.headers["Location"], "/login");
    /// ```
    #[must_use]
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self::new(status).with_header("Location", location)
    }

    /// 404 with `{"error":"Not Found"}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::not_found().body.as_deref(), Some(r#"{"error":"Not Found"}"#));
    /// ```
    #[must_use]
    pub fn not_found() -> Self {
        Self::error(404, "Not Found")
    }

    /// 404 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::not_found_msg("no pet 7").status, 404);
    /// ```
    #[must_use]
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::error(404, message)
    }

    /// 400 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::bad_request("missing name");
    /// assert_eq!(response.body.as_deref(), Some(r#"{"error":"missing name"}"#));
    /// ```
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error(400, message)
    }

    /// 401 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::unauthorized("token expired").status, 401);
    /// ```
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::error(401, message)
    }

    /// 403 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::forbidden("admins only").status, 403);
    /// ```
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::error(403, message)
    }

    /// 409 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::conflict("exists").status, 409);
    /// ```
    #[must_use]
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::error(409, message)
    }

    /// 500 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::internal_error("oops").status, 500);
    /// ```
    #[must_use]
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::error(500, message)
    }

    /// 503 with `{"error": message}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::service_unavailable("db down").status, 503);
    /// ```
    #[must_use]
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::error(503, message)
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, serde_json::json!({ "error": message.into() }))
    }

    /// Sets a header, replacing any header whose name matches case-insensitively.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::text(200, "x").with_header("content-type", "text/csv");
    /// assert_eq!(response.headers.len(), 1);
    /// assert_eq!(response.headers["content-type"], "text/csv");
    /// ```
    ///
    /// The builders return the changed response; dropping it is a `must_use` warning:
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// let response = edgebook_sdk::Response::new(200);
    /// response.clone().with_header("X-Lost", "never sent");
    /// ```
    #[must_use = "builders return the changed response; it does nothing unless used"]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.headers.retain(|k, _| !k.eq_ignore_ascii_case(&key));
        self.headers.insert(key, value.into());
        self
    }

    /// Adds a value to a header, keeping the values it has (two `Set-Cookie`, say).
    ///
    /// The header's map value then holds one value per line; the worker sends each line as
    /// a header of its own. [`Response::header_values`] reads them back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::no_content()
    ///     .append_header("Set-Cookie", "a=1; Path=/")
    ///     .append_header("set-cookie", "b=2; Path=/");
    /// assert_eq!(response.header_values("SET-COOKIE"), vec!["a=1; Path=/", "b=2; Path=/"]);
    /// ```
    #[must_use = "builders return the changed response; it does nothing unless used"]
    pub fn append_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        let existing = self.headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&key));
        match existing {
            Some((_, current)) => {
                current.push('\n');
                current.push_str(&value);
            }
            None => {
                self.headers.insert(key, value);
            }
        }
        self
    }

    /// Every value of a header, looked up case-insensitively, in the order added.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// let response = Response::text(200, "x");
    /// assert_eq!(response.header_values("content-type"), vec!["text/plain; charset=utf-8"]);
    /// assert!(response.header_values("x-missing").is_empty());
    /// ```
    #[must_use]
    pub fn header_values(&self, key: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .flat_map(|(_, value)| header_lines(value))
            .collect()
    }

    /// Replaces the body with text.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::new(200).with_body("hi").body.as_deref(), Some("hi"));
    /// ```
    #[must_use = "builders return the changed response; it does nothing unless used"]
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Adds CORS headers allowing `origin`, the usual methods and `Content-Type, Authorization`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// let response = Response::ok(json!({})).with_cors("*");
    /// assert_eq!(response.headers["Access-Control-Allow-Origin"], "*");
    /// ```
    #[must_use = "builders return the changed response; it does nothing unless used"]
    pub fn with_cors(self, origin: impl Into<String>) -> Self {
        self.with_header("Access-Control-Allow-Origin", origin)
            .with_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            .with_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
    }

    /// Sets `Cache-Control`: `max-age=N`, or for 0 `no-store, no-cache, must-revalidate`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Response;
    /// assert_eq!(Response::new(200).with_cache(60).headers["Cache-Control"], "max-age=60");
    /// ```
    #[must_use = "builders return the changed response; it does nothing unless used"]
    pub fn with_cache(self, max_age_seconds: u32) -> Self {
        if max_age_seconds == 0 {
            self.with_header("Cache-Control", "no-store, no-cache, must-revalidate")
        } else {
            self.with_header("Cache-Control", format!("max-age={max_age_seconds}"))
        }
    }
}

/// The values held by one header map value: one per line.
pub(crate) fn header_lines(value: &str) -> impl Iterator<Item = &str> {
    value.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line))
}

impl Default for Response {
    fn default() -> Self {
        Self::new(200)
    }
}

/// What a handler may return.
///
/// | type | response |
/// |---|---|
/// | [`Response`] | itself |
/// | [`crate::HandlerError`] | [`HandlerError::to_response`](crate::HandlerError::to_response) |
/// | `Result<T, E>` of two of these | the `Ok` or the `Err` one |
/// | `String`, `&'static str` | 200, `text/plain; charset=utf-8` |
/// | `()` | 204, no body |
/// | `Vec<u8>` | 200, `application/octet-stream`, the bytes unchanged |
/// | `(u16, T)` | `T`'s response with the status `u16` |
/// | [`crate::Json`]`<T>` / [`crate::Html`]`<T>` | 200 with the JSON of `T` / the HTML text |
///
/// This is what lets [`handler_loop!`](crate::handler_loop) take both
/// `fn(Request) -> Response` and `fn(Request) -> Result<Response, HandlerError>`.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
/// use edgebook_sdk::IntoResponse;
///
/// let failed: Result<Response, HandlerError> = Err(HandlerError::NotFound);
/// assert_eq!(failed.into_response().status, 404);
///
/// let created = (201, Json(json!({"id": 7}))).into_response();
/// assert_eq!((created.status, created.body.as_deref()), (201, Some(r#"{"id":7}"#)));
/// assert_eq!("hi".into_response().headers["Content-Type"], "text/plain; charset=utf-8");
/// assert_eq!(().into_response().status, 204);
/// ```
pub trait IntoResponse {
    /// Converts `self` into the response sent to the client.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(200, self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(200, self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::no_content()
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::binary(200, self, "application/octet-stream")
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        let (status, inner) = self;
        Response { status, ..inner.into_response() }
    }
}

/// How an error reaches the client: a [`HandlerError`] renders as a [`Response`] here, so
/// that `error` knows nothing of responses.
impl HandlerError {
    /// The response a client receives for this error.
    ///
    /// A 4xx answers `{"error": "<Display text>"}`. A 5xx writes its Display text (and the
    /// chain of sources) to stderr, the endpoint's log, and answers only the status's reason,
    /// `{"error": "Internal Server Error"}` or `{"error": "Service Unavailable"}`, unless
    /// details are exposed: `EDGEBOOK_EXPOSE_ERRORS=1` in the worker's environment (a
    /// development setting) gives 5xx the detailed body of
    /// [`HandlerError::detailed_response`] as well.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::HandlerError;
    ///
    /// let response = HandlerError::Conflict("id taken".into()).to_response();
    /// assert_eq!(response.status, 409);
    /// assert_eq!(response.body.as_deref(), Some(r#"{"error":"Conflict: id taken"}"#));
    ///
    /// # if std::env::var_os("EDGEBOOK_EXPOSE_ERRORS").is_none() {
    /// let response = HandlerError::DatabaseError("no such table: pets".into()).to_response();
    /// assert_eq!(response.status, 500);
    /// assert_eq!(response.body.as_deref(), Some(r#"{"error":"Internal Server Error"}"#));
    /// # }
    /// ```
    #[must_use]
    pub fn to_response(&self) -> Response {
        let status = self.status_code();
        if status < 500 {
            return self.detailed_response();
        }
        error::log_detail(self);
        if error::expose_details() {
            self.detailed_response()
        } else {
            Response::json(status, serde_json::json!({ "error": error::reason(status) }))
        }
    }

    /// `{"error": "<Display text>"}` with the status, whatever the status: the original
    /// SDK's response, for a caller that decides itself what a client may see.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::HandlerError;
    ///
    /// let response = HandlerError::DatabaseError("locked".into()).detailed_response();
    /// assert_eq!(response.body.as_deref(), Some(r#"{"error":"Database error: locked"}"#));
    /// ```
    #[must_use]
    pub fn detailed_response(&self) -> Response {
        Response::json(self.status_code(), serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<HandlerError> for Response {
    fn from(err: HandlerError) -> Self {
        err.to_response()
    }
}
