//! The [`SagaStore`] scenarios: an unknown instance loads as nothing; a saved instance loads as
//! saved, byte for byte; each save moves the version by one; a stale save is a conflict and
//! writes nothing; of concurrent saves at one version exactly one wins; the unfinished list
//! holds exactly the running and compensating instances of the named saga, longest untouched
//! first, before the cutoff and up to the limit; a finished instance leaves it; a deleted
//! instance is gone, and new again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Barrier;
use uuid::Uuid;

use super::every_byte;
use crate::saga::{CompletedStep, SagaState, SagaStatus, StepFailure};
use crate::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use crate::testkit::PATIENCE;

/// Writes the [`SagaStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::saga`](crate::testkit::stores::saga), in a module `saga_store`, each on a
/// store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: SagaStore`: a fresh, isolated, empty store, or `None` to
/// skip the test when its server is unreachable. Expand it once per test binary, at its root.
///
/// ```ignore
/// use catga_core::store::saga::MemorySagaStore;
///
/// catga_core::testkit::stores::saga_store_conformance!(|_scenario| async {
///     Some(MemorySagaStore::new())
/// });
/// ```
#[macro_export]
macro_rules! saga_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the saga store suite runs on.
        fn __catga_open_saga_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::saga::SagaStore>,
        > {
            ($open)(scenario)
        }

        /// The saga store suite: one test per scenario.
        pub mod saga_store {
            $crate::__catga_store_tests!(
                super::__catga_open_saga_store,
                saga,
                [
                    an_unknown_instance_loads_as_nothing,
                    a_saved_instance_loads_as_saved,
                    each_save_moves_the_version_by_one,
                    a_stale_save_is_a_conflict_and_writes_nothing,
                    of_concurrent_saves_at_one_version_exactly_one_wins,
                    unfinished_lists_exactly_the_running_and_compensating,
                    a_finished_instance_is_no_longer_listed,
                    unfinished_lists_the_longest_untouched_first_before_the_cutoff_up_to_the_limit,
                    unfinished_lists_only_the_named_saga,
                    a_deleted_instance_is_gone_and_new_again,
                ]
            );
        }
    };
}

const CHECKOUT: &str = "testkit.checkout";
/// No instance, to compare a list of ids with.
const NONE: [Uuid; 0] = [];
const REFUND: &str = "testkit.refund";

/// A state of a new run of `saga` at `status`, with what a run at that status has recorded.
fn state_in(saga: &str, status: SagaStatus) -> SagaState {
    let mut state = SagaState::new(saga);
    state.status = status;
    let step = |index: usize, output: &[u8]| CompletedStep {
        index,
        step: format!("step-{index}"),
        output: output.to_vec(),
    };
    let failure = |index: usize| StepFailure {
        step: format!("step-{index}"),
        index: Some(index),
        code: "handler".to_owned(),
        error: "card declined — « insufficient funds »".to_owned(),
        dead_letter: None,
    };
    match status {
        SagaStatus::Running => {
            state.completed = vec![step(0, b"42")];
            state.next_step = 1;
        }
        SagaStatus::Compensating => {
            state.completed = vec![step(0, b"42"), step(1, br#"{"payment":"p-7"}"#)];
            state.next_step = 2;
            state.failure = Some(failure(2));
        }
        SagaStatus::Completed => {
            state.completed = vec![step(0, b"42"), step(1, b"null"), step(2, b"\"ok\"")];
            state.next_step = 3;
        }
        SagaStatus::Compensated => {
            state.next_step = 1;
            state.failure = Some(failure(1));
        }
        SagaStatus::Failed => {
            state.next_step = 2;
            state.failure = Some(failure(2));
            state.compensation_failures = vec![StepFailure {
                dead_letter: Some(Uuid::now_v7()),
                ..failure(0)
            }];
        }
    }
    state
}

/// The record of `state`, with data that is no text at all (`n` in it too).
fn record_of(state: &SagaState, n: u8) -> SagaRecord {
    let mut data = every_byte(1024);
    data.push(n);
    SagaRecord::new(state, data).expect("a saga state encodes as JSON")
}

async fn save(
    store: &impl SagaStore,
    record: &SagaRecord,
    expected_version: u64,
) -> Result<u64, SagaStoreError> {
    store.save(record, expected_version).await
}

/// A save that must succeed, giving the instance's new version.
async fn save_ok(store: &impl SagaStore, record: &SagaRecord, expected_version: u64) -> u64 {
    save(store, record, expected_version)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "save saga instance {} ({:?}) at version {expected_version}: {e}",
                record.id, record.status
            )
        })
}

async fn load(store: &impl SagaStore, id: Uuid) -> Option<StoredSaga> {
    store
        .load(id)
        .await
        .unwrap_or_else(|e| panic!("load saga instance {id}: {e}"))
}

