//! A `tracing` span around every dispatch.

use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::context::Context;
use crate::error::Error;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};

/// Opens an `INFO` span `catga.dispatch` per dispatch (per handler, for events) with the
/// message's name, kind, message id, correlation id, causation id and attempt, and records the
/// outcome (`ok` or the error's [`code`](crate::Error::code)). A failure is also logged as a
/// `WARN` event inside the span.
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
            message = info.name(),
            kind = info.kind().as_str(),
            message_id = Empty,
            correlation_id = Empty,
            causation_id = Empty,
            attempt = Empty,
            outcome = Empty,
        );
        if span.is_disabled() {
            return next.run(msg).await;
        }
        span.record("message_id", display(ctx.message_id()));
        span.record("correlation_id", display(ctx.correlation_id()));
        if let Some(causation) = ctx.causation_id() {
            span.record("causation_id", display(causation));
        }
        let result = next.run(msg).instrument(span.clone()).await;
        span.record("attempt", ctx.attempt());
        match &result {
            Ok(_) => {
                span.record("outcome", "ok");
            }
            Err(error) => {
                span.record("outcome", error.code());
                tracing::warn!(target: "catga", parent: &span, error = %error, code = error.code(), "dispatch failed");
            }
        }
        result
    }
}
