//! Setting telemetry up: what the builder holds, and the two ways to finish it.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::env::{self, Source};
use crate::error::Error;
use crate::guard::TelemetryGuard;
use crate::logs::LogFormat;
use crate::{catalog, prometheus, propagation, subscriber, traces};

/// The log filter when neither the builder nor `RUST_LOG` gives one.
const DEFAULT_FILTER: &str = "info";

/// How long dropping the guard waits for the last spans by default.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets up logs, traces and metrics for a service with the defaults in
/// [`TelemetryBuilder`], and installs them for the whole process: `builder().init()`.
///
/// # Errors
/// As [`TelemetryBuilder::init`].
pub fn init() -> Result<TelemetryGuard, Error> {
    builder().init()
}

/// A [`TelemetryBuilder`] with nothing set: everything comes from the environment or the
/// defaults.
pub fn builder() -> TelemetryBuilder {
    TelemetryBuilder::default()
}

/// What to set up. Every setting has a default, and a setting made here wins over the
/// environment variable for it (as in the OpenTelemetry SDK), which wins over the default.
///
/// | setting | here | variable | default |
/// |---|---|---|---|
/// | `service.name` | [`service_name`](Self::service_name) | `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES` | `unknown_service:<executable>` |
/// | log filter | [`log_filter`](Self::log_filter) | `RUST_LOG` | `info` |
/// | log format | [`log_format`](Self::log_format) | `CATGA_LOG_FORMAT` (`json`, `text`) | JSON lines |
/// | log output | [`log_writer`](Self::log_writer) | | standard output |
/// | span export | [`traces`](Self::traces) | `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off | on |
/// | OTLP endpoint | [`otlp_endpoint`](Self::otlp_endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://localhost:4318` |
/// | Prometheus recorder | [`prometheus`](Self::prometheus) | | on |
/// | shutdown wait | [`shutdown_timeout`](Self::shutdown_timeout) | | 5 s |
///
/// The log filter decides for traces too: a span it filters out is not exported (catga's
/// spans are `INFO`, target `catga`). The exporter and SDK read their other variables
/// themselves; docs/observability.md lists them all.
#[must_use]
pub struct TelemetryBuilder {
    service_name: Option<String>,
    log_filter: Option<String>,
    log_format: Option<LogFormat>,
    log_writer: Option<BoxMakeWriter>,
    traces: Option<bool>,
    otlp_endpoint: Option<String>,
    prometheus: bool,
    shutdown_timeout: Duration,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            service_name: None,
            log_filter: None,
            log_format: None,
            log_writer: None,
            traces: None,
            otlp_endpoint: None,
            prometheus: true,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field("log_writer", &self.log_writer.as_ref().map(|_| ".."))
            .field("traces", &self.traces)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("prometheus", &self.prometheus)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// What [`TelemetryBuilder::build`] makes, installed nowhere: for tests and for applications
/// that compose their own subscriber or recorder.
#[must_use]
#[derive(Debug)]
#[non_exhaustive]
pub struct Parts {
    /// The subscriber: set it with [`tracing::dispatcher::set_default`] (this thread) or
    /// [`set_global_default`](tracing::dispatcher::set_global_default).
    pub dispatch: Dispatch,
    /// The Prometheus recorder, when [`prometheus`](TelemetryBuilder::prometheus) is on,
    /// with catga's metrics described: install it with [`metrics::set_global_recorder`] or
    /// [`metrics::set_default_local_recorder`]. The guard renders it.
    pub recorder: Option<PrometheusRecorder>,
    /// Flushes and shuts the exporter down; renders the metrics.
    pub guard: TelemetryGuard,
}

impl TelemetryBuilder {
    /// The `service.name` of exported spans (overrides `OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The log (and span) filter, in `EnvFilter` syntax: `info`, `warn,catga=debug`, …
    /// (overrides `RUST_LOG`).
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// JSON lines or human text (overrides `CATGA_LOG_FORMAT`).
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = Some(format);
        self
    }

