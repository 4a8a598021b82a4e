//! The contract between a transport and the application it delivers to.
//!
//! A transport reads messages off its broker and hands them to the application's [`Inbound`];
//! the application decides what happens to each, and the transport carries that out. The
//! rules live on this side, once, so every transport acknowledges the same way:
//!
//! * an **event** comes with its [`Delivery`] (which delivery this is, and how many the
//!   transport makes at most) and is answered with a [`Disposition`]: acknowledge it
//!   ([`Disposition::Ack`]: handled), terminate it ([`Disposition::Terminate`]: set aside in
//!   the application's dead-letter store, never to be delivered again) or deliver it again
//!   ([`Disposition::Retry`]). Nothing is acknowledged or terminated before it was handled or
//!   stored where a person can find it: when the store itself fails, the answer is `Retry`.
//! * a **request** is answered with its [`Reply`], always: a handler error, a panic, an
//!   expired deadline all become a typed failure, never silence.
//! * bytes that are not an envelope at all ([`Rejected`]) are kept the same way.
//!
//! Where a message arrived decides what it is: the transport says which event or request its
//! subject or stream carries, and an envelope that claims to be something else is rejected,
//! never dispatched.

use futures::future::BoxFuture;

use super::Reply;
use crate::envelope::Envelope;

/// One delivery of an event (or of a request, on a transport that redelivers requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// This delivery's number, from 1: the broker's delivery count (NATS `num_delivered`,
    /// Redis' pending-entry delivery count).
    pub attempt: u32,
    /// The most deliveries the transport makes (`max_deliver`, `max_deliveries`): the
    /// delivery numbered this is the last, and one numbered higher (the message kept
    /// crashing or stalling its consumer) is set aside unhandled.
    pub max_attempts: u32,
}

impl Delivery {
    /// Delivery number `attempt` of at most `max_attempts` (both at least 1).
    pub const fn new(attempt: u32, max_attempts: u32) -> Self {
        Delivery {
            attempt: if attempt == 0 { 1 } else { attempt },
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
        }
    }

    /// Whether a failure now is final: no further delivery will be made.
    pub const fn is_last(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// Whether the message was delivered more often than allowed: earlier deliveries never
    /// settled (the process crashed or hung), so it is set aside without running again.
    pub const fn is_exhausted(&self) -> bool {
        self.attempt > self.max_attempts
    }
}

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
/// calls it. See the [transport module](crate::transport).
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
