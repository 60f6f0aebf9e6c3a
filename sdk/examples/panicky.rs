//! Panics on `/panic`, answers 200 otherwise: the worker must survive its own panics.

use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    if req.path == "/panic" {
        panic!("asked to panic at {}", req.path);
    }
    Ok(Response::ok(json!({"path": req.path})))
}

handler_loop_result!(handle);
