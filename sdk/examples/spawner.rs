//! Starts a child process that inherits stdin and stdout, and reads stdin itself: neither
//! may see or disturb the protocol's frames.

use std::io::Read;
use std::process::Command;

use edgebook_sdk::prelude::*;

fn handle(req: Request) -> Response {
    if req.path != "/spawn" {
        return Response::text(200, format!("after {}", req.path));
    }
    // `cat` with inherited stdio copies whatever it can read from fd 0 to fd 1.
    let child_ok = Command::new("cat").status().is_ok_and(|status| status.success());
    let mut own = Vec::new();
    let stdin_bytes = std::io::stdin().read_to_end(&mut own).ok();
    Response::ok(json!({"child_ok": child_ok, "stdin_bytes": stdin_bytes}))
}

handler_loop!(handle);
