//! From a request's headers to the message's [`Context`].
//!
//! A message dispatched from HTTP gets a context built from a few request headers, by
//! [`ContextRules`]:
//!
//! | request header | in the context |
//! |---|---|
//! | `Idempotency-Key` | the message id, a UUID v5 of the key ([`message_id_for_key`]) |
//! | `traceparent`, `tracestate` | the same headers, if the `traceparent` is valid W3C |
//! | `Request-Timeout` (seconds) | the deadline, capped by the route's maximum |
//! | each name given to [`ContextRules::forward_header`] | a header of that name |
//!
//! Nothing else is copied: a request's headers are the client's to choose, and a handler
//! that reads a context header must be able to trust where it came from, so forwarding is
//! an allow-list. A malformed `Idempotency-Key`, `Request-Timeout` or forwarded header is
//! refused with 400 ([`HeaderError`]); a malformed `traceparent` is ignored, as W3C asks.
//!
//! [`MessageContext`] is the same mapping as an extractor, for handlers of your own.

mod idempotency;
mod timeout;
mod trace;

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::HeaderName;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use catga_core::Context;
use catga_core::envelope::header::RESERVED;

use crate::problem::Problem;

pub use idempotency::{IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_BYTES, message_id_for_key};
pub use timeout::{MAX_TIMEOUT, REQUEST_TIMEOUT};
pub use trace::{TRACEPARENT, TRACESTATE};

/// How a request's headers become the message's [`Context`]; see the
/// [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use axum::http::{HeaderMap, HeaderName, HeaderValue};
/// use catga_axum::ContextRules;
///
/// let rules = ContextRules::new()
///     .timeout(Duration::from_secs(5))
///     .forward_header(HeaderName::from_static("x-tenant"));
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-tenant", HeaderValue::from_static("acme"));
/// headers.insert("x-secret", HeaderValue::from_static("not forwarded"));
/// headers.insert("request-timeout", HeaderValue::from_static("60"));
///
/// let ctx = rules.context(&headers)?;
/// assert_eq!(ctx.header("x-tenant"), Some("acme"));
/// assert_eq!(ctx.header("x-secret"), None);
/// assert!(ctx.remaining() <= Some(Duration::from_secs(5))); // capped by the route
/// # Ok::<(), catga_axum::HeaderError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ContextRules {
    max_timeout: Option<Duration>,
    forwarded: Vec<HeaderName>,
}

impl ContextRules {
    /// No deadline unless the request asks for one, nothing forwarded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest a dispatch may run: the deadline of a request without `Request-Timeout`,
    /// and the cap on one with it. Without it, a request without the header has no deadline
    /// from HTTP (the application's `Timeout` behaviour still applies). At most
    /// [`MAX_TIMEOUT`].
    pub fn timeout(mut self, max: Duration) -> Self {
        self.max_timeout = Some(max.min(MAX_TIMEOUT));
        self
    }

    /// Copies the request header `name` into the context under the same (lower-case) name;
    /// several values are joined with `, `. A value that is not visible ASCII is refused
    /// with 400.
    ///
    /// # Panics
    /// If `name` starts with `catga-`: that namespace is catga's own (a context header there
    /// would pass for one catga set, such as the saga a command comes from).
    #[track_caller]
    pub fn forward_header(mut self, name: HeaderName) -> Self {
        assert!(
            !name.as_str().starts_with(RESERVED),
            "`{name}` cannot be forwarded: headers starting with `{RESERVED}` are reserved for catga"
        );
        if !self.forwarded.contains(&name) {
            self.forwarded.push(name);
        }
        self
    }

    /// The context for a request with `headers`.
    ///
    /// # Errors
    /// [`HeaderError`] if `Idempotency-Key`, `Request-Timeout` or a forwarded header is
    /// malformed.
    pub fn context(&self, headers: &HeaderMap) -> Result<Context, HeaderError> {
        let mut ctx = Context::new();
        if let Some(key) = idempotency::key(headers)? {
            ctx = ctx.with_message_id(message_id_for_key(key));
        }
        let requested = timeout::requested(headers)?;
        let timeout = match (requested, self.max_timeout) {
            (Some(asked), Some(max)) => Some(asked.min(max)),
            (asked, max) => asked.or(max),
        };
        if let Some(timeout) = timeout {
            ctx = ctx.with_timeout(timeout.min(MAX_TIMEOUT));
        }
        if let Some((parent, state)) = trace::trace_context(headers) {
            ctx = ctx.with_header(TRACEPARENT.as_str(), parent);
            if let Some(state) = state {
                ctx = ctx.with_header(TRACESTATE.as_str(), state);
            }
        }
        for name in &self.forwarded {
            if let Some(value) = joined(headers, name)? {
                ctx = ctx.with_header(name.as_str(), value);
            }
        }
        Ok(ctx)
    }
}

