//! The guard: dropping it at the end of `main` (on either Tokio runtime, or none) flushes the
//! spans not yet exported; `shutdown` reports what it could not send.

use std::time::{Duration, Instant};

use catga_telemetry::ShutdownError;
use catga_telemetry::testkit::OtlpReceiver;

/// A span the batch processor holds (its schedule is seconds away), and the guard that holds
/// the processor.
fn one_span(receiver: &OtlpReceiver, name: &str) -> catga_telemetry::TelemetryGuard {
    let parts = catga_telemetry::builder()
        .otlp_endpoint(receiver.endpoint())
        .log_writer(std::io::sink)
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    tracing::dispatcher::with_default(&parts.dispatch, || {
        tracing::info_span!("unit", otel.name = name).in_scope(|| {});
    });
    assert!(
        receiver.spans().is_empty(),
        "nothing is sent before the flush"
    );
    parts.guard
}

fn names(receiver: &OtlpReceiver) -> Vec<String> {
    receiver.spans().into_iter().map(|s| s.name).collect()
}

#[test]
fn dropping_the_guard_at_the_end_of_a_multi_threaded_main_flushes() {
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let guard = one_span(&receiver, "in main");
        // Inside a task on a worker too: `block_in_place` lends the worker's other tasks out.
        let other = tokio::spawn(async { 7 });
        drop(guard);
        assert_eq!(other.await.expect("the other task ran"), 7);
    });
    assert_eq!(names(&receiver), ["in main"]);
}

#[test]
fn dropping_the_guard_on_a_current_thread_runtime_flushes() {
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        drop(one_span(&receiver, "current thread"));
    });
    assert_eq!(names(&receiver), ["current thread"]);
}

#[test]
fn shutdown_outside_a_runtime_flushes_and_says_it_did() {
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let guard = one_span(&receiver, "no runtime");
    assert!(guard.exports_traces());
    guard.shutdown().expect("everything was sent");
    assert_eq!(names(&receiver), ["no runtime"]);
}

/// An OTLP endpoint on a loopback port nothing listens on: every export is refused at once.
fn closed_endpoint() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let endpoint = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    endpoint
}

fn refused_by(endpoint: &str) -> catga_telemetry::Parts {
    catga_telemetry::builder()
        .otlp_endpoint(endpoint)
        .log_writer(std::io::sink)
        .prometheus(false)
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .expect("telemetry builds")
}

/// The error's message names the traces URL, and its source is the exporter's cause.
fn assert_names_the_endpoint(error: &ShutdownError, endpoint: &str) {
    let ShutdownError::Traces {
        endpoint: named, ..
    } = error
    else {
        panic!("a traces error: {error:?}");
    };
    let url = format!("{endpoint}/v1/traces");
    assert_eq!(named, &url);
    let message = error.to_string();
    assert!(message.contains(&url), "{message}");
    let cause = std::error::Error::source(error).expect("the cause is kept");
    assert!(
        cause.to_string().contains("HTTP export failed"),
        "the exporter's words: {cause}"
    );
}

#[test]
fn shutdown_reports_spans_the_endpoint_refused() {
    let endpoint = closed_endpoint();
    let parts = refused_by(&endpoint);
    tracing::dispatcher::with_default(&parts.dispatch, || {
        tracing::info_span!("lost").in_scope(|| {});
    });
    let started = Instant::now();
    let error = parts
        .guard
        .shutdown()
        .expect_err("the span pending at shutdown was refused");
    assert_names_the_endpoint(&error, &endpoint);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeouts"
    );
}

#[test]
fn a_flush_reports_the_refusal_and_a_shutdown_with_nothing_left_does_not() {
    let endpoint = closed_endpoint();
    let parts = refused_by(&endpoint);
    tracing::dispatcher::with_default(&parts.dispatch, || {
        tracing::info_span!("lost").in_scope(|| {});
    });
    let error = parts
        .guard
        .flush()
        .expect_err("the flush says the export failed");
    assert_names_the_endpoint(&error, &endpoint);
    // The refused span was dropped and reported: nothing is pending, nothing more is lost.
    parts
        .guard
        .shutdown()
        .expect("nothing left to export at shutdown");
}
