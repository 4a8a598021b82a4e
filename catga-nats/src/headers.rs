//! Envelopes and failures as NATS headers.
//!
//! An envelope travels as NATS headers ([`Envelope::to_headers`]) with the payload as the
//! body, so `nats sub` shows a message as it is. Headers equal to the value
//! [`Envelope::from_headers`] assumes when they are absent are left out, since every byte of
//! header is parsed, and for events stored, by the server: `content-type` when it is JSON,
//! `catga-correlation-id` when the message starts its conversation (the correlation id is the
//! message id), and `traceparent` when it is the conversation's own, derived from the ids
//! ([`Envelope::trace_parent`]): the receiver derives the same value, so the trace still spans
//! both sides. An event says less still: its message id travels once, as JetStream's
//! `Nats-Msg-Id` (the header the server deduplicates by), its wire name and kind are those of
//! the event subject it is stored under (each consumer reads one event's subject), and its
//! time is the one the stream stored it with, so `catga-id`, `catga-name`, `catga-kind` and
//! `catga-timestamp` are left out. A message that carries them anyway is read by them. With
//! nothing set on the context, an event's only header is `Nats-Msg-Id`: the same as a raw
//! JetStream publish with deduplication.
//!
//! A request's reply is the handler's encoded output as the body; a failed request's reply
//! is marked by the `catga-error-code` header (the error's code, so `nats sub` shows what
//! failed) and carries the [`RemoteFailure`] document as the body (a body, unlike a header
//! value, may hold any text, line breaks included).

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use catga_core::envelope::{Envelope, EnvelopeError, header};
use catga_core::transport::{RemoteFailure, Reply, ReplyError};
use catga_core::{MessageKind, WireFormat};

/// The reply header that marks a failure, holding the error's stable code; the failure
/// itself is the body.
pub const ERROR_CODE: &str = "catga-error-code";
/// JetStream's message id header, which the server deduplicates by.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";

/// A header the envelope holds but NATS cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the header `{name}` cannot travel in NATS headers: {reason}")]
pub struct InvalidHeader {
    /// The header's name.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

const BAD_NAME: &str = "a name must be printable ASCII without `:`";
const BAD_VALUE: &str = "a value must not contain line breaks";
const RESERVED: &str = "names starting with `Nats-` are reserved by the server, which acts on them";
/// The prefix of the headers the NATS server reads (`Nats-Msg-Id`, `Nats-Expected-Stream`,
/// `Nats-Rollup`, …).
const NATS_RESERVED: &str = "nats-";

/// catga's own header names, known valid: no need to check them on every message.
fn known(name: &str) -> Option<HeaderName> {
    header::ALL
        .iter()
        .find(|known| **known == name)
        .map(|known| HeaderName::from_static(known))
}

fn is_reserved(name: &str) -> bool {
    name.get(..NATS_RESERVED.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(NATS_RESERVED))
}

/// What a message's subject already says, so its headers need not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Implied<'a> {
    /// A request on the subject of this wire name: each responder subscribes to one request's
    /// subject, so the name is known; the kind (command or query) is the receiver's registry's
    /// to say, so a request travels as `command` unless it says otherwise.
    Request(&'a str),
    /// An event on the subject of this wire name, stored by JetStream under its message id.
    Event(&'a str),
}

/// The envelope's metadata as NATS headers, what is implied left out (see the
/// [module docs](self)).
///
/// # Errors
/// [`InvalidHeader`] when a user header's name or value cannot be a NATS header.
pub(crate) fn from_envelope(
    envelope: &Envelope,
    implied: Implied<'_>,
) -> Result<HeaderMap, InvalidHeader> {
    // Built field by field rather than through `Envelope::to_headers`: on the publish path
    // every string formatted and then skipped costs throughput (see docs/performance.md).
    // Header names are built at compile time: `HeaderName::from_static` at run time compares
    // the name with every standard header first.
    const MSG_ID_NAME: HeaderName = HeaderName::from_static(MSG_ID);
    const ID_NAME: HeaderName = HeaderName::from_static(header::ID);
    const CORRELATION_NAME: HeaderName = HeaderName::from_static(header::CORRELATION);
    const CAUSATION_NAME: HeaderName = HeaderName::from_static(header::CAUSATION);
    const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static(header::CONTENT_TYPE);
    const DEADLINE_NAME: HeaderName = HeaderName::from_static(header::DEADLINE);
    let event = matches!(implied, Implied::Event(_));
    let mut map = HeaderMap::new();
    // A UUID written into a buffer, not through `Display` and the formatting machinery.
    let mut uuid_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut put_id = |map: &mut HeaderMap, name: HeaderName, id: uuid::Uuid| {
        let text: &str = id.hyphenated().encode_lower(&mut uuid_text);
        map.append(name, HeaderValue::from(text));
    };
    // The name and kind are implied (see `Implied`). The time is not sent: an event's is the
    // one JetStream stores it with, a request's the one it arrives at (a request lives
    // milliseconds; its deadline, which matters, travels).
    put_id(
        &mut map,
        if event { MSG_ID_NAME } else { ID_NAME },
        envelope.id,
    );
    if envelope.correlation_id != envelope.id {
        put_id(&mut map, CORRELATION_NAME, envelope.correlation_id);
    }
    if let Some(causation) = envelope.causation_id {
        put_id(&mut map, CAUSATION_NAME, causation);
    }
    let mut put = |name: HeaderName, value: String| {
        map.append(name, HeaderValue::from(value));
    };
    if envelope.format != WireFormat::Json {
        put(
            CONTENT_TYPE_NAME,
            envelope.format.content_type().to_string(),
        );
    }
    if let Some(deadline) = envelope.deadline_ms {
        put(DEADLINE_NAME, deadline.to_string());
    }
    // The trace context and user headers come from elsewhere: checked before they travel.
    let trace = [
        (header::TRACEPARENT, envelope.traceparent.as_deref()),
        (header::TRACESTATE, envelope.tracestate.as_deref()),
    ];
    let trace = trace
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)));
    let user = envelope
        .headers
        .iter()
        .filter(|(name, _)| header::travels(name))
        .map(|(name, value)| (name.as_str(), value.as_str()));
    for (name, value) in trace.chain(user) {
        let invalid = |reason| InvalidHeader {
            name: name.to_string(),
            reason,
        };
        let header_name = match known(name) {
            Some(known) => known,
            None if is_reserved(name) => return Err(invalid(RESERVED)),
            None => name.parse::<HeaderName>().map_err(|_| invalid(BAD_NAME))?,
        };
        if value.contains(['\r', '\n']) {
            return Err(invalid(BAD_VALUE));
        }
        map.append(header_name, HeaderValue::from(value.to_string()));
    }
    Ok(map)
}

