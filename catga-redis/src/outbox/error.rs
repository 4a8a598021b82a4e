//! What can go wrong in the Redis outbox, inbox and unit of work.

use catga_core::error::{Error, ErrorKind};

use crate::store::RedisStoreError;

/// A failure of the Redis unit of work ([`RedisWrites`](super::RedisWrites)), the
/// [`RedisOutbox`](super::RedisOutbox), its relay, or the [`RedisInbox`](crate::RedisInbox).
///
/// A dispatch sees the server's failures as [`ErrorKind::Store`] (retryable), and a write of
/// the handler's that Redis refused as the handler's own error, not retryable (the same write
/// would be refused again).
///
/// ```no_run
/// use catga_core::prelude::*;
/// use catga_redis::{RedisOutboxError, RedisWrites};
///
/// #[command(output = ())]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct Count { pub by: i64 }
///
/// #[handler]
/// async fn count(cmd: Count) -> Result<(), RedisOutboxError> {
///     let writes = RedisWrites::current()?;      // `NoUnit` outside an outbox or inbox
///     writes.incr_by(&writes.key("count"), cmd.by)?;
///     Ok(())
/// }
///
/// # async fn demo<L: catga_core::pipeline::Layer>(app: Catga<L>) {
/// if let Err(error) = app.send(Count { by: 1 }).await {
///     // A counter that is not an integer: the unit was refused whole.
///     if let Some(RedisOutboxError::Refused { reason, .. }) = error.downcast_ref() {
///         eprintln!("refused: {reason}");
///     }
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisOutboxError {
    /// `RedisWrites::current()` was called outside a dispatch a `RedisOutbox` (commands) or
    /// `RedisInbox` (commands and event handlers) runs: no such layer, a query, or a task the
    /// handler spawned.
    #[error(
        "no Redis unit of work here: `RedisWrites::current()` works inside a dispatch that a `RedisOutbox` (commands) or a `RedisInbox` (commands and event handlers) runs, on the dispatch's own task"
    )]
    NoUnit,
    /// The unit already committed or was discarded: a `RedisWrites` kept past the handler's
    /// return.
    #[error("the Redis unit of work already ended: queue writes before the handler returns")]
    UnitEnded,
    /// A write that cannot be queued as given (no value, a NaN score, too many arguments).
    #[error("redis unit of work: `{command}` cannot be queued: {reason}")]
    InvalidWrite {
        /// The command.
        command: &'static str,
        /// Why, and what to write instead.
        reason: String,
    },
    /// A handler's write to a key the outbox itself keeps (its stream, claims, ordering-key
    /// lists or inbox records).
    #[error(
        "redis unit of work: `{key}` is one of the outbox's own keys; a handler may not write it"
    )]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// Redis refused one of the queued writes at commit (`WRONGTYPE`, a value that is not an
    /// integer, an unknown command): **nothing of the unit was applied**, no event stored, no
    /// inbox record written.
    #[error(
        "redis unit of work: write #{index} (`{command}`) was refused: {reason}; nothing of the unit was applied"
    )]
    Refused {
        /// The write's position among the unit's writes, from 1 (0: an outbox key).
        index: usize,
        /// The command's name.
        command: String,
        /// What Redis said.
        reason: String,
    },
    /// A write the commit script had checked failed anyway (a server limit): the writes
    /// before it stay applied; no event was stored and no inbox record written.
    #[error(
        "redis unit of work: write #{index} (`{command}`) failed after the writes before it were applied: {reason}; no event was stored"
    )]
    PartiallyApplied {
        /// The write's position, from 1.
        index: usize,
        /// The command's name.
        command: String,
        /// What Redis said.
        reason: String,
    },
    /// The server or the connection failed.
    #[error(transparent)]
    Store(#[from] RedisStoreError),
    /// An option that cannot be used.
    #[error("redis outbox: invalid value {value} for `{option}`: {reason}")]
    InvalidOption {
        /// The method that set it.
        option: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
}

impl RedisOutboxError {
    /// Whether trying again later may succeed: the server could not be reached or timed out.
    pub fn is_retryable(&self) -> bool {
        match self {
            RedisOutboxError::Store(store) => store.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn command(
        operation: &'static str,
        key: impl Into<String>,
    ) -> impl FnOnce(redis::RedisError) -> RedisOutboxError {
        let to_store = RedisStoreError::command(operation, key);
        move |source| RedisOutboxError::Store(to_store(source))
    }

    pub(crate) fn malformed(
        operation: &'static str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> RedisOutboxError {
        RedisOutboxError::Store(RedisStoreError::malformed(operation, key, reason))
    }
}

/// `error` as the dispatch's error: a refused or partly applied write is the handler's own
/// (not retryable); anything else is the store's ([`ErrorKind::Store`], retryable).
pub(crate) fn dispatch_error(
    message: &'static str,
    handler: Option<&'static str>,
    error: RedisOutboxError,
) -> Error {
    match error {
        RedisOutboxError::Refused { .. } | RedisOutboxError::PartiallyApplied { .. } => {
            Error::from_handler(message, handler.unwrap_or(message), error)
        }
        other => ErrorKind::Store {
            operation: "redis unit of work",
            source: Box::new(other),
        }
        .into(),
    }
}
