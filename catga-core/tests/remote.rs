//! What a request that crosses a transport promises (`remote_scenarios`, also run against
//! real NATS and Redis by those crates), on the in-memory transport.

mod remote_scenarios;

use catga_core::transport::MemoryTransport;

#[tokio::test(start_paused = true)]
async fn follow_up_failures_elsewhere_leave_a_served_commands_reply_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    remote_scenarios::follow_up_failures_elsewhere_leave_the_reply(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_remote_command_that_timed_out_runs_again_only_if_idempotent_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    remote_scenarios::a_remote_command_that_timed_out_runs_again_only_if_idempotent(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_before_its_service_runs_is_handled_once_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    remote_scenarios::a_request_sent_before_its_service_runs_is_handled_once(|| {
        std::future::ready(bus.clone())
    })
    .await;
}
