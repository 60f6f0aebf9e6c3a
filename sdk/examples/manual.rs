//! A handler that writes its own loop with `read_request` and `send_response`.

use rust_edge_gateway_sdk::prelude::*;

fn main() {
    let mut served = 0u32;
    while let Ok(req) = read_request() {
        served += 1;
        println!("manual loop: request {served}");
        let response = Response::ok(json!({"path": req.path, "served": served}));
        if send_response(response).is_err() {
            break;
        }
    }
}
