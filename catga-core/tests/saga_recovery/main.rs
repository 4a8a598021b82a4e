//! A saga persisted in a `SagaStore` (`Saga::run_stored`) survives its process: the process
//! is killed (its task aborted) at a chosen point, and a "new process" (a fresh application
//! and saga definition over the same store and the same idempotency records, as a shared
//! database would give it) recovers the instance with `Saga::recover`, which completes or
//! compensates it with each step's effect exactly once. The same scenarios on Postgres are in
//! `catga-postgres/tests/saga_recovery.rs`.

mod fixtures;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use catga_core::saga::{Recovery, SagaError, SagaState, SagaStatus, StoredSagaError};
use catga_core::store::saga::{SagaRecord, SagaStore, StoredSaga};
use fixtures::{Faulty, ORDER, Setup, checkout, process};

const COMPLETED_RUN: [(SagaStatus, usize, usize); 5] = [
    (SagaStatus::Running, 0, 0),
    (SagaStatus::Running, 1, 1),
    (SagaStatus::Running, 2, 2),
    (SagaStatus::Running, 3, 3),
    (SagaStatus::Completed, 3, 3),
];

#[tokio::test]
async fn a_stored_run_saves_before_its_first_step_and_after_every_change() {
    let setup = Setup::default();
    let store = Faulty::new(&setup.store, u64::MAX);
    let app = process(&setup.world, &setup.records, &setup.sends);
    let mut state = checkout().start();
    checkout()
        .run_stored(&app, &store, &ORDER, &mut state)
        .await
        .unwrap();
    assert_eq!(*store.saved.lock().unwrap(), COMPLETED_RUN);
    let stored = setup.store.load(state.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 5);
    assert_eq!(stored.record.decode_state().unwrap(), state);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored.record.data).unwrap(),
        serde_json::json!({ "qty": 2, "cents": 900 })
    );
}

#[tokio::test]
async fn a_compensated_stored_run_saves_every_compensation() {
    let setup = Setup::default();
    setup.world.ship_fails.store(true, Ordering::SeqCst);
    let store = Faulty::new(&setup.store, u64::MAX);
    let app = process(&setup.world, &setup.records, &setup.sends);
    let mut state = checkout().start();
    let err = checkout()
        .run_stored(&app, &store, &ORDER, &mut state)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoredSagaError::Saga { id, source: SagaError::Compensated { .. } } if *id == state.id),
        "{err}"
    );
    use SagaStatus::{Compensated, Compensating, Running};
    assert_eq!(
        *store.saved.lock().unwrap(),
        [
            (Running, 0, 0),
            (Running, 1, 1),
            (Running, 2, 2),
            (Compensating, 2, 2),
            (Compensating, 2, 1),
            (Compensating, 2, 0),
            (Compensated, 2, 0),
        ]
    );
}

