//! From a catga [`Error`] to an HTTP status and a [`Problem`].
//!
//! The mapping reads the error's stable [`code`](Error::code) (and the facts the error
//! carries: the field errors of a validation failure, how long a rate limit or an open
//! circuit lasts), so an error reads the same whether its handler ran in this process or in
//! another one behind a transport.
//!
//! | code | status | members and headers |
//! |---|---|---|
//! | `validation` | 422 | `errors`: `[{"field", "message"}]` |
//! | `timeout` | 504 | |
//! | `rate_limited` | 429 | `Retry-After` |
//! | `overloaded`, `circuit_open` | 503 | `Retry-After` |
//! | `cancelled`, `store` | 503 | |
//! | `transport` | 504 if no reply came in time, 503 if retrying may help, else 500 | |
//! | a domain code mapped with [`ErrorMap::map_code`] | the status given | `details` (for a 4xx), if the error has them |
//! | anything else (`handler`, an unmapped domain code, `no_handler`, `panic`, …) | 500 | |
//!
//! Every problem has the `code` extension and, when the dispatch's message id is known, an
//! `instance` of `urn:uuid:<message id>`. A 5xx problem never carries the error's text (it
//! may name handlers, hosts or queries); it is logged instead, with its code and message id.
//!
//! **A domain code is 500 until mapped.** A handler error type with its own code
//! ([`ErrorCode`](catga_core::ErrorCode)) may be a business refusal (`orders.out_of_stock`:
//! 409) or a failure of the service (`billing.ledger_unavailable`: 503); only the
//! application knows which, and guessing a 4xx would tell clients their request was wrong
//! and not to retry it. Unmapped, it is a server error, visible in monitoring, and the log
//! line says how to map it.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::StatusCode;
use catga_core::transport::TransportError;
use catga_core::{Error, ErrorKind};
use uuid::Uuid;

use crate::problem::Problem;

