//! Dead-lettering: a message that fails for good is kept with its error, not dropped.

use std::time::SystemTime;

use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::MessageKind;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;
use crate::store::dead_letter::{
    DeadLetterRecord, DeadLetterStore, FailureStage, MemoryDeadLetterStore,
};

/// Keeps every message that fails for good in a [`DeadLetterStore`], with its error, attempt
/// count and ids, so it can be inspected and replayed with [`Catga::replay_dead_letter`](crate::Catga::replay_dead_letter).
///
/// Add it *outside* [`Retry`](super::Retry) so it sees the last attempt's error. By default a
/// failure is final unless a protective behaviour refused the message (an open circuit, a rate
/// limit, shed load) or the caller cancelled it: those were never attempted and the caller
/// already knows. Validation failures, non-retryable handler errors and retryable errors left
/// after the last retry are dead-lettered. The error is still returned to the caller.
/// `skip(dead_letter)` exempts a message, and a command sent by a
/// [`Saga`](crate::saga::Saga) is not kept here: the saga settles its failures (it compensates
/// a failed step, and keeps a compensation that failed for good once, after its retries).
///
/// **An event delivered by a transport is dead-lettered once**, for its final failed
/// delivery: a retryable failure before the transport's last delivery is not final (the
/// transport delivers it again), so it leaves no letter, and an event that succeeds on a
/// later delivery leaves none. The transport then terminates it on the broker. Failures this
/// layer does not keep (those `when` excludes, or with no `DeadLetter` layer at all) go to
/// the application's own dead-letter store ([`CatgaBuilder::dead_letters`](crate::CatgaBuilder::dead_letters)),
/// so every failed delivery is kept exactly once before it is acknowledged.
///
/// ```
/// use catga_core::behavior::{DeadLetter, Retry};
/// use catga_core::store::dead_letter::MemoryDeadLetterStore;
/// use catga_core::Catga;
///
/// # fn main() -> Result<(), catga_core::BuildError> {
/// let letters = MemoryDeadLetterStore::new();
/// let app = Catga::builder()
///     .layer(DeadLetter::new(letters.clone())) // outside the retries
///     .layer(Retry::exponential(3))
///     .build()?;
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DeadLetter<S = MemoryDeadLetterStore> {
    store: S,
    is_final: fn(&Error) -> bool,
}

/// Whether a failure should be dead-lettered by default (see [`DeadLetter`]).
pub fn is_final_failure(error: &Error) -> bool {
    !matches!(
        error.kind(),
        ErrorKind::CircuitOpen { .. }
            | ErrorKind::RateLimited { .. }
            | ErrorKind::Overloaded { .. }
            | ErrorKind::Cancelled { .. }
    )
}

impl<S: DeadLetterStore> DeadLetter<S> {
    /// Dead-letters into `store`.
    pub fn new(store: S) -> Self {
        DeadLetter {
            store,
            is_final: is_final_failure,
        }
    }

    /// Which failures are dead-lettered (default: [`is_final_failure`]).
    pub fn when(mut self, is_final: fn(&Error) -> bool) -> Self {
        self.is_final = is_final;
        self
    }
}

/// The record of `msg`'s failure.
pub(crate) fn record(
    message: &str,
    handler: Option<&str>,
    payload: Option<Vec<u8>>,
    error: &Error,
    ctx: &Context,
) -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: message.to_string(),
        handler: handler.map(str::to_string),
        payload,
        code: error.code().to_string(),
        error: error.to_string(),
        attempts: ctx.attempt(),
        message_id: ctx.message_id(),
        correlation_id: ctx.correlation_id(),
        causation_id: ctx.causation_id(),
        headers: ctx
            .headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        failed_at: SystemTime::now(),
        stage: FailureStage::Handler,
        source: None,
        raw_headers: None,
    }
}

impl<S: DeadLetterStore> Behavior for DeadLetter<S> {
    fn keeps_failures(&self) -> bool {
        true
    }

    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        if info.policy().skip.contains(Skip::DEAD_LETTER) || ctx.failures_settled_by_caller() {
            return next.run(msg).await;
        }
        let handler = msg.handler();
        // The handler consumes the message: keep a copy to encode if it fails (or, for a
        // message that cannot be copied, its encoding now).
        let (copy, encoded) = match msg.try_clone() {
            Some(copy) => (Some(copy), None),
            None => (None, msg.message().encode_json().ok()),
        };
        let result = next.run(msg).await;
        if let Err(error) = &result
            && (self.is_final)(error)
            && !redelivered_later(info.kind(), error, ctx)
        {
            let payload = encoded.or_else(|| copy.and_then(|m| m.message().encode_json().ok()));
            let letter = record(info.name(), handler, payload, error, ctx);
            let id = letter.id;
            match self.store.put(letter).await {
                Ok(()) => {
                    ctx.note_dead_lettered(handler);
                    metrics::counter!("catga_dead_letters_total", "message" => info.name())
                        .increment(1);
                    tracing::warn!(target: "catga", message = info.name(), dead_letter = %id, code = error.code(),
                        "message dead-lettered");
                }
                Err(e) => tracing::error!(target: "catga", message = info.name(), error = %e,
                    "could not store a dead letter; the failure is only in this log"),
            }
        }
        result
    }
}

/// Whether the transport will deliver this failed event again (so the failure is not final).
fn redelivered_later(kind: MessageKind, error: &Error, ctx: &Context) -> bool {
    kind == MessageKind::Event
        && error.is_retryable()
        && ctx.delivery().is_some_and(|delivery| !delivery.is_last())
}
