//! NATS transport for catga (in progress).
