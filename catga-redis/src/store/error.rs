//! What can go wrong in a Redis store, with the operation and the key.

use redis::RedisError;

/// A Redis store's failure: which operation, on which key, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The command failed: the server is unreachable or refused it.
    #[error("redis store: `{operation}` on `{key}` failed: {source}")]
    Command {
        /// What the store was doing, e.g. `idempotency: claim`.
        operation: &'static str,
        /// The key it was working on.
        key: String,
        /// What the client said.
        #[source]
        source: RedisError,
    },
    /// The server answered with something the store never writes there: another program
    /// wrote the key, or it was changed by hand.
    #[error("redis store: `{operation}`: the value at `{key}` is malformed: {reason}")]
    Malformed {
        /// What the store was doing.
        operation: &'static str,
        /// The key whose value is malformed.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value larger than the store's `max_write_bytes`; nothing was sent.
    #[error("redis store: `{operation}`: {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What the store was doing.
        operation: &'static str,
        /// The value's size, bytes.
        size: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// An option the store cannot use.
    #[error("redis store: invalid value {value} for `{option}`: {reason}")]
    InvalidOption {
        /// The builder method that set it.
        option: &'static str,
        /// The value given, as Rust writes it.
        value: String,
        /// Why it cannot be used, and what to write instead.
        reason: &'static str,
    },
}

impl RedisStoreError {
    /// Whether trying again later may succeed: the server could not be reached or timed out,
    /// or (on a Redis Cluster) a failover or resharding is under way (not a refused command,
    /// a malformed value or an oversized write).
    pub fn is_retryable(&self) -> bool {
        match self {
            RedisStoreError::Command { source, .. } => {
                source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || matches!(
                        source.code(),
                        Some(
                            "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "MOVED" | "ASK"
                        )
                    )
            }
            _ => false,
        }
    }

    pub(crate) fn command(
        operation: &'static str,
        key: impl Into<String>,
    ) -> impl FnOnce(RedisError) -> RedisStoreError {
        let key = key.into();
        move |source| RedisStoreError::Command {
            operation,
            key,
            source,
        }
    }

    pub(crate) fn malformed(
        operation: &'static str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> RedisStoreError {
        RedisStoreError::Malformed {
            operation,
            key: key.into(),
            reason: reason.into(),
        }
    }
}
