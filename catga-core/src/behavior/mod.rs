//! Built-in behaviours. Add them with [`CatgaBuilder::layer`](crate::CatgaBuilder::layer);
//! the first added runs outermost.
//!
//! | behaviour | what it does | per-message setting |
//! |---|---|---|
//! | [`Tracing`] | a span per dispatch with name, kind and ids; the outcome on the span | — |
//! | [`Validation`] | rejects a message whose [`Validate`](crate::Validate) fails, with every field error | implement `Validate` |
//! | [`Timeout`] | fails with `ErrorKind::Timeout` when the rest of the pipeline is too slow | `timeout = "2s"` |
//! | [`Retry`] | retries retryable errors with exponential backoff and jitter | `retry = 5` |

mod retry;
mod timeout;
mod tracing;
mod validation;

pub use self::tracing::Tracing;
pub use retry::Retry;
pub use timeout::Timeout;
pub use validation::Validation;
