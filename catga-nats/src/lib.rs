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
//!     .max_deliver(5)                            // deliveries of a failing event, at most
//!     .backoff([Duration::from_secs(1), Duration::from_secs(10)])
//!     .await?;
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
//! bytes as `_XX`), shared by all its instances, with explicit acknowledgement. One consumer
//! per event, not one per service with several filter subjects: those need nats-server 2.10.
//! Requests are answered by a queue subscription whose queue group is the service name.
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
//! `Nats-` are refused: the server acts on those. A failed request's reply has the [`ERROR_CODE`] and [`ERROR_RETRYABLE`] headers and
//! the error's text as its body.
//!
//! ## Delivery guarantees
//! * **Events: at least once per service.** `publish` returns once the stream stored the
//!   event. It carries `Nats-Msg-Id` = the message id, so a copy republished within the
//!   duplicate window (default 2 minutes) is dropped by the server. Each service's durable
//!   consumer gets every event published after it was first created, and an event is
//!   acknowledged only after the handlers ran; an acknowledgement lost to a crash or a server
//!   restart means the event is delivered again. Add the `Idempotency` behaviour on the
//!   consuming side to make that exactly once in effect: a redelivered event keeps its message
//!   id. An event no service has ever consumed is not kept (the stream keeps what some
//!   durable consumer still has to deliver), as on the in-memory transport.
//! * **Requests: at most once.** A request is a core NATS message to one instance: nothing
//!   stores it; if the instance dies before replying, the caller gets a timeout and decides
//!   whether to retry (the `Retry` behaviour does, for retryable errors).
//!
//! ## Failures
//! * A **retryable** handler error negatively acknowledges the event with the next backoff
//!   delay; it is delivered again up to `max_deliver` times in all. A final error (not
//!   retryable, or the last delivery) is acknowledged: the application's `DeadLetter` layer is
//!   where it is kept.
//! * A message whose headers are not an envelope goes to the application's reject store
//!   (`reject_into`) and is acknowledged; so is one whose payload does not decode. The
//!   consumer goes on.
//! * A handler error on a request comes back to the caller as `ErrorKind::Remote` with the
//!   error's code (reply headers `catga-error-code`, `catga-error-retryable`, the text as the
//!   body). No subscriber is `TransportError::NoResponders` at once; no reply before the
//!   caller's deadline is `TransportError::Timeout`.
//! * **Server restarts**: the client reconnects by itself; pull loops retry with backoff,
//!   renew their pull on reconnection and resume from the last acknowledged event. Publishes
//!   during the outage fail (retryable) after the publish timeout. A server that comes back
//!   without its store has its stream and durable consumers created again (by the next
//!   publish and by the pull loops); what it stored before is lost with it.
//! * A handler running longer than `ack_wait` keeps its event: the consumer tells the server
//!   it is still working every half `ack_wait`. `ack_wait` bounds how long a crashed
//!   instance's events wait before another instance gets them.
//! * A message larger than the server's `max_payload` (headers included) is refused before it
//!   is sent, with `TransportError::TooLarge`.
//! * `Serving::shutdown` stops pulling, hands back events received but not started, drains
//!   the request subscriptions, waits for the handlers in flight and flushes their
//!   acknowledgements and replies.

#![warn(missing_docs)]

mod connect;
mod error;
mod headers;
mod reconnect;
mod settings;
mod subject;
mod subject_cache;
mod transport;

pub use connect::Connect;
pub use error::NatsError;
pub use headers::{ERROR_CODE, ERROR_RETRYABLE, InvalidHeader};
pub use subject::NameError;
pub use transport::NatsTransport;
