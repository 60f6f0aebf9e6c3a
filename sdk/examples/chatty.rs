//! Prints a lot to stdout before answering: the prints must go to stderr, not the frames.

use edgebook_sdk::prelude::*;

async fn handle(req: Request) -> Response {
    for line in 0..200 {
        println!("chatty: line {line} while handling {} {}", req.method, req.path);
    }
    print!("no newline at the end, ");
    println!("{}", "x".repeat(10_000));
    Response::text(200, format!("done with {}", req.path))
}

handler_loop_async!(handle);
