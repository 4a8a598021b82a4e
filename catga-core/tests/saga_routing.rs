//! Saga steps go where `send` would send them: handled here when this process has the
//! handler, else by another service through the transport, forward steps and compensations
//! alike (the reproducer `nc_r01_saga_over_transport`). The scenarios every transport runs
//! (`saga_scenarios`, also run against real NATS and Redis by those crates), on the in-memory
//! transport, and what only needs one transport: no responder, no transport, deadlines.
//! Timing on Tokio's paused clock.

mod saga_scenarios;

use std::sync::Arc;
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::saga::{Saga, SagaError};
use catga_core::transport::MemoryTransport;
use saga_scenarios::{
    Charge, Hold, Ledger, LoseReplies, Order, Refund, Release, Reserve, Ship, checkout, front,
    is_billing, is_shipping, is_stock, service,
};

#[tokio::test(start_paused = true)]
async fn nc_r01_a_saga_whose_steps_other_services_handle_completes_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    saga_scenarios::steps_elsewhere_complete(|| std::future::ready(bus.clone())).await;
}

#[tokio::test(start_paused = true)]
async fn nc_r01_compensations_other_services_handle_run_in_reverse_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    saga_scenarios::compensations_elsewhere_run_in_reverse_and_one_failing_is_kept_once(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn lost_replies_and_a_resume_elsewhere_run_each_handler_once_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    saga_scenarios::lost_replies_and_a_resume_elsewhere_run_each_handler_once(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_step_nobody_serves_fails_and_the_steps_before_it_are_compensated() {
    let bus = MemoryTransport::new();
    let ledger = Arc::new(Ledger::default());
    let billing = service(
        bus.clone(),
        &ledger,
        "billing",
        is_billing,
        &LoseReplies::default(),
    );
    let serving = billing.serve().await.unwrap();
    let saga = checkout();
    let mut state = saga.start();
    let err = saga
        .run(&front(bus.clone(), &ledger), &Order, &mut state)
        .await
        .unwrap_err();
    let SagaError::Compensated { failure, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(
        (failure.step.as_str(), failure.code.as_str()),
        ("ship", "transport")
    );
    assert_eq!(
        ledger.log(),
        ["reserve 2", "charge 900", "refund 7", "release 42"]
    );
    serving.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_transport_a_step_handled_nowhere_fails_with_no_handler() {
    let ledger = Arc::new(Ledger::default());
    let alone = Catga::builder()
        .state_arc(ledger.clone())
        .handlers(is_stock)
        .allow_unhandled::<Charge>()
        .allow_unhandled::<saga_scenarios::ChargeOnce>()
        .allow_unhandled::<Refund>()
        .allow_unhandled::<Ship>()
        .allow_unhandled::<Hold>()
        .build()
        .unwrap();
    let saga = checkout();
    let mut state = saga.start();
    let err = saga.run(&alone, &Order, &mut state).await.unwrap_err();
    let SagaError::Compensated { failure, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(
        (failure.step.as_str(), failure.code.as_str()),
        ("charge", "no_handler")
    );
    assert_eq!(ledger.log(), ["reserve 2", "release 42"]);
}

#[tokio::test(start_paused = true)]
async fn a_remote_step_waits_the_applications_request_timeout_or_the_step_timeout() {
    let bus = MemoryTransport::new();
    let ledger = Arc::new(Ledger::default());
    let shipping = service(
        bus.clone(),
        &ledger,
        "shipping",
        is_shipping,
        &LoseReplies::default(),
    );
    let serving = shipping.serve().await.unwrap();
    let front = Catga::builder()
        .state_arc(ledger.clone())
        .transport(bus.clone())
        .service("front")
        .handlers(is_stock)
        .request_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let held = |timeout: Option<Duration>| {
        let saga = Saga::builder("held")
            .step(
                "reserve",
                |_: &Order| Reserve { qty: 2 },
                |_, reservation| Release { reservation },
            )
            .last_step("hold", |_: &Order| Hold);
        match timeout {
            Some(timeout) => saga.step_timeout(timeout),
            None => saga,
        }
        .build()
        .unwrap()
    };

    for (timeout, waited) in [(None, 4), (Some(Duration::from_secs(1)), 1)] {
        let saga = held(timeout);
        let mut state = saga.start();
        let started = tokio::time::Instant::now();
        let err = saga.run(&front, &Order, &mut state).await.unwrap_err();
        let SagaError::Compensated { failure, .. } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(failure.code, "timeout");
        // The deadline crosses the transport as wall-clock milliseconds, so the serving side
        // may notice it a few (real) milliseconds before the caller does: a loaded machine
        // answers `timeout` a little early, never late.
        let waited = Duration::from_secs(waited);
        let elapsed = started.elapsed();
        assert!(
            elapsed <= waited && elapsed > waited - Duration::from_millis(500),
            "{timeout:?}: waited {elapsed:?}"
        );
    }
    assert_eq!(
        ledger.log(),
        ["reserve 2", "release 42", "reserve 2", "release 42"]
    );
    serving.shutdown().await;
}
