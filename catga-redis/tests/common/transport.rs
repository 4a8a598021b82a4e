//! The one place the tests build a `RedisTransport`: every test says what it wants in
//! [`Options`], in its own words, and only [`builder`] and [`connect`] name the builder's
//! methods.

use std::time::Duration;

use catga_redis::{ConnectError, RedisTransport, RedisTransportBuilder, StartFrom};

/// What a test sets on a transport; `None` leaves the transport's default.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The key prefix: every key the transport uses starts with it.
    pub prefix: Option<String>,
    pub instance: Option<String>,
    pub block: Option<Duration>,
    /// How long after a retryable failure an event is delivered again.
    pub redelivery_delay: Option<Duration>,
    /// The delivery budget: the most times an event's handlers run.
    pub max_deliveries: Option<u32>,
    pub claim_idle: Option<Duration>,
    pub forget_idle: Option<Duration>,
    pub start_from: Option<StartFrom>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub response_timeout: Option<Duration>,
}

impl Options {
    /// Times short enough for tests: reads block for 500 ms, a retryable failure is
    /// delivered again after 50 ms.
    pub fn for_tests() -> Options {
        Options {
            block: Some(Duration::from_millis(500)),
            redelivery_delay: Some(Duration::from_millis(50)),
            ..Options::default()
        }
    }
}

/// The builder for `url` with `options`.
pub fn builder(url: impl Into<String>, options: &Options) -> RedisTransportBuilder {
    let mut builder = RedisTransport::connect(url);
    let o = options.clone();
    if let Some(prefix) = o.prefix {
        builder = builder.key_prefix(prefix);
    }
    if let Some(name) = o.instance {
        builder = builder.instance(name);
    }
    if let Some(wait) = o.block {
        builder = builder.block(wait);
    }
    if let Some(delay) = o.redelivery_delay {
        builder = builder.redelivery_delay(delay);
    }
    if let Some(n) = o.max_deliveries {
        builder = builder.max_deliveries(n);
    }
    if let Some(idle) = o.claim_idle {
        builder = builder.claim_idle(idle);
    }
    if let Some(idle) = o.forget_idle {
        builder = builder.forget_idle(idle);
    }
    if let Some(start) = o.start_from {
        builder = builder.start_from(start);
    }
    if let Some(username) = o.username {
        builder = builder.username(username);
    }
    if let Some(password) = o.password {
        builder = builder.password(password);
    }
    if let Some(timeout) = o.response_timeout {
        builder = builder.response_timeout(timeout);
    }
    builder
}

/// A transport connected to `url` with `options`.
pub async fn connect(
    url: impl Into<String>,
    options: &Options,
) -> Result<RedisTransport, ConnectError> {
    builder(url, options).build().await
}
