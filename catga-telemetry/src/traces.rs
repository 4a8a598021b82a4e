//! The OpenTelemetry tracer provider: OTLP over http/protobuf behind a batch span processor,
//! with the exporter watched so that a failed export is seen.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use catga_core::secret::redact_url;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing::dispatcher::WeakDispatch;

use crate::error::Error;

/// The instrumentation scope catga's spans are exported under.
const SCOPE: &str = "catga";

/// The target of the lines this crate logs about itself.
pub(crate) const LOG_TARGET: &str = "catga_telemetry";

/// The tracer provider and what its exporter reports.
#[derive(Debug)]
pub(crate) struct Traces {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) exports: Arc<Exports>,
}

/// A tracer provider exporting to `endpoint` (the full traces URL), with `service_name` as
/// `service.name` when given.
///
/// The SDK reads the rest from the environment itself: the resource
/// (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME` when `service_name` is `None`), the
/// sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the span limits
/// (`OTEL_SPAN_*_COUNT_LIMIT`), the batch processor (`OTEL_BSP_*`); the exporter reads
/// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `_TIMEOUT` and `_COMPRESSION`.
///
/// # Errors
/// [`Error::Exporter`] when the exporter cannot be built from its variables.
pub(crate) fn provider(endpoint: &str, service_name: Option<&str>) -> Result<Traces, Error> {
    #[cfg(feature = "tls")]
    if endpoint.to_ascii_lowercase().starts_with("https://") {
        // reqwest is built without a provider of its own: this process's default is `ring`,
        // unless the application installed another (then that one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(Error::Exporter)?;
    let exports = Arc::new(Exports::new(endpoint));
    let exporter = Watched {
        inner: exporter,
        exports: Arc::clone(&exports),
    };
    let mut resource = Resource::builder();
    if let Some(name) = service_name {
        resource = resource.with_service_name(name.to_string());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok(Traces { provider, exports })
}

/// The tracer the `tracing` layer creates spans with.
pub(crate) fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer(SCOPE)
}

/// How the exports fared, shared by the exporter (which records each result) and the guard
/// (which reports a failure from its flush or shutdown).
///
/// The batch processor logs nothing a service's log filter shows (its own diagnostics need
/// OpenTelemetry's `internal-logs` feature, and then log an `ERROR` on every failed export,
/// without the endpoint), and its shutdown drops the result of the last export. This is
/// what makes a failure seen: one `WARN` when exports start failing, one `INFO` when they
/// work again, and the cause kept for the guard.
#[derive(Debug)]
pub(crate) struct Exports {
    /// The traces URL, with any password or secret query redacted.
    endpoint: String,
    /// The subscriber the lines go to, once it is built: the processor exports from a
    /// thread of its own, where neither a test's thread-local subscriber nor anything else
    /// would be current. Weak: the subscriber holds the tracer, which holds the exporter.
    pub(crate) logs: OnceLock<WeakDispatch>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Exports that failed, since the start.
    failed: u64,
    /// Why the last one failed.
    cause: Option<OTelSdkError>,
    /// Exports that failed since the last one that worked, and the spans they held.
    streak: u64,
    dropped: u64,
}

impl Exports {
    fn new(endpoint: &str) -> Exports {
        Exports {
            endpoint: redact_url(endpoint).into_owned(),
            logs: OnceLock::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// The traces URL spans are sent to, redacted for messages.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many exports failed so far: a mark for [`failed_since`](Self::failed_since).
    pub(crate) fn failures(&self) -> u64 {
        self.state().failed
    }

    /// Why the last export failed, if one failed after `mark`.
    pub(crate) fn failed_since(&self, mark: u64) -> Option<OTelSdkError> {
        let state = self.state();
        (state.failed > mark)
            .then(|| state.cause.as_ref().map(copy))
            .flatten()
    }

    /// Records an export of `spans` spans: the first failure after a success is logged at
    /// `WARN`, the next success at `INFO`; the failures in between are counted, not logged
    /// (an endpoint that is down fails every export, every few seconds).
    pub(crate) fn record(&self, result: &OTelSdkResult, spans: usize) {
        let mut state = self.state();
        match result {
            Ok(()) if state.streak > 0 => {
                let (failed_exports, dropped_spans) = (state.streak, state.dropped);
                (state.streak, state.dropped) = (0, 0);
                drop(state);
                self.log(|| {
                    tracing::info!(target: LOG_TARGET, endpoint = %self.endpoint,
                        failed_exports, dropped_spans, "spans are exported again");
                });
            }
            Ok(()) => {}
            Err(cause) => {
                state.failed += 1;
                state.cause = Some(copy(cause));
                state.streak += 1;
                state.dropped += spans as u64;
                if state.streak == 1 {
                    drop(state);
                    self.log(|| {
                        tracing::warn!(target: LOG_TARGET, endpoint = %self.endpoint,
                            error = %cause, spans,
                            "could not export spans, which are dropped; \
                             failures are not logged again until an export succeeds");
                    });
                }
            }
        }
    }

    /// Runs `event` with the telemetry's own subscriber as the default, when it is alive.
    pub(crate) fn log(&self, event: impl FnOnce()) {
        match self.logs.get().and_then(WeakDispatch::upgrade) {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, event),
            None => event(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The same error (`OTelSdkError` is not `Clone`).
fn copy(error: &OTelSdkError) -> OTelSdkError {
    match error {
        OTelSdkError::AlreadyShutdown => OTelSdkError::AlreadyShutdown,
        OTelSdkError::Timeout(after) => OTelSdkError::Timeout(*after),
        OTelSdkError::InternalFailure(why) => OTelSdkError::InternalFailure(why.clone()),
    }
}

/// The OTLP exporter, each export's result recorded in [`Exports`].
#[derive(Debug)]
struct Watched<E> {
    inner: E,
    exports: Arc<Exports>,
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.exports.record(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A log writer the test reads.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|line| serde_json::from_str(line).expect("a JSON line"))
                .collect()
        }
    }

    fn refused() -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure(
            "HTTP export failed: network error".into(),
        ))
    }

    #[test]
    fn a_failing_endpoint_is_logged_once_and_its_recovery_once() {
        let logs = Captured::default();
        let writer = logs.clone();
        // Built on this thread, recorded from it: only `Exports::logs` leads to the lines.
        let parts = crate::builder()
            .traces(false)
            .prometheus(false)
            .log_filter("info")
            .log_writer(move || writer.clone())
            .build()
            .expect("telemetry builds");
        let exports = Exports::new("http://user:secret@collector:4318/v1/traces");
        exports.logs.set(parts.dispatch.downgrade()).unwrap();

        exports.record(&Ok(()), 3);
        assert!(logs.lines().is_empty(), "a working export says nothing");
        let mark = exports.failures();
        for _ in 0..5 {
            exports.record(&refused(), 2);
        }
        let cause = exports.failed_since(mark).expect("failures after the mark");
        assert!(cause.to_string().contains("network error"), "{cause}");
        assert!(exports.failed_since(exports.failures()).is_none());

        exports.record(&Ok(()), 1);
        exports.record(&Ok(()), 1);
        exports.record(&refused(), 4);

        let lines = logs.lines();
        let levels: Vec<_> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
        assert_eq!(levels, ["WARN", "INFO", "WARN"], "{lines:#?}");
        let (warned, recovered) = (&lines[0], &lines[1]);
        assert_eq!(warned["target"], LOG_TARGET);
        let endpoint = "http://***@collector:4318/v1/traces";
        assert_eq!(
            warned["fields"]["endpoint"], endpoint,
            "the password is not logged"
        );
        assert_eq!(
            warned["fields"]["error"],
            "Operation failed: HTTP export failed: network error"
        );
        assert_eq!(warned["fields"]["spans"], 2);
        assert_eq!(recovered["fields"]["endpoint"], endpoint);
        assert_eq!(recovered["fields"]["failed_exports"], 5);
        assert_eq!(recovered["fields"]["dropped_spans"], 10);
        assert_eq!(lines[2]["fields"]["spans"], 4);
    }
}
