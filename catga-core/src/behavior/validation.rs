//! Runs each message's `Validate` implementation before its handler.

use crate::context::Context;
use crate::error::Error;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};

/// Rejects a message whose [`Validate`](crate::Validate) implementation fails, with
/// [`ErrorKind::Validation`](crate::ErrorKind::Validation) holding every field error; the handler does not run. Messages that do
/// not implement `Validate` pass through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validation;

impl Behavior for Validation {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        if msg
            .info()
            .policy()
            .skip
            .contains(crate::policy::Skip::VALIDATION)
        {
            return next.run(msg).await;
        }
        if let Err(errors) = msg.validate() {
            return Err(crate::ErrorKind::Validation {
                message: msg.info().name(),
                errors,
            }
            .into());
        }
        next.run(msg).await
    }
}
