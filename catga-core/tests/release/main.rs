//! What a dispatch holds is released when it ends, however it ends (issue 11, class 9).
//!
//! Every behaviour that holds something while the rest of the pipeline runs (a claim, a
//! permit, a queue place, a probe slot, a loading slot, a reserved rate permit, a tightened
//! deadline, a block of handler slots, a span) is driven to the four ways a dispatch can end
//! without finishing: the caller drops its future, the context's cancellation fires, a
//! deadline passes (the context's, or a `Timeout` layer's), the handler panics. Each test
//! then asserts the resource is back: a repeat runs at once, a permit is free, the breaker is
//! in the expected state, waiters go on. Time is Tokio's paused clock: waits are virtual, and
//! "at once" means no virtual time passed.

mod breaker;
mod caching;
mod common;
mod concurrency;
#[path = "../counting_alloc/mod.rs"]
mod counting_alloc;
mod idempotency;
mod idempotency_store;
mod passive;
mod pending_reply;
mod rate_limit;
mod slots;
mod timeout;
