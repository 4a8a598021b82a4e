//! What [`init`](crate::init) returns: the handle to flush traces, shut them down, and render
//! the metrics.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::error::ShutdownError;
use crate::prometheus::Upkeep;
use crate::traces::{LOG_TARGET, Traces};

/// Keeps the process's telemetry running; dropping it flushes the spans not yet exported
/// and shuts the exporter down.
///
/// Keep it in `main` until the end (`let _telemetry = …`, not `let _ = …`, which drops it
/// at once). Dropping it, like [`shutdown`](Self::shutdown), blocks the thread until the
/// batch processor has sent what it holds, at most the
/// [`shutdown_timeout`](crate::TelemetryBuilder::shutdown_timeout) (5 s by default). The
/// export runs on the processor's own thread with its own HTTP client and needs nothing from
/// the async runtime, so it cannot deadlock: on a multi-threaded Tokio runtime (the end of
/// `#[tokio::main]`, or a task) the wait goes through [`tokio::task::block_in_place`], which
/// hands the worker's other tasks to another thread first; on a current-thread runtime that
/// runtime's other tasks wait, at most the timeout. Drop logs a `WARN` when spans were lost;
/// call [`shutdown`](Self::shutdown) to get the error instead.
///
/// Logs keep being written after the shutdown; spans are no longer exported.
#[must_use = "dropping the guard shuts trace export down: keep it until `main` returns"]
#[derive(Debug)]
pub struct TelemetryGuard {
    traces: Option<Traces>,
    metrics: Option<PrometheusHandle>,
    upkeep: Option<Upkeep>,
    timeout: Duration,
}

impl TelemetryGuard {
    pub(crate) fn new(
        traces: Option<Traces>,
        metrics: Option<PrometheusHandle>,
        upkeep: Option<Upkeep>,
        timeout: Duration,
    ) -> TelemetryGuard {
        TelemetryGuard {
            traces,
            metrics,
            upkeep,
            timeout,
        }
    }

    /// The tracer provider, while traces are exported.
    pub(crate) fn provider(&self) -> Option<&SdkTracerProvider> {
        self.traces.as_ref().map(|traces| &traces.provider)
    }

    /// Whether spans are exported (not with `OTEL_SDK_DISABLED=true`,
    /// `OTEL_TRACES_EXPORTER=none` or `.traces(false)`).
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// The Prometheus handle, when metrics are recorded (`.prometheus(true)`, the default).
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.metrics.as_ref()
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4: serve it as
    /// `text/plain; version=0.0.4`), or an empty string when metrics are off. Each call also
    /// folds pending histogram samples into their buckets.
    pub fn render(&self) -> String {
        self.metrics
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }

    /// [`render`](Self::render) as a closure that owns what it needs, for the `/metrics`
    /// route (catga-axum takes a `Fn() -> String`).
    pub fn renderer(&self) -> impl Fn() -> String + Clone + Send + Sync + 'static {
        let handle = self.metrics.clone();
        move || {
            handle
                .as_ref()
                .map(PrometheusHandle::render)
                .unwrap_or_default()
        }
    }

    /// Exports every ended span the batch processor holds, and waits for the endpoint's
    /// answer (at most 5 s, the processor's flush timeout). Blocks the thread, as dropping
    /// the guard does. Does nothing when traces are off.
    ///
    /// # Errors
    /// [`ShutdownError::Traces`], naming the endpoint, when an export failed (the spans it
    /// held are dropped) or the flush timed out.
    pub fn flush(&self) -> Result<(), ShutdownError> {
        match &self.traces {
            Some(traces) => {
                let mark = traces.exports.failures();
                let result = off_the_runtime(|| traces.provider.force_flush());
                outcome(traces, mark, result)
            }
            None => Ok(()),
        }
    }

    /// Exports the spans the batch processor holds and shuts the exporter down (at most the
    /// shutdown timeout), stops the metrics upkeep thread, and reports what failed. Blocks
    /// the thread, as dropping does.
    ///
    /// # Errors
    /// [`ShutdownError::Traces`], naming the endpoint, when the last spans could not be
    /// exported: the endpoint refused them or did not answer, or the timeout passed.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ShutdownError> {
        drop(self.upkeep.take());
        match self.traces.take() {
            Some(traces) => {
                let timeout = self.timeout;
                let mark = traces.exports.failures();
                // The processor's shutdown exports what it holds, through the watched
                // exporter, but answers `Ok` whatever that export did: the exporter's
                // record says.
                let result = off_the_runtime(|| traces.provider.shutdown_with_timeout(timeout));
                outcome(&traces, mark, result)
            }
            None => Ok(()),
        }
    }
}

/// The error of a flush or shutdown that started when `mark` exports had failed: an export
/// that failed since, in the exporter's words, else what the SDK answered.
fn outcome(traces: &Traces, mark: u64, result: OTelSdkResult) -> Result<(), ShutdownError> {
    let failed = traces.exports.failed_since(mark);
    match failed.map(Err).unwrap_or(result) {
        Ok(()) => Ok(()),
        Err(source) => Err(ShutdownError::Traces {
            endpoint: traces.exports.endpoint().to_string(),
            source,
        }),
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let exports = self
            .traces
            .as_ref()
            .map(|traces| Arc::clone(&traces.exports));
        if let (Err(ShutdownError::Traces { endpoint, source }), Some(exports)) =
            (self.stop(), exports)
        {
            // The log layer still works: say what was lost where the logs go.
            exports.log(|| {
                tracing::warn!(target: LOG_TARGET, %endpoint, error = %source,
                    "spans were lost when shutting telemetry down");
            });
        }
    }
}

/// Runs `wait`, which blocks, so that a Tokio worker's other tasks are not held up: through
/// `block_in_place` on a multi-threaded runtime, directly anywhere else (a current-thread
/// runtime cannot lend its thread; outside a runtime nothing waits).
fn off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
