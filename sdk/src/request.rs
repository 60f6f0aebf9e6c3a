//! `Request`: the HTTP request a handler receives, and its accessors.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::HandlerError;
use crate::extras;
use crate::multipart::{MultipartData, MultipartForm};

/// An HTTP request, as the gateway hands it to a handler.
///
/// The fields are exactly the original SDK's, so struct literals written for it compile.
/// Binary bodies arrive intact: `body` then holds a lossy UTF-8 rendering, and
/// [`Request::body_bytes`] the exact bytes. Values of repeated query keys and headers are
/// available through [`Request::query_all`] and [`Request::header_all`].
///
/// Those extras (exact bytes, all values) are held by the worker for the request being
/// handled, found by its id and a fingerprint of its fields, and dropped when its response
/// is sent. A clone kept longer (stored, sent to a thread) keeps every field but loses the
/// extras: [`Request::try_body_bytes`] then says `None` for a binary body instead of
/// returning wrong bytes, and `query_all`/`header_all` give the last value only. Another
/// request that reuses the id never sees this one's extras. Read what you need while
/// handling the request.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
///
/// let req = Request {
///     method: "GET".into(),
///     path: "/users/7".into(),
///     params: [("id".to_string(), "7".to_string())].into(),
///     ..Request::default()
/// };
/// let id: u32 = req.require_path_param("id").unwrap();
/// assert_eq!(id, 7);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// HTTP method, upper case as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Raw path without the query string, not percent-decoded.
    pub path: String,
    /// Query parameters, URL-decoded; for a repeated key the last value.
    #[serde(default)]
    pub query: HashMap<String, String>,
    /// Headers, names lower case; for a repeated header the last value.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// The body as text; `None` when the request had none.
    #[serde(default)]
    pub body: Option<String>,
    /// Values of the route's `{name}` segments, raw.
    #[serde(default)]
    pub params: HashMap<String, String>,
    /// The client's address.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// The request's id, also sent to the client as `X-Request-Id`.
    #[serde(default)]
    pub request_id: String,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            query: HashMap::new(),
            headers: HashMap::new(),
            body: None,
            params: HashMap::new(),
            client_ip: None,
            request_id: String::new(),
        }
    }
}