/// The `Retry-After` sent when the error does not say how long to wait.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How catga errors become problems: the default table (see the [module docs](self)) and
/// the application's own statuses for its domain codes.
///
/// ```
/// use axum::http::StatusCode;
/// use catga_axum::ErrorMap;
/// use catga_core::{Error, ErrorCode};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("out of stock")]
/// struct OutOfStock;
///
/// impl ErrorCode for OutOfStock {
///     fn code(&self) -> &'static str { "orders.out_of_stock" }
/// }
///
/// let map = ErrorMap::new().map_code("orders.out_of_stock", StatusCode::CONFLICT);
/// let error = Error::from_handler_coded("PlaceOrder", "orders::place", OutOfStock);
/// assert_eq!(map.status(&error), StatusCode::CONFLICT);
/// assert_eq!(ErrorMap::new().status(&error), StatusCode::INTERNAL_SERVER_ERROR);
/// ```
#[derive(Clone, Debug)]
pub struct ErrorMap {
    codes: Vec<(Cow<'static, str>, StatusCode)>,
    default_retry_after: Duration,
}

impl Default for ErrorMap {
    fn default() -> Self {
        ErrorMap {
            codes: Vec::new(),
            default_retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

impl ErrorMap {
    /// The default table, no domain code mapped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers errors whose [`code`](Error::code) is `code` with `status`, replacing an
    /// earlier mapping of that code. Meant for domain codes; a catga code (`validation`,
    /// `timeout`, …) may be remapped too.
    ///
    /// A problem with a mapped status of 4xx carries the error's
    /// [`details`](Error::details) as the `details` extension: a domain error's details are
    /// meant for callers. Neither a 4xx nor a 5xx carries the error's text.
    pub fn map_code(mut self, code: impl Into<Cow<'static, str>>, status: StatusCode) -> Self {
        let code = code.into();
        match self.codes.iter_mut().find(|(known, _)| *known == code) {
            Some(slot) => slot.1 = status,
            None => self.codes.push((code, status)),
        }
        self
    }

    /// The `Retry-After` for a rate limit, shed load or an open circuit whose error does not
    /// say how long to wait (it came from another process), [`DEFAULT_RETRY_AFTER`] unless
    /// set.
    pub fn default_retry_after(mut self, after: Duration) -> Self {
        self.default_retry_after = after;
        self
    }

    /// The status `error` is answered with.
    pub fn status(&self, error: &Error) -> StatusCode {
        let code = error.code();
        if let Some((_, status)) = self.codes.iter().find(|(known, _)| known == code) {
            return *status;
        }
        match code {
            "validation" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" => StatusCode::GATEWAY_TIMEOUT,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            "overloaded" | "circuit_open" | "cancelled" | "store" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            "transport" => transport_status(error),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem `error` is answered with; see the [module docs](self). Logs the error
    /// (its text included) at `error` level for a 500, `warn` for another 5xx, `debug`
    /// otherwise.
    pub fn problem(&self, error: &Error) -> Problem {
        self.problem_of(error, None)
    }

    /// [`problem`](Self::problem) for the dispatch whose message id is `message_id`: its
    /// `instance` is `urn:uuid:<message id>`, and the log line carries the id.
    pub fn problem_for(&self, error: &Error, message_id: Uuid) -> Problem {
        self.problem_of(error, Some(message_id))
    }

    fn problem_of(&self, error: &Error, message_id: Option<Uuid>) -> Problem {
        let status = self.status(error);
        let code = error.code();
        log(error, status, message_id);
        let mut problem = Problem::new(status).with_code(code);
        if let Some(id) = message_id {
            problem = problem.with_instance(format!("urn:uuid:{id}"));
        }
        if let Some(errors) = error.validation_errors() {
            let fields = serde_json::to_value(errors.errors()).unwrap_or_default();
            let count = errors.len();
            let noun = if count == 1 { "field is" } else { "fields are" };
            return problem
                .with_detail(format!("{count} {noun} invalid"))
                .with_extension("errors", fields);
        }
        if let Some(after) = self.retry_after(error) {
            problem = problem.with_retry_after(after);
        }
        if status.is_client_error()
            && let Some(details) = error.details()
        {
            problem = problem.with_extension("details", details.clone());
        }
        match generic_detail(status, code) {
            Some(detail) => problem.with_detail(detail),
            None => problem,
        }
    }

    /// How long a client should wait before trying again, for the refusals that say so.
    fn retry_after(&self, error: &Error) -> Option<Duration> {
        match error.kind() {
            ErrorKind::RateLimited { retry_after, .. }
            | ErrorKind::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => matches!(error.code(), "rate_limited" | "circuit_open" | "overloaded")
                .then_some(self.default_retry_after),
        }
    }
}

/// A transport failure: no reply in time is a gateway timeout; what may pass on a retry
/// (an unreachable broker, nobody serving yet) is unavailability; the rest is an error.
fn transport_status(error: &Error) -> StatusCode {
    match error.kind() {
        ErrorKind::Transport {
            source: TransportError::Timeout(_),
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        _ if error.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A detail that says what happened without anything from the error's text; none for a
/// refusal with a code of the application's own (its code and details say it all).
fn generic_detail(status: StatusCode, code: &str) -> Option<&'static str> {
    Some(match code {
        "timeout" => "the request did not finish before its deadline",
        "rate_limited" => "too many requests; try again after the delay in `Retry-After`",
        "overloaded" => "the service is at capacity; try again after the delay in `Retry-After`",
        "circuit_open" => {
            "the service is refusing requests while it recovers; try again after the delay in `Retry-After`"
        }
        "in_doubt" => "the request may or may not have taken effect",
        _ if status.is_server_error() => "the request could not be handled",
        _ => return None,
    })
}

fn log(error: &Error, status: StatusCode, message_id: Option<Uuid>) {
    let code = error.code();
    let status = status.as_u16();
    let message_id = message_id.map(tracing::field::display);
    match status {
        500 if error.is_domain() => tracing::error!(target: "catga_axum", status, code, message_id,
            error = %error,
            "a handler's domain error has no HTTP status; answered 500 (map its code with `map_code`)"),
        500 => tracing::error!(target: "catga_axum", status, code, message_id, error = %error,
            "request failed; answered 500"),
        501.. => tracing::warn!(target: "catga_axum", status, code, message_id, error = %error,
            "request failed"),
        _ => tracing::debug!(target: "catga_axum", status, code, message_id, error = %error,
            "request refused"),
    }
}

impl From<Error> for Problem {
    /// The problem of [`ErrorMap::default`] (no domain code mapped): what `?` on
    /// `app.send(…)` gives in a handler that returns `Result<_, Problem>`.
    fn from(error: Error) -> Self {
        ErrorMap::default().problem(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(kind: ErrorKind) -> Error {
        Error::from(kind)
    }

    #[test]
    fn refusals_carry_how_long_to_wait() {
        let map = ErrorMap::new();
        let limited = kind(ErrorKind::RateLimited {
            message: "X",
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(map.status(&limited), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            map.problem(&limited).retry_after(),
            Some(Duration::from_millis(1500))
        );
        let shed = kind(ErrorKind::Overloaded {
            message: "X",
            in_flight: 1,
            queue: 0,
        });
        assert_eq!(map.status(&shed), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(map.problem(&shed).retry_after(), Some(DEFAULT_RETRY_AFTER));
    }

    #[test]
    fn a_transport_timeout_is_a_gateway_timeout() {
        let error = kind(ErrorKind::Transport {
            message: "X".into(),
            transport: "memory",
            source: TransportError::Timeout(Duration::from_secs(1)),
        });
        assert_eq!(ErrorMap::new().status(&error), StatusCode::GATEWAY_TIMEOUT);
        let closed = kind(ErrorKind::Transport {
            message: "X".into(),
            transport: "memory",
            source: TransportError::TooLarge { size: 2, limit: 1 },
        });
        assert_eq!(
            ErrorMap::new().status(&closed),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_server_error_never_shows_the_errors_text() {
        let error = kind(ErrorKind::Internal {
            message: "X",
            what: "secret detail",
        });
        let problem = ErrorMap::new().problem(&error);
        let json = serde_json::to_string(&problem).unwrap_or_default();
        assert!(!json.contains("secret"), "{json}");
        assert_eq!(problem.code(), Some("internal"));
    }
}
