//! The runtime a scenario runs on.

use super::TransportUnderTest;

/// The runtime for one scenario of `kit`: a current-thread runtime on Tokio's paused clock
/// when [`paused_clock`](TransportUnderTest::paused_clock) says so, else a multi-thread one
/// with two workers (a real broker, real time). The tests [`transport_conformance!`] writes
/// run each scenario with `runtime(&kit).block_on(…)`.
///
/// [`transport_conformance!`]: crate::testkit::transport_conformance
pub fn runtime(kit: &impl TransportUnderTest) -> tokio::runtime::Runtime {
    let built = if kit.paused_clock() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    built.expect("a Tokio runtime for the scenario")
}
