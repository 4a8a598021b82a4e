//! # catga-nats
//!
//! catga's [`Transport`](catga_core::transport::Transport) over NATS: events as JetStream
//! messages consumed by durable pull consumers, commands and queries as request/reply with
//! queue groups. An application gets it with `Catga::builder().transport(…)`; `publish`,
//! `send` and `serve` then reach other processes.
//!
//! ```no_run
//! use std::time::Duration;
//! use catga_core::prelude::*;
//! use catga_nats::NatsTransport;
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct OrderPlaced { pub id: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("mail server down")]
//! pub struct MailDown;
//!
//! #[handler]
//! async fn send_receipt(event: &OrderPlaced) -> Result<(), MailDown> {
//!     Ok(())
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let nats = NatsTransport::connect("nats://127.0.0.1:4222")
//!     .prefix("shop")                            // subjects shop.events.…, shop.requests.…
//!     .stream("SHOP_EVENTS")                     // the JetStream stream, created or updated
//!     .duplicate_window(Duration::from_secs(120))
//!     .max_deliveries(5)                         // handler runs of a failing event, at most
//!     .max_age(Duration::from_secs(7 * 24 * 3600)) // how long the stream keeps events
//!     .backoff([Duration::from_secs(1), Duration::from_secs(10)]) // by attempt, last repeats
//!     .await?;                                   // checks every option, then connects
//! let app = Catga::builder()
//!     .transport(nats)
//!     .service("mailer")                         // instances of a service share the load
//!     .build()?;
//! let serving = app.serve().await?;              // consume what this service handles
//! app.publish(OrderPlaced { id: 7 }).await?;     // returns once JetStream stored it
//! serving.shutdown().await;                      // finish and acknowledge what is in flight
//! # Ok(())
//! # }
//! ```
//!
//! ## Options
//! [`NatsConnect`] lists them, with their defaults and valid values; the Redis transport
//! (`catga-redis`) has the same names for the same knobs (`prefix`, `max_deliveries`,
//! `backoff`, `ack_wait`, `batch`, `fetch_wait`, `response_timeout`; `docs/transports.md` has
//! the table) and is finished the same way, with `.await`. Awaiting the builder checks every
//! option before anything is sent: a value the transport cannot use is refused with
//! [`ConnectError::InvalidOption`] (the option, the value, why), never replaced by another.
//!
//! ## Subjects and names
//! Events are published on `{prefix}.events.{wire name}` into one stream capturing
//! `{prefix}.events.>` (created, or updated to the configuration, on connect). Requests go to
//! `{prefix}.requests.{wire name}`. A wire name keeps its letters, digits, `_ - : /` and its
//! dots (as token separators); anything a subject cannot hold (whitespace, `*`, `>`, `%`, other
//! characters, a dot that would leave an empty token) is escaped as `%XX`, the hex of each
//! UTF-8 byte: `orders placed` → `orders%20placed`. [`NatsTransport::event_subject`] and
//! [`NatsTransport::request_subject`] give the subject of a wire name.
//!
//! A service consumes each event through its own durable pull consumer
//! `{service}-{wire name}` ([`NatsTransport::durable_name`]: letters and digits kept, other
//! bytes as `_XX`), shared by all its instances, with explicit acknowledgement and no
//! server-side delivery limit. One consumer
//! per event, not one per service with several filter subjects: those need nats-server 2.10.
//! Requests are answered through a queue group named after the service. Each instance joins it
//! with one subscription per in-flight slot (`serve_max_in_flight`), at most
//! [`MAX_QUEUE_WEIGHT`]: the server gives each request to one subscription of the group picked
//! at random, so an instance with twice the slots gets about twice the requests.
//!
//! ## The envelope on the wire
//! The payload is the message body; the envelope's metadata travels as NATS headers under the
//! names in [`catga_core::envelope::header`], so the trace context (`traceparent`,
//! `tracestate`) and the user's headers go along. What the receiver can tell otherwise is
//! left out, since every header is built, parsed and (for events) stored per message:
//! `content-type` when it is JSON, the correlation id when it is the message id, `traceparent`
//! when it is the conversation's own (derived from the ids, so the receiver derives it too),
//! `catga-name` (the subject says it), `catga-kind` (the receiver's registry says it), the send
//! time (an event's is the time the stream stored it, a request's the time it arrived), and
//! for an event `catga-id`, which travels as `Nats-Msg-Id`. An event published with nothing on
//! its context thus carries one header, as a raw JetStream publish with deduplication would; a
//! request carries `catga-id` and `catga-deadline`. User headers whose names start with
//! `Nats-` are refused: the server acts on those. A failed request's reply has the
//! [`ERROR_CODE`] header (the error's code) and the failure document as its body
//! (`catga_core::transport::RemoteFailure`, JSON: code, text, retryable, in doubt, service,
//! validation field errors, details).
//!
//! ## Delivery guarantees
//! * **Events: at least once per service.** `publish` returns once the stream stored the
//!   event. It carries `Nats-Msg-Id` = the message id, so a copy republished within the
//!   duplicate window (default 2 minutes) is dropped by the server. The stream keeps every
//!   event for its retention period ([`NatsConnect::max_age`], default a week), consumed or not
//!   (limits retention). Each service's durable consumer gets every event published after it
//!   was first created. An event is acknowledged (`+ACK`) only after its handlers ran, or
//!   terminated (`+TERM`) only after it was kept in the application's dead-letter store; an
//!   acknowledgement lost to a crash or a server restart means the event is delivered again.
//!   Add the `Idempotency` behaviour on the consuming side to make that exactly once in
//!   effect: a redelivered event keeps its message id.
//! * **Requests: at most once.** A request is a core NATS message to one instance: nothing
//!   stores it; if the instance dies before replying, the caller gets a timeout (in doubt)
//!   and decides whether to retry (the `Retry` behaviour does only for what is safe to repeat).
//!
//! ## The delivery budget
//! An event's handlers run at most [`max_deliveries`](NatsConnect::max_deliveries) times per service
//! (default 5), each delivery counting once: a `Retry` layer does not repeat an event that
//! came from the transport, the transport's redelivery does. A retryable failure before the
//! last delivery is negatively acknowledged (`-NAK`) with the next [`backoff`](NatsConnect::backoff)
//! delay. A failure on the last delivery, or one that is not retryable (a panic, a decode
//! error), is kept once in the dead-letter store (by a `DeadLetter` layer, or the
//! application's own store, `Catga::dead_letters`) and then terminated. A delivery that never
//! settled (its process crashed or hung) counts too: delivery `max_deliveries + 1` is kept
//! unrun (code `exhausted`) and terminated. When the store cannot keep a failure, nothing is
//! acknowledged: the event is delivered again later. The server's own `max_deliver` is left
//! unlimited (a consumer created with one is updated), so the server never drops an event
//! silently.
//!
//! ## Failures
//! * Headers that are not an envelope, an envelope naming another message or kind than its
//!   subject carries (code `envelope`), or a payload that does not decode (`codec`): kept in
//!   the dead-letter store and terminated; the consumer goes on. A request that is not what
//!   its subject carries is refused with an `envelope` error reply, never dispatched.
//! * **Bytes the client cannot parse.** A stored event whose header block async-nats refuses
//!   (a value that is not UTF-8, a line without `:`) makes the client drop its connection when
//!   it is delivered. After a reconnection to the same server, each consumer reads the events
//!   its durable delivered but that were not acknowledged through the JetStream JSON API (no
//!   client parsing involved), keeps such an event with its raw header block and body in the
//!   dead-letter store (`source` names the stream and sequence) and terminates it: one
//!   reconnection per such event, whatever its deliveries. A request with such headers costs
//!   the responder one reconnection (about 10 ms here) and gets no reply: it is not stored,
//!   there is nothing to set aside.
//! * A **panic**, in a handler or in the transport's code around it, fails its one message:
//!   a request gets an error reply at once (code `panic`, not retryable), an event is kept
//!   and terminated; the consumer and the subscription go on.
//! * A handler error on a request comes back to the caller as `ErrorKind::Remote`, reading
//!   as it did on the serving side: the same code, retryability, doubt, validation field
//!   errors and details (the reply header `catga-error-code`, the failure document as the
//!   body; a body that is not one is `TransportError::UnreadableReply`). No subscriber is `TransportError::NoResponders` at once; no reply before the
//!   caller's deadline is `TransportError::Timeout`.
//! * **Errors and doubt.** `TransportError::Unreachable` means nothing was sent: the client
//!   was not connected (it would queue the message and send it later). Once sent, a failure
//!   is in doubt: no reply or acknowledgement in time is `Timeout`, a connection lost is
//!   `Broker`, an acknowledgement that cannot be read is `Protocol`.
//! * **Server restarts and lost state**: the client reconnects by itself; each consumer
//!   renews its pull, then checks its durable consumer (also whenever a pull comes back
//!   empty, since a pull on a consumer the server no longer has is never answered). A server
//!   that came back without its store has its stream created again (by the next publish or
//!   consumer) and each durable consumer created again from the new stream's first event,
//!   logged at `warn`: every event accepted after the restart is handled, since the stream
//!   stores events whether or not a consumer exists yet. A consumer an operator deleted is
//!   created again from the last acknowledgement floor the instance saw. What the server
//!   stored before it lost its store is lost with it.
//! * A handler running longer than `ack_wait` keeps its event: the consumer tells the server
//!   it is still working every half `ack_wait`. `ack_wait` bounds how long a crashed
//!   instance's events wait before another instance gets them.
//! * A message larger than the server's `max_payload` (headers included) is refused before it
//!   is sent, with `TransportError::TooLarge`.
//! * `Serving::shutdown` stops pulling and unsubscribes (the server keeps no pull of the
//!   instance), hands back at once the events it received but did not start, drains the
//!   request subscriptions (all at once), waits for the handlers in flight and flushes their
//!   acknowledgements and replies: after it returns the instance takes nothing more.
//!
//! ## Every instance: invalidations
//! Events a behaviour must see on every instance (a `Caching` layer's `invalidated_by`) are
//! also received through a plain subscription per instance, neither the queue group nor a
//! durable consumer, and reported to the application; after each reconnection every such
//! event is reported as possibly missed.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

// The guide's code blocks compile as doctests of this crate (catga-core, which includes the
// other guides, cannot name this crate), so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/nats.md")]
mod guide_doctests {}

mod auth;
mod builder;
mod config;
mod error;
mod header_block;
mod headers;
mod lease;
mod reconnect;
mod subject;
mod subject_cache;
mod transport;

pub use builder::NatsConnect;
pub use error::{ConnectError, NatsError};
pub use headers::{ERROR_CODE, InvalidHeader};
pub use lease::{
    DEFAULT_LEASE_BUCKET, DEFAULT_LEASE_MAX_AGE, MalformedLeaseValue, NatsLeaseError,
    NatsLeaseStore, NatsLeaseStoreConnect,
};
pub use transport::{CONSUMER_ACK_PENDING, CONSUMER_PENDING, MAX_QUEUE_WEIGHT, NatsTransport};

/// The transport's types, for `use catga_nats::prelude::*`.
pub mod prelude {
    pub use crate::{NatsLeaseStore, NatsTransport};
}
