//! An error means the same here and in another process (`error_scenarios`, also run against
//! real NATS and Redis by those crates), on the in-memory transport.

mod error_scenarios;

use catga_core::transport::MemoryTransport;

#[tokio::test(start_paused = true)]
async fn handler_errors_read_the_same_here_and_elsewhere_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    error_scenarios::handler_errors_read_the_same_here_and_elsewhere(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn validation_fails_with_the_same_fields_here_and_elsewhere_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    error_scenarios::validation_fails_with_the_same_fields_here_and_elsewhere(|| {
        std::future::ready(bus.clone())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_elsewhere_is_a_panic_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    error_scenarios::a_panic_elsewhere_is_a_panic(|| std::future::ready(bus.clone())).await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_read_the_same_here_and_elsewhere_on_the_memory_transport() {
    let bus = MemoryTransport::new();
    error_scenarios::timeouts_read_the_same_here_and_elsewhere(|| std::future::ready(bus.clone()))
        .await;
}
