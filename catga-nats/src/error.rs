//! What the NATS transport reports, with the subject, stream or consumer involved.
//!
//! Connecting ([`NatsTransport::connect`](crate::NatsTransport::connect), awaited) fails with a
//! [`ConnectError`], whose variants are those of the Redis transport's for the same failures.
//! The [`Transport`](catga_core::transport::Transport) methods return catga's
//! [`TransportError`], whose broker variants carry a [`NatsError`] as their source, so the
//! subject and the client's own error stay reachable through `source()`.

use std::time::Duration;

use async_nats::jetstream;
use catga_core::transport::TransportError;

use crate::headers::InvalidHeader;

/// Why awaiting [`NatsConnect`](crate::NatsConnect) failed. Its variants are those of
/// `catga_redis::ConnectError` for the same failures, and read the same way.
///
/// Every error shows the URL with its credentials hidden
/// ([`redact_url`](catga_core::secret::redact_url)), never a credential option's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// An option the transport cannot use. Options are checked before anything is sent, so
    /// nothing was.
    #[error("invalid value {value} for `{option}`: {reason}")]
    InvalidOption {
        /// The builder method that set it, e.g. `batch`.
        option: &'static str,
        /// The value given, as Rust writes it (`0`, `"a b"`, `0ns`, `[]`).
        value: String,
        /// Why it cannot be used, and what to write instead.
        reason: &'static str,
    },
    /// The URL does not parse as a NATS server URL.
    #[error("`{url}` is not a nats url\nhelp: write `nats://host:4222`, or `tls://host:4222`")]
    InvalidUrl {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server could not be reached (refused, timed out, TLS failed, name not resolved).
    #[error("the nats server at `{url}` is unreachable: {source}")]
    Unreachable {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server refused the credentials (wrong user, password, token or key).
    #[error("the nats server at `{url}` refused the credentials: {source}")]
    Unauthorized {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The [credentials file](crate::NatsConnect::credentials_file) could not be read or parsed.
    #[error("the nats credentials file `{}` could not be loaded", path.display())]
    Credentials {
        /// The file (its path only: the contents are a secret).
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server does not have JetStream enabled, or refused to create or update the events
    /// stream.
    #[error("the nats server at `{url}` could not set up the events stream")]
    Stream {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What failed: a [`NatsError::Stream`] naming the stream and its subjects.
        #[source]
        source: NatsError,
    },
}

impl ConnectError {
    /// A failed first connection, as the variant that says why.
    pub(crate) fn connect(url: String, source: async_nats::ConnectError) -> Self {
        use async_nats::ConnectErrorKind as Kind;
        match source.kind() {
            Kind::Authentication | Kind::AuthorizationViolation => {
                ConnectError::Unauthorized { url, source }
            }
            Kind::ServerParse => ConnectError::InvalidUrl { url, source },
            _ => ConnectError::Unreachable { url, source },
        }
    }
}

/// A failure of the NATS transport while it runs, with its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The server does not have JetStream enabled, or refused to create or update the stream.
    #[error("could not create or update the JetStream stream `{stream}` on `{subjects}`")]
    Stream {
        /// The stream.
        stream: String,
        /// The subjects it should capture.
        subjects: String,
        /// The client's error (boxed: JetStream's errors are large, and this one is rare).
        #[source]
        source: Box<jetstream::context::CreateStreamError>,
    },
    /// The durable consumer of a service for one event could not be created.
    #[error("could not create the durable consumer `{consumer}` on `{stream}` for `{subject}`")]
    Consumer {
        /// The durable consumer.
        consumer: String,
        /// The stream.
        stream: String,
        /// The event subject it filters.
        subject: String,
        /// The client's error (boxed: JetStream's errors are large, and this one is rare).
        #[source]
        source: Box<jetstream::stream::ConsumerError>,
    },
    /// The server could not say what state a durable consumer is in.
    #[error(
        "could not read the state of the durable consumer `{consumer}` on `{stream}`: {reason}"
    )]
    ConsumerState {
        /// The durable consumer.
        consumer: String,
        /// The stream.
        stream: String,
        /// The server's or the client's error.
        reason: String,
    },
    /// Subscribing to the inbox of a consumer's pulls failed.
    #[error("could not pull messages for the durable consumer `{consumer}`")]
    Pull {
        /// The durable consumer.
        consumer: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// Subscribing to a request subject failed.
    #[error("could not subscribe to `{subject}` in queue group `{group}`")]
    Subscribe {
        /// The request subject.
        subject: String,
        /// The queue group (the service).
        group: String,
        /// The client's error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// Subscribing to an event's subject to observe it on every instance failed.
    #[error("could not subscribe to `{subject}` to observe it")]
    Observe {
        /// The event subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// Publishing an event to JetStream failed.
    #[error("could not publish `{name}` to `{subject}`")]
    Publish {
        /// The event's wire name.
        name: String,
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: jetstream::context::PublishError,
    },
    /// Sending a request failed before a reply or a timeout.
    #[error("could not send the request `{name}` to `{subject}`")]
    Request {
        /// The request's wire name.
        name: String,
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::RequestError,
    },
    /// The client was not connected when the message was to be sent: nothing was sent.
    #[error("could not send `{name}`: not connected to the NATS server")]
    NotConnected {
        /// The message's wire name.
        name: String,
    },
    /// An envelope holds a header NATS cannot carry.
    #[error("could not send `{name}`")]
    Header {
        /// The message's wire name.
        name: String,
        /// Which header.
        #[source]
        source: InvalidHeader,
    },
}

/// Where a publish was when it failed: before the message was handed to the connection,
/// nothing was sent; after, the server may have stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublishStage {
    /// Handing the message to the client (nothing sent yet).
    Sending,
    /// Waiting for the stream's acknowledgement (the message was sent).
    Acking,
}

impl NatsError {
    /// A publish failure as catga's transport error. [`TransportError::Unreachable`] only
    /// when nothing was sent; once sent, a missing acknowledgement (timeout, connection lost)
    /// leaves the outcome in doubt ([`TransportError::Timeout`], [`TransportError::Broker`]),
    /// and an acknowledgement that cannot be read is [`TransportError::Protocol`].
    pub(crate) fn publish(
        name: &str,
        subject: &str,
        source: jetstream::context::PublishError,
        timeout: Duration,
        stage: PublishStage,
    ) -> TransportError {
        use jetstream::context::PublishErrorKind as Kind;
        let kind = source.kind();
        let unreadable_ack = kind == Kind::Other
            && std::error::Error::source(&source).is_some_and(|e| e.is::<serde_json::Error>());
        let error = NatsError::Publish {
            name: name.to_string(),
            subject: subject.to_string(),
            source,
        };
        match (stage, kind) {
            (_, Kind::MaxPayloadExceeded) => TransportError::Protocol(error_text(&error)),
            // The client's queue stayed full for the whole timeout, or the client is gone:
            // the message never left this process.
            (PublishStage::Sending, Kind::TimedOut | Kind::Other | Kind::BrokenPipe) => {
                TransportError::Unreachable(Box::new(error))
            }
            (PublishStage::Acking, Kind::TimedOut) => TransportError::Timeout(timeout),
            (PublishStage::Acking, Kind::Other) if unreadable_ack => {
                TransportError::Protocol(error_text(&error))
            }
            _ => TransportError::Broker(Box::new(error)),
        }
    }

    /// A request failure as catga's transport error. The request was handed to the client
    /// (the caller checked the connection first): whatever went wrong after that may have
    /// happened after the request reached a handler, so it is in doubt, except for
    /// `NoResponders`, which the server answers when nobody could receive it.
    pub(crate) fn request(
        name: &str,
        subject: &str,
        source: async_nats::RequestError,
        timeout: Duration,
    ) -> TransportError {
        use async_nats::RequestErrorKind as Kind;
        let kind = source.kind();
        let error = NatsError::Request {
            name: name.to_string(),
            subject: subject.to_string(),
            source,
        };
        match kind {
            Kind::TimedOut => TransportError::Timeout(timeout),
            Kind::NoResponders => TransportError::NoResponders(name.to_string()),
            Kind::InvalidSubject | Kind::MaxPayloadExceeded => {
                TransportError::Protocol(error_text(&error))
            }
            // A reply channel closed by a lost connection, or the client gone: it may have
            // been sent, so it is in doubt.
            _ => TransportError::Broker(Box::new(error)),
        }
    }

    /// Nothing was sent: the client is not connected to the server at the moment.
    pub(crate) fn not_connected(name: &str) -> TransportError {
        TransportError::Unreachable(Box::new(NatsError::NotConnected {
            name: name.to_string(),
        }))
    }

    /// An envelope that cannot be written as NATS headers. Retrying would not help, and
    /// [`TransportError`] has no non-retryable variant with a source, so its text travels in
    /// [`TransportError::Protocol`].
    pub(crate) fn header(name: &str, source: InvalidHeader) -> TransportError {
        let error = NatsError::Header {
            name: name.to_string(),
            source,
        };
        TransportError::Protocol(error_text(&error))
    }
}

/// An error and its source, as one line.
fn error_text(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

impl From<NatsError> for TransportError {
    /// A setup failure (while serving) as catga's transport error.
    fn from(error: NatsError) -> Self {
        TransportError::Broker(Box::new(error))
    }
}

impl From<catga_core::transport::options::InvalidOption> for ConnectError {
    fn from(invalid: catga_core::transport::options::InvalidOption) -> Self {
        ConnectError::InvalidOption {
            option: invalid.option,
            value: invalid.value,
            reason: invalid.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::RequestErrorKind;
    use jetstream::context::{PublishError, PublishErrorKind};

    const WAIT: Duration = Duration::from_secs(1);

    fn published(kind: PublishErrorKind, stage: PublishStage) -> TransportError {
        NatsError::publish(
            "placed",
            "t.events.placed",
            PublishError::new(kind),
            WAIT,
            stage,
        )
    }

    fn requested(kind: RequestErrorKind) -> TransportError {
        let source = async_nats::RequestError::new(kind);
        NatsError::request("ship", "t.requests.ship", source, WAIT)
    }

    #[test]
    fn a_publish_that_never_left_the_process_is_unreachable_and_safe_to_send_again() {
        for kind in [PublishErrorKind::TimedOut, PublishErrorKind::Other] {
            let error = published(kind, PublishStage::Sending);
            assert!(
                matches!(error, TransportError::Unreachable(_)),
                "{kind:?}: {error:?}"
            );
            assert!(!error.is_in_doubt());
            assert!(error.is_retryable());
        }
        let error = NatsError::not_connected("placed");
        assert!(matches!(error, TransportError::Unreachable(_)));
        assert!(!error.is_in_doubt());
    }

    #[test]
    fn a_publish_sent_without_an_acknowledgement_is_in_doubt() {
        let cases = [
            (PublishErrorKind::TimedOut, "timeout"),
            (PublishErrorKind::BrokenPipe, "broker"),
            (PublishErrorKind::Other, "broker"),
            (PublishErrorKind::StreamNotFound, "broker"),
            (PublishErrorKind::WrongLastSequence, "broker"),
        ];
        for (kind, expected) in cases {
            let error = published(kind, PublishStage::Acking);
            let variant = match &error {
                TransportError::Timeout(after) => {
                    assert_eq!(*after, WAIT);
                    "timeout"
                }
                TransportError::Broker(_) => "broker",
                other => panic!("{kind:?}: {other:?}"),
            };
            assert_eq!(variant, expected, "{kind:?}");
            assert!(error.is_in_doubt(), "{kind:?} after sending is in doubt");
        }
    }

    #[test]
    fn an_unreadable_acknowledgement_is_a_protocol_error() {
        let garbage = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let source = PublishError::with_source(PublishErrorKind::Other, garbage);
        let error = NatsError::publish("placed", "s", source, WAIT, PublishStage::Acking);
        assert!(matches!(error, TransportError::Protocol(_)), "{error:?}");
        assert!(error.is_in_doubt());
    }

    #[test]
    fn a_request_handed_to_the_client_is_in_doubt_unless_nobody_could_receive_it() {
        let timeout = requested(RequestErrorKind::TimedOut);
        assert!(matches!(timeout, TransportError::Timeout(after) if after == WAIT));
        assert!(timeout.is_in_doubt());
        let lost = requested(RequestErrorKind::Other);
        assert!(matches!(lost, TransportError::Broker(_)), "{lost:?}");
        assert!(lost.is_in_doubt(), "a connection lost after sending");
        let nobody = requested(RequestErrorKind::NoResponders);
        assert!(matches!(&nobody, TransportError::NoResponders(name) if name == "ship"));
        assert!(!nobody.is_in_doubt());
        assert!(nobody.is_retryable());
        let invalid = requested(RequestErrorKind::InvalidSubject);
        assert!(matches!(invalid, TransportError::Protocol(_)));
        assert!(!invalid.is_retryable());
    }
}
