//! The envelope: a message as it crosses processes, with everything its context carries.
//!
//! Transports put the envelope's fields in their own headers (NATS headers, Redis stream
//! fields) under the names in [`header`], and the payload as the body, so a message on the
//! wire can be read with the broker's own tools. [`Envelope::context`] rebuilds the receiving
//! side's [`Context`]: same message id (so idempotency recognises a redelivery), correlation
//! and causation, the remaining deadline, the headers and the W3C trace context, so one trace
//! spans sender and receiver.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::codec::CodecError;
use crate::codec::WireFormat;
use crate::context::Context;
use crate::message::{Message, MessageKind};

/// The header names an envelope travels under. User headers travel under their own names;
/// names starting with `catga-` are reserved (only catga's [`CONTEXT`](header::CONTEXT)
/// headers travel among the user's).
pub mod header {
    /// The message id (UUID).
    pub const ID: &str = "catga-id";
    /// The wire name.
    pub const NAME: &str = "catga-name";
    /// `command`, `query` or `event`.
    pub const KIND: &str = "catga-kind";
    /// The correlation id (UUID).
    pub const CORRELATION: &str = "catga-correlation-id";
    /// The causation id (UUID), if any.
    pub const CAUSATION: &str = "catga-causation-id";
    /// When it was sent, in Unix milliseconds.
    pub const TIMESTAMP: &str = "catga-timestamp";
    /// When the sender stops waiting, in Unix milliseconds, if it set a deadline.
    pub const DEADLINE: &str = "catga-deadline";
    /// The payload's codec, as a MIME type.
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// The prefix reserved for catga's own headers.
    pub const RESERVED: &str = "catga-";
    /// The saga that sent a command (its name), set by [`Saga::run`](crate::saga::Saga::run).
    pub const SAGA: &str = "catga-saga";
    /// The saga step that sent a command (its name).
    pub const SAGA_STEP: &str = "catga-saga-step";

    /// catga's headers that travel among a message's context headers, for its handler to
    /// read: they say where a message comes from and decide nothing about its dispatch, so
    /// unlike the envelope's own they may be carried like a user's.
    pub const CONTEXT: [&str; 2] = [SAGA, SAGA_STEP];

    /// Whether a context header named `name` travels with its message: a user's header does,
    /// and catga's [`CONTEXT`] headers; any other name in catga's reserved namespace does not
    /// (it would stand for one of the envelope's own fields).
    pub fn travels(name: &str) -> bool {
        let reserved = name
            .get(..RESERVED.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(RESERVED));
        !reserved || CONTEXT.iter().any(|known| name.eq_ignore_ascii_case(known))
    }

    /// Every header an envelope travels under, for transports that map them once.
    pub const ALL: [&str; 10] = [
        ID,
        NAME,
        KIND,
        CORRELATION,
        CAUSATION,
        TIMESTAMP,
        DEADLINE,
        CONTENT_TYPE,
        TRACEPARENT,
        TRACESTATE,
    ];
}

/// Why an envelope could not be read from a transport's headers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("the envelope has no `{0}` header")]
    Missing(&'static str),
    /// A header's value does not parse.
    #[error("the envelope's `{header}` header is invalid: `{value}`")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Its value, truncated to 128 bytes.
        value: String,
    },
}

