//! Log lines: one JSON object per event, carrying the OpenTelemetry trace and span ids of
//! the span it happened in, or tracing-subscriber's human text.

mod json;

use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use json::Members;
pub(crate) use json::SpanFields;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line (the default): `timestamp` (RFC 3339, UTC), `level`,
    /// `target`, `message`, `fields` (the event's other fields), `span` (the innermost span:
    /// `name` and its fields), `spans` (every enclosing span as `{"name": …}`, outermost
    /// first, the innermost included, without fields) and, inside a span that OpenTelemetry
    /// records, `trace_id` (32 hex digits) and `span_id` (16), the ids the exported span has.
    /// Keys without a value are left out.
    #[default]
    Json,
    /// tracing-subscriber's human format, in colour on a terminal.
    Text,
}

impl LogFormat {
    /// Reads `CATGA_LOG_FORMAT` (`json` or `text`, any case).
    pub(crate) fn parse(value: &str) -> Option<LogFormat> {
        if value.eq_ignore_ascii_case("json") {
            Some(LogFormat::Json)
        } else if value.eq_ignore_ascii_case("text") {
            Some(LogFormat::Text)
        } else {
            None
        }
    }
}

/// The JSON line format. It finds spans' OpenTelemetry ids through the dispatcher it is part
/// of, which exists only once the subscriber is built: `dispatch` is filled in then.
#[derive(Clone, Debug, Default)]
pub(crate) struct JsonLines {
    pub(crate) dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S> FormatEvent<S, SpanFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        SystemTime.format_time(&mut Writer::new(&mut line))?;
        line.push_str("\",\"level\":");
        json::string(&mut line, meta.level().as_str())?;
        line.push_str(",\"target\":");
        json::string(&mut line, meta.target())?;

        let mut fields = String::new();
        let mut members = Members::without_message(&mut fields);
        event.record(&mut members);
        let (message, wrote) = (members.message.take(), members.wrote());
        members.result?;
        if let Some(message) = message {
            line.push_str(",\"message\":");
            json::string(&mut line, &message)?;
        }
        if wrote {
            line.push_str(",\"fields\":{");
            line.push_str(&fields);
            line.push('}');
        }

        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| {
            event
                .is_contextual()
                .then(|| ctx.lookup_current())
                .flatten()
        });
        if let Some(span) = span {
            // Before any extension is read: the lookup locks the span's extensions itself.
            let ids = self.otel_ids(&span.id());
            line.push_str(",\"span\":");
            span_object(&mut line, &span)?;
            // The enclosing spans by name only: their fields are in `span` (the innermost) or
            // in the trace, and repeating them doubled the line.
            line.push_str(",\"spans\":[");
            for (i, outer) in span.scope().from_root().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str("{\"name\":");
                json::string(&mut line, outer.name())?;
                line.push('}');
            }
            line.push(']');
            if let Some((trace_id, span_id)) = ids {
                write!(
                    line,
                    ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
                )?;
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

impl JsonLines {
    /// The trace and span ids the OpenTelemetry layer gave the span `id`, if it records it.
    fn otel_ids(
        &self,
        id: &tracing::span::Id,
    ) -> Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| (span_context.trace_id(), span_context.span_id()))
    }
}

/// A span as `{"name": …, <its fields>}`.
fn span_object<'a, S: LookupSpan<'a>>(line: &mut String, span: &SpanRef<'a, S>) -> fmt::Result {
    line.push_str("{\"name\":");
    json::string(line, span.name())?;
    let extensions = span.extensions();
    if let Some(formatted) = extensions.get::<FormattedFields<SpanFields>>()
        && !formatted.fields.is_empty()
    {
        line.push(',');
        line.push_str(&formatted.fields);
    }
    line.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_in_any_case() {
        assert_eq!(LogFormat::parse("JSON"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("pretty"), None);
    }
}
