//! The OpenTelemetry tracer provider: OTLP over http/protobuf behind a batch span processor.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::error::Error;

/// The instrumentation scope catga's spans are exported under.
const SCOPE: &str = "catga";

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
pub(crate) fn provider(
    endpoint: &str,
    service_name: Option<&str>,
) -> Result<SdkTracerProvider, Error> {
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
    let mut resource = Resource::builder();
    if let Some(name) = service_name {
        resource = resource.with_service_name(name.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The tracer the `tracing` layer creates spans with.
pub(crate) fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer(SCOPE)
}
