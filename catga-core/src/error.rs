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
//!
//! ## The same error here and in another process
//!
//! A request whose handler runs in another process fails with [`ErrorKind::Remote`], and
//! reads the same as if the handler had run here: [`Error::code`], [`Error::is_retryable`],
//! [`Error::is_in_doubt`], [`Error::validation_errors`] and [`Error::details`] give what they
//! would have given there. Code against those, not against the kind, for behaviour that must
//! not depend on where a handler runs. [`Error::remote`] tells that it failed elsewhere (and
//! in which service); [`Error::downcast_ref`] works only where the handler ran, since a type
//! does not cross a process. A handler error type gives itself a code that crosses with it
//! by implementing [`ErrorCode`].

use std::error::Error as StdError;
use std::fmt;

mod domain;
mod kind;
mod millis;
// Re-exported by `transport`, their public home: errors a transport reports.
pub(crate) mod remote;
pub(crate) mod transport;

pub use domain::{ErrorCode, Retryable};
pub(crate) use domain::{MAX_CODE, is_reserved, well_formed};
pub use kind::{ErrorKind, HandlerFailure};
pub use millis::Millis;

use crate::validate::ValidationErrors;
use remote::RemoteFailure;

/// A boxed error from user code.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a dispatch failed. Match on [`Error::kind`]; use [`Error::code`] for a stable string.
///
/// An `Error` is one pointer wide (the kind is boxed): every dispatch returns
/// `Result<Output, Error>` through each layer of the pipeline, and a small `Result` is returned
/// in registers rather than copied through memory at every layer. Errors are the cold path, so
/// the box costs nothing on success.
pub struct Error {
    kind: Box<ErrorKind>,
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
    /// unchanged rather than nested. `#[handler]` does this for the handlers it wraps, and
    /// also reads the error type's [`Retryable`] and [`ErrorCode`].
    pub fn from_handler<E>(message: &'static str, handler: &'static str, error: E) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::from_handler_classified(message, handler, error, false, None)
    }

    /// Wraps a handler's error whose type has a stable code ([`ErrorCode`]): its code and
    /// details are the error's. For handlers written by hand; `#[handler]` finds the code
    /// itself.
    pub fn from_handler_coded<E>(message: &'static str, handler: &'static str, error: E) -> Error
    where
        E: StdError + ErrorCode + Send + Sync + 'static,
    {
        let coded = (error.code(), error.details());
        Self::from_handler_classified(message, handler, error, false, Some(coded))
    }

    /// Wraps a handler's error already boxed: what `#[handler]` does with any error type
    /// that converts into a [`BoxError`] (`anyhow::Error` and `eyre::Report` give up the
    /// error they wrap, so [`Error::downcast_ref`] finds it; a catga [`Error`] inside is
    /// returned as it is, with its code and retryability).
    #[doc(hidden)]
    pub fn __from_handler_boxed(
        message: &'static str,
        handler: &'static str,
        boxed: BoxError,
        retryable: bool,
        coded: Option<(&'static str, Option<serde_json::Value>)>,
    ) -> Error {
        match boxed.downcast::<Error>() {
            Ok(own) => *own,
            Err(source) => {
                let (code, details) = match coded {
                    Some((declared, details)) => (domain::domain_code(declared, handler), details),
                    None => ("handler", None),
                };
                ErrorKind::Handler {
                    message,
                    handler,
                    retryable,
                    code,
                    details,
                    source,
                }
                .into()
            }
        }
    }

    fn from_handler_classified<E>(
        message: &'static str,
        handler: &'static str,
        error: E,
        retryable: bool,
        coded: Option<(&'static str, Option<serde_json::Value>)>,
    ) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::__from_handler_boxed(message, handler, Box::new(error), retryable, coded)
    }

    /// A stable, machine-readable name for the failure: the same whether the handler ran in
    /// this process or in another ([`ErrorKind::Remote`] has the code the error had there).
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
    /// | `handler`, or the error type's own ([`ErrorCode`]) | [`ErrorKind::Handler`] |
    /// | `publish` | [`ErrorKind::Publish`] |
    /// | `too_many_events` | [`ErrorKind::TooManyEvents`] |
    /// | `circuit_open` | [`ErrorKind::CircuitOpen`] |
    /// | `rate_limited` | [`ErrorKind::RateLimited`] |
    /// | `overloaded` | [`ErrorKind::Overloaded`] |
    /// | `store` | [`ErrorKind::Store`] |
    /// | `transport` | [`ErrorKind::Transport`] |
    /// | `panic` | [`ErrorKind::Panicked`] |
    /// | `in_doubt` | [`ErrorKind::InDoubt`] |
    /// | `internal` | [`ErrorKind::Internal`] (a bug in catga) |
    /// | the code it had over there; also `envelope`, `exhausted` (a serving side's refusals) | [`ErrorKind::Remote`] |
    pub fn code(&self) -> &str {
        use ErrorKind::*;
        match &*self.kind {
            NoHandler { .. } => "no_handler",
            UnknownMessage { .. } => "unknown_message",
            WrongKind { .. } => "wrong_kind",
            Validation { .. } => "validation",
            Timeout { .. } => "timeout",
            Cancelled { .. } => "cancelled",
            Codec { .. } => "codec",
            Handler { code, .. } => code,
            Publish { .. } => "publish",
            TooManyEvents { .. } => "too_many_events",
            CircuitOpen { .. } => "circuit_open",
            RateLimited { .. } => "rate_limited",
            Overloaded { .. } => "overloaded",
            Store { .. } => "store",
            Transport { .. } => "transport",
            Remote { failure, .. } => &failure.code,
            Panicked { .. } => "panic",
            InDoubt { .. } => "in_doubt",
            Internal { .. } => "internal",
        }
    }

    /// Whether this is a handler's error with a code of its own ([`ErrorCode`]), here or in
    /// another process: its [`code`](Self::code) is none of catga's. An edge maps such codes
    /// to its own answers (an HTTP status, say); catga's codes it maps once for all.
    pub fn is_domain(&self) -> bool {
        !is_reserved(self.code())
    }

    /// Whether the same message may succeed if dispatched again: timeouts, store failures, and
    /// handler errors whose type implements [`Retryable`] and says so. A failed publish is
    /// retryable only if every failure is. Refusals by a protective behaviour (an open circuit,
    /// a rate limit, shed load) are not: retrying them at once defeats their purpose. A remote
    /// failure is retryable if it was where it happened.
    pub fn is_retryable(&self) -> bool {
        match &*self.kind {
            ErrorKind::Timeout { .. } | ErrorKind::Store { .. } => true,
            ErrorKind::Transport { source, .. } => source.is_retryable(),
            ErrorKind::Remote { failure, .. } => failure.retryable,
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
    /// that could not be read), a redelivered request answered
    /// [`InDoubt`](ErrorKind::InDoubt), and a remote failure that was in doubt where it
    /// happened.
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
            ErrorKind::Remote { failure, .. } => failure.in_doubt,
            ErrorKind::Publish { failures, .. } => failures.iter().any(|f| f.error.is_in_doubt()),
            _ => false,
        }
    }

    /// The handler's own error, if this is (or, for a publish, contains) a handler error of
    /// type `E` returned in this process. A handler's error type does not cross a transport:
    /// for a request handled elsewhere, use [`Error::code`] and [`Error::details`].
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match &*self.kind {
            // Along the source chain: an error wrapped with context (`anyhow`'s `.context`,
            // `eyre`'s `.wrap_err`) still finds the error it wraps.
            ErrorKind::Handler { source, .. } => {
                let mut current: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
                while let Some(error) = current {
                    if let Some(found) = error.downcast_ref::<E>() {
                        return Some(found);
                    }
                    current = error.source();
                }
                None
            }
            ErrorKind::Publish { failures, .. } => {
                failures.iter().find_map(|f| f.error.downcast_ref::<E>())
            }
            _ => None,
        }
    }

    /// The field errors, if this is a validation failure, here or in the process that
    /// handled the request.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match &*self.kind {
            ErrorKind::Validation { errors, .. } => Some(errors),
            ErrorKind::Remote { failure, .. } => failure.validation.as_ref(),
            _ => None,
        }
    }

    /// The structured details of a handler error whose type has them
    /// ([`ErrorCode::details`]), here or in the process that handled the request.
    pub fn details(&self) -> Option<&serde_json::Value> {
        match &*self.kind {
            ErrorKind::Handler { details, .. } => details.as_ref(),
            ErrorKind::Remote { failure, .. } => failure.details.as_ref(),
            _ => None,
        }
    }

    /// The failure as another process reported it, if the request was handled there: which
    /// service ([`RemoteFailure::service`]) and the error's text there. `None` for an error
    /// of this process (a timeout noticed by either side is this call's timeout).
    pub fn remote(&self) -> Option<&RemoteFailure> {
        match &*self.kind {
            ErrorKind::Remote { failure, .. } => Some(failure),
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
            failure: RemoteFailure::of(&local),
        });
        assert!(remote.is_in_doubt());
        assert!(!remote.is_retryable());
        assert_eq!(remote.code(), "in_doubt");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no courier for order {0}")]
    struct NoCourier(u64);

    impl ErrorCode for NoCourier {
        fn code(&self) -> &'static str {
            "shipping.no_courier"
        }
        fn details(&self) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "order": self.0 }))
        }
    }

    #[test]
    fn a_domain_code_and_its_details_read_the_same_across_a_transport() {
        let local = Error::from_handler_coded("Ship", "shipping::ship", NoCourier(9));
        assert_eq!(local.code(), "shipping.no_courier");
        assert_eq!(local.details(), Some(&serde_json::json!({ "order": 9 })));
        assert!(local.remote().is_none());
        let remote = Error::from(ErrorKind::Remote {
            message: "Ship".to_string(),
            failure: RemoteFailure::of(&local).with_service("shipping"),
        });
        assert_eq!(remote.code(), local.code());
        assert_eq!(remote.details(), local.details());
        assert_eq!(remote.is_retryable(), local.is_retryable());
        assert_eq!(remote.is_in_doubt(), local.is_in_doubt());
        assert_eq!(
            remote.remote().and_then(|r| r.service.as_deref()),
            Some("shipping")
        );
        assert!(remote.downcast_ref::<NoCourier>().is_none());
        assert_eq!(
            remote.to_string(),
            format!("`Ship` failed in service `shipping` (shipping.no_courier): {local}")
        );
    }

    #[test]
    fn plain_handler_errors_keep_the_code_handler() {
        let err = Error::from_handler("X", "h", Boom);
        assert_eq!(err.code(), "handler");
        assert!(err.details().is_none());
    }

    #[test]
    fn an_error_is_one_pointer_so_results_stay_small() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<Result<(), Error>>(), size_of::<usize>());
    }
}
