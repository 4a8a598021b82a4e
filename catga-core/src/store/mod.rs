//! Stores: where catga keeps what must outlive a dispatch (replies already given, messages
//! that could not be handled, …). Each is a trait with an in-memory implementation here; the
//! Redis and Postgres implementations live in their adapter crates.

pub mod dead_letter;
pub mod event;
pub mod idempotency;
pub mod memory_event;
