//! `multipart/form-data` bodies: text fields and files, parsed from the exact body bytes.

use std::collections::HashMap;

use crate::error::HandlerError;

/// The fields and files of a `multipart/form-data` body, one per name.
///
/// This is the original SDK's shape: for a name sent several times (`files[]`) it holds the
/// last part. [`MultipartForm`] (from [`crate::Request::multipart_form`]) keeps every part.
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
    /// Text fields by name (parts without a filename); the last of a repeated name.
    pub fields: HashMap<String, String>,
    /// Files by field name (parts with a filename); the last of a repeated name.
    pub files: HashMap<String, MultipartFile>,
}

/// One uploaded file of a multipart body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultipartFile {
    /// The client's file name (from `filename*` when the part has it, else `filename`).
    pub filename: String,
    /// The part's content type (`application/octet-stream` when it has none).
    pub content_type: String,
    /// The exact bytes of the file.
    pub data: Vec<u8>,
}

/// Every part of a `multipart/form-data` body, in order, repeated names included.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::MultipartForm;
///
/// let body = "--b\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"a.txt\"\r\n\r\nA\r\n\
/// --b\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"b.txt\"\r\n\r\nB\r\n\
/// --b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nx\r\n\
/// --b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\ny\r\n--b--\r\n";
/// let form = MultipartForm::parse_bytes(body.as_bytes(), "b").unwrap();
/// let names: Vec<&str> = form.files_all("files[]").iter().map(|f| f.filename.as_str()).collect();
/// assert_eq!(names, ["a.txt", "b.txt"]);
/// assert_eq!(form.field_all("tag"), ["x", "y"]);
/// assert_eq!(form.field("tag").map(String::as_str), Some("y"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultipartForm {
    fields: Vec<(String, String)>,
    files: Vec<(String, MultipartFile)>,
}

impl MultipartForm {
    /// Parses the exact bytes of a body with the given boundary.
    ///
    /// # Errors
    ///
    /// `BadRequest("Malformed multipart body: ...")` naming the problem: the first or the
    /// closing boundary is missing, a part has no blank line after its headers, a header
    /// line has no `:`, a part has no `Content-Disposition` or it has no `name`.
    pub fn parse_bytes(body: &[u8], boundary: &str) -> Result<Self, HandlerError> {
        let bad =
            |what: String| HandlerError::BadRequest(format!("Malformed multipart body: {what}"));
        let delimiter = format!("--{boundary}").into_bytes();
        let between = format!("\r\n--{boundary}").into_bytes();
        let start = find(body, &delimiter)
            .ok_or_else(|| bad(format!("no boundary \"--{boundary}\" in the body")))?;
        let mut rest = &body[start + delimiter.len()..];
        let mut form = MultipartForm::default();
        for number in 1.. {
            if rest.starts_with(b"--") {
                return Ok(form);
            }
            rest = rest.strip_prefix(b"\r\n").ok_or_else(|| {
                bad(format!("boundary before part {number} not followed by CRLF"))
            })?;
            let (head, after_head) = if let Some(content) = rest.strip_prefix(b"\r\n") {
                (String::new(), content)
            } else {
                let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| {
                    bad(format!("part {number} has no blank line after its headers"))
                })?;
                (String::from_utf8_lossy(&rest[..head_end]).into_owned(), &rest[head_end + 4..])
            };
            let end = find(after_head, &between).ok_or_else(|| {
                bad(format!("part {number} is not followed by a boundary (body cut short?)"))
            })?;
            form.add_part(&head, &after_head[..end])
                .map_err(|what| bad(format!("part {number} {what}")))?;
            rest = &after_head[end + between.len()..];
        }
        unreachable!("the loop over part numbers only ends by returning")
    }

    fn add_part(&mut self, head: &str, content: &[u8]) -> Result<(), String> {
        let mut disposition = None;
        let mut content_type = None;
        for line in head.split("\r\n").filter(|line| !line.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("has a header line without ':': {line:?}"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => disposition = Some(value.trim().to_owned()),
                "content-type" => content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let disposition = disposition.ok_or("has no Content-Disposition header")?;
        let params = header_params(&disposition);
        let name = params.get("name").cloned().ok_or("has a Content-Disposition without a name")?;
        let filename = params
            .get("filename*")
            .and_then(|value| decode_ext_value(value))
            .or_else(|| params.get("filename").cloned());
        match filename {
            Some(filename) => {
                let content_type =
                    content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
                let file = MultipartFile { filename, content_type, data: content.to_vec() };
                self.files.push((name, file));
            }
            None => self.fields.push((name, String::from_utf8_lossy(content).into_owned())),
        }
        Ok(())
    }

    /// A text field (the last part of that name).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&String> {
        self.fields.iter().rev().find(|(n, _)| n == name).map(|(_, value)| value)
    }

    /// Every text field of that name, in order.
    #[must_use]
    pub fn field_all(&self, name: &str) -> Vec<&String> {
        self.fields.iter().filter(|(n, _)| n == name).map(|(_, value)| value).collect()
    }

    /// A text field that must be present.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required field: name")`.
    pub fn require_field(&self, name: &str) -> Result<&String, HandlerError> {
        self.field(name).ok_or_else(|| missing("field", name))
    }

    /// An uploaded file (the last part of that name).
    #[must_use]
    pub fn file(&self, name: &str) -> Option<&MultipartFile> {
        self.files.iter().rev().find(|(n, _)| n == name).map(|(_, file)| file)
    }

    /// Every uploaded file of that name, in order (`files[]`).
    #[must_use]
    pub fn files_all(&self, name: &str) -> Vec<&MultipartFile> {
        self.files.iter().filter(|(n, _)| n == name).map(|(_, file)| file).collect()
    }

    /// An uploaded file that must be present.
    ///
    /// # Errors
    ///
    /// `BadRequest("Missing required file: name")`.
    pub fn require_file(&self, name: &str) -> Result<&MultipartFile, HandlerError> {
        self.file(name).ok_or_else(|| missing("file", name))
    }

    /// Text fields as `(name, value)`, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Files as `(name, file)`, in order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &MultipartFile)> {
        self.files.iter().map(|(name, file)| (name.as_str(), file))
    }
}

