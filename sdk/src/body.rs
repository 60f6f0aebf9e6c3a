//! Typed bodies: `Json<T>` (a response, and a request body read with a 400 for bad input)
//! and `Html<T>` (a response).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HandlerError;
use crate::request::Request;
use crate::response::{IntoResponse, Response};

/// A JSON body: returned from a handler it answers 200 with `application/json`; taken from
/// a request it parses the body and answers 400 when the client sent bad JSON.
///
/// `serde_json::from_str(..)?` on client input gives a 500 (`?` cannot tell a client's
/// mistake from a server's); `Json::<T>::from_request(&req)?` gives the 400 the client
/// deserves.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
/// use edgebook_sdk::IntoResponse;
///
/// #[derive(Serialize, Deserialize)]
/// struct Pet { name: String }
///
/// fn handle(req: Request) -> Result<Json<Pet>, HandlerError> {
///     let Json(pet) = Json::<Pet>::from_request(&req)?;
///     Ok(Json(Pet { name: pet.name.to_uppercase() }))
/// }
///
/// let good = Request { body: Some(r#"{"name":"rex"}"#.into()), ..Request::default() };
/// let response = handle(good).into_response();
/// assert_eq!((response.status, response.body.as_deref()), (200, Some(r#"{"name":"REX"}"#)));
///
/// let bad = Request { body: Some("{nope".into()), ..Request::default() };
/// assert_eq!(handle(bad).into_response().status, 400);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// Parses the request body as JSON into `T` (a missing body parses as `null`).
    ///
    /// # Errors
    ///
    /// `BadRequest("Invalid JSON: <serde message>")`, as [`Request::json`].
    pub fn from_request(req: &Request) -> Result<Self, HandlerError> {
        req.json().map(Json)
    }
}

impl<T: DeserializeOwned> TryFrom<&Request> for Json<T> {
    type Error = HandlerError;

    fn try_from(req: &Request) -> Result<Self, HandlerError> {
        Json::from_request(req)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(200, self.0)
    }
}

/// An HTML body: answers 200 with `text/html; charset=utf-8`.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::{Html, IntoResponse};
///
/// let response = Html("<h1>hi</h1>").into_response();
/// assert_eq!(response.headers["Content-Type"], "text/html; charset=utf-8");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Html<T>(pub T);

impl<T: Into<String>> IntoResponse for Html<T> {
    fn into_response(self) -> Response {
        Response::html(200, self.0)
    }
}
