//! The handler-facing surface: accessors, constructors, errors and their exact texts.

use std::collections::HashMap;

use edgebook_sdk::prelude::*;
use edgebook_sdk::{error_for, IntoResponse, BODY_ENCODING_HEADER};
use serde_json::Value;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn body_json(response: &Response) -> Value {
    serde_json::from_str(response.body.as_deref().expect("a body")).unwrap()
}

#[test]
fn request_struct_literals_of_the_original_compile() {
    let req = Request {
        method: "POST".to_string(),
        path: "/items/42".to_string(),
        query: map(&[("page", "2")]),
        headers: map(&[("content-type", "application/json")]),
        body: Some(r#"{"a":1}"#.to_string()),
        params: map(&[("id", "42")]),
        client_ip: Some("127.0.0.1".to_string()),
        request_id: "lit-1".to_string(),
    };
    assert!(req.is_json() && req.is_method("post") && !req.is_multipart());
    assert_eq!(req.json::<Value>().unwrap(), json!({"a": 1}));
}

#[test]
fn json_errors_are_bad_requests_with_the_serde_message() {
    let req = Request { body: Some("{oops".into()), ..Request::default() };
    let err = req.json::<Value>().unwrap_err();
    assert_eq!(err.status_code(), 400);
    assert!(
        err.to_string().starts_with("Bad request: Invalid JSON: key must be a string"),
        "{err}"
    );
    let none = Request::default();
    assert_eq!(none.json::<Option<u8>>().unwrap(), None);
}

#[test]
fn query_and_path_accessors() {
    let req = Request {
        query: map(&[("page", "2"), ("q", "x")]),
        params: map(&[("id", "42"), ("slug", "abc")]),
        ..Request::default()
    };
    assert_eq!(req.query_param("q").unwrap(), "x");
    assert_eq!(req.query_param_as::<u8>("page"), Some(2));
    assert_eq!(req.query_param_as::<u8>("q"), None);
    assert_eq!(req.require_query_param::<u8>("page").unwrap(), 2);
    assert_eq!(
        req.require_query_param::<u8>("nope").unwrap_err().to_string(),
        "Bad request: Missing required query parameter: nope"
    );
    assert_eq!(
        req.require_query_param::<u8>("q").unwrap_err().to_string(),
        "Bad request: Invalid value for query parameter: q"
    );
    assert_eq!(req.path_param("slug").unwrap(), "abc");
    assert_eq!(req.path_param_as::<i64>("id"), Some(42));
    assert_eq!(
        req.require_path_param::<i64>("missing").unwrap_err().to_string(),
        "Bad request: Missing required path parameter: missing"
    );
    assert_eq!(
        req.require_path_param::<i64>("slug").unwrap_err().to_string(),
        "Bad request: Invalid value for path parameter: slug"
    );
    assert_eq!(req.query_all("page"), vec!["2"]);
    assert!(req.query_all("none").is_empty());
}

#[test]
fn headers_are_case_insensitive() {
    let req = Request { headers: map(&[("x-api-key", "k1")]), ..Request::default() };
    assert_eq!(req.header("X-API-KEY").unwrap(), "k1");
    assert_eq!(req.require_header("X-Api-Key").unwrap(), "k1");
    assert_eq!(req.header_all("X-Api-Key"), vec!["k1"]);
    let err = req.require_header("Authorization").unwrap_err();
    assert_eq!(err.to_string(), "Bad request: Missing required header: Authorization");
    assert_eq!(req.content_type(), None);
}

#[test]
fn multipart_keeps_binary_files_intact() {
    let mut body =
        b"--Bnd\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nMy \xc3\xa9t\xc3\xa9\r\n"
            .to_vec();
    body.extend_from_slice(
        b"--Bnd\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"x.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n",
    );
    let file_bytes: Vec<u8> = (0u8..=255).chain([b'\r', b'\n', b'-', b'-']).collect();
    body.extend_from_slice(&file_bytes);
    body.extend_from_slice(b"\r\n--Bnd--\r\n");

    let form = MultipartData::parse_bytes(&body, "Bnd").unwrap();
    assert_eq!(form.require_field("title").unwrap(), "My été");
    let file = form.require_file("upload").unwrap();
    assert_eq!(file.filename, "x.bin");
    assert_eq!(file.content_type, "application/octet-stream");
    assert_eq!(file.data, file_bytes);
    assert_eq!(
        form.require_file("title").unwrap_err().to_string(),
        "Bad request: Missing required file: title"
    );
    assert_eq!(
        form.require_field("upload").unwrap_err().to_string(),
        "Bad request: Missing required field: upload"
    );
}

#[test]
fn multipart_request_errors() {
    let plain = Request { headers: map(&[("content-type", "text/plain")]), ..Request::default() };
    assert_eq!(
        plain.multipart().unwrap_err().to_string(),
        "Bad request: Content-Type is not multipart/form-data"
    );
    assert_eq!(
        Request::default().multipart().unwrap_err().to_string(),
        "Bad request: Missing Content-Type header"
    );
    let no_boundary =
        Request { headers: map(&[("content-type", "multipart/form-data")]), ..Request::default() };
    assert_eq!(
        no_boundary.multipart().unwrap_err().to_string(),
        "Bad request: Missing multipart boundary"
    );
    let truncated = Request {
        headers: map(&[("content-type", "multipart/form-data; boundary=\"b\"")]),
        body: Some("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end".into()),
        ..Request::default()
    };
    assert_eq!(truncated.multipart().unwrap_err().status_code(), 400);
}

#[test]
fn json_constructors() {
    for (response, status) in [
        (Response::ok(json!({"a": 1})), 200),
        (Response::created(json!({"a": 1})), 201),
        (Response::accepted(json!({"a": 1})), 202),
        (Response::json(418, json!({"a": 1})), 418),
    ] {
        assert_eq!(response.status, status);
        assert_eq!(response.headers, map(&[("Content-Type", "application/json")]));
        assert_eq!(body_json(&response), json!({"a": 1}));
    }
}

#[test]
fn error_constructors() {
    assert_eq!(body_json(&Response::not_found()), json!({"error": "Not Found"}));
    assert_eq!(Response::not_found().status, 404);
    for (response, status) in [
        (Response::not_found_msg("m"), 404),
        (Response::bad_request("m"), 400),
        (Response::unauthorized("m"), 401),
        (Response::forbidden("m"), 403),
        (Response::conflict("m"), 409),
        (Response::internal_error("m"), 500),
        (Response::service_unavailable("m"), 503),
    ] {
        assert_eq!(response.status, status);
        assert_eq!(response.headers["Content-Type"], "application/json");
        assert_eq!(body_json(&response), json!({"error": "m"}));
    }
}

#[test]
fn other_constructors_and_builders() {
    assert_eq!(Response::new(299), Response { status: 299, headers: HashMap::new(), body: None });
    assert_eq!(Response::no_content(), Response::new(204));
    let text = Response::text(201, "hi");
    assert_eq!((text.status, text.body.as_deref()), (201, Some("hi")));
    assert_eq!(text.headers["Content-Type"], "text/plain; charset=utf-8");
    assert_eq!(Response::html(200, "<p>").headers["Content-Type"], "text/html; charset=utf-8");
    let redirect = Response::redirect(301, "/new");
    assert_eq!((redirect.status, redirect.body), (301, None));
    assert_eq!(redirect.headers, map(&[("Location", "/new")]));

    let cors = Response::new(200).with_cors("https://a.example");
    assert_eq!(
        cors.headers,
        map(&[
            ("Access-Control-Allow-Origin", "https://a.example"),
            ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
        ])
    );
    assert_eq!(
        Response::new(200).with_cache(0).headers["Cache-Control"],
        "no-store, no-cache, must-revalidate"
    );
    assert_eq!(Response::new(200).with_cache(3600).headers["Cache-Control"], "max-age=3600");
    let body = Response::new(200).with_body("x").with_header("X-A", "1");
    assert_eq!((body.body.as_deref(), body.headers["X-A"].as_str()), (Some("x"), "1"));
}

#[test]
fn binary_marks_the_body_as_base64() {
    let response = Response::binary(200, [0u8, 159, 146, 150], "application/pdf");
    assert_eq!(response.body.as_deref(), Some("AJ+Slg=="));
    assert_eq!(response.headers["Content-Type"], "application/pdf");
    assert_eq!(response.headers[BODY_ENCODING_HEADER], "base64");
    assert_eq!(response.binary_body(), Some(vec![0, 159, 146, 150]));
}

#[test]
fn handler_error_statuses_and_texts() {
    let bad_json = serde_json::from_str::<Value>("{").unwrap_err();
    let serde_text = bad_json.to_string();
    let cases: Vec<(HandlerError, u16, String)> = vec![
        (HandlerError::BadRequest("m".into()), 400, "Bad request: m".into()),
        (HandlerError::ValidationError("m".into()), 400, "Validation error: m".into()),
        (HandlerError::Unauthorized("m".into()), 401, "Unauthorized: m".into()),
        (HandlerError::Forbidden("m".into()), 403, "Forbidden: m".into()),
        (HandlerError::NotFound, 404, "Not found".into()),
        (HandlerError::NotFoundMessage("m".into()), 404, "Not found: m".into()),
        (HandlerError::MethodNotAllowed("m".into()), 405, "Method not allowed: m".into()),
        (HandlerError::Conflict("m".into()), 409, "Conflict: m".into()),
        (HandlerError::PayloadTooLarge("m".into()), 413, "Payload too large: m".into()),
        (HandlerError::IpcError("m".into()), 500, "IPC error: m".into()),
        (bad_json.into(), 500, format!("Serialization error: {serde_text}")),
        (HandlerError::DatabaseError("m".into()), 500, "Database error: m".into()),
        (HandlerError::RedisError("m".into()), 500, "Redis error: m".into()),
        (HandlerError::StorageError("m".into()), 500, "Storage error: m".into()),
        (HandlerError::InternalError("m".into()), 500, "Internal error: m".into()),
        (HandlerError::Internal("m".into()), 500, "Internal error: m".into()),
        (HandlerError::ServiceUnavailable("m".into()), 503, "Service unavailable: m".into()),
    ];
    for (err, status, text) in cases {
        assert_eq!(err.status_code(), status, "{text}");
        assert_eq!(err.to_string(), text);
        let detailed = err.detailed_response();
        assert_eq!(detailed.status, status);
        assert_eq!(body_json(&detailed), json!({ "error": text }));
        let response = err.to_response();
        assert_eq!(response.status, status);
        if status < 500 {
            assert_eq!(response, detailed);
        } else {
            let reason =
                if status == 503 { "Service Unavailable" } else { "Internal Server Error" };
            assert_eq!(body_json(&response), json!({ "error": reason }), "{text}");
        }
        assert_eq!(Response::from(err), response);
    }
}

#[test]
fn any_error_can_be_wrapped_and_io_errors_convert_with_question_mark() {
    fn read_config() -> Result<String, HandlerError> {
        Ok(std::fs::read_to_string("/nonexistent/edgebook/config")?)
    }
    let err = read_config().unwrap_err();
    assert_eq!(err.status_code(), 500);
    assert!(err.to_string().starts_with("Internal error: "), "{err}");
    assert!(err.to_string().contains("No such file"), "{err}");

    let parse = "x".parse::<u32>().unwrap_err();
    let wrapped = HandlerError::other(parse.clone());
    assert_eq!(wrapped.to_string(), format!("Internal error: {parse}"));
    assert_eq!(wrapped.to_response().status, 500);

    // A wrapped error's sources are kept in its text (what the endpoint's log receives).
    #[derive(Debug)]
    struct Outer(std::num::ParseIntError);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("reading the port")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let chained = HandlerError::other(Outer(parse.clone()));
    assert_eq!(
        chained.to_string(),
        format!("Internal error: reading the port: caused by: {parse}")
    );
}

/// Code written for the original SDK matches `HandlerError` exhaustively; a variant added here
/// would stop it compiling, so this match lists exactly the original's variants and no `_`.
#[test]
fn an_exhaustive_match_over_the_original_variants_compiles() {
    fn kind(err: &HandlerError) -> &'static str {
        match err {
            HandlerError::BadRequest(_) => "bad request",
            HandlerError::ValidationError(_) => "validation",
            HandlerError::Unauthorized(_) => "unauthorized",
            HandlerError::Forbidden(_) => "forbidden",
            HandlerError::NotFound => "not found",
            HandlerError::NotFoundMessage(_) => "not found",
            HandlerError::MethodNotAllowed(_) => "method",
            HandlerError::Conflict(_) => "conflict",
            HandlerError::PayloadTooLarge(_) => "too large",
            HandlerError::IpcError(_) => "ipc",
            HandlerError::SerializationError(_) => "serialization",
            HandlerError::DatabaseError(_) => "database",
            HandlerError::RedisError(_) => "redis",
            HandlerError::StorageError(_) => "storage",
            HandlerError::InternalError(_) => "internal",
            HandlerError::Internal(_) => "internal",
            HandlerError::ServiceUnavailable(_) => "unavailable",
        }
    }
    assert_eq!(kind(&HandlerError::other(std::fmt::Error)), "internal");
    assert_eq!(
        kind(&HandlerError::from(std::io::Error::new(std::io::ErrorKind::Other, "disk"))),
        "internal"
    );
}

