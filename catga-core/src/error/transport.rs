//! What can go wrong on a transport.

use std::time::Duration;

use super::remote::ReplyError;
use super::{BoxError, Millis};

/// Why a transport could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker cannot be reached: nothing was sent. Transports report a connection lost
    /// *after* a message was sent as [`Broker`](TransportError::Broker) (the outcome is in
    /// doubt), so a caller may safely send again after this one.
    #[error("the broker is unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No service handles the request.
    #[error("no service handles `{0}`")]
    NoResponders(String),
    /// The reply did not arrive in time.
    #[error("no reply within {}", Millis(*.0))]
    Timeout(Duration),
    /// The message is larger than the transport accepts.
    #[error("the message is {size} bytes; the transport accepts at most {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The broker answered something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A failure reply came back that could not be read (too large, not a failure
    /// document): the request may have been handled.
    #[error("the reply could not be read")]
    UnreadableReply(#[source] ReplyError),
    /// The transport was shut down.
    #[error("the transport is shut down")]
    Closed,
    /// The application has no transport (`Catga::builder().transport(…)`).
    #[error("the application has no transport; add one with `Catga::builder().transport(…)`")]
    NotConfigured,
    /// `serve()` found nothing to serve: no handler of this application was selected (the
    /// `.handlers(…)` filter kept none) or linked (a handler crate the binary never names is
    /// left out by the linker), and no behaviour observes events.
    #[error(
        "service `{service}` has nothing to serve: no handler is selected or linked; check the \
         `.handlers(…)` filter (names start with the crate: use `|h| h.is_in(\"module\")`) and \
         that the binary names each handler crate (`use my_handlers as _;`)"
    )]
    NothingToServe {
        /// The service that was asked to serve.
        service: String,
    },
    /// Any other broker error, including a connection lost after the message was sent.
    #[error(transparent)]
    Broker(BoxError),
}

impl TransportError {
    /// Whether trying again may help (an unreachable broker or a timeout may recover; a message
    /// that is too large will not).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable(_)
                | TransportError::Timeout(_)
                | TransportError::NoResponders(_)
                | TransportError::Broker(_)
        )
    }

    /// Whether the message may have reached its handler although this error was returned
    /// (see [`Error::is_in_doubt`](crate::Error::is_in_doubt)): no reply in time, a
    /// connection lost after sending, a reply that could not be read, a transport shut down
    /// while waiting.
    pub fn is_in_doubt(&self) -> bool {
        matches!(
            self,
            TransportError::Timeout(_)
                | TransportError::Broker(_)
                | TransportError::Protocol(_)
                | TransportError::UnreadableReply(_)
                | TransportError::Closed
        )
    }
}
