//! What can go wrong talking to Redis, with what the transport was doing at the time.
//!
//! Connecting ([`RedisTransport::connect`](crate::RedisTransport::connect), awaited) fails
//! with a [`ConnectError`], whose variants are those of the NATS transport's for the same
//! failures. The [`Transport`](catga_core::transport::Transport) methods return catga's
//! [`TransportError`], whose broker variants carry a [`CommandError`] as their source, so the
//! command and key stay reachable through `source()`.

use catga_core::transport::TransportError;
use redis::RedisError;

/// Why awaiting [`RedisConnect`](crate::RedisConnect) failed. Its variants are those of
/// `catga_nats::ConnectError` for the same failures, and read the same way.
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
    /// The URL does not parse as a Redis URL.
    #[error("`{url}` is not a redis url\nhelp: write `redis://host:port/db`")]
    InvalidUrl {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: RedisError,
    },
    /// The URL asks for TLS (`rediss://`), and catga-redis was built without its `tls`
    /// feature.
    #[error(
        "`{url}` asks for TLS, which this build of catga-redis does not support\nhelp: enable the `tls` feature of catga-redis (`catga-redis = {{ version = \"…\", features = [\"tls\"] }}`)"
    )]
    TlsUnsupported {
        /// The URL with its credentials hidden.
        url: String,
    },
    /// A TLS setting the client cannot use (with the `tls` feature): a PEM that holds no
    /// certificate or key or does not parse, a key that does not match its certificate, TLS
    /// options for a URL that does not ask for TLS, or a URL that turns certificate
    /// verification off (`#insecure`). Checked when the builder is awaited, before anything
    /// is sent. Neither the message nor the source shows the PEM's contents.
    #[error("invalid TLS setting `{option}` for `{url}`: {problem}\nhelp: {help}")]
    InvalidTls {
        /// The URL with its credentials hidden.
        url: String,
        /// The builder method that set it (`tls_root_certificate`, `tls_client_auth`), or
        /// `url`.
        option: &'static str,
        /// What is wrong with it.
        problem: &'static str,
        /// What to write instead.
        help: &'static str,
        /// What the parser said, when it said something that shows no key material.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The TLS handshake with the server failed (with the `tls` feature): its certificate is
    /// not trusted, not valid for the host or out of date, or the server refused the client's
    /// certificate or its absence, or the port does not speak TLS.
    #[error("the TLS handshake with the redis server at `{url}` failed: {problem}\nhelp: {help}")]
    TlsHandshake {
        /// The URL with its credentials hidden.
        url: String,
        /// Why, in words (`its certificate is not trusted`, …).
        problem: &'static str,
        /// What to do about it.
        help: &'static str,
        /// What the client said (the rustls error is in its text).
        #[source]
        source: RedisError,
    },
    /// The server could not be reached (refused, timed out, name not resolved).
    #[error("the redis server at `{url}` is unreachable: {source}")]
    Unreachable {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: RedisError,
    },
    /// The server was reached and answered the connection's setup with an error (a database
    /// number it does not have, a command the setup needs that it refuses).
    #[error(
        "the redis server at `{url}` refused to set up the connection: {source}\nhelp: check the URL's database number (`/0` to `/15` on a default server) and the server's settings"
    )]
    Rejected {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the server said.
        #[source]
        source: RedisError,
    },
    /// The server refused the credentials (a wrong user or password, or none where one is
    /// required).
    #[error("the redis server at `{url}` refused the credentials: {source}")]
    Unauthorized {
        /// The URL with its credentials hidden: errors end up in logs.
        url: String,
        /// What the client said.
        #[source]
        source: RedisError,
    },
}

impl ConnectError {
    /// A failed first connection, as the variant that says why.
    pub(crate) fn connect(url: String, source: RedisError) -> Self {
        #[cfg(feature = "tls")]
        if let Some((problem, help)) = crate::tls::handshake_failure(&source) {
            return ConnectError::TlsHandshake {
                url,
                problem,
                help,
                source,
            };
        }
        let refused = source.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(source.code(), Some("NOAUTH" | "WRONGPASS"));
        if refused {
            ConnectError::Unauthorized { url, source }
        } else if source.code().is_some() {
            // An error reply: the server is there, and said no.
            ConnectError::Rejected { url, source }
        } else {
            ConnectError::Unreachable { url, source }
        }
    }
}

