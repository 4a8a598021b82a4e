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

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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
