//! The [`DeadLetterStore`] scenarios: an empty store has nothing; records list oldest first up
//! to the limit; every field comes back as it was put (absent and empty payloads apart); take
//! removes a record exactly once, also when two operators take it at once; an unknown id
//! takes nothing; a large payload that is not text comes back byte for byte.
//!
//! The trait has no filtering (by message, stage or time), so neither has the suite.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use uuid::Uuid;

use super::{every_byte, now_in_micros};
use crate::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};

/// Writes the [`DeadLetterStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::dead_letter`](crate::testkit::stores::dead_letter), in a module
/// `dead_letter_store`, each on a store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: DeadLetterStore`: a fresh, isolated, empty store, or
/// `None` to skip the test when its server is unreachable. Expand it once per test binary, at
/// its root.
///
/// ```ignore
/// use catga_core::store::dead_letter::MemoryDeadLetterStore;
///
/// catga_core::testkit::stores::dead_letter_store_conformance!(|_scenario| async {
///     Some(MemoryDeadLetterStore::new())
/// });
/// ```
#[macro_export]
macro_rules! dead_letter_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the dead-letter store suite runs on.
        fn __catga_open_dead_letter_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::dead_letter::DeadLetterStore>,
        > {
            ($open)(scenario)
        }

        /// The dead-letter store suite: one test per scenario.
        pub mod dead_letter_store {
            $crate::__catga_store_tests!(
                super::__catga_open_dead_letter_store,
                dead_letter,
                [
                    an_empty_store_has_nothing,
                    records_list_oldest_first_up_to_the_limit,
                    every_field_comes_back_as_it_was_put,
                    take_removes_a_record_exactly_once,
                    concurrent_takes_of_one_record_give_it_once,
                    an_unknown_id_takes_nothing,
                    a_large_binary_payload_comes_back_byte_for_byte,
                ]
            );
        }
    };
}

/// `n` record ids in increasing order (UUID v7: they sort by time).
fn ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    // Ids made in one millisecond are ordered by their counter; sorting makes the order
    // certain whatever the generator does.
    ids.sort();
    ids
}

