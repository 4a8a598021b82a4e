//! An outbox row: an envelope spread over columns, and back.

use std::borrow::Cow;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::message::MessageKind;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::PostgresError;

/// The columns the relay reads, in [`from_row`]'s order.
pub(crate) const COLUMNS: &str = "position, message_id, ordering_key, name, kind, correlation_id, causation_id, \
     timestamp_ms, traceparent, tracestate, headers::text AS headers, format, payload";

/// [`COLUMNS`] of the table aliased `o`.
pub(crate) const COLUMNS_OF_O: &str = "o.position, o.message_id, o.ordering_key, o.name, o.kind, o.correlation_id, \
     o.causation_id, o.timestamp_ms, o.traceparent, o.tracestate, o.headers::text AS headers, o.format, o.payload";

/// Envelopes as the column arrays of one multi-row `INSERT … SELECT FROM UNNEST(…)`: one
/// round trip for any number of events.
#[derive(Default)]
pub(crate) struct Columns {
    pub message_id: Vec<Uuid>,
    pub ordering_key: Vec<String>,
    pub name: Vec<String>,
    pub kind: Vec<String>,
    pub correlation_id: Vec<Uuid>,
    pub causation_id: Vec<Option<Uuid>>,
    pub timestamp_ms: Vec<i64>,
    pub traceparent: Vec<Option<String>>,
    pub tracestate: Vec<Option<String>>,
    pub headers: Vec<String>,
    pub format: Vec<String>,
    pub payload: Vec<Vec<u8>>,
}

impl Columns {
    pub(crate) fn push(&mut self, envelope: &Envelope, ordering_key: String) {
        self.message_id.push(envelope.id);
        self.ordering_key.push(ordering_key);
        self.name.push(envelope.name.to_string());
        self.kind.push(envelope.kind.as_str().to_string());
        self.correlation_id.push(envelope.correlation_id);
        self.causation_id.push(envelope.causation_id);
        self.timestamp_ms
            .push(i64::try_from(envelope.timestamp_ms).unwrap_or(i64::MAX));
        self.traceparent.push(envelope.traceparent.clone());
        self.tracestate.push(envelope.tracestate.clone());
        self.headers
            .push(serde_json::to_string(&envelope.headers).unwrap_or_else(|_| "[]".to_string()));
        self.format.push(envelope.format.content_type().to_string());
        self.payload.push(envelope.payload.clone());
    }
}

/// A row as the relay claimed it.
pub(crate) struct Claimed {
    pub position: i64,
    pub ordering_key: String,
    pub message_id: Uuid,
    pub name: String,
    /// The envelope, or why the row cannot be one.
    pub envelope: Result<Envelope, PostgresError>,
}

fn malformed(reason: String) -> PostgresError {
    PostgresError::MalformedRow {
        table: "outbox",
        reason,
    }
}

/// Reads a row selected with [`COLUMNS`].
pub(crate) fn from_row(row: &PgRow) -> Result<Claimed, sqlx::Error> {
    let position: i64 = row.try_get("position")?;
    let message_id: Uuid = row.try_get("message_id")?;
    let ordering_key: String = row.try_get("ordering_key")?;
    let name: String = row.try_get("name")?;
    let kind: String = row.try_get("kind")?;
    let headers: String = row.try_get("headers")?;
    let format: String = row.try_get("format")?;
    let envelope = (|| {
        let kind = match kind.as_str() {
            "event" => MessageKind::Event,
            "command" => MessageKind::Command,
            "query" => MessageKind::Query,
            other => return Err(malformed(format!("unknown kind `{other}`"))),
        };
        let format = WireFormat::from_content_type(&format)
            .ok_or_else(|| malformed(format!("unknown format `{format}`")))?;
        let headers: Vec<(String, String)> = serde_json::from_str(&headers)
            .map_err(|e| malformed(format!("headers are not `[[name, value], …]`: {e}")))?;
        let timestamp_ms: i64 = row
            .try_get("timestamp_ms")
            .map_err(|e| malformed(e.to_string()))?;
        Ok(Envelope {
            id: message_id,
            name: Cow::Owned(name.clone()),
            kind,
            correlation_id: row
                .try_get("correlation_id")
                .map_err(|e| malformed(e.to_string()))?,
            causation_id: row
                .try_get("causation_id")
                .map_err(|e| malformed(e.to_string()))?,
            timestamp_ms: u64::try_from(timestamp_ms).unwrap_or(0),
            deadline_ms: None,
            traceparent: row
                .try_get("traceparent")
                .map_err(|e| malformed(e.to_string()))?,
            tracestate: row
                .try_get("tracestate")
                .map_err(|e| malformed(e.to_string()))?,
            headers,
            format,
            payload: row
                .try_get("payload")
                .map_err(|e| malformed(e.to_string()))?,
        })
    })();
    Ok(Claimed {
        position,
        ordering_key,
        message_id,
        name,
        envelope,
    })
}
