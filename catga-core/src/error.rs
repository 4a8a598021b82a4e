//! Errors: what a dispatch can fail with.
//!
//! Every dispatch returns [`Error`]. What went wrong is its [`ErrorKind`], and the kinds are
//! stable: [`Error::code`] gives a string that will not change between releases (use it in
//! logs, metrics and across the wire), and [`Error::is_retryable`] says whether trying again may
//! help. A handler returns its own error type; it arrives as [`ErrorKind::Handler`] and
//! [`Error::downcast_ref`] gives it back:
//!
//! ```
//! # use catga_core::Error;
//! #[derive(Debug, thiserror::Error)]
//! #[error("out of stock")]
//! struct OutOfStock;
//!
//! let err = Error::from_handler("PlaceOrder", "orders::place", OutOfStock);
//! assert_eq!(err.code(), "handler");
//! assert!(err.downcast_ref::<OutOfStock>().is_some());
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::codec::CodecError;
use crate::validation::ValidationErrors;

/// A boxed error from user code.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Marks a handler error type as transient, so [`Retry`](crate::behavior::Retry) tries again.
///
/// Handler errors are not retryable unless their type implements this trait and returns
/// `true`; the handler attribute picks the implementation up automatically.
///
/// ```
/// use catga_core::Retryable;
///
/// #[derive(Debug, thiserror::Error)]
/// enum DbError {
///     #[error("connection lost")]
///     ConnectionLost,
///     #[error("constraint violated")]
///     Constraint,
/// }
///
/// impl Retryable for DbError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, DbError::ConnectionLost)
///     }
/// }
/// ```
pub trait Retryable {
    /// Whether the same message may succeed if handled again.
    fn is_retryable(&self) -> bool;
}

/// Why a dispatch failed. Match on [`Error::kind`]; use [`Error::code`] for a stable string.
///
/// An `Error` is one pointer wide (the kind is boxed): every dispatch returns
/// `Result<Output, Error>` through each layer of the pipeline, and a small `Result` is returned
/// in registers rather than copied through memory at every layer. Errors are the cold path, so
/// the box costs nothing on success.
pub struct Error {
    kind: Box<ErrorKind>,
}