impl From<MultipartForm> for MultipartData {
    fn from(form: MultipartForm) -> Self {
        MultipartData {
            fields: form.fields.into_iter().collect(),
            files: form.files.into_iter().collect(),
        }
    }
}

fn missing(what: &str, name: &str) -> HandlerError {
    HandlerError::BadRequest(format!("Missing required {what}: {name}"))
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

    /// Parses the exact bytes of a body with the given boundary (the last part of a
    /// repeated name wins; see [`MultipartForm::parse_bytes`] for every part).
    ///
    /// # Errors
    ///
    /// As for [`MultipartForm::parse_bytes`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert!(MultipartData::parse_bytes(b"not multipart", "b").is_err());
    /// ```
    pub fn parse_bytes(body: &[u8], boundary: &str) -> Result<Self, HandlerError> {
        MultipartForm::parse_bytes(body, boundary).map(MultipartData::from)
    }

    /// A text field.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert_eq!(MultipartData::default().field("x"), None);
    /// ```
    #[must_use]
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
        self.field(name).ok_or_else(|| missing("field", name))
    }

    /// An uploaded file.
    ///
    /// # Examples
    ///
    /// ```
    /// # use edgebook_sdk::MultipartData;
    /// assert!(MultipartData::default().file("upload").is_none());
    /// ```
    #[must_use]
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
        self.file(name).ok_or_else(|| missing("file", name))
    }
}

/// The boundary parameter of a multipart content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    header_params(content_type).remove("boundary").filter(|b| !b.is_empty())
}

/// The parameters of a header value such as `form-data; name="a;b"; filename*=UTF-8''x`:
/// names lower case, quoted values unquoted (`\` escapes honoured, `;` inside quotes kept).
fn header_params(header: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = header.chars().peekable();
    // Skip the value before the first parameter (`form-data`, `multipart/form-data`).
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let name = name.trim().to_ascii_lowercase();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            value = chars.by_ref().take_while(|&c| c != ';').collect::<String>().trim().to_owned();
        }
        if name.is_empty() {
            return params;
        }
        params.entry(name).or_insert(value);
    }
}

/// The text of an RFC 8187 extended value (`UTF-8''%e2%82%ac%20rates.txt`); `None` when it
/// is malformed or in a charset other than UTF-8 (the plain `filename` is used then).
fn decode_ext_value(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut input = encoded.bytes();
    while let Some(b) = input.next() {
        if b == b'%' {
            let hex = [input.next()?, input.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
