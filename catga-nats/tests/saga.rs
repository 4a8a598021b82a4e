//! Sagas over real NATS (the reproducer `nc_r01_saga_over_transport`): the scenarios every
//! transport runs (catga-core's `tests/saga_scenarios`), each application on a connection of
//! its own, as separate processes would be.

mod common;
#[path = "../../catga-core/tests/saga_scenarios/mod.rs"]
mod saga_scenarios;

use common::Corner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nc_r01_a_saga_whose_steps_other_applications_handle_completes_over_nats() {
    let Some(corner) = Corner::new("nc_r01_saga_completes").await else {
        return;
    };
    saga_scenarios::steps_elsewhere_complete(|| corner.connect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nc_r01_compensations_other_applications_handle_run_in_reverse_over_nats() {
    let Some(corner) = Corner::new("nc_r01_saga_compensates").await else {
        return;
    };
    saga_scenarios::compensations_elsewhere_run_in_reverse_and_one_failing_is_kept_once(|| {
        corner.connect()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_and_a_resume_elsewhere_run_each_handler_once_over_nats() {
    let Some(corner) = Corner::new("saga_lost_replies").await else {
        return;
    };
    saga_scenarios::lost_replies_and_a_resume_elsewhere_run_each_handler_once(|| corner.connect())
        .await;
}