#[test]
fn bad_client_json_through_json_extraction_is_a_400() {
    #[derive(Debug, Deserialize)]
    struct Pet {
        #[allow(dead_code)]
        name: String,
    }
    fn handle(req: Request) -> Result<Response, HandlerError> {
        let edgebook_sdk::Json(pet) = edgebook_sdk::Json::<Pet>::from_request(&req)?;
        Ok(Response::ok(json!({"name": pet.name})))
    }
    let bad = Request { body: Some("{\"name\": 3}".into()), ..Request::default() };
    let response = handle(bad).into_response();
    assert_eq!(response.status, 400);
    assert!(body_json(&response)["error"]
        .as_str()
        .unwrap()
        .starts_with("Bad request: Invalid JSON"));
    let good = Request { body: Some("{\"name\": \"Rex\"}".into()), ..Request::default() };
    let pet: Result<edgebook_sdk::Json<Pet>, _> = (&good).try_into();
    assert_eq!(pet.unwrap().0.name, "Rex");
}

#[test]
fn handler_results_convert_into_responses() {
    let ok: Result<Response, HandlerError> = Ok(Response::text(200, "ok"));
    assert_eq!(ok.into_response().status, 200);
    let err: Result<Response, HandlerError> = Err(HandlerError::Forbidden("no".into()));
    assert_eq!(err.into_response().status, 403);
}