/// An event's headers when its context set nothing (see the module docs): the message id as
/// `Nats-Msg-Id`, the same map [`from_envelope`] builds for such an event.
pub(crate) fn event_id_only(id: uuid::Uuid) -> HeaderMap {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut map = HeaderMap::new();
    map.append(
        HeaderName::from_static(MSG_ID),
        HeaderValue::from(&*id.hyphenated().encode_lower(&mut text)),
    );
    map
}

/// Whether `map` holds a single header value (for an event: only its message id).
pub(crate) fn is_single(map: &HeaderMap) -> bool {
    map.len() == 1 && map.iter().all(|(_, values)| values.len() == 1)
}

/// Reads an envelope from a message's headers, leaving its payload empty: the caller moves
/// the body in once the headers proved good, and keeps the body whole for the reject store
/// when they did not. What the headers leave out is taken from what is `implied`; the
/// server's own `Nats-` headers are not the application's, and are left out.
///
/// # Errors
/// [`EnvelopeError`] when a required header is missing or invalid (a message without headers
/// misses them all).
pub(crate) fn to_envelope(
    headers: Option<&HeaderMap>,
    implied: Implied<'_>,
) -> Result<Envelope, EnvelopeError> {
    let pairs = || {
        headers
            .into_iter()
            .flat_map(|map| {
                map.iter().flat_map(|(name, values)| {
                    let name: &str = name.as_ref();
                    values.iter().map(move |value| (name, value.as_str()))
                })
            })
            .filter(|(name, _)| !is_reserved(name))
    };
    let has = |wanted: &str| pairs().any(|(name, _)| name.eq_ignore_ascii_case(wanted));
    let (name, kind) = match implied {
        Implied::Event(name) => (name, MessageKind::Event),
        Implied::Request(name) => (name, MessageKind::Command),
    };
    let mut implied_pairs: [Option<(&str, &str)>; 3] = [None; 3];
    if matches!(implied, Implied::Event(_)) && !has(header::ID) {
        let msg_id = headers.and_then(|map| map.get(MSG_ID));
        implied_pairs[0] = msg_id.map(|value| (header::ID, value.as_str()));
    }
    if !has(header::NAME) {
        implied_pairs[1] = Some((header::NAME, name));
    }
    if !has(header::KIND) {
        implied_pairs[2] = Some((header::KIND, kind.as_str()));
    }
    Envelope::from_headers(
        pairs().chain(implied_pairs.into_iter().flatten()),
        Vec::new(),
    )
}

