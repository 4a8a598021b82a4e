//! Saga steps go where `send` would send them: handled here when this process has the
//! handler, else by another service through the transport. What every transport runs (steps
//! and compensations elsewhere, lost replies, a step nobody serves) is the conformance
//! suite's `saga` family (`tests/conformance.rs`); here, with its fixtures, what needs no
//! transport or Tokio's paused clock: a step handled nowhere, and how long a remote step
//! waits.

/// The saga family's messages, handlers and sagas (`catga_core::testkit`).
#[allow(dead_code)] // its scenario functions run in tests/conformance.rs
mod saga_scenarios {
    catga_core::testkit::scenarios!(saga);
}

use std::sync::Arc;
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::saga::{Saga, SagaError};
use catga_core::transport::MemoryTransport;
use saga_scenarios::{
    Charge, Hold, Ledger, LoseReplies, Order, Refund, Release, Reserve, Ship, checkout,
    is_shipping, is_stock, service,
};

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
