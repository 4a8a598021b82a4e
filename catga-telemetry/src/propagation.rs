//! catga-core's [`TracePropagation`] backed by `tracing-opentelemetry` and W3C trace context.

use std::sync::atomic::{AtomicBool, Ordering};

use catga_core::telemetry::{TraceContext, TracePropagation, install_propagation};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::Error;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Reads and writes a span's OpenTelemetry context as `traceparent`/`tracestate`.
///
/// Stateless: it works with whichever subscriber a span belongs to, so one installation
/// serves every [`TelemetryBuilder::build`](crate::TelemetryBuilder::build) of the process.
#[derive(Debug, Default)]
pub(crate) struct OtelPropagation {
    propagator: TraceContextPropagator,
}

/// Whether this crate installed the process's propagation (catga-core keeps the first).
static OURS: AtomicBool = AtomicBool::new(false);

/// Installs [`OtelPropagation`] in catga-core, once per process; later calls do nothing.
///
/// # Errors
/// [`Error::PropagationTaken`] when something else installed one first.
pub(crate) fn install() -> Result<(), Error> {
    if OURS.load(Ordering::Acquire) {
        return Ok(());
    }
    match install_propagation(OtelPropagation::default()) {
        Ok(()) => {
            OURS.store(true, Ordering::Release);
            Ok(())
        }
        // Two threads building at once: the other one's is ours too.
        Err(_) if OURS.load(Ordering::Acquire) => Ok(()),
        Err(taken) => Err(Error::PropagationTaken(taken)),
    }
}

impl OtelPropagation {
    /// The OpenTelemetry context `remote` describes; an invalid one when it is unreadable.
    fn extract(&self, remote: &TraceContext) -> opentelemetry::Context {
        self.propagator
            .extract_with_context(&opentelemetry::Context::new(), &Headers(remote))
    }
}

impl TracePropagation for OtelPropagation {
    fn inject(&self, span: &Span) -> Option<TraceContext> {
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut headers = Written::default();
        self.propagator.inject_context(&context, &mut headers);
        Some(TraceContext {
            traceparent: headers.traceparent?,
            tracestate: headers.tracestate.filter(|s| !s.is_empty()),
        })
    }

    fn set_parent(&self, span: &Span, context: &TraceContext) {
        let parent = self.extract(context);
        if parent.span().span_context().is_valid() {
            // Fails only for a span without the OpenTelemetry layer or already started, and
            // catga calls this right after creating the span: nothing to do either way.
            let _ = span.set_parent(parent);
        }
    }

    fn add_link(&self, span: &Span, context: &TraceContext) {
        let linked = self.extract(context);
        // `add_link` ignores an invalid context itself.
        span.add_link(linked.span().span_context().clone());
    }
}

/// A received trace context, as the propagator reads headers.
struct Headers<'a>(&'a TraceContext);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(&self.0.traceparent),
            TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The headers the propagator writes.
#[derive(Default)]
struct Written {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_without_the_layer_has_no_context_to_send() {
        let propagation = OtelPropagation::default();
        let span = tracing::info_span!("not recorded");
        assert_eq!(propagation.inject(&span), None);
        // And a parent or link on it is a no-op, not a panic.
        let remote = TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: None,
        };
        propagation.set_parent(&span, &remote);
        propagation.add_link(&span, &remote);
    }

    #[test]
    fn an_unreadable_traceparent_extracts_nothing() {
        let propagation = OtelPropagation::default();
        let garbage = TraceContext {
            traceparent: "not-a-traceparent".into(),
            tracestate: Some("k=v".into()),
        };
        assert!(
            !propagation
                .extract(&garbage)
                .span()
                .span_context()
                .is_valid()
        );
        let good = TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: Some("k=v".into()),
        };
        let context = propagation.extract(&good);
        let span = context.span();
        let remote = span.span_context();
        assert!(remote.is_valid() && remote.is_remote() && remote.is_sampled());
        assert_eq!(
            remote.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(remote.trace_state().header(), "k=v");
    }
}
