//! Requests refused before a message exists: a body or query string that is not the
//! message, a body too large, a path or method nobody serves. Each is a [`Problem`] with a
//! `code` of its own.
//!
//! | what | status | `code` |
//! |---|---|---|
//! | an empty body with `Content-Type: application/json` | 400 | `invalid_json` |
//! | a body that is not JSON (the detail says where: line and column) | 400 | `invalid_json` |
//! | JSON that is not the message (a missing field, a wrong type; the detail names the field) | 400 | `invalid_body` |
//! | a query string that is not the query | 400 | `invalid_query` |
//! | no `Content-Type: application/json` (or `application/…+json`), body or not | 415 | `unsupported_media_type` |
//! | a body over the route's limit (by its `Content-Length` before it is read, or as it streams) | 413 | `payload_too_large` |
//! | no route for the path ([`not_found`], a fallback you opt into) | 404 | `not_found` |
//! | a path served, but not for this method | 405, with `Allow` | `method_not_allowed` |
//!
//! JSON that is not the message is 400, like a syntax error, not the 422 axum's own `Json`
//! answers: 422 is the message's own [validation](catga_core::Validate), with its list of
//! fields, and a client tells the two apart by status.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;

use crate::problem::Problem;

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let (status, code) = match &rejection {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            JsonRejection::MissingJsonContentType(_) => return unsupported_media_type(),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => (status, "payload_too_large"),
            _ => (status, "invalid_body"),
        };
        let detail = match code {
            "payload_too_large" => "the body is larger than this route accepts".to_string(),
            _ => rejection.body_text(),
        };
        tracing::debug!(target: "catga_axum", status = status.as_u16(), code, detail, "request body refused");
        Problem::new(status).with_code(code).with_detail(detail)
    }
}

/// 415: the request's media type is not JSON (or it has none), whatever its body.
pub(crate) fn unsupported_media_type() -> Problem {
    tracing::debug!(target: "catga_axum", "request body refused: not JSON by its media type");
    Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .with_code("unsupported_media_type")
        .with_detail("expected a JSON body with `Content-Type: application/json`")
}

/// 400 `invalid_json`: a JSON media type with an empty body, which is not a JSON document
/// (a message without fields is `{}`).
pub(crate) fn empty_body() -> Problem {
    tracing::debug!(target: "catga_axum", "request body refused: empty");
    Problem::new(StatusCode::BAD_REQUEST)
        .with_code("invalid_json")
        .with_detail(
            "the body is empty; expected the message as JSON (`{}` for one without fields)",
        )
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        let detail = rejection.body_text();
        tracing::debug!(target: "catga_axum", detail, "query string refused");
        Problem::new(StatusCode::BAD_REQUEST)
            .with_code("invalid_query")
            .with_detail(detail)
    }
}

/// A 404 problem (`code: not_found`), for `Router::fallback`: answers requests no route
/// matched with problem+json rather than axum's empty 404.
///
/// ```
/// use axum::Router;
///
/// let router: Router = Router::new().fallback(catga_axum::not_found);
/// ```
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND)
        .with_code("not_found")
        .with_detail("no route matches this path")
}

/// A 405 problem (`code: method_not_allowed`), for `Router::method_not_allowed_fallback`
/// on your own routes (the routes of [`Routes`](crate::Routes) answer this way already).
/// axum adds the `Allow` header.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let router: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .method_not_allowed_fallback(catga_axum::method_not_allowed);
/// ```
pub async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_code("method_not_allowed")
        .with_detail("this path does not accept this method; see `Allow`")
}
