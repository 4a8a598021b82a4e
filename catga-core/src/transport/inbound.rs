//! The contract between a transport and the application it delivers to; see the
//! [`transport`](crate::transport) module docs.

use futures::future::BoxFuture;

use super::Reply;
use crate::delivery::Delivery;
use crate::envelope::Envelope;

/// What the transport does with an event once the application is done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a transport must carry out the disposition"]
pub enum Disposition {
    /// Handled: acknowledge it (NATS `+ACK`, Redis `XACK`).
    Ack,
    /// Failed for good and kept in the dead-letter store: stop delivering it (NATS `+TERM`,
    /// Redis `XACK`). The store holds everything needed to replay it.
    Terminate,
    /// Not settled: deliver it again, after the transport's redelivery delay for this
    /// attempt (NATS `-NAK` with the delay, Redis leaves it pending). Also the answer when a
    /// failure could not be stored: the message must not be acknowledged unkept.
    Retry,
}

/// Bytes that arrived from a transport and could not be read as an envelope (headers the
/// broker's client or catga cannot parse, a frame of the wrong shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Where it was found, for a person to locate it on the broker: e.g.
    /// `nats stream ORDERS seq 42 (orders.events.placed)` or `redis shop:events:placed 1712-0`.
    pub source: String,
    /// The wire name its subject or stream carries, when known.
    pub name: Option<String>,
    /// The headers as received, raw (they may not be text).
    pub raw_headers: Option<Vec<u8>>,
    /// The payload as received.
    pub payload: Vec<u8>,
    /// Why it could not be read.
    pub reason: String,
}

/// What a transport hands arriving messages to: the application. Implemented by catga for
/// every application that serves ([`Catga::serve`](crate::Catga::serve)); a transport only
/// calls it. See the [module docs](crate::transport).
pub trait Inbound: Send + Sync + 'static {
    /// Handles an event that arrived where events named `route` travel (the subject or
    /// stream decides, not the envelope's own headers), and says what to do with it.
    fn event(
        &self,
        route: &str,
        envelope: Envelope,
        delivery: Delivery,
    ) -> BoxFuture<'static, Disposition>;

    /// Handles a request that arrived where requests named `route` travel, and returns the
    /// reply to send back (a typed failure when it could not be handled). `delivery` is its
    /// delivery count on a transport that redelivers requests (Redis), else the first.
    fn request(
        &self,
        route: &str,
        envelope: Envelope,
        delivery: Delivery,
    ) -> BoxFuture<'static, Reply>;

    /// Keeps bytes that could not be read as an envelope; [`Disposition::Terminate`] once
    /// kept, [`Disposition::Retry`] when the store failed (deliver it again later).
    fn reject(&self, rejected: Rejected) -> BoxFuture<'static, Disposition>;

    /// An event named `name` was published (or may have been, while this instance could not
    /// see: after a reconnection, a transport reports every name it observes). Every instance
    /// gets these, not one per service: behaviours that keep per-instance state derived from
    /// events (cache invalidation) act on them. Cheap and never fails.
    fn observe(&self, name: &str);
}