#[test]
fn service_error_kinds_map_to_handler_errors() {
    let status = |kind: &str| error_for(kind, "m".into()).status_code();
    assert!(matches!(error_for("unavailable", "m".into()), HandlerError::ServiceUnavailable(_)));
    assert!(matches!(error_for("timeout", "m".into()), HandlerError::ServiceUnavailable(_)));
    assert!(matches!(error_for("database", "m".into()), HandlerError::DatabaseError(_)));
    assert!(matches!(error_for("redis", "m".into()), HandlerError::RedisError(_)));
    assert!(matches!(error_for("storage", "m".into()), HandlerError::StorageError(_)));
    assert!(matches!(error_for("bad_request", "m".into()), HandlerError::BadRequest(_)));
    assert_eq!(
        error_for("not_bound", "no service 'db'".into()).to_string(),
        "Internal error: service not bound: no service 'db'"
    );
    assert_eq!((status("internal"), status("something-new")), (500, 500));
}

#[test]
fn storage_constructors_match_the_original() {
    let db = Storage::database("default", "pets");
    assert_eq!(
        (db.storage_type, db.table_name.as_deref(), db.base_path),
        (StorageType::Database, Some("pets"), None)
    );
    let objects = Storage::object_storage("s3", "pets/");
    assert_eq!(
        (objects.storage_type, objects.base_path.as_deref()),
        (StorageType::ObjectStorage, Some("pets/"))
    );
    let files = Storage::file_storage("ftp", "/srv");
    assert_eq!(files.storage_type, StorageType::FileStorage);
    assert_eq!(serde_json::to_value(StorageType::ObjectStorage).unwrap(), json!("objectstorage"));
}

