//! The producer and consumer spans and instruments around a transport (see the module docs).

use std::borrow::Cow;
use std::time::Instant;

use metrics::Label;

use tracing::Span;
use tracing::field::{Empty, display};

use super::metric;
use super::propagation::{TraceContext, installed};
use crate::envelope::Envelope;

/// The conventions' `messaging.system` for a transport named `transport`: `catga` for the
/// in-process one.
pub(crate) fn system(transport: &'static str) -> &'static str {
    if transport == "memory" {
        "catga"
    } else {
        transport
    }
}

/// The span and clock around one message handed to a transport.
pub(crate) struct Produced {
    pub(crate) span: Span,
    started: Instant,
    system: &'static str,
    operation: &'static str,
    /// The wire name: borrowed for a message this process declared.
    destination: Cow<'static, str>,
}

impl Produced {
    /// Opens the producer span for `envelope`, about to be handed to `transport`; with a
    /// [`TracePropagation`](super::TracePropagation) installed, the envelope then carries the
    /// span's context. Without a subscriber for target `catga` the span is disabled and only
    /// the clock runs.
    pub(crate) fn start(transport: &'static str, envelope: &mut Envelope) -> Produced {
        let system = system(transport);
        let operation = if envelope.kind.is_request() {
            "send"
        } else {
            "publish"
        };
        let span = tracing::info_span!(
            target: "catga",
            "catga.produce",
            otel.name = Empty,
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = system,
            messaging.destination.name = &*envelope.name,
            messaging.operation.type = "send",
            messaging.operation.name = operation,
            messaging.message.id = Empty,
            messaging.message.conversation_id = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("{operation} {}", envelope.name));
            span.record("messaging.message.id", display(envelope.id));
            span.record(
                "messaging.message.conversation_id",
                display(envelope.correlation_id),
            );
            if let Some(propagation) = installed() {
                // Inside a span (a handler's, an HTTP request's) the producer is its child;
                // outside any (a relay, a scheduler) it continues the envelope's own trace.
                if Span::current().is_none() {
                    propagation.set_parent(&span, &remote(envelope));
                }
                if let Some(own) = propagation.inject(&span) {
                    envelope.traceparent = Some(own.traceparent);
                    envelope.tracestate = own.tracestate;
                }
            }
        }
        Produced {
            span,
            started: Instant::now(),
            system,
            operation,
            destination: envelope.name.clone(),
        }
    }

    /// Records the outcome: `error` is the failure's code.
    pub(crate) fn finish(self, error: Option<&str>) {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(code) = error {
            self.span.record("error.type", code);
            self.span.record("otel.status_code", "ERROR");
        }
        record(
            metric::CLIENT_OPERATION_DURATION,
            metric::CLIENT_SENT_MESSAGES,
            [self.system, self.operation],
            self.destination,
            error,
            seconds,
        );
    }
}

/// The span and clock around one delivery from a transport.
pub(crate) struct Consumed {
    pub(crate) span: Span,
    started: Instant,
    system: &'static str,
    /// The wire name, as received.
    destination: Cow<'static, str>,
}

impl Consumed {
    /// Opens the consumer span for `envelope`, delivered by `transport` to `service`: the
    /// producer's context is its parent and its link.
    pub(crate) fn start(transport: &'static str, service: &str, envelope: &Envelope) -> Consumed {
        let system = system(transport);
        let span = tracing::info_span!(
            target: "catga",
            parent: None,
            "catga.consume",
            otel.name = Empty,
            otel.kind = "consumer",
            otel.status_code = Empty,
            messaging.system = system,
            messaging.destination.name = &*envelope.name,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.consumer.group.name = service,
            messaging.message.id = Empty,
            messaging.message.conversation_id = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("process {}", envelope.name));
            span.record("messaging.message.id", display(envelope.id));
            span.record(
                "messaging.message.conversation_id",
                display(envelope.correlation_id),
            );
            if let Some(propagation) = installed() {
                let producer = remote(envelope);
                propagation.set_parent(&span, &producer);
                propagation.add_link(&span, &producer);
            }
        }
        Consumed {
            span,
            started: Instant::now(),
            system,
            destination: envelope.name.clone(),
        }
    }

    /// Records the outcome: `error` is the failure's code.
    pub(crate) fn finish(self, error: Option<&str>) {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(code) = error {
            self.span.record("error.type", code);
            self.span.record("otel.status_code", "ERROR");
        }
        record(
            metric::PROCESS_DURATION,
            metric::CLIENT_CONSUMED_MESSAGES,
            [self.system, "process"],
            self.destination,
            error,
            seconds,
        );
    }
}

/// The trace context an envelope travels under (its own or the conversation's).
fn remote(envelope: &Envelope) -> TraceContext {
    TraceContext {
        traceparent: envelope.trace_parent().into_owned(),
        tracestate: envelope.tracestate.clone(),
    }
}

fn record(
    duration: &'static str,
    count: &'static str,
    [system, operation]: [&'static str; 2],
    destination: Cow<'static, str>,
    error: Option<&str>,
    seconds: f64,
) {
    // Borrowed labels where they can be: a wire name this process declared is `'static`.
    // One vector per message, on a path that waits for a broker.
    let mut labels = Vec::with_capacity(4);
    labels.push(Label::from_static_parts("messaging_system", system));
    labels.push(Label::new("messaging_destination_name", destination));
    labels.push(Label::from_static_parts(
        "messaging_operation_name",
        operation,
    ));
    if let Some(code) = error {
        labels.push(Label::new("error_type", code.to_string()));
    }
    metrics::counter!(count, labels.clone()).increment(1);
    metrics::histogram!(duration, labels).record(seconds);
}