/// How many bytes a message with these headers and body takes against the server's
/// `max_payload` (the header block counts, as the server counts it).
pub(crate) fn wire_size(headers: &HeaderMap, payload: usize) -> usize {
    const FRAMING: usize = "NATS/1.0\r\n".len() + "\r\n".len();
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(|value| name.len() + ": ".len() + value.as_str().len() + "\r\n".len())
                .sum::<usize>()
        })
        .sum();
    FRAMING + lines + payload
}

/// A header map written out as the header block it arrived as (`NATS/1.0`, a line per value),
/// for the dead-letter store's raw headers.
pub(crate) fn raw_block(map: &HeaderMap) -> Vec<u8> {
    let mut block = b"NATS/1.0\r\n".to_vec();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        for value in values {
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(b": ");
            block.extend_from_slice(value.as_str().as_bytes());
            block.extend_from_slice(b"\r\n");
        }
    }
    block.extend_from_slice(b"\r\n");
    block
}

/// A header value made safe: line breaks would end the header block early.
fn single_line(text: &str) -> HeaderValue {
    let flat: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    flat.parse().unwrap_or_default()
}

/// A failed request's reply: its headers and body.
pub(crate) fn from_failure(failure: &RemoteFailure) -> (HeaderMap, Vec<u8>) {
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static(ERROR_CODE),
        single_line(&failure.code),
    );
    (map, failure.encode())
}

