//! `HandlerError`: the one error type of a handler, with its HTTP status and JSON body.

use std::fmt;

use crate::response::Response;

/// An error a handler can return; each variant maps to an HTTP status code.
///
/// The client receives `{"error": "<Display text>"}` with [`HandlerError::status_code`].
/// `?` works on `serde_json` errors ([`HandlerError::SerializationError`]), and any
/// `HandlerError` converts into a [`Response`].
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

    /// The response a client receives for this error: JSON `{"error": "<Display text>"}`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgebook_sdk::HandlerError;
    ///
    /// let response = HandlerError::Conflict("id taken".into()).to_response();
    /// assert_eq!(response.status, 409);
    /// assert_eq!(response.body.as_deref(), Some(r#"{"error":"Conflict: id taken"}"#));
    /// ```
    pub fn to_response(&self) -> Response {
        Response::json(self.status_code(), serde_json::json!({ "error": self.to_string() }))
    }
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

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandlerError::SerializationError(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> Self {
        HandlerError::SerializationError(err)
    }
}

impl From<HandlerError> for Response {
    fn from(err: HandlerError) -> Self {
        err.to_response()
    }
}