/// A record with every optional field set, failed at `failed_at`.
fn full_record(id: Uuid, failed_at: std::time::SystemTime) -> DeadLetterRecord {
    DeadLetterRecord {
        id,
        message: "testkit.orders.placed".to_owned(),
        handler: Some("shop::mail::send_receipt".to_owned()),
        payload: Some(br#"{"id":42,"total":1999}"#.to_vec()),
        code: "handler".to_owned(),
        error: "mail server said: « 550 mailbox unavailable » ✗".to_owned(),
        attempts: 3,
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(Uuid::now_v7()),
        // Two headers with one name, in an order that is not sorted: both kept, in order.
        headers: vec![
            ("tenant".to_owned(), "acme".to_owned()),
            ("catga-saga".to_owned(), "checkout".to_owned()),
            ("tenant".to_owned(), "acme-eu — ü".to_owned()),
        ],
        failed_at,
        stage: FailureStage::Delivery,
        source: Some("stream ORDERS seq 1042".to_owned()),
        raw_headers: Some(vec![0xff, 0x00, b'N', b'A', b'T', b'S', 0x80]),
    }
}

/// A record with every optional field absent.
fn bare_record(id: Uuid, failed_at: std::time::SystemTime) -> DeadLetterRecord {
    DeadLetterRecord {
        id,
        message: "testkit.local".to_owned(),
        handler: None,
        payload: None,
        code: "timeout".to_owned(),
        error: String::new(),
        attempts: 1,
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        headers: Vec::new(),
        failed_at,
        stage: FailureStage::Handler,
        source: None,
        raw_headers: None,
    }
}

/// Records with increasing ids and failure times, one second apart, so "oldest" means the
/// same by id and by time.
fn records(n: usize) -> Vec<DeadLetterRecord> {
    let start = now_in_micros();
    ids(n)
        .into_iter()
        .zip(0u64..)
        .map(|(id, i)| full_record(id, start + Duration::from_secs(i)))
        .collect()
}

async fn put(store: &impl DeadLetterStore, record: &DeadLetterRecord) {
    store
        .put(record.clone())
        .await
        .unwrap_or_else(|e| panic!("put dead letter {}: {e}", record.id));
}

async fn list(store: &impl DeadLetterStore, limit: usize) -> Vec<DeadLetterRecord> {
    store
        .list(limit)
        .await
        .unwrap_or_else(|e| panic!("list {limit} dead letters: {e}"))
}

async fn take(store: &impl DeadLetterStore, id: Uuid) -> Option<DeadLetterRecord> {
    store
        .take(id)
        .await
        .unwrap_or_else(|e| panic!("take dead letter {id}: {e}"))
}

async fn count(store: &impl DeadLetterStore) -> usize {
    store
        .count()
        .await
        .unwrap_or_else(|e| panic!("count the dead letters: {e}"))
}

fn ids_of(records: &[DeadLetterRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

/// A new store counts 0, lists nothing and takes nothing.
pub async fn an_empty_store_has_nothing<S: DeadLetterStore>(store: S) {
    assert_eq!(count(&store).await, 0, "a new store counts no records");
    assert_eq!(list(&store, 100).await, [], "a new store lists no records");
    assert_eq!(take(&store, Uuid::now_v7()).await, None);
}

/// Records put out of order list oldest first; `limit` gives the oldest `limit`; `0` gives
/// none; listing removes nothing.
pub async fn records_list_oldest_first_up_to_the_limit<S: DeadLetterStore>(store: S) {
    let records = records(4);
    for i in [2, 0, 3, 1] {
        put(&store, &records[i]).await;
    }
    assert_eq!(count(&store).await, 4);
    assert_eq!(
        ids_of(&list(&store, 100).await),
        ids_of(&records),
        "records list oldest first, whatever order they were put in"
    );
    assert_eq!(
        ids_of(&list(&store, 2).await),
        ids_of(&records[..2]),
        "a limit of 2 lists the two oldest"
    );
    assert_eq!(list(&store, 0).await, [], "a limit of 0 lists nothing");
    assert_eq!(count(&store).await, 4, "listing removes nothing");
}

/// A record comes back field for field: options stay absent or present, an empty payload
/// stays empty (not absent), headers keep their order and duplicates, text beyond ASCII and
/// headers that are not text survive.
pub async fn every_field_comes_back_as_it_was_put<S: DeadLetterStore>(store: S) {
    let at = now_in_micros();
    let ids = ids(3);
    let full = full_record(ids[0], at);
    let bare = bare_record(ids[1], at + Duration::from_secs(1));
    let empty_payload = DeadLetterRecord {
        payload: Some(Vec::new()),
        stage: FailureStage::Compensation,
        ..bare_record(ids[2], at + Duration::from_secs(2))
    };
    let all = [full, bare, empty_payload];
    for record in &all {
        put(&store, record).await;
    }
    assert_eq!(list(&store, 10).await, all, "list gives the records as put");
    for record in &all {
        assert_eq!(
            take(&store, record.id).await.as_ref(),
            Some(record),
            "take gives the record as put"
        );
    }
}

/// Taking a record gives it once and removes it: the next take of its id gives nothing, and
/// the others stay.
pub async fn take_removes_a_record_exactly_once<S: DeadLetterStore>(store: S) {
    let records = records(3);
    for record in &records {
        put(&store, record).await;
    }
    assert_eq!(
        take(&store, records[1].id).await.as_ref(),
        Some(&records[1])
    );
    assert_eq!(
        take(&store, records[1].id).await,
        None,
        "a record taken once is gone"
    );
    assert_eq!(count(&store).await, 2);
    assert_eq!(
        ids_of(&list(&store, 10).await),
        [records[0].id, records[2].id],
        "the records not taken stay, in order"
    );
}

/// Two operators replaying one dead letter at once: one of them gets it, the other nothing,
/// so it is replayed once.
pub async fn concurrent_takes_of_one_record_give_it_once<S: DeadLetterStore>(store: S) {
    const TAKERS: usize = 4;
    let store = Arc::new(store);
    let records = records(2);
    for record in &records {
        put(&*store, record).await;
    }
    let start = Arc::new(Barrier::new(TAKERS));
    let takers: Vec<_> = (0..TAKERS)
        .map(|_| {
            let (store, start, id) = (store.clone(), start.clone(), records[0].id);
            tokio::spawn(async move {
                start.wait().await;
                take(&*store, id).await
            })
        })
        .collect();
    let mut taken = Vec::new();
    for taker in takers {
        if let Some(record) = taker.await.expect("a taker") {
            taken.push(record);
        }
    }
    assert_eq!(
        taken,
        [records[0].clone()],
        "of {TAKERS} concurrent takes of one record, exactly one gets it"
    );
    assert_eq!(ids_of(&list(&*store, 10).await), [records[1].id]);
}

/// Taking an id that was never put gives nothing and changes nothing.
pub async fn an_unknown_id_takes_nothing<S: DeadLetterStore>(store: S) {
    let records = records(2);
    for record in &records {
        put(&store, record).await;
    }
    assert_eq!(take(&store, Uuid::now_v7()).await, None);
    assert_eq!(
        count(&store).await,
        2,
        "taking an unknown id removes nothing"
    );
    assert_eq!(list(&store, 10).await, records);
}

/// A payload of 1 MiB that is neither text nor JSON (a body as received from a broker) comes
/// back byte for byte, through list and take.
pub async fn a_large_binary_payload_comes_back_byte_for_byte<S: DeadLetterStore>(store: S) {
    let payload = every_byte((1 << 20) + 3);
    let record = DeadLetterRecord {
        payload: Some(payload.clone()),
        raw_headers: Some(every_byte(4096)),
        ..full_record(Uuid::now_v7(), now_in_micros())
    };
    put(&store, &record).await;
    let listed = list(&store, 1).await;
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].payload.as_deref() == Some(&payload[..]),
        "the payload listed is the {} bytes put, byte for byte",
        payload.len()
    );
    let taken = take(&store, record.id).await.expect("the record put");
    assert!(
        taken == record,
        "the record taken is the record put, byte for byte"
    );
}