/// Every value of `name`, joined with `, `, if each is visible ASCII (spaces and tabs
/// inside allowed).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, HeaderError> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| HeaderError::Forwarded(name.clone()))?;
        match &mut joined {
            Some(all) => {
                all.push_str(", ");
                all.push_str(text);
            }
            None => joined = Some(text.to_string()),
        }
    }
    Ok(joined)
}

/// Why a request's headers could not become a context: answered with 400
/// (`code: invalid_header`, `header`: the header's name).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// `Idempotency-Key` is malformed; the text says how.
    #[error("`Idempotency-Key` is invalid: {0}")]
    IdempotencyKey(&'static str),
    /// `Request-Timeout` is not one positive number of seconds.
    #[error("`Request-Timeout` must be one positive number of seconds, such as `2` or `0.5`")]
    Timeout,
    /// A forwarded header's value is not visible ASCII.
    #[error("header `{0}` must be visible ASCII")]
    Forwarded(HeaderName),
}

impl HeaderError {
    /// The header at fault, in lower case.
    pub fn header(&self) -> &str {
        match self {
            HeaderError::IdempotencyKey(_) => "idempotency-key",
            HeaderError::Timeout => "request-timeout",
            HeaderError::Forwarded(name) => name.as_str(),
        }
    }
}

impl From<HeaderError> for Problem {
    fn from(error: HeaderError) -> Self {
        Problem::new(StatusCode::BAD_REQUEST)
            .with_code("invalid_header")
            .with_detail(error.to_string())
            .with_extension("header", error.header())
    }
}

/// Extracts the message's [`Context`] from the request's headers, for a handler of your
/// own that calls `app.send_with(msg, ctx)`.
///
/// The rules are the request's [`ContextRules`] extension, if a layer added one
/// (`.layer(Extension(rules))`), else [`ContextRules::default`]. Rejects a malformed header
/// with a 400 [`Problem`].
///
/// ```rust,standalone_crate
/// use axum::{Extension, Json, Router, extract::State, routing::post};
/// use catga_axum::{ContextRules, MessageContext, Problem, Reply};
/// use catga_core::prelude::*;
///
/// #[command(output = u64)]
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct PlaceOrder { pub customer: u64 }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("closed")]
/// pub struct Closed;
///
/// #[handler]
/// async fn place(cmd: PlaceOrder) -> Result<u64, Closed> { Ok(cmd.customer) }
///
/// async fn place_order(
///     State(app): State<Catga>,
///     MessageContext(ctx): MessageContext,
///     Json(cmd): Json<PlaceOrder>,
/// ) -> Result<Reply<u64>, Problem> {
///     Ok(Reply(app.send_with(cmd, ctx).await?))
/// }
///
/// # fn main() -> Result<(), catga_core::BuildError> {
/// let app = Catga::builder().build()?;
/// let router: Router = Router::new()
///     .route("/orders", post(place_order))
///     .layer(Extension(ContextRules::new()))
///     .with_state(app);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MessageContext(pub Context);

impl<S: Send + Sync> FromRequestParts<S> for MessageContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let context = match parts.extensions.get::<ContextRules>() {
            Some(rules) => rules.context(&parts.headers),
            None => ContextRules::default().context(&parts.headers),
        };
        Ok(MessageContext(context?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    #[should_panic(expected = "reserved for catga")]
    fn catgas_own_headers_cannot_be_forwarded() {
        let _ = ContextRules::new().forward_header(HeaderName::from_static("catga-saga"));
    }

    #[test]
    fn forwarded_values_are_joined_and_must_be_ascii() {
        let name = HeaderName::from_static("x-tenant");
        let rules = ContextRules::new().forward_header(name.clone());
        let mut headers = HeaderMap::new();
        headers.append(&name, HeaderValue::from_static("a"));
        headers.append(&name, HeaderValue::from_static("b"));
        let ctx = rules.context(&headers).ok();
        assert_eq!(
            ctx.as_ref().and_then(|c| c.header("x-tenant")),
            Some("a, b")
        );
        headers.append(
            &name,
            HeaderValue::from_bytes(b"caf\xe9").unwrap_or(HeaderValue::from_static("")),
        );
        assert!(matches!(
            rules.context(&headers),
            Err(HeaderError::Forwarded(_))
        ));
    }
}
