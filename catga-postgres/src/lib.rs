//! PostgreSQL for catga, through sqlx: a transactional outbox, so a handler's writes and the
//! events it publishes commit together and reach the broker at least once.
//!
//! * [`migrate`] creates the tables in a schema of your choice ([`Schema`]), idempotently.
//! * [`Outbox`] is a behaviour: each command runs in a transaction ([`Tx`]) that also stores
//!   the events the handler published; a failed handler leaves no row and no event.
//! * [`Inbox`] records each handled message in the same transaction, so a redelivery has no
//!   second effect.
//! * [`OutboxRelay`] publishes the stored events through the application's transport and
//!   removes each once the transport acknowledged it.
//!
//! * The stores of `catga_core::store` on Postgres, shared by every instance on a schema:
//!   [`PostgresIdempotencyStore`], [`PostgresDeadLetterStore`], [`PostgresEventStore`] (which
//!   appends in the dispatch's transaction), [`PostgresSagaStore`], [`PostgresLeaseStore`]
//!   (leases with fencing tokens, for `catga_core::cluster::Leadership`) and
//!   [`PostgresScheduleStore`] (scheduled messages, for `catga_core::cluster::Scheduler`).
//!
//! What it guarantees, the schema and the measured figures are in `docs/persistence.md`.
//!
//! Add it with sqlx's Postgres driver on Tokio:
//!
//! ```toml
//! catga-postgres = { git = "https://github.com/catga/catga-rs" }   # not on crates.io yet (see the README)
//! sqlx = { version = "0.9", default-features = false, features = ["postgres", "runtime-tokio"] }
//! ```
//!
//! Queries are checked at run time: building this crate needs no database.

#![forbid(unsafe_code)]

mod error;
mod fnv;
mod inbox;
mod migrate;
pub mod outbox;
mod schema;
pub mod store;
mod transaction;
mod tx;

pub use error::PostgresError;
pub use inbox::Inbox;
pub use migrate::migrate;
pub use outbox::{Outbox, OutboxRelay, RunningRelay};
pub use schema::Schema;
pub use store::{
    PostgresDeadLetterStore, PostgresEventStore, PostgresIdempotencyStore, PostgresLeaseStore,
    PostgresSagaStore, PostgresScheduleStore,
};
pub use tx::{Tx, TxGuard};

/// The examples of `docs/persistence.md`, compiled as doctests.
#[doc = include_str!("../../docs/persistence.md")]
#[cfg(doctest)]
mod persistence_doctests {}
