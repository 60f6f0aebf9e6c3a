//! `HandlerError`: the one error type of a handler, with its HTTP status and JSON body, and
//! the rule for what a client may see of a server-side failure.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::OnceLock;

/// The environment variable that lets 5xx details reach the client (`1`, `true`, `yes`, `on`).
pub const EXPOSE_ERRORS_ENV: &str = "EDGEBOOK_EXPOSE_ERRORS";

/// An error a handler can return; each variant maps to an HTTP status code.
///
/// For a 4xx the client receives `{"error": "<Display text>"}` with
/// [`HandlerError::status_code`]. For a 5xx the Display text (SQL errors, panic messages,
/// connection details) is written to stderr, which is the endpoint's log, and the client
/// receives only the status's reason, such as `{"error":"Internal Server Error"}`; setting
/// `EDGEBOOK_EXPOSE_ERRORS=1` in the worker's environment sends the details to the client
/// too, for development (see [`HandlerError::to_response`]).
///
/// `?` converts `serde_json` errors ([`HandlerError::SerializationError`], 500) and
/// `std::io::Error` ([`HandlerError::InternalError`], 500); [`HandlerError::other`] wraps any
/// error. The variants are exactly the original SDK's, so an exhaustive `match` written for it
/// still compiles.
/// Client input that fails to parse should go through [`crate::Request::json`] or
/// [`crate::Json`], which answer 400. Any `HandlerError` converts into a [`Response`](crate::Response).
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
///
/// let err = HandlerError::BadRequest("name is empty".into());
/// assert_eq!(err.status_code(), 400);
/// assert_eq!(err.to_string(), "Bad request: name is empty");
///
/// let response: Response = err.into();
/// assert_eq!(response.status, 400);
/// assert_eq!(response.body.as_deref(), Some(r#"{"error":"Bad request: name is empty"}"#));
/// ```
#[derive(Debug)]
pub enum HandlerError {
    /// 400, `Bad request: {0}`: malformed input.
    BadRequest(String),
    /// 400, `Validation error: {0}`: well-formed input that breaks a rule.
    ValidationError(String),
    /// 401, `Unauthorized: {0}`.
    Unauthorized(String),
    /// 403, `Forbidden: {0}`.
    Forbidden(String),
    /// 404, `Not found`.
    NotFound,
    /// 404, `Not found: {0}`.
    NotFoundMessage(String),
    /// 405, `Method not allowed: {0}`.
    MethodNotAllowed(String),
    /// 409, `Conflict: {0}`.
    Conflict(String),
    /// 413, `Payload too large: {0}`.
    PayloadTooLarge(String),
    /// 500, `IPC error: {0}`: the link to the gateway failed.
    IpcError(String),
    /// 500, `Serialization error: {0}`.
    SerializationError(serde_json::Error),
    /// 500, `Database error: {0}`.
    DatabaseError(String),
    /// 500, `Redis error: {0}`.
    RedisError(String),
    /// 500, `Storage error: {0}`.
    StorageError(String),
    /// 500, `Internal error: {0}`.
    InternalError(String),
    /// 500, `Internal error: {0}` (an alias kept from the original SDK).
    Internal(String),
    /// 503, `Service unavailable: {0}`.
    ServiceUnavailable(String),
}

impl HandlerError {
    /// The HTTP status code this error answers with.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::HandlerError;
    ///
    /// assert_eq!(HandlerError::NotFound.status_code(), 404);
    /// assert_eq!(HandlerError::ServiceUnavailable("db".into()).status_code(), 503);
    /// ```
    #[must_use]
    pub fn status_code(&self) -> u16 {
        match self {
            HandlerError::BadRequest(_) | HandlerError::ValidationError(_) => 400,
            HandlerError::Unauthorized(_) => 401,
            HandlerError::Forbidden(_) => 403,
            HandlerError::NotFound | HandlerError::NotFoundMessage(_) => 404,
            HandlerError::MethodNotAllowed(_) => 405,
            HandlerError::Conflict(_) => 409,
            HandlerError::PayloadTooLarge(_) => 413,
            HandlerError::ServiceUnavailable(_) => 503,
            HandlerError::IpcError(_)
            | HandlerError::SerializationError(_)
            | HandlerError::DatabaseError(_)
            | HandlerError::RedisError(_)
            | HandlerError::StorageError(_)
            | HandlerError::InternalError(_)
            | HandlerError::Internal(_) => 500,
        }
    }

