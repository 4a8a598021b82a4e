//! A time limit on the rest of the pipeline.

use std::time::Duration;

use tokio::time::Instant;

use crate::context::Context;
use crate::error::Error;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};

/// Fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (retryable) when the rest of the pipeline takes longer than
/// the limit; the handler's future is dropped. `#[command(timeout = "…")]` overrides the limit
/// for one message. Inside the behaviour, [`Context::deadline`] reports the tighter of the
/// caller's deadline and this limit, so handlers and transports can pass it on.
///
/// Needs a Tokio runtime with the time driver enabled.
#[derive(Clone, Copy, Debug)]
pub struct Timeout {
    limit: Duration,
}

impl Timeout {
    /// A limit of `limit` per dispatch (per handler, for events).
    pub const fn new(limit: Duration) -> Self {
        Timeout { limit }
    }

    /// The default limit.
    pub const fn limit(&self) -> Duration {
        self.limit
    }
}

impl Behavior for Timeout {
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
            .contains(crate::policy::Skip::TIMEOUT)
        {
            return next.run(msg).await;
        }
        let info = msg.info();
        let limit = info.policy().timeout.unwrap_or(self.limit);
        let at = Instant::now() + limit;
        let restore = RestoreDeadline {
            ctx,
            saved: ctx.raw_deadline(),
        };
        ctx.tighten_deadline(at);
        let result = tokio::time::timeout_at(at, next.run(msg)).await;
        drop(restore);
        match result {
            Ok(result) => result,
            Err(_) => Err(crate::ErrorKind::Timeout {
                message: info.name(),
                after: Some(limit),
            }
            .into()),
        }
    }
}

/// Gives the context back the deadline it had before this layer tightened it, however the
/// layer's future ends: returned, dropped by an outer deadline, cancellation or caller, or
/// unwound by a panic. Layers outside (a retry, a user's behaviour that runs the rest again)
/// would otherwise see this attempt's limit as theirs.
struct RestoreDeadline<'c> {
    ctx: &'c Context,
    saved: u64,
}

impl Drop for RestoreDeadline<'_> {
    fn drop(&mut self) {
        self.ctx.restore_deadline(self.saved);
    }
}