#[test]
fn frame_and_worker_errors_name_their_source() {
    use edgebook_sdk::frame::FrameError;
    use edgebook_sdk::ipc::WorkerError;
    use std::error::Error;

    let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
    let err = FrameError::Io(io);
    assert_eq!(err.source().unwrap().to_string(), "pipe closed");
    let worker = WorkerError::Protocol(err);
    assert!(worker.source().unwrap().to_string().starts_with("reading frames failed"));
}

#[test]
fn common_return_types_are_responses() {
    use edgebook_sdk::{Html, Json};

    let text = String::from("hi").into_response();
    assert_eq!((text.status, text.body.as_deref()), (200, Some("hi")));
    assert_eq!(text.headers["Content-Type"], "text/plain; charset=utf-8");
    assert_eq!("static".into_response().body.as_deref(), Some("static"));
    let empty = ().into_response();
    assert_eq!((empty.status, empty.body), (204, None));
    let bytes = vec![0u8, 0xff].into_response();
    assert_eq!(bytes.binary_body(), Some(vec![0u8, 0xff]));
    assert_eq!(bytes.headers["Content-Type"], "application/octet-stream");
    let teapot = (418, "short and stout").into_response();
    assert_eq!((teapot.status, teapot.body.as_deref()), (418, Some("short and stout")));
    let json = Json(json!({"a": [1, 2]})).into_response();
    assert_eq!((json.status, body_json(&json)), (200, json!({"a": [1, 2]})));
    assert_eq!(json.headers["Content-Type"], "application/json");
    let html = (201, Html(String::from("<p>made</p>"))).into_response();
    assert_eq!((html.status, html.body.as_deref()), (201, Some("<p>made</p>")));
    let result: Result<Json<Value>, HandlerError> = Err(HandlerError::NotFound);
    assert_eq!(result.into_response().status, 404);
}

