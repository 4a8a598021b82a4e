//! Built-in behaviours. Add them with [`CatgaBuilder::layer`](crate::CatgaBuilder::layer);
//! the first added runs outermost. Each is off until added, and each reads per-message
//! settings from the message's attribute ([`MessagePolicy`](crate::message::MessagePolicy));
//! `skip(name)` in the attribute exempts a message from any of them.
//!
//! | behaviour | what it does | per-message setting |
//! |---|---|---|
//! | [`Tracing`] | a span per dispatch with name, kind and ids; the outcome on the span | `skip(tracing)` |
//! | [`Validation`] | rejects a message whose [`Validate`](crate::Validate) fails, with every field error | implement `Validate` |
//! | [`Timeout`] | fails with `ErrorKind::Timeout` when the rest of the pipeline is too slow | `timeout = "2s"` |
//! | [`Retry`] | retries retryable errors with exponential backoff and jitter | `retry = 5` |
//! | [`CircuitBreaker`] | refuses a message whose recent dispatches failed; probes; recovers | `skip(circuit_breaker)` |
//! | [`RateLimit`] | GCRA rate limit, global or per message; fail fast or wait to the deadline | `rate_limit = "100/s"` |
//! | [`ConcurrencyLimit`] | at most N in flight, a bounded queue, then shed | `concurrency = 8`, `bulkhead = "db"` |
//! | [`Idempotency`] | a repeated command gets the first reply without running again | [`IdempotencyKey`] |
//! | [`Caching`] | caches query replies; TTL, invalidation by events, single flight | `cache_ttl = "30s"`, `invalidated_by(E)` |
//! | [`DeadLetter`] | keeps messages that failed for good, for inspection and replay | `skip(dead_letter)` |
//!
//! A typical order, outermost first: `Tracing`, `DeadLetter`, `RateLimit`,
//! `ConcurrencyLimit`, `Idempotency`, `Caching`, `CircuitBreaker`, `Retry`, `Timeout`,
//! `Validation`. See `docs/behaviours.md`.

mod caching;
mod circuit_breaker;
mod concurrency_limit;
mod dead_letter;
mod idempotency;
pub(crate) mod per_message;
mod rate_limit;
mod retry;
mod timeout;
mod tracing;
mod validation;

pub use self::tracing::Tracing;
pub use caching::{CacheBackend, CacheKey, CacheLookup, Caching, MemoryCache, MemoryQuery};
pub use circuit_breaker::{CircuitBreaker, CircuitState, Trip};
pub use concurrency_limit::ConcurrencyLimit;
pub(crate) use dead_letter::record as dead_letter_record;
pub use dead_letter::{DeadLetter, is_final_failure};
pub use idempotency::{Idempotency, IdempotencyKey};
pub use rate_limit::RateLimit;
pub use retry::Retry;
pub use timeout::Timeout;
pub use validation::Validation;
