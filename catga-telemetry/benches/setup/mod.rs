//! What both benchmarks measure: the same in-process `send`, bare, with the `Tracing`
//! behaviour and no subscriber, under an OpenTelemetry layer alone, and under the whole
//! catga-telemetry subscriber.

#![allow(dead_code)] // each bench uses part of it

use std::convert::Infallible;

use catga_core::prelude::*;
use catga_telemetry::testkit::OtlpReceiver;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;

#[command(output = u64)]
#[derive(Clone, Serialize, Deserialize)]
pub struct Add(pub u64, pub u64);

#[handler]
async fn add(cmd: Add) -> Result<u64, Infallible> {
    Ok(cmd.0 + cmd.1)
}

/// The application without the `Tracing` behaviour.
pub fn bare() -> Catga {
    Catga::builder().build().expect("the bench app builds")
}

/// The application with the `Tracing` behaviour.
pub fn traced() -> Catga<impl Layer> {
    Catga::builder()
        .layer(Tracing)
        .build()
        .expect("the bench app builds")
}

/// An exporter that drops what it is given: the layer's and the SDK's cost without the wire.
#[derive(Debug, Default)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// A registry with an `info` filter and the OpenTelemetry layer as catga-telemetry sets it
/// up (no thread names, no busy/idle times), a batch processor and an exporter that drops
/// the batches: what the OpenTelemetry layer costs a dispatch, logs aside.
pub fn otel_layer_only() -> (tracing::Dispatch, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("catga"))
        .with_threads(false)
        .with_tracked_inactivity(false);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(layer);
    (tracing::Dispatch::new(subscriber), provider)
}

/// The whole catga-telemetry subscriber: JSON log lines (to nowhere) and OTLP/HTTP export to
/// an in-process receiver on loopback.
pub fn full_telemetry(receiver: &OtlpReceiver) -> catga_telemetry::Parts {
    catga_telemetry::builder()
        .otlp_endpoint(receiver.endpoint())
        .log_filter("info")
        .log_writer(std::io::sink)
        .prometheus(false)
        .build()
        .expect("telemetry builds")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}
