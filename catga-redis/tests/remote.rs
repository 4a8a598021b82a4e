//! What a request that crosses Redis promises: the scenarios every transport runs
//! (catga-core's `tests/remote_scenarios`), each application on a connection of its own, as
//! separate processes would be.

mod common;
#[path = "../../catga-core/tests/remote_scenarios/mod.rs"]
mod remote_scenarios;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_failures_elsewhere_leave_a_served_commands_reply_over_redis() {
    let Some(server) = Server::get("follow_up_failures_elsewhere").await else {
        return;
    };
    remote_scenarios::follow_up_failures_elsewhere_leave_the_reply(|| server.transport()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_command_that_timed_out_runs_again_only_if_idempotent_over_redis() {
    let Some(server) = Server::get("remote_in_doubt").await else {
        return;
    };
    remote_scenarios::a_remote_command_that_timed_out_runs_again_only_if_idempotent(|| {
        server.transport()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_before_its_service_runs_waits_and_is_handled_once_over_redis() {
    let Some(server) = Server::get("request_before_service").await else {
        return;
    };
    remote_scenarios::a_request_sent_before_its_service_runs_is_handled_once(|| server.transport())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outlive_their_publishers_deadline_over_redis() {
    let Some(server) = Server::get("events_outlive_deadline").await else {
        return;
    };
    remote_scenarios::events_outlive_their_publishers_deadline(|| server.transport()).await;
}
