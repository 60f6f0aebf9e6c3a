//! Echoes what it received, for gateway tests.
//!
//! With `?meta` in the query it answers JSON describing the request (every query value,
//! every header value, params, client ip, request id, body length); otherwise it answers
//! the exact body bytes with the request's content type.

use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    if req.query.contains_key("meta") {
        let query_all: JsonValue =
            req.query.keys().map(|k| (k.clone(), json!(req.query_all(k)))).collect();
        let headers_all: JsonValue =
            req.headers.keys().map(|k| (k.clone(), json!(req.header_all(k)))).collect();
        return Response::ok(json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "query_all": query_all,
            "headers_all": headers_all,
            "params": req.params,
            "client_ip": req.client_ip,
            "request_id": req.request_id,
            "content_type": req.content_type(),
            "body_len": req.body_bytes().len(),
        }));
    }
    let content_type =
        req.content_type().cloned().unwrap_or_else(|| "application/octet-stream".to_owned());
    Response::binary(200, req.body_bytes(), content_type)
}

handler_loop!(handle);