#[tokio::test]
async fn a_step_whose_completion_was_not_saved_is_sent_again_with_its_id_and_takes_effect_once() {
    let setup = Setup::default();
    // Saves: 1 the start, 2 after the reservation, 3 after the charge: the process dies there,
    // after the charge took effect and before its completion was saved.
    let state = setup.crash(Faulty::new(&setup.store, 3)).await;
    assert_eq!(setup.world.effects(), ["reserve 2", "charge 900"]);

    let resumed = setup.recover().await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].id, state.id);
    assert!(resumed[0].outcome.is_ok(), "{:?}", resumed[0].outcome);
    assert_eq!(resumed[0].status(), Some(SagaStatus::Completed));
    assert_eq!(
        setup.world.effects(),
        ["reserve 2", "charge 900", "ship 2"],
        "each step took effect once"
    );
    // The charge was sent again, with its first message id, and answered from the
    // idempotency records with its first reply, which the resumed run recorded.
    assert_eq!(setup.sends.of("Charge"), [state.forward_message_id(1); 2]);
    assert_eq!(
        setup.sends.of("Reserve").len(),
        1,
        "a saved step is not sent again"
    );
    let finished = resumed[0].state.as_ref().unwrap();
    assert_eq!(finished.completed[1].output, b"7");
    let stored = setup.store.load(state.id).await.unwrap().unwrap();
    assert_eq!(stored.record.status, SagaStatus::Completed);
    assert!(
        setup
            .store
            .unfinished("checkout", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_saga_killed_during_a_step_completes_after_recovery_with_each_effect_once() {
    let setup = Setup::default();
    setup.world.hang_at.lock().unwrap().insert("ship");
    let state = setup.crash(Faulty::new(&setup.store, u64::MAX)).await;
    assert_eq!(setup.world.effects(), ["reserve 2", "charge 900"]);

    let resumed = setup.recover().await;
    assert_eq!(resumed.len(), 1);
    assert!(resumed[0].outcome.is_ok(), "{:?}", resumed[0].outcome);
    assert_eq!(setup.world.effects(), ["reserve 2", "charge 900", "ship 2"]);
    assert_eq!(setup.sends.of("Ship"), [state.forward_message_id(2); 2]);
    assert_eq!(setup.sends.of("Charge").len(), 1);
}

#[tokio::test]
async fn a_step_failing_after_recovery_compensates_each_completed_step_once() {
    let setup = Setup::default();
    setup.world.hang_at.lock().unwrap().insert("ship");
    let state = setup.crash(Faulty::new(&setup.store, u64::MAX)).await;
    // After the restart, the courier is gone.
    setup.world.ship_fails.store(true, Ordering::SeqCst);

    let resumed = setup.recover().await;
    assert_eq!(resumed.len(), 1);
    let Err(StoredSagaError::Saga { source, .. }) = &resumed[0].outcome else {
        panic!("expected a compensated saga, got {:?}", resumed[0].outcome);
    };
    let SagaError::Compensated { failure, .. } = source else {
        panic!("expected a compensated saga, got {source}");
    };
    assert_eq!(failure.index, Some(2));
    assert_eq!(resumed[0].status(), Some(SagaStatus::Compensated));
    assert_eq!(
        setup.world.effects(),
        [
            "reserve 2",
            "charge 900",
            "ship failed",
            "refund 7",
            "release 42"
        ],
        "compensated last first, each once"
    );
    assert_eq!(setup.sends.of("Refund"), [state.compensation_message_id(1)]);
    let stored = setup.store.load(state.id).await.unwrap().unwrap();
    assert_eq!(stored.record.status, SagaStatus::Compensated);
}

#[tokio::test]
async fn a_saga_killed_while_compensating_goes_on_compensating_after_recovery() {
    let setup = Setup::default();
    setup.world.ship_fails.store(true, Ordering::SeqCst);
    // Saves: 1 start, 2 reserved, 3 charged, 4 the shipping failed, 5 refunded: the process
    // dies there, after the refund and before its save.
    let state = setup.crash(Faulty::new(&setup.store, 5)).await;
    assert_eq!(
        setup.world.effects(),
        ["reserve 2", "charge 900", "ship failed", "refund 7"]
    );
    let stored = setup.store.load(state.id).await.unwrap().unwrap();
    assert_eq!(stored.record.status, SagaStatus::Compensating);

    let resumed = setup.recover().await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].status(), Some(SagaStatus::Compensated));
    assert_eq!(
        setup.world.effects(),
        [
            "reserve 2",
            "charge 900",
            "ship failed",
            "refund 7",
            "release 42"
        ],
        "no forward step again, each compensation once"
    );
    assert_eq!(
        setup.sends.of("Refund"),
        [state.compensation_message_id(1); 2]
    );
    assert_eq!(setup.sends.of("Ship").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_resuming_one_instance_from_one_read_exactly_one_goes_on() {
    let setup = Setup::default();
    let state = setup.crash(Faulty::new(&setup.store, 3)).await;
    // Both processes listed the instance at the same version.
    let listed = setup.store.load(state.id).await.unwrap().unwrap();
    let before = setup.sends.0.lock().unwrap().len();
    let resume = |instance: StoredSaga| {
        let app = process(&setup.world, &setup.records, &setup.sends);
        let store = setup.store.clone();
        tokio::spawn(async move { checkout().resume_stored(&app, &store, instance).await })
    };
    let (a, b) = (resume(listed.clone()), resume(listed));
    let outcomes = [a.await.unwrap(), b.await.unwrap()];
    let went_on = outcomes.iter().filter(|r| r.outcome.is_ok()).count();
    let superseded = outcomes
        .iter()
        .filter(|r| {
            r.outcome
                .as_ref()
                .is_err_and(StoredSagaError::is_superseded)
        })
        .count();
    assert_eq!((went_on, superseded), (1, 1), "{outcomes:?}");
    assert_eq!(setup.world.effects(), ["reserve 2", "charge 900", "ship 2"]);
    let sent: Vec<_> = setup.sends.0.lock().unwrap()[before..]
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        sent,
        ["Charge", "Ship"],
        "the superseded process sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_recoveries_do_not_both_proceed() {
    let setup = Setup::default();
    let state = setup.crash(Faulty::new(&setup.store, 3)).await;
    // With a grace of zero, an instance the winner saved a moment ago would look abandoned
    // too (a live run taken over: see `a_slow_run_taken_over_by_recovery_…`). With one, the
    // other process either lists the instance before the winner's claim and loses the
    // claim, or after it and leaves it alone.
    let grace = Duration::from_millis(100);
    tokio::time::sleep(grace * 2).await;
    let setup = Arc::new(setup);
    let recover = || {
        let setup = setup.clone();
        tokio::spawn(async move { setup.recover_after(grace).await })
    };
    let (a, b) = (recover(), recover());
    let resumed: Vec<_> = [a.await.unwrap(), b.await.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        resumed.iter().filter(|r| r.outcome.is_ok()).count(),
        1,
        "{resumed:?}"
    );
    // The other process found nothing left to do, or lost the claim.
    assert!(
        resumed.iter().all(|r| r.outcome.as_ref().is_ok()
            || r.outcome
                .as_ref()
                .is_err_and(StoredSagaError::is_superseded)),
        "{resumed:?}"
    );
    assert_eq!(setup.world.count("charge"), 1);
    assert_eq!(setup.world.count("ship"), 1);
    assert_eq!(setup.sends.of("Ship"), [state.forward_message_id(2)]);
}

#[tokio::test]
async fn a_slow_run_taken_over_by_recovery_stops_at_its_next_save() {
    let setup = Setup::default();
    // The process stalls at its third save (after the charge) without dying.
    let slow = Faulty::new(&setup.store, 3);
    let (reached, resume) = (slow.reached.clone(), slow.resume.clone());
    let app = process(&setup.world, &setup.records, &setup.sends);
    let mut state = checkout().start();
    let id = state.id;
    let running = tokio::spawn(async move {
        let outcome = checkout().run_stored(&app, &slow, &ORDER, &mut state).await;
        (outcome, state)
    });
    reached.notified().await;

    let resumed = setup.recover().await;
    assert!(resumed[0].outcome.is_ok(), "{:?}", resumed[0].outcome);
    resume.notify_one();
    let (outcome, left) = running.await.unwrap();
    let err = outcome.unwrap_err();
    assert!(err.is_superseded(), "{err}");
    assert_eq!(err.id(), id);
    assert_eq!(left.next_step, 2, "it stopped where its save failed");
    assert_eq!(
        setup.sends.of("Ship").len(),
        1,
        "only the recovering process shipped"
    );
    assert_eq!(setup.world.effects(), ["reserve 2", "charge 900", "ship 2"]);
    let stored = setup.store.load(id).await.unwrap().unwrap();
    assert_eq!(stored.record.status, SagaStatus::Completed);
}

#[tokio::test]
async fn an_instance_saved_within_the_grace_period_is_left_alone() {
    let setup = Setup::default();
    setup.crash(Faulty::new(&setup.store, 3)).await;
    let app = process(&setup.world, &setup.records, &setup.sends);
    let resumed = checkout()
        .recover(
            &app,
            &setup.store,
            Recovery::after(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(resumed.is_empty());
    assert_eq!(setup.world.count("ship"), 0);
}

#[tokio::test]
async fn starting_an_instance_that_is_already_stored_sends_nothing() {
    let setup = Setup::default();
    let app = process(&setup.world, &setup.records, &setup.sends);
    let mut state = checkout().start();
    checkout()
        .run_stored(&app, &setup.store, &ORDER, &mut state)
        .await
        .unwrap();
    let mut again = SagaState {
        status: SagaStatus::Running,
        completed: Vec::new(),
        next_step: 0,
        ..state.clone()
    };
    let err = checkout()
        .run_stored(&app, &setup.store, &ORDER, &mut again)
        .await
        .unwrap_err();
    assert!(err.is_superseded(), "{err}");
    assert_eq!(setup.world.count("reserve"), 1);
}

#[tokio::test]
async fn an_instance_whose_data_does_not_decode_is_reported_and_left_as_it_is() {
    let setup = Setup::default();
    let state = checkout().start();
    let record = SagaRecord::new(&state, b"{\"qty\": \"two\"}".to_vec()).unwrap();
    setup.store.save(&record, 0).await.unwrap();

    let resumed = setup.recover().await;
    assert_eq!(resumed.len(), 1);
    let err = resumed[0].outcome.as_ref().unwrap_err();
    assert!(matches!(err, StoredSagaError::Data { .. }), "{err}");
    assert_eq!(err.id(), state.id);
    assert!(setup.world.effects().is_empty());
    let stored = setup.store.load(state.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.record), (1, record));
}

#[tokio::test]
async fn the_in_memory_run_is_unchanged_and_saves_nothing() {
    let setup = Setup::default();
    let app = process(&setup.world, &setup.records, &setup.sends);
    let mut state = checkout().start();
    let mut seen = Vec::new();
    checkout()
        .run_observed(&app, &ORDER, &mut state, |s| {
            seen.push((s.status, s.next_step, s.completed.len()));
        })
        .await
        .unwrap();
    assert_eq!(seen, COMPLETED_RUN[1..]);
    assert!(setup.store.is_empty());
}