/// An instance that must be stored.
async fn load_some(store: &impl SagaStore, id: Uuid) -> StoredSaga {
    load(store, id)
        .await
        .unwrap_or_else(|| panic!("saga instance {id} was saved, and loads as nothing"))
}

async fn unfinished(
    store: &impl SagaStore,
    saga: &str,
    updated_before: Option<SystemTime>,
    limit: usize,
) -> Vec<StoredSaga> {
    store
        .unfinished(saga, updated_before, limit)
        .await
        .unwrap_or_else(|e| panic!("list the unfinished instances of `{saga}`: {e}"))
}

/// The ids of the unfinished instances of `saga`, in the order listed.
async fn unfinished_ids(
    store: &impl SagaStore,
    saga: &str,
    updated_before: Option<SystemTime>,
    limit: usize,
) -> Vec<Uuid> {
    let listed = unfinished(store, saga, updated_before, limit).await;
    listed.iter().map(|s| s.record.id).collect()
}

async fn delete(store: &impl SagaStore, id: Uuid) -> bool {
    store
        .delete(id)
        .await
        .unwrap_or_else(|e| panic!("delete saga instance {id}: {e}"))
}

/// Asserts that `result` is a conflict on `id` with exactly these versions.
fn assert_conflict(result: Result<u64, SagaStoreError>, id: Uuid, expected: u64, actual: u64) {
    match result {
        Err(SagaStoreError::Conflict {
            id: i,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (i, e, a),
            (id, expected, actual),
            "the conflict names the instance, the version expected and the instance's version"
        ),
        other => panic!(
            "a save of {id} at version {expected} while it is at {actual} is \
             `SagaStoreError::Conflict {{ expected: {expected}, actual: {actual}, .. }}`, \
             got {other:?}"
        ),
    }
}

/// Saves `record` (stored at `version`) again until the store's time of the save is after
/// `after`, for at most [`PATIENCE`]; gives the instance as stored. The store's clock decides
/// what "after" is (a database's own), so the scenario asks the store, never its own clock.
async fn save_until_after(
    store: &impl SagaStore,
    record: &SagaRecord,
    mut version: u64,
    after: SystemTime,
) -> StoredSaga {
    let saved = tokio::time::timeout(PATIENCE, async {
        loop {
            version = save_ok(store, record, version).await;
            let stored = load_some(store, record.id).await;
            if stored.updated_at > after {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    saved.unwrap_or_else(|_| {
        panic!(
            "gave up after {PATIENCE:?} saving {} until its time was after {after:?}",
            record.id
        )
    })
}

/// An id never saved loads as nothing, is not listed and is not deleted.
pub async fn an_unknown_instance_loads_as_nothing<S: SagaStore>(store: S) {
    let id = Uuid::now_v7();
    assert_eq!(load(&store, id).await, None);
    assert_eq!(unfinished_ids(&store, CHECKOUT, None, 100).await, NONE);
    assert!(
        !delete(&store, id).await,
        "deleting an unknown id finds nothing"
    );
}

/// A new instance saved at version 0 is at version 1 and loads as saved: its data and state
/// byte for byte, its state decoding to the state saved.
pub async fn a_saved_instance_loads_as_saved<S: SagaStore>(store: S) {
    let state = state_in(CHECKOUT, SagaStatus::Compensating);
    let record = SagaRecord::new(&state, every_byte(64 * 1024)).expect("encode the state");
    assert_eq!(
        save_ok(&store, &record, 0).await,
        1,
        "a first save makes version 1"
    );
    let stored = load_some(&store, record.id).await;
    assert_eq!(stored.version, 1);
    assert!(
        stored.record == record,
        "the instance loads as saved, its {} bytes of data and {} bytes of state byte for byte",
        record.data.len(),
        record.state.len()
    );
    assert_eq!(
        stored
            .record
            .decode_state()
            .expect("decode the stored state"),
        state
    );
}

/// Each save at the instance's version replaces what was saved and moves the version by one.
pub async fn each_save_moves_the_version_by_one<S: SagaStore>(store: S) {
    let mut state = state_in(CHECKOUT, SagaStatus::Running);
    let mut version = 0;
    for step in 1..=3usize {
        state.next_step = step;
        let record = record_of(&state, step as u8);
        let next = save_ok(&store, &record, version).await;
        assert_eq!(next, version + 1, "a save moves the version by one");
        version = next;
        let stored = load_some(&store, state.id).await;
        assert_eq!(
            (stored.version, &stored.record),
            (version, &record),
            "the instance loads as last saved"
        );
    }
}

/// A save naming a version the instance is not at fails with a conflict carrying both
/// versions, and writes nothing: the instance keeps its record, version and place in the
/// unfinished list.
pub async fn a_stale_save_is_a_conflict_and_writes_nothing<S: SagaStore>(store: S) {
    let state = state_in(CHECKOUT, SagaStatus::Running);
    let first = record_of(&state, 1);
    assert_eq!(save_ok(&store, &first, 0).await, 1);

    let finished = record_of(
        &SagaState {
            status: SagaStatus::Completed,
            ..state.clone()
        },
        2,
    );
    assert_conflict(save(&store, &finished, 0).await, state.id, 0, 1);
    assert_conflict(save(&store, &finished, 4).await, state.id, 4, 1);
    let stored = load_some(&store, state.id).await;
    assert_eq!((stored.version, &stored.record), (1, &first));
    assert_eq!(
        unfinished_ids(&store, CHECKOUT, None, 100).await,
        [state.id],
        "a refused save does not finish the instance"
    );

    // An instance not stored is at version 0: only a save expecting 0 creates it.
    let new = record_of(&state_in(CHECKOUT, SagaStatus::Running), 3);
    assert_conflict(save(&store, &new, 2).await, new.id, 2, 0);
    assert_eq!(
        load(&store, new.id).await,
        None,
        "a refused save stores nothing"
    );
}

/// Eight processes resume one instance at once, each saving at version 1: exactly one
/// succeeds, the others get a conflict naming version 2, and the instance holds the winner's
/// record.
pub async fn of_concurrent_saves_at_one_version_exactly_one_wins<S: SagaStore>(store: S) {
    const WRITERS: u8 = 8;
    let store = Arc::new(store);
    let state = state_in(CHECKOUT, SagaStatus::Running);
    assert_eq!(save_ok(&*store, &record_of(&state, 0), 0).await, 1);

    let start = Arc::new(Barrier::new(usize::from(WRITERS)));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|n| {
            let (store, start) = (store.clone(), start.clone());
            let record = record_of(&state, n);
            tokio::spawn(async move {
                start.wait().await;
                let result = save(&*store, &record, 1).await;
                (record, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        let (record, result) = writer.await.expect("a writer");
        match result {
            Ok(version) => winners.push((record, version)),
            refused => assert_conflict(refused, state.id, 1, 2),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "of {WRITERS} concurrent saves at version 1, exactly one wins"
    );
    let (winner, version) = &winners[0];
    assert_eq!(*version, 2);
    let stored = load_some(&*store, state.id).await;
    assert_eq!(
        (stored.version, &stored.record),
        (2, winner),
        "the instance holds the winner's record"
    );
}

/// With one instance at each status, the unfinished list holds exactly the running and the
/// compensating one, as saved.
pub async fn unfinished_lists_exactly_the_running_and_compensating<S: SagaStore>(store: S) {
    let mut expected = Vec::new();
    for (n, status) in (0u8..).zip(SagaStatus::ALL) {
        let record = record_of(&state_in(CHECKOUT, status), n);
        save_ok(&store, &record, 0).await;
        if !status.is_finished() {
            expected.push(record);
        }
    }
    let listed = unfinished(&store, CHECKOUT, None, 100).await;
    let mut records: Vec<SagaRecord> = listed.into_iter().map(|s| s.record).collect();
    records.sort_by_key(|r| r.id);
    expected.sort_by_key(|r| r.id);
    assert!(
        records == expected,
        "the unfinished list holds the running and compensating instances, as saved; listed \
         {:?}",
        records.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

/// An instance saved as finished (completed, compensated or failed) leaves the unfinished
/// list, and still loads.
pub async fn a_finished_instance_is_no_longer_listed<S: SagaStore>(store: S) {
    let running = state_in(CHECKOUT, SagaStatus::Running);
    let compensating = state_in(CHECKOUT, SagaStatus::Compensating);
    let failing = state_in(CHECKOUT, SagaStatus::Compensating);
    for state in [&running, &compensating, &failing] {
        save_ok(&store, &record_of(state, 0), 0).await;
    }
    let all: BTreeSet<Uuid> = [running.id, compensating.id, failing.id].into();
    let listed = unfinished_ids(&store, CHECKOUT, None, 100).await;
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all);

    let finish = [
        (running.id, SagaStatus::Completed, &running),
        (compensating.id, SagaStatus::Compensated, &compensating),
        (failing.id, SagaStatus::Failed, &failing),
    ];
    let mut left = all;
    for (id, status, state) in finish {
        let record = record_of(
            &SagaState {
                status,
                ..state.clone()
            },
            1,
        );
        assert_eq!(save_ok(&store, &record, 1).await, 2);
        left.remove(&id);
        let listed = unfinished_ids(&store, CHECKOUT, None, 100).await;
        assert_eq!(
            listed.into_iter().collect::<BTreeSet<_>>(),
            left,
            "an instance saved as {status:?} is no longer listed"
        );
        assert_eq!(
            load_some(&store, id).await.record.status,
            status,
            "a finished instance still loads"
        );
    }
}

/// The unfinished list is ordered by the time of each instance's last save, oldest first;
/// `limit` keeps the first ones; `updated_before` keeps those saved strictly before it; a new
/// save moves an instance to the end.
pub async fn unfinished_lists_the_longest_untouched_first_before_the_cutoff_up_to_the_limit<
    S: SagaStore,
>(
    store: S,
) {
    let first = record_of(&state_in(CHECKOUT, SagaStatus::Running), 1);
    let second = record_of(&state_in(CHECKOUT, SagaStatus::Compensating), 2);
    assert_eq!(save_ok(&store, &first, 0).await, 1);
    let a = load_some(&store, first.id).await;
    // Saved at version 0 first: the loop then saves it again until its time is after `a`'s.
    assert_eq!(save_ok(&store, &second, 0).await, 1);
    let b = save_until_after(&store, &second, 1, a.updated_at).await;

    let ids = [first.id, second.id];
    assert_eq!(
        unfinished_ids(&store, CHECKOUT, None, 10).await,
        ids,
        "oldest last save first"
    );
    assert_eq!(unfinished_ids(&store, CHECKOUT, None, 1).await, ids[..1]);
    assert_eq!(unfinished_ids(&store, CHECKOUT, None, 0).await, NONE);
    assert_eq!(
        unfinished_ids(&store, CHECKOUT, Some(b.updated_at), 10).await,
        ids[..1],
        "an instance last saved at the cutoff is not before it"
    );
    assert_eq!(
        unfinished_ids(&store, CHECKOUT, Some(a.updated_at), 10).await,
        NONE,
        "nothing was saved before the first save"
    );

    // Saving the first again makes it the most recently touched.
    save_until_after(&store, &first, a.version, b.updated_at).await;
    assert_eq!(
        unfinished_ids(&store, CHECKOUT, None, 10).await,
        [second.id, first.id],
        "a new save moves an instance to the end"
    );
}

/// The unfinished list holds the instances of the saga named, not of another saga, nor of one
/// whose name starts the same.
pub async fn unfinished_lists_only_the_named_saga<S: SagaStore>(store: S) {
    let checkouts = [
        record_of(&state_in(CHECKOUT, SagaStatus::Running), 1),
        record_of(&state_in(CHECKOUT, SagaStatus::Compensating), 2),
    ];
    let refund = record_of(&state_in(REFUND, SagaStatus::Running), 3);
    let longer = format!("{CHECKOUT}-express");
    let express = record_of(&state_in(&longer, SagaStatus::Running), 4);
    for record in checkouts.iter().chain([&refund, &express]) {
        save_ok(&store, record, 0).await;
    }
    let listed: BTreeSet<Uuid> = unfinished_ids(&store, CHECKOUT, None, 100)
        .await
        .into_iter()
        .collect();
    assert_eq!(listed, checkouts.iter().map(|r| r.id).collect());
    assert_eq!(unfinished_ids(&store, REFUND, None, 100).await, [refund.id]);
    assert_eq!(
        unfinished_ids(&store, &longer, None, 100).await,
        [express.id]
    );
    assert_eq!(
        unfinished_ids(&store, "testkit.", None, 100).await,
        NONE,
        "a prefix names no saga"
    );
}

/// Deleting an instance removes it once (load, list); the others stay; a deleted id is not
/// stored, so a save at version 0 creates it anew.
pub async fn a_deleted_instance_is_gone_and_new_again<S: SagaStore>(store: S) {
    let gone = record_of(&state_in(CHECKOUT, SagaStatus::Running), 1);
    let kept = record_of(&state_in(CHECKOUT, SagaStatus::Running), 2);
    save_ok(&store, &gone, 0).await;
    save_ok(&store, &kept, 0).await;

    assert!(
        delete(&store, gone.id).await,
        "deleting a stored instance finds it"
    );
    assert_eq!(
        load(&store, gone.id).await,
        None,
        "a deleted instance loads as nothing"
    );
    assert!(
        !delete(&store, gone.id).await,
        "a deleted instance is deleted once"
    );
    assert_eq!(unfinished_ids(&store, CHECKOUT, None, 100).await, [kept.id]);
    assert_eq!(load_some(&store, kept.id).await.record, kept);

    assert_eq!(
        save_ok(&store, &gone, 0).await,
        1,
        "a deleted instance is not stored: a save at version 0 creates it again"
    );
}