impl Request {
    /// Parses the body as JSON into `T`; a missing body parses as `null`.
    ///
    /// # Errors
    ///
    /// `BadRequest("Invalid JSON: <serde message>")` when the body does not parse into `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::prelude::*;
    /// #[derive(Deserialize)]
    /// struct NewPet { name: String }
    ///
    /// let req = Request { body: Some(r#"{"name":"Rex"}"#.into()), ..Request::default() };
    /// let pet: NewPet = req.json().unwrap();
    /// assert_eq!(pet.name, "Rex");
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        let text = self.body.as_deref().unwrap_or("null");
        serde_json::from_str(text)
            .map_err(|e| HandlerError::BadRequest(format!("Invalid JSON: {e}")))
    }

    /// A query parameter (the last value of a repeated key).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { query: [("q".to_string(), "rust".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.query_param("q").map(String::as_str), Some("rust"));
    /// ```
    #[must_use]
    pub fn query_param(&self, key: &str) -> Option<&String> {
        self.query.get(key)
    }

    /// A query parameter parsed as `T`; `None` when missing or unparsable.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { query: [("page".to_string(), "2".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.query_param_as::<u32>("page"), Some(2));
    /// assert_eq!(req.query_param_as::<u32>("limit"), None);
    /// ```
    #[must_use]
    pub fn query_param_as<T: FromStr>(&self, key: &str) -> Option<T> {
        self.query.get(key).and_then(|v| v.parse().ok())
    }

    /// A query parameter parsed as `T`.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required query parameter: k")` or
    /// `BadRequest("Invalid value for query parameter: k")`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request::default();
    /// let err = req.require_query_param::<u32>("page").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: Missing required query parameter: page");
    /// ```
    pub fn require_query_param<T: FromStr>(&self, key: &str) -> Result<T, HandlerError> {
        require(self.query.get(key), key, "query parameter")
    }

    /// Every value of a query key, in order (empty when the key is absent).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { query: [("tag".to_string(), "a".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.query_all("tag"), vec!["a".to_string()]);
    /// assert!(req.query_all("other").is_empty());
    /// ```
    #[must_use]
    pub fn query_all(&self, key: &str) -> Vec<String> {
        extras::with(&self.request_id, self.fingerprint(), |e| {
            e.query_all.as_ref().map(|all| all.get(key).cloned())
        })
        .unwrap_or_else(|| self.query.get(key).map(|v| vec![v.clone()]))
        .unwrap_or_default()
    }

    /// A path parameter (a `{name}` segment of the route), raw.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { params: [("id".to_string(), "42".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.path_param("id").map(String::as_str), Some("42"));
    /// ```
    #[must_use]
    pub fn path_param(&self, key: &str) -> Option<&String> {
        self.params.get(key)
    }

    /// A path parameter parsed as `T`; `None` when missing or unparsable.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { params: [("id".to_string(), "42".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.path_param_as::<i64>("id"), Some(42));
    /// ```
    #[must_use]
    pub fn path_param_as<T: FromStr>(&self, key: &str) -> Option<T> {
        self.params.get(key).and_then(|v| v.parse().ok())
    }

    /// A path parameter parsed as `T`.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required path parameter: k")` or
    /// `BadRequest("Invalid value for path parameter: k")`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { params: [("id".to_string(), "x".to_string())].into(), ..Request::default() };
    /// let err = req.require_path_param::<i64>("id").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: Invalid value for path parameter: id");
    /// ```
    pub fn require_path_param<T: FromStr>(&self, key: &str) -> Result<T, HandlerError> {
        require(self.params.get(key), key, "path parameter")
    }

    /// A header, looked up case-insensitively (the last value of a repeated header).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request {
    ///     headers: [("authorization".to_string(), "Bearer t".to_string())].into(),
    ///     ..Request::default()
    /// };
    /// assert_eq!(req.header("Authorization").map(String::as_str), Some("Bearer t"));
    /// ```
    #[must_use]
    pub fn header(&self, key: &str) -> Option<&String> {
        self.headers.get(key).or_else(|| {
            self.headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value)
        })
    }

    /// A header that must be present.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required header: k")`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let err = Request::default().require_header("X-Api-Key").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: Missing required header: X-Api-Key");
    /// ```
    pub fn require_header(&self, key: &str) -> Result<&String, HandlerError> {
        self.header(key)
            .ok_or_else(|| HandlerError::BadRequest(format!("Missing required header: {key}")))
    }

    /// Every value of a header, in order, looked up case-insensitively.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { headers: [("accept".to_string(), "*/*".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.header_all("Accept"), vec!["*/*".to_string()]);
    /// ```
    #[must_use]
    pub fn header_all(&self, key: &str) -> Vec<String> {
        let lower = key.to_ascii_lowercase();
        extras::with(&self.request_id, self.fingerprint(), |e| {
            e.headers_all.as_ref().map(|all| {
                all.iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&lower))
                    .map(|(_, values)| values.clone())
            })
        })
        .unwrap_or_else(|| self.header(&lower).map(|v| vec![v.clone()]))
        .unwrap_or_default()
    }

    /// Whether the method is `method` (case-insensitive).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { method: "POST".into(), ..Request::default() };
    /// assert!(req.is_method("post"));
    /// ```
    #[must_use]
    pub fn is_method(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// The exact body bytes (empty when there is no body), binary bodies included.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { body: Some("hi".into()), ..Request::default() };
    /// assert_eq!(req.body_bytes(), b"hi".to_vec());
    /// ```
    #[must_use]
    pub fn body_bytes(&self) -> Vec<u8> {
        self.try_body_bytes().unwrap_or_else(|| {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "edgebook handler: body_bytes() of request {:?} after its response: \
                     the exact bytes are gone, returning its text rendering (use \
                     try_body_bytes() to tell)",
                    self.request_id
                );
            });
            self.text_bytes()
        })
    }

    /// The exact body bytes, or `None` when they are no longer known.
    ///
    /// A binary body's exact bytes are kept until the response to the request is sent. A
    /// clone of the request kept past that point (stored, sent to a thread) still has
    /// `body`, its text rendering, but not the bytes: for a body whose text holds U+FFFD
    /// (what invalid UTF-8 turns into) this returns `None` rather than bytes that may be
    /// wrong. Text bodies without U+FFFD are always available.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let text = Request { body: Some("hi".into()), ..Request::default() };
    /// assert_eq!(text.try_body_bytes(), Some(b"hi".to_vec()));
    ///
    /// // Not (or no longer) handled by the worker loop: the bytes behind U+FFFD are unknown.
    /// let rendered = Request { body: Some("\u{fffd}PNG".into()), ..Request::default() };
    /// assert_eq!(rendered.try_body_bytes(), None);
    /// ```
    #[must_use]
    pub fn try_body_bytes(&self) -> Option<Vec<u8>> {
        if let Some(bytes) = extras::with(&self.request_id, self.fingerprint(), |e| e.body.clone())
        {
            return Some(bytes);
        }
        match &self.body {
            Some(text) if text.contains(char::REPLACEMENT_CHARACTER) => None,
            _ => Some(self.text_bytes()),
        }
    }

    fn text_bytes(&self) -> Vec<u8> {
        self.body.as_deref().map(str::as_bytes).unwrap_or_default().to_vec()
    }

    /// A hash of the fields a handler sees (maps hashed independently of their order): what
    /// ties this request to the extras the worker loop kept for it (see `extras`).
    pub(crate) fn fingerprint(&self) -> u64 {
        fn unordered(map: &HashMap<String, String>) -> u64 {
            map.iter().fold(0u64, |sum, entry| {
                let mut hasher = DefaultHasher::new();
                entry.hash(&mut hasher);
                sum.wrapping_add(hasher.finish())
            })
        }
        let mut hasher = DefaultHasher::new();
        (&self.method, &self.path).hash(&mut hasher);
        // The body may be megabytes: a word-at-a-time hash, not SipHash (about 8x faster; it
        // only tells this request's fields from a changed copy's, no adversary involved).
        let body = self.body.as_deref().map(str::as_bytes);
        (body.map(<[u8]>::len), body.map(word_hash)).hash(&mut hasher);
        (unordered(&self.query), unordered(&self.headers)).hash(&mut hasher);
        hasher.finish()
    }

    /// The `Content-Type` header.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request { headers: [("content-type".to_string(), "text/csv".to_string())].into(), ..Request::default() };
    /// assert_eq!(req.content_type().map(String::as_str), Some("text/csv"));
    /// ```
    #[must_use]
    pub fn content_type(&self) -> Option<&String> {
        self.header("content-type")
    }

    /// Whether the content type is JSON (`application/json`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let req = Request {
    ///     headers: [("content-type".to_string(), "application/json; charset=utf-8".to_string())].into(),
    ///     ..Request::default()
    /// };
    /// assert!(req.is_json());
    /// ```
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.content_type().is_some_and(|ct| ct.to_ascii_lowercase().contains("application/json"))
    }

    /// Whether the content type is `multipart/form-data`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// assert!(!Request::default().is_multipart());
    /// ```
    #[must_use]
    pub fn is_multipart(&self) -> bool {
        self.content_type()
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("multipart/form-data"))
    }

    /// Parses a `multipart/form-data` body into text fields and files (binary-safe).
    ///
    /// # Errors
    ///
    /// `BadRequest` when the content type is missing or not multipart, the boundary is
    /// missing, the body is empty, or the body is not well-formed multipart (the message
    /// names the problem); `InternalError` when called on a clone after the response, when
    /// a binary body's bytes are gone (see [`Request::try_body_bytes`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let body = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n--XyZ--\r\n";
    /// let req = Request {
    ///     headers: [("content-type".to_string(), "multipart/form-data; boundary=XyZ".to_string())].into(),
    ///     body: Some(body.into()),
    ///     ..Request::default()
    /// };
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.require_field("title").unwrap(), "Hello");
    /// ```
    pub fn multipart(&self) -> Result<MultipartData, HandlerError> {
        self.multipart_form().map(MultipartData::from)
    }

    /// Parses a `multipart/form-data` body keeping every part, repeated names included
    /// (`files[]`): see [`MultipartForm`].
    ///
    /// # Errors
    ///
    /// As for [`Request::multipart`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::Request;
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nx\r\n\
    /// --b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\ny\r\n--b--\r\n";
    /// let req = Request {
    ///     headers: [("content-type".to_string(), "multipart/form-data; boundary=b".to_string())].into(),
    ///     body: Some(body.into()),
    ///     ..Request::default()
    /// };
    /// assert_eq!(req.multipart_form().unwrap().field_all("tag"), ["x", "y"]);
    /// ```
    pub fn multipart_form(&self) -> Result<MultipartForm, HandlerError> {
        let content_type = self
            .content_type()
            .ok_or_else(|| HandlerError::BadRequest("Missing Content-Type header".into()))?;
        if !self.is_multipart() {
            return Err(HandlerError::BadRequest("Content-Type is not multipart/form-data".into()));
        }
        let boundary = crate::multipart::boundary(content_type)
            .ok_or_else(|| HandlerError::BadRequest("Missing multipart boundary".into()))?;
        let body = self.try_body_bytes().ok_or_else(|| {
            HandlerError::InternalError(format!(
                "the multipart body of request {:?} is no longer available: parse it while \
                 handling the request, not after its response",
                self.request_id
            ))
        })?;
        if body.is_empty() {
            return Err(HandlerError::BadRequest("Empty body for multipart request".into()));
        }
        MultipartForm::parse_bytes(&body, &boundary)
    }
}

