//! A span as the receiver got it, in plain types.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status};

/// An OpenTelemetry span kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanKind {
    /// Not said (OTLP `SPAN_KIND_UNSPECIFIED`).
    Unspecified,
    /// `internal`.
    Internal,
    /// `server`.
    Server,
    /// `client`.
    Client,
    /// `producer`.
    Producer,
    /// `consumer`.
    Consumer,
}

/// A span's status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Not set.
    Unset,
    /// `Ok`.
    Ok,
    /// `Error`, with its description (often empty).
    Error(String),
}

/// A link from a span to another one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// The linked span's trace id, 32 hex digits.
    pub trace_id: String,
    /// The linked span's id, 16 hex digits.
    pub span_id: String,
}

/// One span the receiver got.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReceivedSpan {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// The parent's span id, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The OpenTelemetry name (`otel.name` of a `tracing` span).
    pub name: String,
    /// The kind.
    pub kind: SpanKind,
    /// The attributes, each value as text: a string as is, numbers and booleans as Rust
    /// prints them, anything else in its `Debug` form.
    pub attributes: BTreeMap<String, String>,
    /// The links.
    pub links: Vec<Link>,
    /// The status.
    pub status: Status,
    /// `service.name` of the resource the span came with.
    pub service_name: Option<String>,
    /// The instrumentation scope's name.
    pub scope: String,
}

impl ReceivedSpan {
    /// The attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub(crate) fn from_proto(
        span: opentelemetry_proto::tonic::trace::v1::Span,
        service_name: Option<&str>,
        scope: &str,
    ) -> ReceivedSpan {
        let kind = match span::SpanKind::try_from(span.kind) {
            Ok(span::SpanKind::Internal) => SpanKind::Internal,
            Ok(span::SpanKind::Server) => SpanKind::Server,
            Ok(span::SpanKind::Client) => SpanKind::Client,
            Ok(span::SpanKind::Producer) => SpanKind::Producer,
            Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
            Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
        };
        let status = match span.status {
            Some(s) => match status::StatusCode::try_from(s.code) {
                Ok(status::StatusCode::Ok) => Status::Ok,
                Ok(status::StatusCode::Error) => Status::Error(s.message),
                Ok(status::StatusCode::Unset) | Err(_) => Status::Unset,
            },
            None => Status::Unset,
        };
        ReceivedSpan {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
            name: span.name,
            kind,
            attributes: text_attributes(span.attributes),
            links: span
                .links
                .into_iter()
                .map(|link| Link {
                    trace_id: hex(&link.trace_id),
                    span_id: hex(&link.span_id),
                })
                .collect(),
            status,
            service_name: service_name.map(str::to_string),
            scope: scope.to_string(),
        }
    }
}

/// Attributes as text, by key.
pub(crate) fn text_attributes(attributes: Vec<KeyValue>) -> BTreeMap<String, String> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, kv.value.map(text).unwrap_or_default()))
        .collect()
}

fn text(value: AnyValue) -> String {
    match value.value {
        Some(Value::StringValue(s)) => s,
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
