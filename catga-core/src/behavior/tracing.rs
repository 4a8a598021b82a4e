//! A `tracing` span around every dispatch.

use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::context::Context;
use crate::envelope::header::{TRACEPARENT, TRACESTATE};
use crate::error::Error;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::telemetry::TraceContext;
use crate::telemetry::installed;

/// Opens an `INFO` span `catga.dispatch` per dispatch (per handler, for events), named and
/// attributed after OpenTelemetry's messaging conventions (see [`telemetry`](crate::telemetry)):
/// `otel.name` `dispatch <message>`, `otel.kind` `internal`, `messaging.system` `catga`,
/// `messaging.destination.name` (the wire name), `messaging.operation.type` `process`,
/// `messaging.operation.name` `dispatch`, `messaging.message.id`,
/// `messaging.message.conversation_id` (the correlation id), and catga's own
/// `catga.message.kind`, `catga.causation_id`, `catga.attempt` and `catga.outcome` (`ok` or
/// the error's [`code`](crate::Error::code)). A failure also sets `error.type` (the code) and
/// `otel.status_code` `ERROR`, and is logged as an event inside the span: `INFO` for a
/// request refused as the caller's (a validation failure, a handler's own coded error:
/// [`Error::is_domain`](crate::Error::is_domain)), `WARN` for anything else.
///
/// It spans the behaviours and what they wrap: the handler here, or the send to another
/// process (whose producer span is its child; the handling process opens its own dispatch
/// span under its consumer span).
///
/// Inside another span (a delivery's consumer span, an HTTP request's) it is that span's
/// child. Outside any, with a [`TracePropagation`](crate::telemetry::TracePropagation)
/// installed, its parent is the context's `traceparent` header, if it has one.
///
/// When no subscriber listens at `INFO` for target `catga`, the behaviour checks one cached
/// flag and does nothing else; in particular no message id is minted for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tracing;

impl Behavior for Tracing {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        if msg
            .info()
            .policy()
            .skip
            .contains(crate::policy::Skip::TRACING)
        {
            return next.run(msg).await;
        }
        let info = msg.info();
        let span = tracing::info_span!(
            target: "catga",
            "catga.dispatch",
            otel.name = Empty,
            otel.kind = "internal",
            otel.status_code = Empty,
            messaging.system = "catga",
            messaging.destination.name = info.name(),
            messaging.operation.type = "process",
            messaging.operation.name = "dispatch",
            messaging.message.id = Empty,
            messaging.message.conversation_id = Empty,
            catga.message.kind = info.kind().as_str(),
            catga.causation_id = Empty,
            catga.attempt = Empty,
            catga.outcome = Empty,
            error.type = Empty,
        );
        if span.is_disabled() {
            return next.run(msg).await;
        }
        span.record("otel.name", format!("dispatch {}", info.name()));
        span.record("messaging.message.id", display(ctx.message_id()));
        span.record(
            "messaging.message.conversation_id",
            display(ctx.correlation_id()),
        );
        if let Some(causation) = ctx.causation_id() {
            span.record("catga.causation_id", display(causation));
        }
        if let Some(propagation) = installed()
            && tracing::Span::current().is_none()
            && let Some(traceparent) = ctx.header(TRACEPARENT)
        {
            let remote = TraceContext {
                traceparent: traceparent.to_string(),
                tracestate: ctx.header(TRACESTATE).map(str::to_string),
            };
            propagation.set_parent(&span, &remote);
        }
        let result = next.run(msg).instrument(span.clone()).await;
        span.record("catga.attempt", ctx.attempt());
        match &result {
            Ok(_) => {
                span.record("catga.outcome", "ok");
            }
            Err(error) => {
                span.record("catga.outcome", error.code());
                span.record("error.type", error.code());
                span.record("otel.status_code", "ERROR");
                if error.is_domain() || error.code() == "validation" {
                    // The caller's request refused (a validation failure, a handler's own
                    // coded outcome): the service did its job; the span still carries it.
                    tracing::info!(target: "catga", parent: &span, error = %error, code = error.code(), "dispatch failed");
                } else {
                    tracing::warn!(target: "catga", parent: &span, error = %error, code = error.code(), "dispatch failed");
                }
            }
        }
        result
    }
}
