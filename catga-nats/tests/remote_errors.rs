//! An error means the same here and across NATS: the scenarios every transport runs
//! (catga-core's `tests/error_scenarios`), each application on a connection of its own, as
//! separate processes would be.

mod common;
#[path = "../../catga-core/tests/error_scenarios/mod.rs"]
mod error_scenarios;

use common::Corner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_read_the_same_here_and_across_nats() {
    let Some(corner) = Corner::new("errors_handler").await else {
        return;
    };
    error_scenarios::handler_errors_read_the_same_here_and_elsewhere(|| corner.connect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_fails_with_the_same_fields_here_and_across_nats() {
    let Some(corner) = Corner::new("errors_validation").await else {
        return;
    };
    error_scenarios::validation_fails_with_the_same_fields_here_and_elsewhere(|| corner.connect())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_across_nats_is_a_panic() {
    let Some(corner) = Corner::new("errors_panic").await else {
        return;
    };
    error_scenarios::a_panic_elsewhere_is_a_panic(|| corner.connect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_read_the_same_here_and_across_nats() {
    let Some(corner) = Corner::new("errors_timeout").await else {
        return;
    };
    error_scenarios::timeouts_read_the_same_here_and_elsewhere(|| corner.connect()).await;
}
