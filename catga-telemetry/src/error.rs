//! What can go wrong setting telemetry up, and flushing it.

/// Setting telemetry up failed: [`TelemetryBuilder::init`](crate::TelemetryBuilder::init) or
/// [`build`](crate::TelemetryBuilder::build). Each variant names the setting or variable at
/// fault; a message's `help:` line says what to write instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An OTLP protocol other than `http/protobuf` was asked for, in `var`
    /// (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[error(
        "`{var}={value}` is not supported: catga-telemetry exports OTLP over http/protobuf\n\
         help: set `{var}=http/protobuf` and point the endpoint at the collector's OTLP/HTTP \
         port (4318), or unset `{var}`"
    )]
    UnsupportedProtocol {
        /// The variable that asked for it.
        var: &'static str,
        /// What it said (`grpc`, `http/json`, …).
        value: String,
    },

    /// `OTEL_TRACES_EXPORTER` named an exporter this crate does not have.
    #[error(
        "`OTEL_TRACES_EXPORTER={value}` is not supported\n\
         help: use `otlp` (the default) or `none`"
    )]
    UnsupportedExporter {
        /// What the variable said.
        value: String,
    },

    /// The OTLP endpoint is not an `http://` or `https://` URL.
    #[error(
        "the OTLP endpoint `{endpoint}` (from {from}) is not an http URL\n\
         help: write it as `http://host:4318`"
    )]
    InvalidEndpoint {
        /// The endpoint as written.
        endpoint: String,
        /// Where it came from: the builder or the variable's name.
        from: &'static str,
    },

    /// The OTLP endpoint is `https://` and the crate was built without TLS.
    #[error(
        "the OTLP endpoint `{endpoint}` uses https, and catga-telemetry was built without TLS\n\
         help: enable the `tls` feature of catga-telemetry, or use an `http://` endpoint"
    )]
    TlsDisabled {
        /// The endpoint as written.
        endpoint: String,
    },

    /// The OTLP exporter could not be built (a malformed `OTEL_EXPORTER_OTLP_HEADERS`, an
    /// unsupported `OTEL_EXPORTER_OTLP_COMPRESSION`, …).
    #[error("could not build the OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),

    /// The log filter (from `var`, or the builder's when `var` is `None`) is not a valid
    /// `EnvFilter` directive list.
    #[error(
        "invalid log filter `{directives}`{}\n\
         help: write directives like `info` or `warn,catga=debug`",
        .var.map(|v| format!(" (from `{v}`)")).unwrap_or_default()
    )]
    Filter {
        /// The variable it came from (`RUST_LOG`), or `None` for the builder's.
        var: Option<&'static str>,
        /// The directives as written.
        directives: String,
        /// What the parser said.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// `CATGA_LOG_FORMAT` is neither `json` nor `text`.
    #[error("`CATGA_LOG_FORMAT={value}` is not a log format\nhelp: use `json` or `text`")]
    LogFormat {
        /// What the variable said.
        value: String,
    },

    /// The histogram buckets were refused by the Prometheus exporter.
    #[error("invalid histogram buckets for the Prometheus recorder")]
    Buckets(#[source] metrics_exporter_prometheus::BuildError),

    /// A global `tracing` subscriber was set before [`init`](crate::TelemetryBuilder::init).
    #[error(
        "a global `tracing` subscriber is already set\n\
         help: call `catga_telemetry::init()` once, first thing in `main`, and nothing else \
         that sets a subscriber (`tracing_subscriber::fmt().init()`, …)"
    )]
    SubscriberTaken(#[source] tracing::subscriber::SetGlobalDefaultError),

    /// A global `metrics` recorder was installed before [`init`](crate::TelemetryBuilder::init).
    #[error(
        "a global `metrics` recorder is already installed\n\
         help: install one recorder per process; `.prometheus(false)` keeps yours"
    )]
    RecorderTaken,

    /// Another [`TracePropagation`](catga_core::telemetry::TracePropagation) was installed in
    /// catga-core before this crate's.
    #[error(
        "another trace propagation is installed in catga-core\n\
         help: a process has one; let catga-telemetry install it, or `.traces(false)`"
    )]
    PropagationTaken(#[source] catga_core::telemetry::AlreadyInstalled),

    /// The thread that keeps the Prometheus histograms drained could not be started.
    #[error("could not start the metrics upkeep thread")]
    UpkeepThread(#[source] std::io::Error),
}

/// Flushing or shutting the trace exporter down failed: spans may be lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Spans could not be exported to `endpoint`: it refused them or did not answer in time,
    /// or the processor did not finish within the timeout, or it was shut down already.
    /// `source` is the exporter's or the SDK's error.
    #[error(
        "exporting spans to {endpoint} failed: spans may be lost\n\
         help: check that an OTLP/HTTP collector listens there, or set \
         `OTEL_TRACES_EXPORTER=none` to export nothing"
    )]
    Traces {
        /// The URL spans are sent to (`<base>/v1/traces`), credentials redacted.
        endpoint: String,
        /// Why the export failed.
        #[source]
        source: opentelemetry_sdk::error::OTelSdkError,
    },
}
