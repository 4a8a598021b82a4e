//! What the NATS transport reports, with the subject, stream or consumer involved.
//!
//! [`NatsTransport::connect`](crate::NatsTransport::connect) returns a [`NatsError`]; the
//! [`Transport`](catga_core::transport::Transport) methods return catga's
//! [`TransportError`], whose broker variants carry a [`NatsError`] as their source, so the
//! subject and the client's own error stay reachable through `source()`.

use std::time::Duration;

use async_nats::jetstream;
use catga_core::transport::TransportError;

use crate::headers::InvalidHeader;
use crate::subject::NameError;

/// A failure of the NATS transport, with its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration cannot work (a bad prefix or stream name, a zero batch size, …).
    #[error("invalid NATS transport configuration: {0}")]
    Config(String),
    /// A name the configuration derives subjects or stream names from is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The first connection to the server failed.
    #[error("could not connect to NATS at `{url}`")]
    Connect {
        /// The server URL.
        url: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
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
    /// A pull request for a consumer's next messages failed.
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

impl NatsError {
    /// A publish failure as catga's transport error: a timeout stays a timeout, an oversized
    /// message is [`TransportError::TooLarge`], a missing stream or a lost connection is a
    /// (retryable) broker or connection error.
    pub(crate) fn publish(
        name: &str,
        subject: &str,
        source: jetstream::context::PublishError,
        timeout: Duration,
    ) -> TransportError {
        use jetstream::context::PublishErrorKind as Kind;
        let kind = source.kind();
        let error = NatsError::Publish {
            name: name.to_string(),
            subject: subject.to_string(),
            source,
        };
        match kind {
            Kind::TimedOut => TransportError::Timeout(timeout),
            Kind::BrokenPipe => TransportError::Unreachable(Box::new(error)),
            _ => TransportError::Broker(Box::new(error)),
        }
    }

    /// A request failure as catga's transport error.
    pub(crate) fn request(
        name: &str,
        subject: &str,
        source: async_nats::RequestError,
        timeout: Duration,
    ) -> TransportError {
        use async_nats::RequestErrorKind as Kind;
        match source.kind() {
            Kind::TimedOut => TransportError::Timeout(timeout),
            Kind::NoResponders => TransportError::NoResponders(name.to_string()),
            Kind::InvalidSubject => TransportError::Protocol(
                NatsError::Request {
                    name: name.to_string(),
                    subject: subject.to_string(),
                    source,
                }
                .to_string(),
            ),
            _ => TransportError::Unreachable(Box::new(NatsError::Request {
                name: name.to_string(),
                subject: subject.to_string(),
                source,
            })),
        }
    }

    /// An envelope that cannot be written as NATS headers. Retrying would not help, and
    /// [`TransportError`] has no non-retryable variant with a source, so its text travels in
    /// [`TransportError::Protocol`].
    pub(crate) fn header(name: &str, source: InvalidHeader) -> TransportError {
        let error = NatsError::Header {
            name: name.to_string(),
            source,
        };
        TransportError::Protocol(format!("{error}: {}", error_source_text(&error)))
    }
}

fn error_source_text(error: &dyn std::error::Error) -> String {
    error.source().map(ToString::to_string).unwrap_or_default()
}

impl From<NatsError> for TransportError {
    /// A setup failure (while serving) as catga's transport error.
    fn from(error: NatsError) -> Self {
        TransportError::Broker(Box::new(error))
    }
}
