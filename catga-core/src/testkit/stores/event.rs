//! The [`EventStore`] scenarios: an unknown stream loads empty; an append at version 0 creates
//! a stream; a stale append is a conflict and writes nothing; of concurrent appends at one
//! version exactly one wins; events load in order with versions 1..n and their ids, types,
//! payloads and causation as appended; loading from a version skips what is before it; an
//! empty append only checks the version; streams are independent.

use std::sync::Arc;

use tokio::sync::Barrier;
use uuid::Uuid;

use super::every_byte;
use crate::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};

/// Writes the [`EventStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::event`](crate::testkit::stores::event), in a module `event_store`, each
/// on a store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: EventStore`: a fresh, isolated, empty store, or `None` to
/// skip the test when its server is unreachable. Expand it once per test binary, at its root.
///
/// ```ignore
/// use catga_core::store::memory_event::InMemoryEventStore;
///
/// catga_core::testkit::stores::event_store_conformance!(|_scenario| async {
///     Some(InMemoryEventStore::new())
/// });
/// ```
#[macro_export]
macro_rules! event_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the event store suite runs on.
        fn __catga_open_event_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::event::EventStore>,
        > {
            ($open)(scenario)
        }

        /// The event store suite: one test per scenario.
        pub mod event_store {
            $crate::__catga_store_tests!(
                super::__catga_open_event_store,
                event,
                [
                    an_unknown_stream_loads_empty,
                    an_append_at_version_0_creates_the_stream,
                    a_stale_append_is_a_conflict_and_writes_nothing,
                    of_concurrent_appends_at_one_version_exactly_one_wins,
                    events_load_in_order_with_versions_from_1_and_as_appended,
                    loading_from_a_version_skips_the_events_before_it,
                    an_empty_append_checks_the_version_and_writes_nothing,
                    streams_are_independent,
                ]
            );
        }
    };
}

/// An event of type `event_type` with a JSON payload naming `n`.
fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(event_type, format!("{{\"n\":{n}}}").into_bytes())
}

async fn append(
    store: &impl EventStore,
    stream: &str,
    expected_version: u64,
    events: &[NewEvent],
) -> Result<u64, EventStoreError> {
    store
        .append(stream, expected_version, events.to_vec())
        .await
}

/// Appends that must succeed, giving the stream's new version.
async fn append_ok(
    store: &impl EventStore,
    stream: &str,
    expected_version: u64,
    events: &[NewEvent],
) -> u64 {
    append(store, stream, expected_version, events)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "append {} event(s) to `{stream}` at version {expected_version}: {e}",
                events.len()
            )
        })
}

async fn load(store: &impl EventStore, stream: &str, from_version: u64) -> Vec<StoredEvent> {
    store
        .load(stream, from_version)
        .await
        .unwrap_or_else(|e| panic!("load `{stream}` from version {from_version}: {e}"))
}

/// Asserts that `result` is a conflict on `stream` with exactly these versions.
fn assert_conflict(result: Result<u64, EventStoreError>, stream: &str, expected: u64, actual: u64) {
    match result {
        Err(EventStoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (s.as_str(), e, a),
            (stream, expected, actual),
            "the conflict names the stream, the version expected and the stream's version"
        ),
        other => panic!(
            "an append to `{stream}` at version {expected} while it is at {actual} is \
             `EventStoreError::Conflict {{ expected: {expected}, actual: {actual}, .. }}`, \
             got {other:?}"
        ),
    }
}

