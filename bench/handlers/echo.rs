//! Echo: answers the request body's exact bytes with the request's content type
//! (JSON bodies come back as JSON, binary bodies as binary).
use edgebook_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let content_type = req
        .content_type()
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    Response::binary(200, req.body_bytes(), content_type)
}

handler_loop!(handle);
