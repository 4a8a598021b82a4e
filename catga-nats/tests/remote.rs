//! What a request that crosses NATS promises: the scenarios every transport runs
//! (catga-core's `tests/remote_scenarios`), each application on a connection of its own, as
//! separate processes would be.

mod common;
#[path = "../../catga-core/tests/remote_scenarios/mod.rs"]
mod remote_scenarios;

use common::Corner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_failures_elsewhere_leave_a_served_commands_reply_over_nats() {
    let Some(corner) = Corner::new("follow_up_failures_elsewhere").await else {
        return;
    };
    remote_scenarios::follow_up_failures_elsewhere_leave_the_reply(|| corner.connect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_the_server_refuses_is_kept_by_its_publisher_over_nats() {
    let Some(corner) = Corner::new("refused_follow_up").await else {
        return;
    };
    // The server's `max_payload` is 1 MiB unless configured otherwise.
    remote_scenarios::a_refused_follow_up_is_kept_by_its_publisher(|| corner.connect(), 2 << 20)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_command_that_timed_out_runs_again_only_if_idempotent_over_nats() {
    let Some(corner) = Corner::new("remote_in_doubt").await else {
        return;
    };
    remote_scenarios::a_remote_command_that_timed_out_runs_again_only_if_idempotent(|| {
        corner.connect()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_before_its_service_runs_is_retried_and_handled_once_over_nats() {
    let Some(corner) = Corner::new("request_before_service").await else {
        return;
    };
    remote_scenarios::a_request_sent_before_its_service_runs_is_handled_once(|| corner.connect())
        .await;
}