/// Reads a reply: a failure when it carries `catga-error-code`, else the handler's output.
pub(crate) fn to_reply(headers: Option<&HeaderMap>, body: Vec<u8>) -> Result<Reply, ReplyError> {
    match headers.and_then(|map| map.get(ERROR_CODE)) {
        Some(_) => RemoteFailure::decode(&body).map(Reply::Err),
        None => Ok(Reply::Ok(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catga_core::context::Context;
    use catga_core::{MessageKind, WireFormat};

    fn envelope(ctx: &Context) -> Envelope {
        Envelope::with_payload(
            "orders.placed",
            MessageKind::Event,
            ctx,
            WireFormat::Json,
            b"{\"id\":1}".to_vec(),
        )
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, Vec<String>)> {
        let mut pairs: Vec<_> = map
            .iter()
            .map(|(name, values)| {
                let values = values.iter().map(|v| v.as_str().to_string()).collect();
                (name.to_string(), values)
            })
            .collect();
        pairs.sort();
        pairs
    }

    /// A publish that must be sent again keeps only the message id when the context set
    /// nothing, and builds the headers from it: they must be the ones `from_envelope` built.
    #[test]
    fn a_plain_event_has_only_its_message_id_and_it_can_be_rebuilt() {
        let plain = envelope(&Context::new());
        let map = from_envelope(&plain, Implied::Event("orders.placed")).unwrap();
        assert!(is_single(&map));
        assert_eq!(pairs(&map), pairs(&event_id_only(plain.id)));
        for ctx in [
            Context::new().with_header("tenant", "acme"),
            Context::new().with_causation_id(uuid::Uuid::now_v7()),
            Context::new().with_header("tracestate", "vendor=1"),
        ] {
            let map = from_envelope(&envelope(&ctx), Implied::Event("orders.placed")).unwrap();
            assert!(!is_single(&map), "{:?}", pairs(&map));
        }
    }

    #[test]
    fn an_envelope_round_trips_through_nats_headers() {
        let ctx = Context::new()
            .with_header("tenant", "acme")
            .with_header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .with_header("tracestate", "vendor=1");
        let sent = envelope(&ctx);
        let map = from_envelope(&sent, Implied::Event("orders.placed")).unwrap();
        let mut back = to_envelope(Some(&map), Implied::Event("orders.placed")).unwrap();
        assert!(back.payload.is_empty());
        assert_eq!(
            back.timestamp_ms, 0,
            "the consumer takes the time the stream stored"
        );
        back.payload = sent.payload.clone();
        back.timestamp_ms = sent.timestamp_ms;
        assert_eq!(back, sent);
        assert_eq!(
            back.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn defaults_are_left_out_and_an_events_id_travels_as_nats_msg_id() {
        let sent = envelope(&Context::new());
        let map = from_envelope(&sent, Implied::Event("orders.placed")).unwrap();
        for implied in [
            "content-type",
            "catga-correlation-id",
            "catga-id",
            "catga-name",
            "catga-kind",
            "catga-timestamp",
            "traceparent",
        ] {
            assert!(map.get(implied).is_none(), "{implied} is implied");
        }
        assert_eq!(
            map.get(MSG_ID).map(HeaderValue::as_str),
            Some(sent.id.to_string().as_str())
        );
        let mut back = to_envelope(Some(&map), Implied::Event("orders.placed")).unwrap();
        back.payload = sent.payload.clone();
        back.timestamp_ms = sent.timestamp_ms;
        assert_eq!(back, sent, "nothing lost");
        assert_eq!(
            back.context().header("traceparent"),
            Some(sent.trace_parent().as_ref()),
            "the receiver derives the same trace context"
        );

        let caused = Envelope::with_payload(
            "x",
            MessageKind::Command,
            &Context::new().with_correlation_id(uuid::Uuid::now_v7()),
            WireFormat::MessagePack,
            Vec::new(),
        );
        let map = from_envelope(&caused, Implied::Request("x")).unwrap();
        assert!(
            map.get("catga-correlation-id").is_some(),
            "not the default here"
        );
        assert!(map.get("content-type").is_some(), "nor here");
        assert!(map.get(MSG_ID).is_none());
        for implied in ["catga-name", "catga-kind", "catga-timestamp"] {
            assert!(map.get(implied).is_none(), "{implied} is implied");
        }
        let mut back = to_envelope(Some(&map), Implied::Request("x")).unwrap();
        back.timestamp_ms = caused.timestamp_ms;
        assert_eq!(back, caused);
    }

    #[test]
    fn headers_nats_cannot_carry_are_refused_not_panicked_on() {
        let bad_value = envelope(&Context::new().with_header("note", "two\nlines"));
        assert_eq!(
            from_envelope(&bad_value, Implied::Request("orders.place"))
                .unwrap_err()
                .name,
            "note",
            "a line break would end the header block"
        );
        let bad_name = envelope(&Context::new().with_header("a:b", "x"));
        assert_eq!(
            from_envelope(&bad_name, Implied::Request("orders.place"))
                .unwrap_err()
                .name,
            "a:b"
        );
        let reserved = envelope(&Context::new().with_header("Nats-Rollup", "all"));
        assert_eq!(
            from_envelope(&reserved, Implied::Request("orders.place"))
                .unwrap_err()
                .reason,
            RESERVED,
            "the server would act on it"
        );
    }

    #[test]
    fn a_message_without_headers_is_a_typed_error() {
        assert!(matches!(
            to_envelope(None, Implied::Event("x")),
            Err(EnvelopeError::Missing(_))
        ));
    }

    #[test]
    fn the_wire_size_counts_headers_like_the_server() {
        let mut map = HeaderMap::new();
        map.insert("a", "bc");
        map.append("a", "d");
        // "NATS/1.0\r\n" + "a: bc\r\n" + "a: d\r\n" + "\r\n" + body
        assert_eq!(wire_size(&map, 5), 10 + 7 + 6 + 2 + 5);
    }

    #[test]
    fn failures_round_trip_in_the_body() {
        let mut failure = RemoteFailure::new("orders.out_of_stock", "no courier\nfor order 9");
        failure.retryable = true;
        failure.details = Some(serde_json::json!({ "order": 9 }));
        let (map, body) = from_failure(&failure);
        assert_eq!(
            map.get(ERROR_CODE).map(|v| v.as_str()),
            Some("orders.out_of_stock")
        );
        assert_eq!(to_reply(Some(&map), body).unwrap(), Reply::Err(failure));
        assert_eq!(
            to_reply(None, b"40".to_vec()).unwrap(),
            Reply::Ok(b"40".to_vec())
        );
        assert!(to_reply(Some(&map), b"no courier".to_vec()).is_err());
    }
}