fn require<T: FromStr>(value: Option<&String>, key: &str, what: &str) -> Result<T, HandlerError> {
    let value =
        value.ok_or_else(|| HandlerError::BadRequest(format!("Missing required {what}: {key}")))?;
    value.parse().map_err(|_| HandlerError::BadRequest(format!("Invalid value for {what}: {key}")))
}

/// A fast 64-bit hash of `bytes`, eight at a time (FxHash's step: rotate, xor, multiply).
fn word_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    let mut h = words
        .by_ref()
        .fold(0, |h, w| step(h, u64::from_le_bytes(w.try_into().unwrap_or_default())));
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = step(h, u64::from_le_bytes(tail));
    step(h, bytes.len() as u64)
}

#[cfg(test)]
mod fingerprint_tests {
    use super::Request;

    #[test]
    fn any_change_of_a_large_body_changes_the_fingerprint() {
        let body: String = (0..100_003).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let request = Request { body: Some(body.clone()), ..Request::default() };
        assert_eq!(request.fingerprint(), request.clone().fingerprint());
        for at in [0, 7, 8, 50_000, 99_999, 100_000, 100_002] {
            let mut changed = body.clone().into_bytes();
            changed[at] = b'Z';
            let other = Request { body: String::from_utf8(changed).ok(), ..request.clone() };
            assert_ne!(request.fingerprint(), other.fingerprint(), "byte {at}");
        }
        let shorter = Request { body: Some(body[..100_002].to_owned()), ..request.clone() };
        assert_ne!(request.fingerprint(), shorter.fingerprint());
        let none = Request { body: None, ..request.clone() };
        let empty = Request { body: Some(String::new()), ..request };
        assert_ne!(none.fingerprint(), empty.fingerprint());
    }
}
