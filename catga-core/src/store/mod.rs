//! Stores: where catga keeps what must outlive a dispatch.

pub mod event;
pub mod memory_event;
