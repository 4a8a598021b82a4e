//! Telemetry that follows OpenTelemetry's conventions, with no exporter in catga-core.
//!
//! catga-core emits `tracing` spans and `metrics` facade instruments, and nothing more: what a
//! process exports (OTLP, Prometheus, JSON logs) is set up once by the application, with
//! `catga-telemetry` or by hand. Instrumented code never names an exporter.
//!
//! ## Spans
//! Named and attributed after the OpenTelemetry messaging semantic conventions (v1.37,
//! <https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/>). Their `tracing`
//! names are stable (`catga.produce`, `catga.consume`, `catga.dispatch`); the OpenTelemetry
//! name and kind are the `otel.name` and `otel.kind` fields, which `tracing-opentelemetry`
//! reads:
//!
//! | span | `otel.name` | `otel.kind` | where |
//! |---|---|---|---|
//! | `catga.produce` | `publish <event>` or `send <request>` | `producer` | a message handed to a transport |
//! | `catga.consume` | `process <message>` | `consumer` | a delivery from a transport, until it is settled or answered |
//! | `catga.dispatch` | `dispatch <message>` | `internal` | the behaviours and what they wrap, with the [`Tracing`](crate::behavior::Tracing) behaviour |
//!
//! Each carries `messaging.system` (the transport's name; `catga` in process),
//! `messaging.destination.name` (the message's wire name, which each transport maps one to one
//! to its subject or stream), `messaging.operation.type`, `messaging.operation.name`,
//! `messaging.message.id`, `messaging.message.conversation_id` (the correlation id) and, on
//! failure, `error.type` (the error's [`code`](crate::Error::code)) with `otel.status_code`
//! `ERROR`. A consumer span also has `messaging.consumer.group.name` (the service).
//!
//! ## One trace across processes
//! A producer span's context travels in the envelope as W3C `traceparent`/`tracestate`. On the
//! receiving side the consumer span is its child (one trace for one request, however many
//! services it crosses) and also links to it, as the conventions ask of a process span. Both
//! need an OpenTelemetry context, which `tracing` does not have: an application that exports
//! traces installs a [`TracePropagation`] once ([`install_propagation`]; `catga-telemetry`
//! does it). Without one, envelopes carry what they carried before: the caller's
//! `traceparent` header, else the conversation's own, derived from the ids.
//!
//! ## Metrics
//! Durations are histograms in seconds. Names are the conventions' instruments as Prometheus
//! spells them (dots become underscores, the unit and `_total` are suffixes), so a Prometheus
//! recorder and an OpenTelemetry collector's Prometheus exporter agree: see [`metric`].
//! Labels are `messaging_system`, `messaging_destination_name`, `messaging_operation_name`
//! and, on failure, `error_type`.

pub mod metric;
mod propagation;
pub(crate) mod span;

pub(crate) use propagation::installed;
pub use propagation::{AlreadyInstalled, TraceContext, TracePropagation, install_propagation};
