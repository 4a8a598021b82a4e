//! A scheduled message as a row of `scheduled_messages`, and back: the envelope's fields spread
//! over columns (checked before anything is sent), and a row read back into a [`Scheduled`],
//! or a [`PostgresError::MalformedRow`] naming the row when a column holds what the store
//! never writes.

use std::borrow::Cow;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::message::MessageKind;
use catga_core::store::lease::FencingToken;
use catga_core::store::schedule::Scheduled;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::postgres::types::PgInterval;
use uuid::Uuid;

use crate::error::PostgresError;
use crate::store::column;

pub(super) const TABLE: &str = "scheduled_messages";

/// The columns a claim returns, of the table aliased `s`, named as [`scheduled`] reads them.
/// A due time at ±infinity (which the table refuses) reads as NULL.
pub(super) const COLUMNS_OF_S: &str = "s.id, \
     CASE WHEN isfinite(s.due) THEN (extract(epoch FROM s.due) * 1000000)::int8 END AS due_us, \
     s.name, s.kind, s.correlation_id, s.causation_id, s.timestamp_ms, s.deadline_ms, \
     s.traceparent, s.tracestate, s.headers::text AS headers, s.format, s.payload";

/// A message's column values, checked: what `schedule` binds, in the statement's order.
pub(super) struct Columns<'a> {
    pub id: Uuid,
    pub due: PgInterval,
    pub name: &'a str,
    pub kind: &'static str,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub timestamp_ms: i64,
    pub deadline_ms: Option<i64>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    pub headers: String,
    pub format: &'static str,
    pub payload: &'a [u8],
}

/// A Unix-milliseconds field as a `bigint`.
fn millis(what: &'static str, value: u64) -> Result<i64, PostgresError> {
    column::bigint(value).ok_or(PostgresError::Unrepresentable {
        what,
        reason: "it is larger than the largest `bigint`",
    })
}

impl<'a> Columns<'a> {
    /// The columns of `message`, refused when Postgres cannot store them (a NUL character in
    /// text, a time out of range) or when they add up to more than `max_write_bytes`.
    pub(super) fn of(
        message: &'a Scheduled,
        max_write_bytes: usize,
    ) -> Result<Columns<'a>, PostgresError> {
        let envelope = &message.envelope;
        column::text("a scheduled message's name", &envelope.name)?;
        let texts = [
            ("a scheduled message's traceparent", &envelope.traceparent),
            ("a scheduled message's tracestate", &envelope.tracestate),
        ];
        let mut bytes = envelope.name.len() + envelope.payload.len();
        for (what, text) in texts {
            if let Some(text) = text {
                column::text(what, text)?;
                bytes += text.len();
            }
        }
        for (name, value) in &envelope.headers {
            column::text("a scheduled message's header", name)?;
            column::text("a scheduled message's header", value)?;
        }
        let headers = serde_json::to_string(&envelope.headers).map_err(|_| {
            PostgresError::Unrepresentable {
                what: "a scheduled message's headers",
                reason: "they cannot be written as JSON",
            }
        })?;
        bytes += headers.len();
        column::fits("a scheduled message", bytes, max_write_bytes)?;
        Ok(Columns {
            id: envelope.id,
            due: column::since_epoch("a scheduled message's due time", message.due)?,
            name: &envelope.name,
            kind: envelope.kind.as_str(),
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            timestamp_ms: millis("a scheduled message's timestamp", envelope.timestamp_ms)?,
            deadline_ms: envelope
                .deadline_ms
                .map(|ms| millis("a scheduled message's deadline", ms))
                .transpose()?,
            traceparent: envelope.traceparent.as_deref(),
            tracestate: envelope.tracestate.as_deref(),
            headers,
            format: envelope.format.content_type(),
            payload: &envelope.payload,
        })
    }
}

/// What the table holds that the store never writes, for the row `id`.
fn malformed(id: Uuid, reason: impl std::fmt::Display) -> PostgresError {
    PostgresError::MalformedRow {
        table: TABLE,
        reason: format!("scheduled message {id}: {reason}"),
    }
}

fn kind_named(name: &str) -> Option<MessageKind> {
    [MessageKind::Command, MessageKind::Query, MessageKind::Event]
        .into_iter()
        .find(|kind| kind.as_str() == name)
}