    /// Where log lines go, instead of standard output: anything tracing-subscriber can write
    /// to (`std::io::stderr`, a `Mutex<File>`, a test's buffer). Text is never coloured there.
    pub fn log_writer<W>(mut self, writer: W) -> Self
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        self.log_writer = Some(BoxMakeWriter::new(writer));
        self
    }

    /// Whether spans are exported over OTLP. Off, the environment is not consulted; on, it
    /// overrides `OTEL_SDK_DISABLED` and `OTEL_TRACES_EXPORTER`.
    pub fn traces(mut self, export: bool) -> Self {
        self.traces = Some(export);
        self
    }

    /// The collector's OTLP/HTTP base URL, such as `http://localhost:4318`; spans go to
    /// `<base>/v1/traces` (overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn otlp_endpoint(mut self, base: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(base.into());
        self
    }

    /// Whether to record metrics in a Prometheus recorder (on by default). Off, the
    /// application installs its own `metrics` recorder, or none.
    pub fn prometheus(mut self, record: bool) -> Self {
        self.prometheus = record;
        self
    }

    /// How long dropping or [`shutdown`](TelemetryGuard::shutdown) waits for the last spans
    /// to be exported (5 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets everything up and installs it for the whole process: the global `tracing`
    /// subscriber, the global `metrics` recorder, catga-core's trace propagation,
    /// OpenTelemetry's global text-map propagator (W3C trace context) and tracer provider.
    /// Call it once, first thing in `main`, inside the Tokio runtime or outside it.
    ///
    /// # Errors
    /// A variable or setting that cannot be used ([`Error::UnsupportedProtocol`],
    /// [`Error::UnsupportedExporter`], [`Error::InvalidEndpoint`], [`Error::TlsDisabled`],
    /// [`Error::Filter`], [`Error::LogFormat`], [`Error::Exporter`]); something installed
    /// before ([`Error::SubscriberTaken`], [`Error::RecorderTaken`],
    /// [`Error::PropagationTaken`]); [`Error::UpkeepThread`].
    pub fn init(self) -> Result<TelemetryGuard, Error> {
        let Parts {
            dispatch,
            recorder,
            guard,
        } = self.build_from(&env::process)?;
        tracing::dispatcher::set_global_default(dispatch).map_err(Error::SubscriberTaken)?;
        if let Some(recorder) = recorder {
            metrics::set_global_recorder(recorder).map_err(|_| Error::RecorderTaken)?;
            // Described again: a description goes to the recorder current at the call.
            catalog::describe();
        }
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(provider) = guard.provider() {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
        Ok(guard)
    }

    /// Sets everything up and installs only catga-core's trace propagation (stateless, one
    /// per process): the subscriber and the recorder are returned in [`Parts`], for the
    /// caller to install where it wants.
    ///
    /// # Errors
    /// As [`init`](Self::init), less what installing globally adds.
    pub fn build(self) -> Result<Parts, Error> {
        self.build_from(&env::process)
    }

    fn build_from(self, env: Source<'_>) -> Result<Parts, Error> {
        let filter = self.filter(env)?;
        let format = match self.log_format {
            Some(format) => format,
            None => match env::read(env, "CATGA_LOG_FORMAT") {
                Some(value) => LogFormat::parse(&value).ok_or(Error::LogFormat { value })?,
                None => LogFormat::default(),
            },
        };
        let traces = self.exporting(env)?;
        if traces.is_some() {
            propagation::install()?;
        }
        let (recorder, upkeep) = if self.prometheus {
            let recorder = prometheus::recorder()?;
            metrics::with_local_recorder(&recorder, catalog::describe);
            let upkeep = prometheus::Upkeep::start(recorder.handle())?;
            (Some(recorder), Some(upkeep))
        } else {
            (None, None)
        };
        let dispatch = subscriber::dispatch(
            filter,
            traces.as_ref().map(|t| traces::tracer(&t.provider)),
            format,
            self.log_writer,
        );
        if let Some(traces) = &traces {
            // Export failures are logged where the log lines go.
            let _ = traces.exports.logs.set(dispatch.downgrade());
        }
        let handle = recorder.as_ref().map(PrometheusRecorder::handle);
        let guard = TelemetryGuard::new(traces, handle, upkeep, self.shutdown_timeout);
        Ok(Parts {
            dispatch,
            recorder,
            guard,
        })
    }

    fn filter(&self, env: Source<'_>) -> Result<EnvFilter, Error> {
        let (directives, var) = match (&self.log_filter, env::read(env, "RUST_LOG")) {
            (Some(own), _) => (own.clone(), None),
            (None, Some(from_env)) => (from_env, Some("RUST_LOG")),
            (None, None) => (DEFAULT_FILTER.to_string(), None),
        };
        EnvFilter::builder()
            .parse(&directives)
            .map_err(|source| Error::Filter {
                var,
                directives,
                source,
            })
    }

    /// The tracer provider, or `None` when spans are not exported.
    fn exporting(&self, env: Source<'_>) -> Result<Option<traces::Traces>, Error> {
        let export = match self.traces {
            Some(export) => export,
            None => env::traces_enabled(env)?,
        };
        if !export {
            return Ok(None);
        }
        env::check_protocol(env)?;
        let endpoint = env::traces_endpoint(env, self.otlp_endpoint.as_deref())?;
        traces::provider(&endpoint, self.service_name.as_deref()).map(Some)
    }
}
