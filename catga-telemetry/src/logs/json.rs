//! Fields written straight as JSON members (`"key":value`), with no intermediate map: how
//! span fields are kept between events, and how an event's fields are written.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

/// Keeps a span's fields as JSON members separated by commas, without braces: creating a
/// span formats its fields once, and each later `record` appends (a field recorded twice
/// appears twice; JSON readers keep the last). tracing-subscriber's `JsonFields` parses and
/// re-serialises the whole object on every `record` instead, dozens of allocations for a
/// catga span.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = Members::new(&mut writer, false);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut members = Members::new(&mut current.fields, !first);
        fields.record(&mut members);
        members.result
    }
}

/// Writes each field it visits as a `"key":value` member, comma-separated.
pub(crate) struct Members<'a, W: Write> {
    out: &'a mut W,
    /// Whether a member was written before (this one needs a comma).
    comma: bool,
    /// `message`, when it is kept apart (an event's) rather than written.
    pub(crate) message: Option<String>,
    keep_message: bool,
    pub(crate) result: fmt::Result,
}

impl<'a, W: Write> Members<'a, W> {
    /// Members written to `out`; `comma`: members were written before.
    pub(crate) fn new(out: &'a mut W, comma: bool) -> Self {
        Members {
            out,
            comma,
            message: None,
            keep_message: false,
            result: Ok(()),
        }
    }

    /// As [`new`](Self::new), keeping the `message` field apart.
    pub(crate) fn without_message(out: &'a mut W) -> Self {
        Members {
            keep_message: true,
            ..Members::new(out, false)
        }
    }

    /// Whether any member was written.
    pub(crate) fn wrote(&self) -> bool {
        self.comma
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.write_member(field, value);
        }
    }

    fn write_member(
        &mut self,
        field: &Field,
        value: impl FnOnce(&mut W) -> fmt::Result,
    ) -> fmt::Result {
        if self.comma {
            self.out.write_char(',')?;
        }
        self.comma = true;
        string(self.out, field.name())?;
        self.out.write_char(':')?;
        value(self.out)
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value}"));
        } else {
            // JSON has no NaN or infinity.
            self.member(field, |out| write!(out, "\"{value}\""));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.keep_message && field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.member(field, |out| string(out, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.keep_message && field.name() == "message" {
            // `info!("text {x}")`: the message is `format_args!`, whose `Debug` is the text.
            self.message = Some(format!("{value:?}"));
        } else {
            self.member(field, |out| {
                out.write_char('"')?;
                write!(Escaped(out), "{value:?}")?;
                out.write_char('"')
            });
        }
    }
}

/// `value` as a JSON string, quotes included.
pub(crate) fn string(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c < ' ' => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        let nasty = "a \"quote\", a \\ backslash, a\nnewline, a \u{1} control and é";
        let mut out = String::new();
        string(&mut out, nasty).unwrap();
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, nasty);
    }
}
