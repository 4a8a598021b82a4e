//! The `tracing` subscriber: a registry with one filter, the OpenTelemetry layer and the log
//! line layer, as a [`Dispatch`].

use std::io::IsTerminal;

use crate::logs::SpanFields;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};

use crate::logs::{JsonLines, LogFormat};

/// The registry under its filter.
type Filtered = Layered<EnvFilter, Registry>;
/// The OpenTelemetry layer, over [`Filtered`].
type Otel = tracing_opentelemetry::OpenTelemetryLayer<Filtered, SdkTracer>;
/// What the log layer sits on.
type WithOtel = Layered<Option<Otel>, Filtered>;

/// The subscriber, as a [`Dispatch`]: `filter` decides for every layer (a span filtered out
/// is neither logged nor exported); spans go to `tracer` when there is one; events are
/// written to `writer` in `format`.
pub(crate) fn dispatch(
    filter: EnvFilter,
    tracer: Option<SdkTracer>,
    format: LogFormat,
    writer: Option<BoxMakeWriter>,
) -> Dispatch {
    let otel = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // `thread.name` costs a `String` per span, and busy/idle times are not
            // conventions' attributes: both off.
            .with_threads(false)
            .with_tracked_inactivity(false)
    });
    let on_terminal = writer.is_none() && std::io::stdout().is_terminal();
    let writer = writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
    let json = JsonLines::default();
    let lines: Box<dyn Layer<WithOtel> + Send + Sync> = match format {
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .fmt_fields(SpanFields)
                .event_format(json.clone())
                .with_writer(writer),
        ),
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(on_terminal)
                .with_writer(writer),
        ),
    };
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(lines);
    let dispatch = Dispatch::new(subscriber);
    // A weak reference: the subscriber must not keep itself alive.
    let _ = json.dispatch.set(dispatch.downgrade());
    dispatch
}
