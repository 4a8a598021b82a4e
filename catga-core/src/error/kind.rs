//! [`ErrorKind`]: what went wrong, one variant per kind of failure.

use std::fmt;
use std::time::Duration;

use super::remote::RemoteFailure;
use super::{BoxError, Error, Millis};
use crate::codec::CodecError;
use crate::validate::ValidationErrors;

/// What went wrong, one variant per kind of failure; [`Error::code`] names each with a stable
/// code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No handler is registered for this command or query.
    #[error("no handler for `{message}`")]
    NoHandler {
        /// The message's wire name.
        message: &'static str,
    },
    /// Bytes arrived for a wire name no message type has.
    #[error("unknown message name `{name}`")]
    UnknownMessage {
        /// The name as received (lossily decoded, truncated to 256 bytes).
        name: String,
    },
    /// The message was dispatched through the wrong verb (an event given to `send`, a command
    /// to `publish`); only possible on the bytes path, the typed API rejects it at compile time.
    #[error("`{message}` is a {actual}, not a {expected}")]
    WrongKind {
        /// The message's wire name.
        message: &'static str,
        /// What the caller asked for.
        expected: &'static str,
        /// What the message is.
        actual: &'static str,
    },
    /// The message failed validation; every field error is listed.
    #[error("`{message}` is invalid: {errors}")]
    Validation {
        /// The message's wire name.
        message: &'static str,
        /// All field errors.
        errors: ValidationErrors,
    },
    /// The deadline passed before the handler finished; the handler was dropped.
    #[error("`{message}` timed out{}", after.map(|d| format!(" after {}", Millis(d))).unwrap_or_default())]
    Timeout {
        /// The message's wire name.
        message: &'static str,
        /// The limit that was exceeded, when known.
        after: Option<Duration>,
    },
    /// The context's cancellation signal fired; the handler was dropped.
    #[error("`{message}` was cancelled")]
    Cancelled {
        /// The message's wire name.
        message: &'static str,
    },
    /// Bytes could not be decoded or encoded.
    #[error("codec error for `{message}`: {source}")]
    Codec {
        /// The message's wire name (or the name as received).
        message: String,
        /// What went wrong.
        #[source]
        source: CodecError,
    },
    /// The handler returned an error.
    #[error("handler `{handler}` for `{message}` failed: {source}")]
    Handler {
        /// The message's wire name.
        message: &'static str,
        /// The handler's path, e.g. `shop::Orders::place`.
        handler: &'static str,
        /// Whether the handler's error type says trying again may help.
        retryable: bool,
        /// The error's code: its type's [`ErrorCode`](super::ErrorCode), else `handler`.
        code: &'static str,
        /// Its type's structured details ([`ErrorCode::details`](super::ErrorCode::details)).
        details: Option<serde_json::Value>,
        /// The handler's own error; see [`Error::downcast_ref`].
        #[source]
        source: BoxError,
    },
    /// One or more handlers of a published event failed. Every failure is listed; handlers
    /// that succeeded are not undone.
    #[error("{} of the handlers of `{event}` failed: {}", failures.len(), DisplayFailures(failures))]
    Publish {
        /// The event's wire name.
        event: &'static str,
        /// One entry per failed handler.
        failures: Vec<HandlerFailure>,
    },
    /// The circuit breaker for this message is open: recent dispatches failed, so this one was
    /// refused without running. Not retryable: retrying would defeat the breaker.
    #[error("the circuit for `{message}` is open; it will let a probe through in {}", Millis(*retry_after))]
    CircuitOpen {
        /// The message's wire name.
        message: &'static str,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The rate limit for this message was reached, and waiting for a permit would have
    /// passed the deadline (or the limiter fails fast).
    #[error("`{message}` is rate limited; the next permit is free in {}", Millis(*retry_after))]
    RateLimited {
        /// The message's wire name.
        message: &'static str,
        /// How long until a permit is free.
        retry_after: Duration,
    },
    /// Too many dispatches of this message (or its group) are in flight and its queue is full,
    /// so this one was shed.
    #[error("`{message}` was shed: {in_flight} in flight and the queue of {queue} is full")]
    Overloaded {
        /// The message's wire name.
        message: &'static str,
        /// The in-flight limit that was reached.
        in_flight: usize,
        /// The queue capacity that was reached.
        queue: usize,
    },
    /// The transport failed: the broker is unreachable, nobody serves the message, the reply
    /// did not arrive before the deadline, …
    #[error("transport `{transport}` failed for `{message}`: {source}")]
    Transport {
        /// The message's wire name.
        message: String,
        /// Which transport (`nats`, `redis`, `memory`).
        transport: &'static str,
        /// What went wrong.
        #[source]
        source: super::transport::TransportError,
    },
    /// The request was handled in another process and failed there. Its code, retryability,
    /// doubt, validation field errors and details are the ones it had there
    /// ([`Error::code`], [`Error::is_retryable`], [`Error::is_in_doubt`],
    /// [`Error::validation_errors`], [`Error::details`] read them); the failure as it came
    /// back is in `failure` (which service failed, the error's text there).
    #[error("`{message}` failed in {} ({}): {}", DisplayService(failure.service.as_deref()), failure.code, failure.message)]
    Remote {
        /// The message's wire name.
        message: String,
        /// The failure, as the other process reported it.
        failure: RemoteFailure,
    },
    /// A store behind a behaviour (idempotency, dead letters, …) failed.
    #[error("{operation} failed: {source}")]
    Store {
        /// What was being done, e.g. `idempotency store: begin`.
        operation: &'static str,
        /// The store's own error.
        #[source]
        source: BoxError,
    },
    /// The handler panicked. The panic was contained to this message (a message that arrived
    /// from a transport, or a follow-up event): the consumer keeps serving and the caller
    /// gets this error at once. Not retryable: a panic is a bug, and running the same message
    /// again would most likely panic again.
    #[error("the handler of `{message}` panicked: {detail}")]
    Panicked {
        /// The message's wire name.
        message: String,
        /// The panic's message, when it was a string.
        detail: String,
    },
    /// A redelivered request whose first delivery may have run: the instance handling it
    /// stopped before answering. It is not run again, because the message is not declared
    /// safe to repeat (`#[command(idempotent)]`); it is kept in the dead-letter store.
    #[error(
        "`{message}` may already have been handled by an instance that stopped before answering; it is not `idempotent`, so it was not run again"
    )]
    InDoubt {
        /// The message's wire name.
        message: String,
    },
    /// A fault inside catga itself: a type-erased value reached code expecting another type.
    /// It cannot happen through the public API; it is reported rather than panicking, so a bug
    /// in catga fails one dispatch, with this text to report, instead of the process.
    #[error("internal error in catga while handling `{message}`: {what} (please report it)")]
    Internal {
        /// The message's wire name.
        message: &'static str,
        /// What was found wrong.
        what: &'static str,
    },
    /// A handler queued more events with `ctx.publish` than the limit allows.
    #[error("`{message}` queued more than {limit} events in one dispatch")]
    TooManyEvents {
        /// The message whose handler queued them.
        message: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// One failed handler of a published event.
#[derive(Debug)]
pub struct HandlerFailure {
    /// The handler's path.
    pub handler: &'static str,
    /// Its error.
    pub error: Error,
}

struct DisplayFailures<'a>(&'a [HandlerFailure]);

impl fmt::Display for DisplayFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{}] {}", failure.handler, failure.error)?;
        }
        Ok(())
    }
}

struct DisplayService<'a>(Option<&'a str>);

impl fmt::Display for DisplayService<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(service) => write!(f, "service `{service}`"),
            None => f.write_str("another process"),
        }
    }
}
