//! The store conformance suite: the promises every implementation of a store trait keeps,
//! checked scenario by scenario on any of them.
//!
//! Each store trait of [`store`](crate::store) says what it promises in its rustdoc (a
//! completed key gives its reply, a stale append is a conflict and writes nothing, …). The
//! in-memory stores keep those promises in one process; a database's stores (`catga-postgres`)
//! keep the same ones across processes. One suite per trait checks them all the same way:
//!
//! | trait | scenarios | macro |
//! |---|---|---|
//! | [`IdempotencyStore`](crate::store::idempotency::IdempotencyStore) | [`idempotency`] | [`idempotency_store_conformance!`] |
//! | [`DeadLetterStore`](crate::store::dead_letter::DeadLetterStore) | [`dead_letter`] | [`dead_letter_store_conformance!`] |
//! | [`EventStore`](crate::store::event::EventStore) | [`event`] | [`event_store_conformance!`] |
//! | [`SagaStore`](crate::store::saga::SagaStore) | [`saga`] | [`saga_store_conformance!`] |
//! | [`LeaseStore`](crate::store::lease::LeaseStore) | [`lease`] | [`lease_store_conformance!`] |
//! | [`ScheduleStore`](crate::store::schedule::ScheduleStore) | [`schedule`] | [`schedule_store_conformance!`] |
//!
//! A scenario is a plain `async fn` taking a fresh store (`pub async fn scenario<S:
//! Trait>(store: S)`) and panicking with what it expected. Unlike the transport scenarios they
//! register no handlers, so they are ordinary library functions: an adapter can call one by
//! hand. A store takes part by expanding the macro of each trait it implements in a test
//! binary, with an *opener*: an async function or closure that is given the scenario's name and
//! returns a fresh, isolated store (its own key prefix, its own schema), or `None` when its
//! server is unreachable and the test is skipped (after
//! [`services::unavailable`](super::services::unavailable) said why). The macro writes one
//! `#[test]` per scenario, in a module named after the trait, so `cargo test --test
//! store_conformance` lists every scenario by name (`event_store::a_stale_append_is_a_conflict_and_writes_nothing`).
//!
//! ```ignore
//! use catga_core::store::memory_event::InMemoryEventStore;
//!
//! catga_core::testkit::stores::event_store_conformance!(|_scenario| async {
//!     Some(InMemoryEventStore::new())
//! });
//! ```
//!
//! Every scenario runs on a multi-thread runtime with two workers, in real time, also for the
//! in-memory stores: a real store cannot run on a paused clock, and running the in-memory ones
//! the same way shows the scenarios themselves make no assumption only virtual time keeps.
//! Scenarios that wait for a lease or a TTL to run out use short ones (200 ms) and poll with a
//! deadline; no scenario asserts how long something took, only bounds it to fail instead of
//! hanging. Timestamps a scenario writes are whole microseconds, the finest Postgres keeps.

pub mod dead_letter;
pub mod event;
pub mod idempotency;
pub mod lease;
pub mod saga;
pub mod schedule;

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::PATIENCE;

pub use crate::{
    dead_letter_store_conformance, event_store_conformance, idempotency_store_conformance,
    lease_store_conformance, saga_store_conformance, schedule_store_conformance,
};

/// The bound on one whole scenario: a store that hangs fails the test instead of the run.
const SCENARIO_BOUND: Duration = Duration::from_secs(4 * PATIENCE.as_secs());

/// Runs the scenario `scenario` on a store `open` gives for it, on a multi-thread runtime
/// with two workers, failing the test after a generous bound if the scenario hangs. When
/// `open` gives `None` (the server is unreachable and the test is skipped), nothing runs.
///
/// The tests the `*_store_conformance!` macros write are each one call of this, with the
/// scenario's name as `test`.
///
/// # Panics
/// When the runtime cannot be built, when the scenario fails (its own message) and when it
/// runs longer than the bound.
pub fn run<S, Open, Opened, Scenario, Ran>(test: &'static str, open: Open, scenario: Scenario)
where
    Open: FnOnce(&'static str) -> Opened,
    Opened: Future<Output = Option<S>>,
    Scenario: FnOnce(S) -> Ran,
    Ran: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the scenario");
    runtime.block_on(async {
        let Some(store) = open(test).await else {
            return;
        };
        let ran = tokio::time::timeout(SCENARIO_BOUND, scenario(store)).await;
        assert!(
            ran.is_ok(),
            "{test}: gave up after {SCENARIO_BOUND:?}: the scenario hung"
        );
    });
}

/// `len` bytes running through every byte value, each run of 256 in another order: not
/// UTF-8, not JSON, with zeros in it, so a store that keeps bytes as text or JSON, or mixes up
/// chunks, cannot give them back the same.
fn every_byte(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 256) ^ (i / 256 % 256)) as u8)
        .collect()
}

/// The current time, to the microsecond: what every store can keep exactly.
fn now_in_micros() -> SystemTime {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970");
    let micros = u64::try_from(since_epoch.as_micros()).expect("a time before the year 586912");
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros)
}

/// One `#[test]` per scenario of one store trait, each opening its store with `$open`.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_store_tests {
    ($open:path, $family:ident, [$($scenario:ident),* $(,)?]) => {
        $(
            #[test]
            fn $scenario() {
                $crate::testkit::stores::run(
                    ::core::stringify!($scenario),
                    $open,
                    $crate::testkit::stores::$family::$scenario,
                );
            }
        )*
    };
}