    /// Wraps any error as a 500 [`HandlerError::InternalError`] whose text is the error and
    /// its chain of sources (`outer: caused by: inner`), which the endpoint's log receives.
    ///
    /// The text, not the error value, is kept: a variant holding a boxed error would break
    /// exhaustive matches written for the original SDK.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::HandlerError;
    ///
    /// let parse = "x".parse::<u8>().unwrap_err();
    /// let err = HandlerError::other(parse);
    /// assert_eq!(err.status_code(), 500);
    /// assert_eq!(err.to_string(), "Internal error: invalid digit found in string");
    /// ```
    pub fn other(err: impl StdError) -> Self {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(&format!(": caused by: {cause}"));
            source = cause.source();
        }
        HandlerError::InternalError(text)
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// One line on stderr: the status, the request (when known), the Display text and sources.
pub(crate) fn log_detail(err: &HandlerError) {
    let mut line = format!("edgebook handler: {}", err.status_code());
    CONTEXT.with(|context| {
        if let Some(id) = &context.borrow().request_id {
            line.push_str(&format!(" for request {id}"));
        }
    });
    line.push_str(&format!(": {err}"));
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{line}");
}

/// What the worker loop knows about the request whose handler is running on this thread.
#[derive(Default)]
struct ErrorContext {
    request_id: Option<String>,
    expose: Option<bool>,
}

thread_local! {
    static CONTEXT: RefCell<ErrorContext> = RefCell::new(ErrorContext::default());
}

/// Runs `f` with the request id in 5xx log lines and `expose` deciding whether 5xx details
/// reach the client (the worker loop's [`crate::ipc::Config::expose_errors`]).
pub(crate) fn in_request<T>(request_id: &str, expose: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(ErrorContext);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = std::mem::take(&mut self.0);
            CONTEXT.with(|context| *context.borrow_mut() = previous);
        }
    }
    let current = ErrorContext { request_id: Some(request_id.to_owned()), expose: Some(expose) };
    let _restore = Restore(CONTEXT.with(|context| context.replace(current)));
    f()
}

/// Whether 5xx details go to the client: the worker loop's setting while a handler runs,
/// else [`EXPOSE_ERRORS_ENV`] (read once).
pub(crate) fn expose_details() -> bool {
    CONTEXT.with(|context| context.borrow().expose).unwrap_or_else(|| {
        static FROM_ENV: OnceLock<bool> = OnceLock::new();
        *FROM_ENV.get_or_init(expose_errors_from_env)
    })
}

/// Whether [`EXPOSE_ERRORS_ENV`] asks for details: `1`, `true`, `yes` or `on`.
pub(crate) fn expose_errors_from_env() -> bool {
    std::env::var(EXPOSE_ERRORS_ENV).is_ok_and(|value| {
        matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
    })
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::BadRequest(m) => write!(f, "Bad request: {m}"),
            HandlerError::ValidationError(m) => write!(f, "Validation error: {m}"),
            HandlerError::Unauthorized(m) => write!(f, "Unauthorized: {m}"),
            HandlerError::Forbidden(m) => write!(f, "Forbidden: {m}"),
            HandlerError::NotFound => f.write_str("Not found"),
            HandlerError::NotFoundMessage(m) => write!(f, "Not found: {m}"),
            HandlerError::MethodNotAllowed(m) => write!(f, "Method not allowed: {m}"),
            HandlerError::Conflict(m) => write!(f, "Conflict: {m}"),
            HandlerError::PayloadTooLarge(m) => write!(f, "Payload too large: {m}"),
            HandlerError::IpcError(m) => write!(f, "IPC error: {m}"),
            HandlerError::SerializationError(e) => write!(f, "Serialization error: {e}"),
            HandlerError::DatabaseError(m) => write!(f, "Database error: {m}"),
            HandlerError::RedisError(m) => write!(f, "Redis error: {m}"),
            HandlerError::StorageError(m) => write!(f, "Storage error: {m}"),
            HandlerError::InternalError(m) | HandlerError::Internal(m) => {
                write!(f, "Internal error: {m}")
            }
            HandlerError::ServiceUnavailable(m) => write!(f, "Service unavailable: {m}"),
        }
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            HandlerError::SerializationError(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for HandlerError {
    fn from(err: io::Error) -> Self {
        HandlerError::other(err)
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> Self {
        HandlerError::SerializationError(err)
    }
}
