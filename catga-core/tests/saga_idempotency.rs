//! Every command a saga step sends carries a message id derived from the run, the step and
//! the direction, so however often it is sent (a `Retry` layer's attempts, the saga's own
//! compensation retries, a resume after a crash) an `Idempotency` layer where it is handled
//! runs it once. In one process here; across transports in the conformance suite's `saga`
//! family (`tests/conformance.rs`, and the NATS and Redis crates'), whose fixtures these tests
//! share. Timing on Tokio's paused clock.

/// The saga family's messages, handlers and sagas (`catga_core::testkit`).
#[allow(dead_code)] // its scenario functions run in tests/conformance.rs
mod saga_scenarios {
    catga_core::testkit::scenarios!(saga);
}

use std::sync::Arc;
use std::sync::atomic::Ordering;

use catga_core::prelude::*;
use catga_core::saga::{Saga, SagaError, SagaState, SagaStatus};
use saga_scenarios::{ChargeOnce, Ledger, LoseReplies, Order, Refund, Release, Reserve, checkout};

fn failing_shipping() -> Arc<Ledger> {
    let ledger = Ledger::default();
    ledger.shipping_fails.store(true, Ordering::SeqCst);
    Arc::new(ledger)
}

#[tokio::test(start_paused = true)]
async fn a_forward_step_whose_reply_is_lost_runs_once_behind_idempotency() {
    let ledger = Arc::new(Ledger::default());
    let lose = LoseReplies::new(&[("billing.charge", 1)]);
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(Retry::exponential(3).without_jitter())
        .layer(lose.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = checkout();
    let mut state = saga.start();
    saga.run(&app, &Order, &mut state).await.unwrap();
    assert_eq!(lose.passed("billing.charge"), 2, "asked twice");
    assert_eq!(
        ledger.runs_of("charge 900"),
        [state.forward_message_id(1)],
        "charged once"
    );
    assert_eq!(state.completed[1].output, b"7", "the first reply");
}

#[tokio::test(start_paused = true)]
async fn a_compensation_retried_three_times_whose_replies_are_lost_runs_once_behind_idempotency() {
    let ledger = failing_shipping();
    let lose = LoseReplies::new(&[("billing.refund", 2)]);
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(lose.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = checkout();
    let mut state = saga.start();
    let err = saga.run(&app, &Order, &mut state).await.unwrap_err();
    assert!(matches!(err, SagaError::Compensated { .. }), "{err}");
    assert_eq!(lose.passed("billing.refund"), 3, "tried three times");
    assert_eq!(
        ledger.runs_of("refund 7"),
        [state.compensation_message_id(1)],
        "refunded once"
    );
    assert_eq!(ledger.runs_of("release 42").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_idempotency_every_try_of_a_compensation_runs_but_all_carry_one_message_id() {
    let ledger = failing_shipping();
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(LoseReplies::new(&[("billing.refund", 2)]))
        .build()
        .unwrap();
    let saga = checkout();
    let mut state = saga.start();
    saga.run(&app, &Order, &mut state).await.unwrap_err();
    assert_eq!(
        ledger.runs_of("refund 7"),
        [state.compensation_message_id(1); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_rerun_after_a_crash_runs_once_behind_idempotency_and_keeps_its_first_reply() {
    let ledger = Arc::new(Ledger::default());
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = checkout();
    let mut stored = Vec::new();
    let mut state = saga.start();
    saga.run_observed(&app, &Order, &mut state, |s| {
        stored.push(serde_json::to_string(s).unwrap_or_default());
    })
    .await
    .unwrap();
    // The process died after the charge ran but before the state recording it was stored:
    // the last state kept is the one after the reservation.
    let mut resumed: SagaState = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(resumed.next_step, 1);
    saga.run(&app, &Order, &mut resumed).await.unwrap();
    assert_eq!(resumed, state, "the same run, the same replies");
    assert_eq!(ledger.runs_of("charge 900"), [state.forward_message_id(1)]);
    assert_eq!(ledger.runs_of("ship 2"), [state.forward_message_id(2)]);
}

#[tokio::test(start_paused = true)]
async fn a_compensation_rerun_after_a_crash_runs_once_behind_idempotency() {
    let ledger = failing_shipping();
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = checkout();
    let mut stored: Vec<SagaState> = Vec::new();
    let mut state = saga.start();
    saga.run_observed(&app, &Order, &mut state, |s| stored.push(s.clone()))
        .await
        .unwrap_err();
    // The process died while refunding: the last state kept still lists the charge.
    let mut resumed = stored
        .iter()
        .rfind(|s| s.status == SagaStatus::Compensating && s.completed.len() == 2)
        .cloned()
        .unwrap();
    saga.run(&app, &Order, &mut resumed).await.unwrap_err();
    assert_eq!(resumed.status, SagaStatus::Compensated);
    assert_eq!(
        ledger.runs_of("refund 7"),
        [state.compensation_message_id(1)]
    );
    assert_eq!(
        ledger.runs_of("release 42"),
        [state.compensation_message_id(0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_forward_step_that_failed_in_doubt_is_not_compensated() {
    // Pinned: its compensation is built from its reply, which never came. Declaring the
    // command `idempotent` (as `Charge` is) lets a `Retry` layer get the reply instead.
    let ledger = Arc::new(Ledger::default());
    let app = Catga::builder()
        .state_arc(ledger.clone())
        .layer(Retry::exponential(3).without_jitter())
        .layer(LoseReplies::new(&[("billing.charge-once", 1)]))
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = Saga::builder("checkout-once")
        .step(
            "reserve",
            |_: &Order| Reserve { qty: 2 },
            |_, reservation| Release { reservation },
        )
        .step(
            "charge",
            |_: &Order| ChargeOnce { cents: 900 },
            |_, payment| Refund { payment },
        )
        .build()
        .unwrap();
    let mut state = saga.start();
    let err = saga.run(&app, &Order, &mut state).await.unwrap_err();
    let SagaError::Compensated { failure, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!((failure.index, failure.code.as_str()), (Some(1), "timeout"));
    assert_eq!(
        ledger.runs_of("charge 900").len(),
        1,
        "not retried: in doubt"
    );
    assert!(ledger.runs_of("refund 7").is_empty());
    assert_eq!(ledger.runs_of("release 42").len(), 1);
}