/// Asserts that `stored` are `appended`, in order, at versions `first..`, in `stream`.
fn assert_stored(stored: &[StoredEvent], stream: &str, first: u64, appended: &[NewEvent]) {
    assert_eq!(
        stored.len(),
        appended.len(),
        "`{stream}` from version {first} holds {} event(s)",
        appended.len()
    );
    for ((stored, new), version) in stored.iter().zip(appended).zip(first..) {
        assert_eq!(stored.stream, stream);
        assert_eq!(
            stored.version, version,
            "events load in order, numbered from 1"
        );
        assert_eq!(stored.event_id, new.event_id, "event {version}'s id");
        assert_eq!(stored.event_type, new.event_type, "event {version}'s type");
        assert!(
            stored.payload == new.payload,
            "event {version}'s payload is the {} bytes appended, byte for byte",
            new.payload.len()
        );
        assert_eq!(
            (stored.correlation_id, stored.causation_id),
            (new.correlation_id, new.causation_id),
            "event {version}'s correlation and causation ids"
        );
    }
}

/// A stream nothing was appended to loads no events, from any version.
pub async fn an_unknown_stream_loads_empty<S: EventStore>(store: S) {
    for from in [0, 1, 7] {
        assert_eq!(
            load(&store, "order-404", from).await,
            [],
            "an unknown stream from version {from}"
        );
    }
}

/// An append at version 0 to a new stream creates it: its new version is the number of events,
/// which load back at versions 1 and 2.
pub async fn an_append_at_version_0_creates_the_stream<S: EventStore>(store: S) {
    let events = [event("Placed", 1), event("Paid", 2)];
    assert_eq!(append_ok(&store, "order-1", 0, &events).await, 2);
    assert_stored(&load(&store, "order-1", 0).await, "order-1", 1, &events);
}

/// An append naming a version the stream is not at fails with a conflict carrying both
/// versions, and none of its events is written, not even the first.
pub async fn a_stale_append_is_a_conflict_and_writes_nothing<S: EventStore>(store: S) {
    let first = [event("Placed", 1)];
    assert_eq!(append_ok(&store, "order-1", 0, &first).await, 1);

    let late = [event("Placed", 2), event("Paid", 3)];
    assert_conflict(append(&store, "order-1", 0, &late).await, "order-1", 0, 1);
    assert_conflict(append(&store, "order-1", 5, &late).await, "order-1", 5, 1);
    assert_stored(&load(&store, "order-1", 0).await, "order-1", 1, &first);

    // A stream that does not exist is at version 0: only an append expecting 0 creates it.
    assert_conflict(append(&store, "order-2", 3, &late).await, "order-2", 3, 0);
    assert_eq!(
        load(&store, "order-2", 0).await,
        [],
        "a refused append creates no stream"
    );
    assert_eq!(append_ok(&store, "order-2", 0, &late).await, 2);
}

