//! The SDK for edgebook handlers: Rust programs that the edgebook gateway runs as
//! long-lived worker processes.
//!
//! A handler is a function from [`Request`] to [`Response`] (or to
//! `Result<Response, HandlerError>`); one of the handler macros turns it into a program
//! that speaks the worker protocol on stdin/stdout (see `docs/protocol.md`). The surface is
//! the original Rust Edge Gateway SDK's, so handlers written for it compile unchanged,
//! also through the crate name `rust_edge_gateway_sdk`.
//!
//! - [`Request`] / [`Response`] / [`HandlerError`]: the HTTP side.
//! - [`DbPool`], [`RedisPool`], [`Storage`], [`ObjectStore`]: services bound to the
//!   endpoint, reached through the gateway (`docs/services.md`).
//! - [`run_with`]: the worker loop over any reader and writer; [`run`] on the real pipes.
//! - Feature `http`: `TryFrom`/`From` conversions between [`Request`]/[`Response`] and
//!   `http::Request<Vec<u8>>`/`http::Response<Vec<u8>>`.
//!
//! # Examples
//!
//! ```no_run
//! use edgebook_sdk::prelude::*;
//!
//! fn handle(req: Request) -> Response {
//!     Response::ok(json!({
//!         "message": "Hello, World!",
//!         "path": req.path,
//!         "method": req.method,
//!     }))
//! }
//!
//! handler_loop!(handle);
//! ```

#![deny(unsafe_op_in_unsafe_fn, missing_docs, rust_2018_idioms, unused_must_use)]
#![warn(
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks,
    clippy::must_use_candidate,
    rustdoc::broken_intra_doc_links
)]

mod body;
mod error;
mod executor;
mod extras;
#[cfg(feature = "http")]
mod http_types;
// The wire format and the worker loop's internals: public for the SDK's own tests and
// tools (`frame_check`), not part of the handler-facing API.
#[doc(hidden)]
pub mod frame;
#[doc(hidden)]
pub mod ipc;
mod lossy;
mod multipart;
mod request;
mod response;
mod services;
mod stdio;

pub use body::{Html, Json};
pub use error::{HandlerError, EXPOSE_ERRORS_ENV};
pub use executor::block_on;
pub use ipc::{read_request, run, run_with, send_response};
pub use multipart::{MultipartData, MultipartFile, MultipartForm};
pub use request::Request;
pub use response::{IntoResponse, Response, BODY_ENCODING_HEADER};
pub use services::{
    call_service, error_for, DbPool, DbResult, EnvVars, ObjectInfo, ObjectStore, RedisPool,
    Storage, StorageType, StoredObject, Transaction,
};

/// Everything a handler usually needs: `use edgebook_sdk::prelude::*;`.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Pet { name: String }
///
/// let value: JsonValue = json!({"name": "Rex"});
/// let pet: Pet = serde_json::from_value(value).unwrap();
/// assert_eq!(Response::ok(&pet).status, 200);
/// ```
pub mod prelude {
    pub use crate::{
        handler_loop, handler_loop_async, handler_loop_async_result, handler_loop_result,
    };
    pub use crate::{
        read_request, send_response, DbPool, DbResult, EnvVars, HandlerError, Html, Json,
        MultipartData, MultipartFile, ObjectStore, RedisPool, Request, Response, Storage,
        StorageType,
    };
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{json, Value as JsonValue};
}

/// Defines `fn main()` running `handler` as a worker.
///
/// The handler may return a [`Response`] or a `Result<Response, HandlerError>` (anything
/// [`IntoResponse`]).
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn handle(req: Request) -> Response {
///     Response::ok(json!({"path": req.path}))
/// }
///
/// handler_loop!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop {
    ($handler:expr $(,)?) => {
        fn main() {
            $crate::run($handler)
        }
    };
}

/// Defines `fn main()` running a `fn(Request) -> Result<Response, HandlerError>` as a worker;
/// an `Err` answers with [`HandlerError::to_response`].
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let id: u64 = req.require_path_param("id")?;
///     Ok(Response::ok(json!({"id": id})))
/// }
///
/// handler_loop_result!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop_result {
    ($handler:expr $(,)?) => {
        fn main() {
            let mut handler = $handler;
            $crate::run(
                move |req: $crate::Request| -> ::std::result::Result<$crate::Response, $crate::HandlerError> {
                    handler(req)
                },
            )
        }
    };
}

/// Defines `fn main()` running an `async fn(Request) -> Response` as a worker, on the
/// SDK's own [`block_on`] (no async runtime crate needed).
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// async fn handle(req: Request) -> Response {
///     Response::text(200, req.method)
/// }
///
/// handler_loop_async!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop_async {
    ($handler:expr $(,)?) => {
        fn main() {
            let mut handler = $handler;
            $crate::run(move |req: $crate::Request| $crate::block_on(handler(req)))
        }
    };
}

/// Defines `fn main()` running an `async fn(Request) -> Result<Response, HandlerError>`
/// as a worker.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// async fn handle(req: Request) -> Result<Response, HandlerError> {
///     let body: JsonValue = req.json()?;
///     Ok(Response::ok(body))
/// }
///
/// handler_loop_async_result!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop_async_result {
    ($handler:expr $(,)?) => {
        fn main() {
            let mut handler = $handler;
            $crate::run(
                move |req: $crate::Request| -> ::std::result::Result<$crate::Response, $crate::HandlerError> {
                    $crate::block_on(handler(req))
                },
            )
        }
    };
}
