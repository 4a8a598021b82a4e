//! `/metrics`: the application's metrics in the Prometheus text format.
//!
//! catga records its metrics through the `metrics` facade; an exporter installed by the
//! application renders them. This crate depends on no exporter: the route serves whatever
//! a render function returns, such as the `render` method of
//! `metrics_exporter_prometheus::PrometheusHandle`:
//!
//! ```ignore
//! let handle = PrometheusBuilder::new().install_recorder()?;
//! let routes = Routes::new(app).metrics(move || handle.render());
//! ```
//!
//! The command and query routes of a [`Routes`](crate::Routes) record one metric of their own
//! through the same facade: [`HTTP_SERVER_REQUEST_DURATION`], OpenTelemetry's
//! `http.server.request.duration`. With catga-telemetry's Prometheus recorder it has catga's
//! buckets, as every `_seconds` histogram does.

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The histogram of every request a command or query route of a [`Routes`](crate::Routes)
/// answers, in seconds: OpenTelemetry's `http.server.request.duration` in its Prometheus
/// spelling. Labels: `http_request_method` (`_OTHER` for a method outside RFC 9110 and
/// PATCH), `http_route` (the route's template, such as `/api/orders/{id}`, never the raw
/// path), `http_response_status_code`, and `error_type` on a problem (its `code`) or another
/// 5xx (the status code). The probes (`/livez`, `/readyz`, `/metrics`) are not recorded.
///
/// Measured from when the route receives the request until its response is ready (the
/// reply is encoded by then; sending it is not counted).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";

/// The Prometheus text exposition format, version 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A function that renders the metrics as text, shared by every request.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync + 'static>;

/// The metrics as `render` gives them, 200, [`PROMETHEUS_TEXT`].
pub(crate) fn metrics(render: &Render) -> Response {
    let body = render();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
