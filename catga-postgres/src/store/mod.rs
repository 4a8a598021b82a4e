//! catga-core's stores on Postgres: every instance of an application on one schema shares
//! them, and each keeps the promises of its trait, checked by the same conformance suite as
//! the in-memory stores (`catga_core::testkit::stores`).
//!
//! | store | trait | tables | transaction |
//! |---|---|---|---|
//! | [`PostgresIdempotencyStore`] | [`IdempotencyStore`](catga_core::store::idempotency::IdempotencyStore) | `idempotency` | pool |
//! | [`PostgresDeadLetterStore`] | [`DeadLetterStore`](catga_core::store::dead_letter::DeadLetterStore) | `dead_letters` | pool |
//! | [`PostgresEventStore`] | [`EventStore`](catga_core::store::event::EventStore) | `events`, `event_streams` | the dispatch's, else pool |
//! | [`PostgresSagaStore`] | [`SagaStore`](catga_core::store::saga::SagaStore) | `sagas` | pool |
//! | [`PostgresLeaseStore`] | [`LeaseStore`](catga_core::store::lease::LeaseStore) | `leases` | pool |
//! | [`PostgresScheduleStore`] | [`ScheduleStore`](catga_core::store::schedule::ScheduleStore) | `scheduled_messages`, `schedule_fence` | pool |
//!
//! [`migrate`](crate::migrate) creates the tables in the schema given. Each store is built
//! from a pool and that schema, does no I/O until used, and is cheap to clone. Queries are
//! plain SQL checked by the tests, with every value a bind parameter.
//!
//! **Transactions.** The event store appends through the dispatch's transaction
//! ([`Tx`](crate::Tx)) when there is one, so an aggregate's events commit with the handler's
//! other writes and its outbox rows. The others always use the pool, for what they record must
//! not wait for, or be undone with, the dispatch's transaction: a claim must be seen by other
//! instances while the handler runs, a dead letter is written because the dispatch failed, a
//! saga's progress is saved between steps, a lease is granted to one instance at once, and a
//! scheduled message is claimed by one leader at once.
//!
//! **Sizes.** Each store refuses a write larger than its `max_write_bytes` (default
//! [`DEFAULT_MAX_WRITE_BYTES`], 64 MiB, at most [`MAX_WRITE_BYTES`]) before sending it, with
//! [`PostgresError::TooLarge`](crate::PostgresError::TooLarge): a clear error in place of
//! Postgres's own refusal at 1 GB, and a bound on what one write holds in memory. Text
//! Postgres cannot store (a NUL character) is refused with
//! [`PostgresError::Unrepresentable`](crate::PostgresError::Unrepresentable).
//!
//! **Times** are kept to the microsecond. Leases, TTLs, claims of scheduled messages and
//! `updated_at` use the database's clock, so instances need not agree on the time; a dead
//! letter's `failed_at` and a scheduled message's due time are the ones given.

mod column;
pub mod dead_letter;
pub mod event;
pub mod idempotency;
pub mod lease;
pub mod saga;
pub mod schedule;
mod wakeup;

pub use column::{DEFAULT_MAX_WRITE_BYTES, MAX_WRITE_BYTES};
pub use dead_letter::PostgresDeadLetterStore;
pub use event::PostgresEventStore;
pub use idempotency::PostgresIdempotencyStore;
pub use lease::PostgresLeaseStore;
pub use saga::PostgresSagaStore;
pub use schedule::PostgresScheduleStore;
