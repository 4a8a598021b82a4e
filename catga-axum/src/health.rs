//! `/livez` and `/readyz`: the probes an orchestrator sends.
//!
//! `/livez` answers 200 whenever the process serves HTTP: it runs no check and does no I/O,
//! so a slow broker or database never gets a live process restarted. `/readyz` answers from
//! [`Catga::health`](catga_core::Catga::health), built from what the application's parts
//! last knew (no I/O either): 200 when every check is up, 503 when one is down, with the
//! report as JSON either way:
//!
//! ```json
//! {"live": true, "ready": false,
//!  "checks": [{"name": "transport", "status": "up"},
//!             {"name": "database", "status": "down", "reason": "pool exhausted"}]}
//! ```
//!
//! The reasons are for operators; mount these routes where operators reach them, not on a
//! public listener, if a reason could say more than the public should read.

use axum::Json;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use catga_core::health::{CheckStatus, HealthReport};
use serde::Serialize;

/// A probe's answer must be fresh: no cache along the way may keep it.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The liveness answer: 200, `{"live":true}`.
pub(crate) async fn livez() -> Response {
    fresh(StatusCode::OK, Json(Live { live: true }))
}

/// The readiness answer for `report`: 200 if ready, else 503; the report as JSON.
pub(crate) fn readyz(report: &HealthReport) -> Response {
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Ready {
        live: report.live,
        ready: report.ready,
        checks: report
            .checks
            .iter()
            .map(|check| Check {
                name: &check.name,
                status: if check.status.is_up() { "up" } else { "down" },
                reason: match &check.status {
                    CheckStatus::Down(why) => Some(why),
                    CheckStatus::Up => None,
                },
            })
            .collect(),
    };
    fresh(status, Json(body))
}

fn fresh(status: StatusCode, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    response
}

#[derive(Serialize)]
struct Live {
    live: bool,
}

#[derive(Serialize)]
struct Ready<'a> {
    live: bool,
    ready: bool,
    checks: Vec<Check<'a>>,
}

#[derive(Serialize)]
struct Check<'a> {
    name: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}
