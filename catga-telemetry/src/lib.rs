//! # catga-telemetry
//!
//! One call sets up what a catga service needs to be observed, configured by the standard
//! `OTEL_*` environment variables: log lines (JSON, with the trace and span ids of the span
//! they happened in), spans exported over OTLP/HTTP to a collector (Jaeger, Tempo, an
//! OpenTelemetry collector), one trace across services through catga's transports, and a
//! Prometheus recorder with catga's metrics described.
//!
//! ```rust,no_run
//! use catga_core::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Reads OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, RUST_LOG, …
//!     let telemetry = catga_telemetry::init()?;
//!
//!     let app = Catga::builder().layer(Tracing).build()?;
//!     // Serve `telemetry.renderer()` as `GET /metrics` (catga-axum takes it as is).
//!     let metrics = telemetry.renderer();
//!     # drop((app, metrics));
//!     Ok(())
//!     // `telemetry` is dropped here: the last spans are flushed to the collector.
//! }
//! ```
//!
//! catga-core emits `tracing` spans and `metrics` instruments and names no exporter (its
//! [`telemetry`](catga_core::telemetry) module lists them); this crate is where they go:
//!
//! - a `tracing` subscriber with an `EnvFilter` (`RUST_LOG`, default `info`) and log lines in
//!   [`LogFormat::Json`] (default) or [`LogFormat::Text`] (`CATGA_LOG_FORMAT=text`);
//! - `tracing-opentelemetry` with an OTLP/HTTP (protobuf) exporter behind a batch span
//!   processor, and catga-core's [`TracePropagation`](catga_core::telemetry::TracePropagation)
//!   installed, so a message carries its producer span's W3C `traceparent` and its consumer
//!   span continues the trace in the receiving service;
//! - a Prometheus recorder whose `*_seconds` histograms have
//!   [`DURATION_BUCKETS`](catga_core::telemetry::metric::DURATION_BUCKETS), rendered by
//!   [`TelemetryGuard::render`] for the application's `/metrics` route;
//! - a [`TelemetryGuard`] that flushes the exporter when dropped, and whose
//!   [`shutdown`](TelemetryGuard::shutdown) says, naming the endpoint, when spans were lost;
//! - a failed export logged once, at `WARN` (target `catga_telemetry`, with the endpoint and
//!   the cause), and the recovery at `INFO`.
//!
//! [`builder`] changes any of it. docs/observability.md lists every variable read, every span
//! and metric, and how to run Jaeger or a collector locally.
//!
//! ## Features
//! - `tls`: HTTPS to the collector (rustls with `ring`).
//! - `testkit`: `testkit::OtlpReceiver`, an in-process OTLP/HTTP receiver for tests.

#![warn(missing_docs)]

mod builder;
mod catalog;
mod env;
mod error;
mod guard;
mod logs;
mod prometheus;
mod propagation;
mod subscriber;
#[cfg(feature = "testkit")]
pub mod testkit;
mod traces;

pub use builder::{Parts, TelemetryBuilder, builder, init};
pub use error::{Error, ShutdownError};
pub use guard::TelemetryGuard;
pub use logs::LogFormat;
/// The Prometheus handle and recorder types [`TelemetryGuard::metrics`] and [`Parts`] hold.
pub use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

// docs/observability.md's code blocks compile as doctests of this crate, whose API they show.
#[cfg(doctest)]
#[doc = include_str!("../../docs/observability.md")]
mod observability_doctests {}
