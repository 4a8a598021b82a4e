//! The seam between `tracing` spans and OpenTelemetry contexts.

use std::sync::OnceLock;

use tracing::Span;

/// A W3C trace context as it travels with a message: the `traceparent` and `tracestate`
/// header values (<https://www.w3.org/TR/trace-context/>).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
    pub traceparent: String,
    /// `tracestate`, if any: vendor entries, passed on as received.
    pub tracestate: Option<String>,
}

/// Links catga's spans to OpenTelemetry contexts. `tracing` spans have no W3C identity of
/// their own; an application that exports traces installs one implementation with
/// [`install_propagation`] (`catga-telemetry` installs one backed by
/// `tracing-opentelemetry`). catga calls it only for spans that are enabled.
pub trait TracePropagation: Send + Sync + 'static {
    /// The trace context of `span`, to send with the message it produces. `None` when the
    /// span has none (no OpenTelemetry layer records it).
    fn inject(&self, span: &Span) -> Option<TraceContext>;

    /// Makes the remote `context` the parent of `span`, which has not been entered yet. An
    /// unreadable `traceparent` leaves `span` as it is (the W3C rule: ignore it).
    fn set_parent(&self, span: &Span, context: &TraceContext);

    /// Adds a link from `span` to the remote `context` (a consumer span to the producer's).
    fn add_link(&self, span: &Span, context: &TraceContext);
}

/// [`install_propagation`] was called before: a process has one propagation.
#[derive(Debug, thiserror::Error)]
#[error("a trace propagation is already installed in this process")]
pub struct AlreadyInstalled;

static PROPAGATION: OnceLock<Box<dyn TracePropagation>> = OnceLock::new();

/// Installs the process's trace propagation.
///
/// # Errors
/// [`AlreadyInstalled`] if one was installed before (the first one stays).
pub fn install_propagation(propagation: impl TracePropagation) -> Result<(), AlreadyInstalled> {
    PROPAGATION
        .set(Box::new(propagation))
        .map_err(|_| AlreadyInstalled)
}

/// The installed propagation, if any: one atomic load.
pub(crate) fn installed() -> Option<&'static dyn TracePropagation> {
    PROPAGATION.get().map(|p| &**p)
}
