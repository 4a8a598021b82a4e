//! The adapter's errors.

use catga_core::error::BoxError;

/// What went wrong talking to Postgres, or with what was asked of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The schema name is not a plain Postgres identifier.
    #[error(
        "`{0}` is not a valid schema name: use 1 to 63 lowercase ASCII letters, digits and `_`, not starting with a digit"
    )]
    InvalidSchema(String),
    /// An option was given a value it cannot take.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option, as its builder method is named.
        option: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// A migration could not be applied.
    #[error("migrating schema `{schema}` failed: {source}")]
    Migrate {
        /// The schema being migrated.
        schema: String,
        /// sqlx's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed (the database is unreachable, a constraint was violated, …).
    #[error("{operation} failed: {source}")]
    Database {
        /// What was being done, e.g. `outbox: insert`.
        operation: &'static str,
        /// sqlx's error.
        #[source]
        source: sqlx::Error,
    },
    /// `Tx::current` was called outside a dispatch that an `Outbox` or `Inbox` runs.
    #[error(
        "no transaction: this code does not run inside a dispatch with a transaction; a command gets one from `.layer(Outbox::new(pool, &schema))` or `.layer(Inbox::new(pool, &schema))`, an event handler from the `Inbox` (the `Outbox` wraps commands only); call it from the handler itself, not from a task it spawned"
    )]
    NoTransaction,
    /// The dispatch's transaction is locked by a guard (`Tx::lock`) still alive, so catga's
    /// own code called from the handler cannot use it.
    #[error(
        "the dispatch's transaction is locked by a `Tx::lock` guard that is still alive: drop the guard (end its block) before calling the event store or a `Repository`"
    )]
    TransactionBusy,
    /// The dispatch's transaction was already committed or rolled back.
    #[error("the dispatch's transaction has already ended")]
    TransactionEnded,
    /// A value is larger than a store accepts in one write (see the stores'
    /// `max_write_bytes`): refused before anything is sent.
    #[error(
        "{what} is {bytes} bytes, more than the {limit} bytes this store accepts in one write\nhelp: store the value elsewhere and keep a reference, or raise the store's `max_write_bytes`"
    )]
    TooLarge {
        /// What was too large, e.g. `a dead letter`.
        what: &'static str,
        /// Its size in bytes.
        bytes: usize,
        /// The store's limit in bytes.
        limit: usize,
    },
    /// A value cannot be stored as given: Postgres `text` and `jsonb` cannot hold a NUL
    /// character, and integers must fit in a `bigint`. Refused before anything is sent.
    #[error("{what} cannot be stored: {reason}")]
    Unrepresentable {
        /// The value, e.g. `a dead letter's error`.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A stored row could not be read back (a column holds something catga did not write).
    #[error("malformed row in `{table}`: {reason}")]
    MalformedRow {
        /// The table.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl PostgresError {
    /// A failed query, with what was being done.
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> PostgresError {
        move |source| PostgresError::Database { operation, source }
    }

    /// Boxed, for the core traits' error types.
    pub(crate) fn boxed(self) -> BoxError {
        Box::new(self)
    }
}
