//! Stores: where catga keeps what must outlive a dispatch (replies already given, messages
//! that could not be handled, event streams, saga progress, leases, scheduled messages, …). Each is a trait with an
//! in-memory implementation here; `catga-postgres` implements every one on PostgreSQL, and
//! every implementation runs the same conformance suite
//! (`catga_core::testkit::stores`, feature `testkit`).

pub mod dead_letter;
pub mod event;
pub mod idempotency;
pub mod lease;
pub mod memory_event;
pub mod memory_lease;
pub mod memory_schedule;
pub mod pending_reply;
pub mod saga;
pub mod schedule;