/// A message with its metadata, ready for a transport. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The message id.
    pub id: Uuid,
    /// The wire name. Borrowed when this process built the envelope (wire names are
    /// `'static`, so sending one costs no allocation), owned when it was read off the wire.
    pub name: Cow<'static, str>,
    /// Command, query or event.
    pub kind: MessageKind,
    /// The conversation.
    pub correlation_id: Uuid,
    /// The message that caused this one.
    pub causation_id: Option<Uuid>,
    /// When it was sent, Unix milliseconds.
    pub timestamp_ms: u64,
    /// When the sender stops waiting, Unix milliseconds; requests only. An event is a fact,
    /// not a request: the publisher's deadline bounds the publisher's wait (until the broker
    /// stored it), not what its subscribers do, so an event never carries one, and one
    /// received on an event is ignored.
    pub deadline_ms: Option<u64>,
    /// W3C `traceparent` as the sender's context gave it (an OpenTelemetry propagator, or the
    /// previous hop). `None` means the conversation's own trace context, derived from the ids
    /// ([`Envelope::trace_parent`]): a transport may leave it off the wire, since the receiver
    /// derives the same value.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
    /// User headers.
    pub headers: Vec<(String, String)>,
    /// The payload's codec.
    pub format: WireFormat,
    /// The encoded message.
    pub payload: Vec<u8>,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn truncate(value: &str) -> String {
    let mut end = value.len().min(128);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

/// The W3C trace context of a conversation: the correlation id is the trace id, the message id
/// (first 8 bytes) the parent span, so every message of one conversation is one trace.
fn traceparent_for(correlation: Uuid, message: Uuid) -> String {
    // Written into one buffer: this runs for every message sent, and `format!` of two
    // formatted ids cost three allocations and most of the envelope's build time.
    let mut hex = [0u8; uuid::fmt::Simple::LENGTH];
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    out.push_str(correlation.simple().encode_lower(&mut hex));
    out.push('-');
    out.push_str(&message.simple().encode_lower(&mut hex)[..16]);
    out.push_str("-01");
    out
}

impl Envelope {
    /// Wraps `msg`, encoded in `format`, with the metadata of `ctx`.
    ///
    /// # Errors
    /// The codec's error (a `local` message has no wire form).
    pub fn wrap<M: Message>(
        msg: &M,
        ctx: &Context,
        format: WireFormat,
    ) -> Result<Envelope, CodecError> {
        // Encoded with `Json` only, then converted: one instantiation per type (see `codec`).
        let json = msg.__encode_json()?;
        let payload = crate::codec::json_into(format, json, std::any::type_name::<M>())?;
        Ok(Self::with_payload(M::NAME, M::KIND, ctx, format, payload))
    }

    /// An envelope around an already encoded payload.
    pub fn with_payload(
        name: impl Into<Cow<'static, str>>,
        kind: MessageKind,
        ctx: &Context,
        format: WireFormat,
        payload: Vec<u8>,
    ) -> Envelope {
        let now = SystemTime::now();
        let id = ctx.message_id();
        let correlation_id = ctx.correlation_id();
        Envelope {
            id,
            name: name.into(),
            kind,
            correlation_id,
            causation_id: ctx.causation_id(),
            timestamp_ms: unix_ms(now),
            deadline_ms: if kind.is_request() {
                ctx.remaining().map(|left| unix_ms(now + left))
            } else {
                None
            },
            traceparent: ctx.header(header::TRACEPARENT).map(str::to_string),
            tracestate: ctx.header(header::TRACESTATE).map(str::to_string),
            headers: ctx
                .headers()
                .filter(|(n, _)| *n != header::TRACEPARENT && *n != header::TRACESTATE)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            format,
            payload,
        }
    }

    /// The receiving side's context: the same ids, for a request the time left before the
    /// sender's deadline (measured against this machine's clock), the headers and the trace
    /// context.
    pub fn context(&self) -> Context {
        let mut ctx = Context::new()
            .with_message_id(self.id)
            .with_correlation_id(self.correlation_id);
        if let Some(causation) = self.causation_id {
            ctx = ctx.with_causation_id(causation);
        }
        if let Some(deadline) = self.deadline_ms.filter(|_| self.kind.is_request()) {
            let left = deadline.saturating_sub(unix_ms(SystemTime::now()));
            ctx = ctx.with_timeout(Duration::from_millis(left));
        }
        for (name, value) in &self.headers {
            ctx = ctx.with_header(name.clone(), value.clone());
        }
        ctx = ctx.with_header(header::TRACEPARENT, self.trace_parent().into_owned());
        if let Some(tracestate) = &self.tracestate {
            ctx = ctx.with_header(header::TRACESTATE, tracestate.clone());
        }
        ctx
    }

    /// The W3C `traceparent` this message travels under: the one the sender's context gave,
    /// else the conversation's own (the correlation id as the trace id, the message id's first
    /// 8 bytes as the parent span), so every message of one conversation is one trace.
    pub fn trace_parent(&self) -> Cow<'_, str> {
        match &self.traceparent {
            Some(given) => Cow::Borrowed(given),
            None => Cow::Owned(traceparent_for(self.correlation_id, self.id)),
        }
    }

    /// The envelope of a request with a deadline `timeout` from now, unless it carries one:
    /// how long its sender waits travels with it, so the handling side does not start it
    /// once nobody waits (a sender without a deadline of its own still stops waiting at its
    /// request timeout). Events keep none.
    pub fn or_deadline_in(mut self, timeout: Duration) -> Envelope {
        if self.kind.is_request() && self.deadline_ms.is_none() {
            self.deadline_ms = Some(unix_ms(SystemTime::now() + timeout));
        }
        self
    }

    /// Whether the sender of a request stopped waiting (its deadline passed). Never true for
    /// an event.
    pub fn expired(&self) -> bool {
        self.kind.is_request()
            && self
                .deadline_ms
                .is_some_and(|d| d <= unix_ms(SystemTime::now()))
    }

    /// The envelope as transport headers (name, value), payload excluded.
    pub fn to_headers(&self) -> Vec<(&str, String)> {
        let mut out = vec![
            (header::ID, self.id.to_string()),
            (header::NAME, self.name.to_string()),
            (header::KIND, self.kind.as_str().to_string()),
            (header::CORRELATION, self.correlation_id.to_string()),
            (header::TIMESTAMP, self.timestamp_ms.to_string()),
            (header::CONTENT_TYPE, self.format.content_type().to_string()),
        ];
        if let Some(causation) = self.causation_id {
            out.push((header::CAUSATION, causation.to_string()));
        }
        if let Some(deadline) = self.deadline_ms {
            out.push((header::DEADLINE, deadline.to_string()));
        }
        out.push((header::TRACEPARENT, self.trace_parent().into_owned()));
        if let Some(tracestate) = &self.tracestate {
            out.push((header::TRACESTATE, tracestate.clone()));
        }
        for (name, value) in &self.headers {
            if header::travels(name) {
                out.push((name.as_str(), value.clone()));
            }
        }
        out
    }

    /// Reads an envelope from transport headers and a payload. Header names are matched
    /// without regard to case; unknown `catga-` headers are ignored (a newer sender may add
    /// some).
    ///
    /// # Errors
    /// [`EnvelopeError`] for a missing or invalid required header. Nothing panics on any input.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        payload: Vec<u8>,
    ) -> Result<Envelope, EnvelopeError> {
        let (mut id, mut name, mut kind, mut correlation, mut causation) =
            (None, None, None, None, None);
        let (mut timestamp, mut deadline, mut format) = (None, None, WireFormat::Json);
        let (mut traceparent, mut tracestate, mut user) = (None, None, Vec::new());
        let uuid = |h: &'static str, v: &str| {
            Uuid::parse_str(v).map_err(|_| EnvelopeError::Invalid {
                header: h,
                value: truncate(v),
            })
        };
        let number = |h: &'static str, v: &str| {
            v.parse::<u64>().map_err(|_| EnvelopeError::Invalid {
                header: h,
                value: truncate(v),
            })
        };
        for (key, value) in headers {
            // Matched without regard to case, and without a lowercased copy per header.
            let known = header::ALL
                .into_iter()
                .find(|known| key.eq_ignore_ascii_case(known));
            let reserved = !header::travels(key);
            match known.unwrap_or(if reserved { header::RESERVED } else { "" }) {
                header::ID => id = Some(uuid(header::ID, value)?),
                header::NAME => name = Some(value.to_string()),
                header::KIND => {
                    kind = Some(match value {
                        "command" => MessageKind::Command,
                        "query" => MessageKind::Query,
                        "event" => MessageKind::Event,
                        other => {
                            return Err(EnvelopeError::Invalid {
                                header: header::KIND,
                                value: truncate(other),
                            });
                        }
                    });
                }
                header::CORRELATION => correlation = Some(uuid(header::CORRELATION, value)?),
                header::CAUSATION => causation = Some(uuid(header::CAUSATION, value)?),
                header::TIMESTAMP => timestamp = Some(number(header::TIMESTAMP, value)?),
                header::DEADLINE => deadline = Some(number(header::DEADLINE, value)?),
                header::CONTENT_TYPE => {
                    format = WireFormat::from_content_type(value).ok_or_else(|| {
                        EnvelopeError::Invalid {
                            header: header::CONTENT_TYPE,
                            value: truncate(value),
                        }
                    })?;
                }
                header::TRACEPARENT => traceparent = Some(value.to_string()),
                header::TRACESTATE => tracestate = Some(value.to_string()),
                header::RESERVED => {}
                _ => user.push((key.to_string(), value.to_string())),
            }
        }
        let id = id.ok_or(EnvelopeError::Missing(header::ID))?;
        let correlation = correlation.unwrap_or(id);
        // The conversation's own trace context is `None` (see the field): the same envelope
        // whether or not a transport sent the derived value.
        let traceparent = traceparent.filter(|given| *given != traceparent_for(correlation, id));
        Ok(Envelope {
            id,
            name: Cow::Owned(name.ok_or(EnvelopeError::Missing(header::NAME))?),
            kind: kind.ok_or(EnvelopeError::Missing(header::KIND))?,
            correlation_id: correlation,
            causation_id: causation,
            timestamp_ms: timestamp.unwrap_or(0),
            deadline_ms: deadline,
            traceparent,
            tracestate,
            headers: user,
            format,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(ctx: &Context) -> Envelope {
        Envelope::with_payload(
            "orders.place",
            MessageKind::Command,
            ctx,
            WireFormat::Json,
            b"{}".to_vec(),
        )
    }

    #[tokio::test]
    async fn the_context_survives_the_trip() {
        let parent = Context::new();
        let ctx = parent
            .caused()
            .with_header("tenant", "acme")
            .with_timeout(Duration::from_secs(30));
        let env = sample(&ctx);
        let wire: Vec<(String, String)> = env
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let back = Envelope::from_headers(
            wire.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            env.payload.clone(),
        )
        .unwrap();
        assert_eq!(back, env);
        let received = back.context();
        assert_eq!(received.message_id(), ctx.message_id());
        assert_eq!(received.correlation_id(), parent.correlation_id());
        assert_eq!(received.causation_id(), Some(parent.message_id()));
        assert_eq!(received.header("tenant"), Some("acme"));
        let left = received.remaining().unwrap();
        assert!(
            left > Duration::from_secs(28) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        let traceparent = received.header("traceparent").unwrap();
        assert!(
            traceparent.contains(&parent.correlation_id().simple().to_string()),
            "{traceparent}"
        );
    }

    #[test]
    fn an_event_carries_no_deadline_and_ignores_one_received() {
        let ctx = Context::new().with_timeout(Duration::from_secs(1));
        let mut event =
            Envelope::with_payload("placed", MessageKind::Event, &ctx, WireFormat::Json, vec![]);
        assert_eq!(
            event.deadline_ms, None,
            "the publisher's deadline stays with it"
        );
        // An older sender may still put one on the wire: the receiver does not enforce it.
        event.deadline_ms = Some(1);
        assert!(!event.expired());
        assert!(event.context().deadline().is_none());
    }

    #[test]
    fn a_given_trace_context_is_kept() {
        let ctx = Context::new().with_header("traceparent", "00-abc-def-01");
        assert_eq!(sample(&ctx).traceparent.as_deref(), Some("00-abc-def-01"));
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        let id = Uuid::now_v7().to_string();
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![
                ("catga-id", "not-a-uuid"),
                ("catga-name", "x"),
                ("catga-kind", "event"),
            ],
            vec![("catga-id", &id), ("catga-kind", "event")],
            vec![
                ("catga-id", &id),
                ("catga-name", "x"),
                ("catga-kind", "gossip"),
            ],
            vec![
                ("catga-id", &id),
                ("catga-name", "x"),
                ("catga-kind", "event"),
                ("content-type", "text/xml"),
            ],
            vec![
                ("catga-id", &id),
                ("catga-name", "x"),
                ("catga-kind", "event"),
                ("catga-deadline", "soon"),
            ],
        ];
        for headers in cases {
            assert!(
                Envelope::from_headers(headers.clone(), Vec::new()).is_err(),
                "{headers:?}"
            );
        }
        let ok = vec![
            ("Catga-Id", id.as_str()),
            ("CATGA-NAME", "x"),
            ("catga-kind", "event"),
            ("catga-future-field", "1"),
        ];
        assert!(
            Envelope::from_headers(ok, Vec::new()).is_ok(),
            "case-insensitive, unknown catga- headers ignored"
        );
    }

    #[test]
    fn catgas_context_headers_travel_and_no_other_reserved_name_does() {
        let ctx = Context::new()
            .with_header(header::SAGA, "checkout")
            .with_header(header::SAGA_STEP, "charge")
            .with_header("catga-name", "smuggled")
            .with_header("catga-other", "x")
            .with_header("tenant", "acme");
        let env = sample(&ctx);
        let wire = env.to_headers();
        let back =
            Envelope::from_headers(wire.iter().map(|(k, v)| (*k, v.as_str())), Vec::new()).unwrap();
        assert_eq!(back.name, "orders.place");
        assert_eq!(
            back.headers,
            [
                ("catga-saga".to_string(), "checkout".to_string()),
                ("catga-saga-step".to_string(), "charge".to_string()),
                ("tenant".to_string(), "acme".to_string()),
            ]
        );
        assert!(header::travels("Catga-Saga-Step"));
        assert!(!header::travels("catga-id"));
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(
            headers in proptest::collection::vec(("[a-zA-Z-]{0,20}", ".{0,40}"), 0..12),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = Envelope::from_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), payload);
        }

        #[test]
        fn envelopes_round_trip_through_headers(
            name in "[a-z.]{1,20}",
            headers in proptest::collection::vec(("[a-z]{1,10}", "[ -~]{0,20}"), 0..5),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut ctx = Context::new();
            for (k, v) in &headers {
                ctx = ctx.with_header(k.clone(), v.clone());
            }
            let env = Envelope::with_payload(name.clone(), MessageKind::Event, &ctx, WireFormat::MessagePack, payload);
            let wire: Vec<(String, String)> = env.to_headers().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let back = Envelope::from_headers(wire.iter().map(|(k, v)| (k.as_str(), v.as_str())), env.payload.clone());
            prop_assert_eq!(back.ok(), Some(env));
        }
    }
}
