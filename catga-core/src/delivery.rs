//! Which delivery of a message this is: a leaf, so the context can carry it without depending
//! on the transport layer above it. Named publicly as `catga_core::transport::Delivery`.

/// One delivery of an event (or of a request, on a transport that redelivers requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// This delivery's number, from 1: the broker's delivery count (NATS `num_delivered`,
    /// Redis' pending-entry delivery count).
    pub attempt: u32,
    /// The most deliveries the transport makes (its `max_deliveries`): the
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