/// What went wrong, one variant per stable [`Error::code`].
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
    #[error("`{message}` timed out{}", after.map(|d| format!(" after {d:?}")).unwrap_or_default())]
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
    #[error("the circuit for `{message}` is open; it will let a probe through in {retry_after:?}")]
    CircuitOpen {
        /// The message's wire name.
        message: &'static str,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The rate limit for this message was reached, and waiting for a permit would have
    /// passed the deadline (or the limiter fails fast).
    #[error("`{message}` is rate limited; the next permit is free in {retry_after:?}")]
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
        source: crate::transport::TransportError,
    },
    /// The message was handled in another process and failed there.
    #[error("`{message}` failed in another process ({remote_code}): {detail}")]
    Remote {
        /// The message's wire name.
        message: String,
        /// The error's code over there ([`Error::code`] of the remote error).
        remote_code: String,
        /// The remote error, as displayed there.
        detail: String,
        /// Whether the remote side said retrying may help.
        retryable: bool,
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

impl From<ErrorKind> for Error {
    #[cold]
    fn from(kind: ErrorKind) -> Self {
        Error {
            kind: Box::new(kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.kind, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.kind, f)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.kind.source()
    }
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The kind, by value (to take the handler's boxed error out, say).
    pub fn into_kind(self) -> ErrorKind {
        *self.kind
    }

    /// Wraps a handler's error. A `catga_core::Error` returned by a handler is passed through
    /// unchanged rather than nested.
    pub fn from_handler<E>(message: &'static str, handler: &'static str, error: E) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::from_handler_classified(message, handler, error, false)
    }

    #[doc(hidden)]
    pub fn from_handler_classified<E>(
        message: &'static str,
        handler: &'static str,
        error: E,
        retryable: bool,
    ) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        let boxed: BoxError = Box::new(error);
        match boxed.downcast::<Error>() {
            Ok(own) => *own,
            Err(source) => ErrorKind::Handler {
                message,
                handler,
                retryable,
                source,
            }
            .into(),
        }
    }

    /// A stable, machine-readable name for the kind of failure.
    ///
    /// | code | kind |
    /// |---|---|
    /// | `no_handler` | [`ErrorKind::NoHandler`] |
    /// | `unknown_message` | [`ErrorKind::UnknownMessage`] |
    /// | `wrong_kind` | [`ErrorKind::WrongKind`] |
    /// | `validation` | [`ErrorKind::Validation`] |
    /// | `timeout` | [`ErrorKind::Timeout`] |
    /// | `cancelled` | [`ErrorKind::Cancelled`] |
    /// | `codec` | [`ErrorKind::Codec`] |
    /// | `handler` | [`ErrorKind::Handler`] |
    /// | `publish` | [`ErrorKind::Publish`] |
    /// | `too_many_events` | [`ErrorKind::TooManyEvents`] |
    /// | `circuit_open` | [`ErrorKind::CircuitOpen`] |
    /// | `rate_limited` | [`ErrorKind::RateLimited`] |
    /// | `overloaded` | [`ErrorKind::Overloaded`] |
    /// | `store` | [`ErrorKind::Store`] |
    /// | `transport` | [`ErrorKind::Transport`] |
    /// | `remote` | [`ErrorKind::Remote`] (the remote code is in the kind) |
    /// | `panic` | [`ErrorKind::Panicked`] |
    /// | `in_doubt` | [`ErrorKind::InDoubt`] |
    pub fn code(&self) -> &'static str {
        use ErrorKind::*;
        match &*self.kind {
            NoHandler { .. } => "no_handler",
            UnknownMessage { .. } => "unknown_message",
            WrongKind { .. } => "wrong_kind",
            Validation { .. } => "validation",
            Timeout { .. } => "timeout",
            Cancelled { .. } => "cancelled",
            Codec { .. } => "codec",
            Handler { .. } => "handler",
            Publish { .. } => "publish",
            TooManyEvents { .. } => "too_many_events",
            CircuitOpen { .. } => "circuit_open",
            RateLimited { .. } => "rate_limited",
            Overloaded { .. } => "overloaded",
            Store { .. } => "store",
            Transport { .. } => "transport",
            Remote { .. } => "remote",
            Panicked { .. } => "panic",
            InDoubt { .. } => "in_doubt",
        }
    }

    /// Whether the same message may succeed if dispatched again: timeouts, store failures, and
    /// handler errors whose type implements [`Retryable`] and says so. A failed publish is
    /// retryable only if every failure is. Refusals by a protective behaviour (an open circuit,
    /// a rate limit, shed load) are not: retrying them at once defeats their purpose.
    pub fn is_retryable(&self) -> bool {
        match &*self.kind {
            ErrorKind::Timeout { .. } | ErrorKind::Store { .. } => true,
            ErrorKind::Transport { source, .. } => source.is_retryable(),
            ErrorKind::Remote { retryable, .. } => *retryable,
            ErrorKind::Handler { retryable, .. } => *retryable,
            ErrorKind::Publish { failures, .. } => {
                !failures.is_empty() && failures.iter().all(|f| f.error.is_retryable())
            }
            _ => false,
        }
    }

    /// Whether the operation may or may not have taken effect: it was (or may have been)
    /// handed to its handler and the outcome was lost, so running it again may do it twice.
    /// A timeout or cancellation while the pipeline ran, a panic, a request sent to a broker
    /// whose reply never came (a transport timeout, a connection lost after sending, a reply
    /// that could not be read), a failure the remote side reports as a timeout, a redelivered
    /// request answered [`InDoubt`](ErrorKind::InDoubt).
    ///
    /// Errors known to have happened before any handler ran are not in doubt: no handler, a
    /// validation failure, an open circuit, a rate limit, shed load, nobody serving the
    /// request, a broker that could not be reached. A handler's own error is not either: the
    /// handler chose to fail, and its type says whether trying again is safe
    /// ([`Retryable`]).
    ///
    /// [`Retry`](crate::behavior::Retry) retries an in-doubt failure only for a message that
    /// is safe to repeat: a query, an event handler, or a command declared
    /// `#[command(idempotent)]`.
    pub fn is_in_doubt(&self) -> bool {
        match &*self.kind {
            ErrorKind::Timeout { .. }
            | ErrorKind::Cancelled { .. }
            | ErrorKind::Panicked { .. }
            | ErrorKind::InDoubt { .. } => true,
            ErrorKind::Transport { source, .. } => source.is_in_doubt(),
            ErrorKind::Remote { remote_code, .. } => {
                matches!(
                    remote_code.as_str(),
                    "timeout" | "cancelled" | "panic" | "transport" | "in_doubt"
                )
            }
            ErrorKind::Publish { failures, .. } => failures.iter().any(|f| f.error.is_in_doubt()),
            _ => false,
        }
    }

    /// The handler's own error, if this is (or, for a publish, contains) a handler error of
    /// type `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match &*self.kind {
            ErrorKind::Handler { source, .. } => source.downcast_ref::<E>(),
            ErrorKind::Publish { failures, .. } => {
                failures.iter().find_map(|f| f.error.downcast_ref::<E>())
            }
            _ => None,
        }
    }

    /// The field errors, if this is a validation failure.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match &*self.kind {
            ErrorKind::Validation { errors, .. } => Some(errors),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;

    #[test]
    fn own_errors_are_not_nested() {
        let inner = Error::from(ErrorKind::Timeout {
            message: "X",
            after: None,
        });
        let err = Error::from_handler("X", "h", inner);
        assert_eq!(err.code(), "timeout");
        assert!(err.is_retryable());
    }

    #[test]
    fn publish_lists_every_failure() {
        let err = Error::from(ErrorKind::Publish {
            event: "Placed",
            failures: vec![
                HandlerFailure {
                    handler: "a",
                    error: Error::from_handler("Placed", "a", Boom),
                },
                HandlerFailure {
                    handler: "b",
                    error: ErrorKind::Timeout {
                        message: "Placed",
                        after: None,
                    }
                    .into(),
                },
            ],
        });
        let text = err.to_string();
        assert!(text.contains("[a]") && text.contains("[b]"), "{text}");
        assert!(!err.is_retryable());
        assert!(err.downcast_ref::<Boom>().is_some());
    }

    #[test]
    fn a_request_answered_in_doubt_is_in_doubt_here_and_across_a_transport() {
        let local = Error::from(ErrorKind::InDoubt {
            message: "Charge".to_string(),
        });
        assert!(local.is_in_doubt());
        assert!(!local.is_retryable());
        let remote = Error::from(ErrorKind::Remote {
            message: "Charge".to_string(),
            remote_code: local.code().to_string(),
            detail: local.to_string(),
            retryable: local.is_retryable(),
        });
        assert!(remote.is_in_doubt());
    }

    #[test]
    fn an_error_is_one_pointer_so_results_stay_small() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<Result<(), Error>>(), size_of::<usize>());
    }
}