fn format_named(content_type: &str) -> Option<WireFormat> {
    [WireFormat::Json, WireFormat::MessagePack]
        .into_iter()
        .find(|format| format.content_type() == content_type)
}

/// A Unix-milliseconds column read back; a negative one is malformed.
fn unix_ms(id: Uuid, what: &str, value: i64) -> Result<u64, PostgresError> {
    u64::try_from(value).map_err(|_| malformed(id, format_args!("negative {what} {value}")))
}

/// The message of a row a claim returned ([`COLUMNS_OF_S`]); `None` for the row without one
/// (the claim took nothing).
///
/// # Errors
/// [`PostgresError::MalformedRow`], naming the row, for a column holding what the store never
/// writes: an unknown kind or format, headers that are not `[[name, value], …]`, a negative
/// time, a NULL where the store always writes a value, a due time at infinity.
pub(super) fn scheduled(row: &PgRow) -> Result<Option<Scheduled>, PostgresError> {
    let id: Option<Uuid> = row
        .try_get("id")
        .map_err(PostgresError::db("schedule store: read a message"))?;
    let Some(id) = id else {
        return Ok(None);
    };
    let columns = || -> Result<_, sqlx::Error> {
        let envelope = Envelope {
            id,
            name: Cow::Owned(row.try_get("name")?),
            kind: MessageKind::Event,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            timestamp_ms: 0,
            deadline_ms: None,
            traceparent: row.try_get("traceparent")?,
            tracestate: row.try_get("tracestate")?,
            headers: Vec::new(),
            format: WireFormat::Json,
            payload: row.try_get("payload")?,
        };
        let due: Option<i64> = row.try_get("due_us")?;
        let kind: String = row.try_get("kind")?;
        let timestamp_ms: i64 = row.try_get("timestamp_ms")?;
        let deadline_ms: Option<i64> = row.try_get("deadline_ms")?;
        let headers: String = row.try_get("headers")?;
        let format: String = row.try_get("format")?;
        Ok((
            envelope,
            (due, kind, timestamp_ms, deadline_ms, headers, format),
        ))
    };
    let (mut envelope, (due, kind, timestamp_ms, deadline_ms, headers, format)) =
        columns().map_err(|e| malformed(id, e))?;
    let due = due.ok_or_else(|| malformed(id, "due at infinity"))?;
    envelope.kind =
        kind_named(&kind).ok_or_else(|| malformed(id, format!("unknown kind `{kind}`")))?;
    envelope.format =
        format_named(&format).ok_or_else(|| malformed(id, format!("unknown format `{format}`")))?;
    envelope.timestamp_ms = unix_ms(id, "timestamp", timestamp_ms)?;
    envelope.deadline_ms = deadline_ms
        .map(|ms| unix_ms(id, "deadline", ms))
        .transpose()?;
    envelope.headers = serde_json::from_str(&headers)
        .map_err(|e| malformed(id, format!("headers are not `[[name, value], …]`: {e}")))?;
    Ok(Some(Scheduled {
        due: column::system_time(due),
        envelope,
    }))
}

/// A fencing token as the `bigint` the fence keeps.
///
/// # Errors
/// [`PostgresError::Unrepresentable`] beyond `i64::MAX` (no lease store grants one).
pub(super) fn token(token: FencingToken) -> Result<i64, PostgresError> {
    column::bigint(token.get()).ok_or(PostgresError::Unrepresentable {
        what: "a fencing token",
        reason: "it is larger than the largest `bigint`",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_formats_are_read_as_the_store_writes_them_and_nothing_else() {
        for kind in [MessageKind::Command, MessageKind::Query, MessageKind::Event] {
            assert_eq!(kind_named(kind.as_str()), Some(kind));
        }
        for format in [WireFormat::Json, WireFormat::MessagePack] {
            assert_eq!(format_named(format.content_type()), Some(format));
        }
        assert_eq!(kind_named("Event"), None);
        assert_eq!(format_named("application/x-msgpack"), None);
        let id = Uuid::nil();
        assert_eq!(unix_ms(id, "timestamp", 7).ok(), Some(7));
        assert!(matches!(
            unix_ms(id, "timestamp", -1),
            Err(PostgresError::MalformedRow { table: TABLE, .. })
        ));
        assert_eq!(token(FencingToken::new(9)).ok(), Some(9));
        assert!(token(FencingToken::new(u64::MAX)).is_err());
    }
}
