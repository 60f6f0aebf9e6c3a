//! The original SDK's crate name, so handler code written for Rust Edge Gateway compiles
//! unchanged: `use rust_edge_gateway_sdk::prelude::*;` resolves to [`edgebook_sdk::prelude`].
//!
//! Everything here is a re-export of `edgebook-sdk`; the handler macros expand to
//! `$crate::` paths of that crate, so they work through this name too.
//!
//! # Examples
//!
//! ```no_run
//! use rust_edge_gateway_sdk::prelude::*;
//!
//! fn handle(req: Request) -> Response {
//!     Response::ok(json!({"path": req.path}))
//! }
//!
//! handler_loop!(handle);
//! ```

pub use edgebook_sdk::*;
