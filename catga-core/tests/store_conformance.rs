//! The store conformance suite (`catga_core::testkit::stores`) on the in-memory stores:
//! `cargo test -p catga-core --features testkit --test store_conformance` lists every
//! scenario by name (`saga_store::a_stale_save_is_a_conflict_and_writes_nothing`, …).
//!
//! The scenarios run in real time, as they do against Redis and Postgres (see the suite's
//! docs); the longest waits are the 200 ms leases and TTLs of the idempotency scenarios.

use catga_core::store::dead_letter::MemoryDeadLetterStore;
use catga_core::store::idempotency::MemoryIdempotencyStore;
use catga_core::store::memory_event::InMemoryEventStore;
use catga_core::store::saga::MemorySagaStore;

catga_core::testkit::stores::idempotency_store_conformance!(|_scenario| async {
    Some(MemoryIdempotencyStore::new())
});

catga_core::testkit::stores::dead_letter_store_conformance!(|_scenario| async {
    Some(MemoryDeadLetterStore::new())
});

// The bounded store keeps the same promises while it is under its capacity.
mod bounded {
    use catga_core::store::dead_letter::MemoryDeadLetterStore;

    catga_core::testkit::stores::dead_letter_store_conformance!(|_scenario| async {
        Some(MemoryDeadLetterStore::bounded(100))
    });
}

catga_core::testkit::stores::event_store_conformance!(|_scenario| async {
    Some(InMemoryEventStore::new())
});

catga_core::testkit::stores::saga_store_conformance!(|_scenario| async {
    Some(MemorySagaStore::new())
});

catga_core::testkit::stores::lease_store_conformance!(|_scenario| async {
    Some(catga_core::store::memory_lease::MemoryLeaseStore::new())
});

catga_core::testkit::stores::schedule_store_conformance!(|_scenario| async {
    Some(catga_core::store::memory_schedule::MemoryScheduleStore::new())
});
