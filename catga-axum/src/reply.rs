//! A handler's reply as an HTTP response.
//!
//! A reply is its JSON with 200 OK; a command without output (a reply of type `()`) has
//! nothing to say and answers 204 No Content. The JSON is the output's own serde form: an
//! `Option` that is `None` is `null` with 200, not a 404 (a handler that means "not found"
//! returns a domain error with a code, mapped to 404 with
//! [`Routes::map_code`](crate::Routes::map_code)).

use std::any::TypeId;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::problem::Problem;

/// The media type of a reply.
const JSON: &str = "application/json";

/// A reply: `T` as JSON with 200, or 204 No Content when `T` is `()`.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use catga_axum::Reply;
///
/// assert_eq!(Reply(42u64).into_response().status(), StatusCode::OK);
/// assert_eq!(Reply(()).into_response().status(), StatusCode::NO_CONTENT);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply<T>(pub T);

impl<T: Serialize + 'static> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        if TypeId::of::<T>() == TypeId::of::<()>() {
            return StatusCode::NO_CONTENT.into_response();
        }
        // Encoded here, not by `Json`'s response: an output whose `Serialize` fails (a map
        // with non-string keys, a custom impl) is a problem+json 500 like every other error.
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(CONTENT_TYPE, HeaderValue::from_static(JSON))], body).into_response(),
            Err(error) => {
                tracing::error!(target: "catga_axum", error = %error, output = std::any::type_name::<T>(),
                    "a reply could not be encoded as JSON; answered 500");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                    .with_code("reply_encoding")
                    .with_detail("the reply could not be encoded")
                    .into_response()
            }
        }
    }
}