/// Eight writers append to one stream at the same version at once: exactly one succeeds, the
/// others get a conflict naming the winner's version, and the stream holds the winner's event
/// with no gap.
pub async fn of_concurrent_appends_at_one_version_exactly_one_wins<S: EventStore>(store: S) {
    const WRITERS: usize = 8;
    let store = Arc::new(store);
    let seed = [event("Opened", 0)];
    assert_eq!(append_ok(&*store, "account-7", 0, &seed).await, 1);

    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS as u64)
        .map(|n| {
            let (store, start) = (store.clone(), start.clone());
            let events = [event("Deposited", n)];
            tokio::spawn(async move {
                start.wait().await;
                let result = append(&*store, "account-7", 1, &events).await;
                (events[0].event_id, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        let (event_id, result) = writer.await.expect("a writer");
        match result {
            Ok(version) => winners.push((event_id, version)),
            refused => assert_conflict(refused, "account-7", 1, 2),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "of {WRITERS} concurrent appends at version 1, exactly one wins; won: {winners:?}"
    );
    let (winner, version) = winners[0];
    assert_eq!(
        version, 2,
        "the winner's append makes the stream's version 2"
    );
    let stored = load(&*store, "account-7", 0).await;
    let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2], "one event per version, no gap");
    assert_eq!(
        stored[1].event_id, winner,
        "version 2 is the winner's event"
    );
}

/// Events appended in three batches load as one sequence numbered 1..=6, each with its id,
/// type, payload (JSON, empty, or bytes that are no text at all, byte for byte) and causation.
pub async fn events_load_in_order_with_versions_from_1_and_as_appended<S: EventStore>(store: S) {
    let correlation = Uuid::now_v7();
    let batches: [Vec<NewEvent>; 3] = [
        vec![event("Placed", 1)],
        vec![
            NewEvent::new("Binary", every_byte(64 * 1024)),
            NewEvent::new("Empty", Vec::new()),
            event("Paid", 3).with_causation(Some(correlation), Some(Uuid::now_v7())),
        ],
        vec![
            event("Shipped", 5).with_causation(Some(correlation), None),
            NewEvent::new(
                "Noted",
                "{\"note\":\"livré à Zürich ✓\"}".as_bytes().to_vec(),
            ),
        ],
    ];
    let mut version = 0;
    for batch in &batches {
        let next = append_ok(&store, "order-9", version, batch).await;
        assert_eq!(
            next,
            version + batch.len() as u64,
            "an append returns the stream's new version"
        );
        version = next;
    }
    let all: Vec<NewEvent> = batches.concat();
    assert_stored(&load(&store, "order-9", 0).await, "order-9", 1, &all);
    assert_stored(&load(&store, "order-9", 1).await, "order-9", 1, &all);
}

/// Loading from version `v` gives the events from `v` on; from past the end gives none.
pub async fn loading_from_a_version_skips_the_events_before_it<S: EventStore>(store: S) {
    let events: Vec<NewEvent> = (1..=5).map(|n| event("Counted", n)).collect();
    assert_eq!(append_ok(&store, "counter", 0, &events).await, 5);
    assert_stored(
        &load(&store, "counter", 3).await,
        "counter",
        3,
        &events[2..],
    );
    assert_stored(
        &load(&store, "counter", 5).await,
        "counter",
        5,
        &events[4..],
    );
    assert_eq!(load(&store, "counter", 6).await, [], "from past the end");
    assert_eq!(
        load(&store, "counter", 100).await,
        [],
        "from far past the end"
    );
}

/// Appending no events checks the version (a conflict if it is not the stream's) and writes
/// nothing: no event, and no stream.
pub async fn an_empty_append_checks_the_version_and_writes_nothing<S: EventStore>(store: S) {
    assert_eq!(append_ok(&store, "order-5", 0, &[]).await, 0);
    assert_conflict(append(&store, "order-5", 1, &[]).await, "order-5", 1, 0);
    assert_eq!(load(&store, "order-5", 0).await, []);

    let events = [event("Placed", 1), event("Paid", 2)];
    assert_eq!(append_ok(&store, "order-5", 0, &events).await, 2);
    assert_eq!(append_ok(&store, "order-5", 2, &[]).await, 2);
    assert_conflict(append(&store, "order-5", 1, &[]).await, "order-5", 1, 2);
    assert_stored(&load(&store, "order-5", 0).await, "order-5", 1, &events);
}

/// Streams whose names share a prefix are still separate streams, each numbered from 1.
pub async fn streams_are_independent<S: EventStore>(store: S) {
    let one = [event("Placed", 1)];
    let ten = [event("Placed", 10), event("Paid", 10)];
    assert_eq!(append_ok(&store, "order-1", 0, &one).await, 1);
    assert_eq!(
        append_ok(&store, "order-10", 0, &ten).await,
        2,
        "`order-10` is a new stream, whatever `order-1` holds"
    );
    assert_conflict(append(&store, "order-1", 2, &one).await, "order-1", 2, 1);
    assert_stored(&load(&store, "order-1", 0).await, "order-1", 1, &one);
    assert_stored(&load(&store, "order-10", 0).await, "order-10", 1, &ten);
    assert_eq!(
        load(&store, "order-", 0).await,
        [],
        "a prefix is not a stream"
    );
}