/// A Redis command that failed: which one, on which key. It is the source of the
/// [`TransportError`] the transport returns, so the context survives up to the application.
#[derive(Debug, thiserror::Error)]
#[error("redis `{command}` on `{key}` failed: {source}")]
pub struct CommandError {
    command: &'static str,
    key: String,
    #[source]
    source: RedisError,
}

impl CommandError {
    /// Wraps `source`, the failure of `command` on `key`.
    pub(crate) fn new(command: &'static str, key: impl Into<String>, source: RedisError) -> Self {
        CommandError {
            command,
            key: key.into(),
            source,
        }
    }

    /// The command, e.g. `XADD`.
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// The key it was sent for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the connection, not the command, failed (so trying again later may work).
    pub fn is_connection(&self) -> bool {
        is_connection(&self.source)
    }

    /// Whether a Redis Cluster said the key is elsewhere or its slot is not served now
    /// (`MOVED`, `ASK`, `CLUSTERDOWN`, `TRYAGAIN`), or the node stopped being a primary under
    /// a blocked command (`UNBLOCKED`) or a write (`READONLY`): a failover or a resharding
    /// moved the key, and a connection of its own to its node must be found again.
    pub(crate) fn is_moved(&self) -> bool {
        matches!(
            self.source.code(),
            Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN" | "UNBLOCKED" | "READONLY")
        )
    }

    /// Whether the server said `NOGROUP`: the stream or its consumer group is gone (deleted,
    /// or lost by a server restarted without persistence).
    pub(crate) fn is_no_group(&self) -> bool {
        self.source.code() == Some("NOGROUP")
    }

    /// Whether nothing can have reached the server: the connection the command needed was
    /// refused, so the command was never written. Any other failure of the connection (reset,
    /// closed, timed out) may come after the server received the command.
    pub fn is_unsent(&self) -> bool {
        self.source.is_connection_refusal()
    }

    /// As the core's error, for a command that may have been sent: `Unreachable` only when
    /// it cannot have been ([`is_unsent`](Self::is_unsent)), since a caller may then safely
    /// send again; a connection lost or timed out after sending, or any server error, is a
    /// `Broker` error, whose outcome is in doubt.
    pub(crate) fn into_transport(self) -> TransportError {
        if self.is_unsent() {
            TransportError::Unreachable(Box::new(self))
        } else {
            TransportError::Broker(Box::new(self))
        }
    }

    /// As the core's error, for a command that failed after the message it is about was
    /// already on the server (waiting for a request's reply): always in doubt, never
    /// `Unreachable`, even if the connection for this command was refused.
    pub(crate) fn into_transport_after_send(self) -> TransportError {
        TransportError::Broker(Box::new(self))
    }
}

/// Whether `error` is about the connection rather than the command.
pub(crate) fn is_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
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

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn only_a_refused_connection_is_unreachable() {
        let err = CommandError::new("XADD", "k", io(std::io::ErrorKind::ConnectionRefused))
            .into_transport();
        assert!(matches!(err, TransportError::Unreachable(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(!err.is_in_doubt(), "nothing was sent: safe to send again");
    }

    #[test]
    fn a_connection_lost_or_timed_out_after_sending_is_in_doubt() {
        use std::io::ErrorKind::{
            BrokenPipe, ConnectionAborted, ConnectionReset, TimedOut, UnexpectedEof,
        };
        for kind in [
            ConnectionReset,
            BrokenPipe,
            ConnectionAborted,
            UnexpectedEof,
            TimedOut,
        ] {
            let err = CommandError::new("EVALSHA", "k", io(kind)).into_transport();
            assert!(
                matches!(err, TransportError::Broker(_)),
                "{kind:?}: {err:?}"
            );
            assert!(err.is_in_doubt(), "{kind:?}");
            assert!(err.is_retryable(), "{kind:?}");
        }
    }

    #[test]
    fn waiting_for_a_reply_never_reports_unreachable() {
        // The request is on its stream already: whatever fails now, it may be handled.
        let err = CommandError::new("BLPOP", "r", io(std::io::ErrorKind::ConnectionRefused))
            .into_transport_after_send();
        assert!(matches!(err, TransportError::Broker(_)), "{err:?}");
        assert!(err.is_in_doubt());
    }

    #[test]
    fn a_server_error_is_a_broker_error_with_its_context() {
        let client = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "not a stream"));
        let err = CommandError::new("XADD", "k", client).into_transport();
        let TransportError::Broker(inner) = &err else {
            panic!("{err:?}");
        };
        let context = inner.downcast_ref::<CommandError>().map(CommandError::key);
        assert_eq!(
            context,
            Some("k"),
            "the command and key travel with the error"
        );
    }
}
