//! The middleware around every command and query route of a [`Routes`](crate::Routes): it
//! refuses a body declared larger than the route accepts before any of it is read, and it
//! records the request's duration as OpenTelemetry's HTTP server instrument.

use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::Label;

use crate::metrics::HTTP_SERVER_REQUEST_DURATION;
use crate::problem::{Problem, ProblemCode};

/// Refuses a body declared too large, then runs the route and records how long it took.
pub(crate) async fn edge(
    State(body_limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    // The template the route was registered with (under the prefixes it was nested in), set
    // by the router on a match; `route_layer` runs this on matches only. Never the raw path:
    // `/orders/7` and `/orders/8` are one route, and a label per id would have no end.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let response = match declared_too_large(&request, body_limit) {
        Some(declared) => too_large(declared, body_limit),
        None => next.run(request).await,
    };
    record(start, method, route, &response);
    response
}

/// The body's declared length when it is over `limit`: hyper reports `Content-Length` as the
/// body's exact size before reading a byte of it. A chunked body has no declared length and
/// is counted as it streams (`DefaultBodyLimit`, 413 at the first byte over).
fn declared_too_large(request: &Request, limit: usize) -> Option<u64> {
    let declared = request.body().size_hint().lower();
    (declared > u64::try_from(limit).unwrap_or(u64::MAX)).then_some(declared)
}

/// 413 at once, the body unread: hyper sends no `100 Continue` for it and drops what the
/// client sent, and `Connection: close` tells the client not to send the rest on this
/// connection.
fn too_large(declared: u64, limit: usize) -> Response {
    tracing::debug!(target: "catga_axum", declared, limit, "request body refused by its Content-Length");
    let mut response = Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .with_code("payload_too_large")
        .with_detail(format!(
            "the body is declared {declared} bytes (Content-Length); this route accepts at most {limit}"
        ))
        .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Records `http_server_request_duration_seconds` for one answered request.
fn record(start: Instant, method: &'static str, route: Option<String>, response: &Response) {
    let status = response.status();
    let mut labels = Vec::with_capacity(4);
    labels.push(Label::new("http_request_method", method));
    if let Some(route) = route {
        labels.push(Label::new("http_route", route));
    }
    labels.push(Label::new(
        "http_response_status_code",
        status.as_u16().to_string(),
    ));
    // A problem's `code` is the class of error (a bounded set: catga's codes, the domain's,
    // this crate's); a 5xx without one is named by its status, as OpenTelemetry asks.
    let error_type = match response.extensions().get::<ProblemCode>() {
        Some(ProblemCode(code)) => Some(code.clone()),
        None => status
            .is_server_error()
            .then(|| status.as_u16().to_string()),
    };
    if let Some(error_type) = error_type {
        labels.push(Label::new("error_type", error_type));
    }
    metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, labels).record(start.elapsed());
}

/// `http.request.method` as OpenTelemetry bounds it: the methods of RFC 9110 and PATCH by
/// name, any other as `_OTHER` (a client chooses the method; a label per invented method
/// would have no end).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"PURGE").unwrap_or(Method::GET);
        assert_eq!(method_label(&invented), "_OTHER");
    }
}