fn multipart_request(body: &str) -> Request {
    Request {
        headers: map(&[("content-type", "multipart/form-data; boundary=\"b;x\"")]),
        body: Some(body.into()),
        ..Request::default()
    }
}

#[test]
fn multipart_keeps_every_part_of_a_repeated_name() {
    let body = "--b;x\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"a.txt\"\r\n\r\nA\r\n\
--b;x\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"b.txt\"\r\n\r\nB\r\n\
--b;x\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\none\r\n\
--b;x\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\ntwo\r\n--b;x--\r\n";
    let req = multipart_request(body);
    let form = req.multipart_form().unwrap();
    let files: Vec<(&str, &[u8])> =
        form.files_all("files[]").iter().map(|f| (f.filename.as_str(), &f.data[..])).collect();
    assert_eq!(files, [("a.txt", &b"A"[..]), ("b.txt", &b"B"[..])]);
    assert_eq!(form.field_all("tag"), ["one", "two"]);
    // The original shape keeps the last one.
    let data = req.multipart().unwrap();
    assert_eq!(data.require_file("files[]").unwrap().filename, "b.txt");
    assert_eq!(data.require_field("tag").unwrap(), "two");
}

#[test]
fn multipart_parameters_are_parsed_not_split() {
    let body = "--b;x\r\ncontent-disposition: form-data; name=\"doc; v2\"; \
filename=\"a;b \\\"q\\\".txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\nE\r\n\
--b;x\r\nContent-Disposition: form-data; name=\"plain\"; filename=\"x;y.bin\"\r\n\r\nP\r\n--b;x--";
    let form = multipart_request(body).multipart_form().unwrap();
    assert_eq!(form.require_file("doc; v2").unwrap().filename, "€ rates.txt");
    assert_eq!(form.require_file("plain").unwrap().filename, "x;y.bin");
}

#[test]
fn multipart_errors_name_the_real_problem() {
    let message = |body: &str| multipart_request(body).multipart().unwrap_err().to_string();
    assert_eq!(
        message("--b;x\r\nContent-Disposition form-data; name=\"a\"\r\n\r\n1\r\n--b;x--"),
        "Bad request: Malformed multipart body: part 1 has a header line without ':': \
\"Content-Disposition form-data; name=\\\"a\\\"\""
    );
    assert_eq!(
        message("--b;x\r\nContent-Type: text/plain\r\n\r\n1\r\n--b;x--"),
        "Bad request: Malformed multipart body: part 1 has no Content-Disposition header"
    );
    assert_eq!(
        message("--b;x\r\nContent-Disposition: form-data; filename=\"f\"\r\n\r\n1\r\n--b;x--"),
        "Bad request: Malformed multipart body: part 1 has a Content-Disposition without a name"
    );
    assert_eq!(
        message("--b;x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"),
        "Bad request: Malformed multipart body: part 1 is not followed by a boundary \
(body cut short?)"
    );
}
