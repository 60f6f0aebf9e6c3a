//! `multipart/form-data` bodies: text fields and files, parsed from the exact body bytes.

use std::collections::HashMap;

use crate::error::HandlerError;

/// The fields and files of a `multipart/form-data` body.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::MultipartData;
///
/// let body = b"--b\r\nContent-Disposition: form-data; name=\"pic\"; filename=\"a.png\"\r\n\
/// Content-Type: image/png\r\n\r\n\x89PNG\x00\xff\r\n--b--\r\n";
/// let form = MultipartData::parse_bytes(body, "b").unwrap();
/// let file = form.require_file("pic").unwrap();
/// assert_eq!(file.filename, "a.png");
/// assert_eq!(file.data, b"\x89PNG\x00\xff".to_vec());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultipartData {
    /// Text fields by name (parts without a filename).
    pub fields: HashMap<String, String>,
    /// Files by field name (parts with a filename).
    pub files: HashMap<String, MultipartFile>,
}

/// One uploaded file of a multipart body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultipartFile {
    /// The client's file name.
    pub filename: String,
    /// The part's content type (`application/octet-stream` when it has none).
    pub content_type: String,
    /// The exact bytes of the file.
    pub data: Vec<u8>,
}

impl MultipartData {
    /// Parses a text body; see [`MultipartData::parse_bytes`] for binary bodies.
    ///
    /// # Errors
    ///
    /// `BadRequest` when the body is not well-formed multipart.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// let form = MultipartData::parse(
    ///     "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--", "b").unwrap();
    /// assert_eq!(form.field("a").map(String::as_str), Some("1"));
    /// ```
    pub fn parse(body: &str, boundary: &str) -> Result<Self, HandlerError> {
        Self::parse_bytes(body.as_bytes(), boundary)
    }

    /// Parses the exact bytes of a body with the given boundary.
    ///
    /// # Errors
    ///
    /// `BadRequest` when the first boundary is missing, a part has no header block or no
    /// `Content-Disposition` name, or the closing boundary is missing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert!(MultipartData::parse_bytes(b"not multipart", "b").is_err());
    /// ```
    pub fn parse_bytes(body: &[u8], boundary: &str) -> Result<Self, HandlerError> {
        let bad = |what: &str| HandlerError::BadRequest(format!("Malformed multipart body: {what}"));
        let delimiter = format!("--{boundary}").into_bytes();
        let between = format!("\r\n--{boundary}").into_bytes();
        let start = find(body, &delimiter).ok_or_else(|| bad("missing boundary"))?;
        let mut rest = &body[start + delimiter.len()..];
        let mut data = MultipartData::default();
        loop {
            if rest.starts_with(b"--") {
                return Ok(data);
            }
            rest = rest.strip_prefix(b"\r\n").ok_or_else(|| bad("boundary not followed by CRLF"))?;
            let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("part without headers"))?;
            let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
            let after_head = &rest[head_end + 4..];
            let end = find(after_head, &between).ok_or_else(|| bad("missing closing boundary"))?;
            let content = &after_head[..end];
            rest = &after_head[end + between.len()..];
            data.add_part(&head, content).ok_or_else(|| bad("part without a name"))?;
        }
    }

    fn add_part(&mut self, head: &str, content: &[u8]) -> Option<()> {
        let mut disposition = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => disposition = Some(value.trim().to_owned()),
                "content-type" => content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let disposition = disposition?;
        let name = header_param(&disposition, "name")?;
        match header_param(&disposition, "filename") {
            Some(filename) => {
                let file = MultipartFile {
                    filename,
                    content_type: content_type
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                    data: content.to_vec(),
                };
                self.files.insert(name, file);
            }
            None => {
                self.fields.insert(name, String::from_utf8_lossy(content).into_owned());
            }
        }
        Some(())
    }

    /// A text field.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert_eq!(MultipartData::default().field("x"), None);
    /// ```
    pub fn field(&self, name: &str) -> Option<&String> {
        self.fields.get(name)
    }

    /// A text field that must be present.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required field: name")`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// let err = MultipartData::default().require_field("title").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: Missing required field: title");
    /// ```
    pub fn require_field(&self, name: &str) -> Result<&String, HandlerError> {
        self.field(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("Missing required field: {name}")))
    }

    /// An uploaded file.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert!(MultipartData::default().file("upload").is_none());
    /// ```
    pub fn file(&self, name: &str) -> Option<&MultipartFile> {
        self.files.get(name)
    }

    /// An uploaded file that must be present.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required file: name")`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// let err = MultipartData::default().require_file("upload").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: Missing required file: upload");
    /// ```
    pub fn require_file(&self, name: &str) -> Result<&MultipartFile, HandlerError> {
        self.file(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("Missing required file: {name}")))
    }
}

/// The boundary parameter of a multipart content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    }).filter(|b| !b.is_empty())
}

/// A parameter (`name="x"` or `name=x`) of a header value such as Content-Disposition.
fn header_param(header: &str, param: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim().eq_ignore_ascii_case(param).then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
