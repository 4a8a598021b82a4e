//! The one place the tests build a `RedisTransport`: every test says what it wants in
//! [`Options`], in its own words, and only [`builder`] and [`connect`] name the builder's
//! methods.

use std::time::Duration;

use catga_redis::{ConnectError, RedisConnect, RedisTransport, StartFrom};

/// What a test sets on a transport; `None` leaves the transport's default.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The key prefix: every key the transport uses starts with it.
    pub prefix: Option<String>,
    pub instance: Option<String>,
    /// How long one read waits for entries.
    pub fetch_wait: Option<Duration>,
    /// The delays before redelivering an event after a retryable failure, by attempt.
    pub backoff: Option<Vec<Duration>>,
    /// The delivery budget: the most times an event's handlers run.
    pub max_deliveries: Option<u32>,
    /// How long an entry stays unacknowledged before another instance claims it.
    pub ack_wait: Option<Duration>,
    pub forget_idle: Option<Duration>,
    pub start_from: Option<StartFrom>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub response_timeout: Option<Duration>,
}

impl Options {
    /// Times short enough for tests: reads wait 500 ms, a retryable failure is delivered
    /// again after 50 ms.
    pub fn for_tests() -> Options {
        Options {
            fetch_wait: Some(Duration::from_millis(500)),
            backoff: Some(vec![Duration::from_millis(50)]),
            ..Options::default()
        }
    }
}

/// The builder for `url` with `options`.
pub fn builder(url: impl Into<String>, options: &Options) -> RedisConnect {
    configure(RedisTransport::connect(url), options)
}

/// The builder for the cluster of `nodes` with `options`.
pub fn cluster_builder(nodes: Vec<String>, options: &Options) -> RedisConnect {
    configure(RedisTransport::connect_cluster(nodes), options)
}

fn configure(mut builder: RedisConnect, options: &Options) -> RedisConnect {
    let o = options.clone();
    if let Some(prefix) = o.prefix {
        builder = builder.prefix(prefix);
    }
    if let Some(name) = o.instance {
        builder = builder.instance(name);
    }
    if let Some(wait) = o.fetch_wait {
        builder = builder.fetch_wait(wait);
    }
    if let Some(delays) = o.backoff {
        builder = builder.backoff(delays);
    }
    if let Some(n) = o.max_deliveries {
        builder = builder.max_deliveries(n);
    }
    if let Some(idle) = o.ack_wait {
        builder = builder.ack_wait(idle);
    }
    if let Some(idle) = o.forget_idle {
        builder = builder.forget_idle(idle);
    }
    if let Some(start) = o.start_from {
        builder = builder.start_from(start);
    }
    match (o.username, o.password) {
        (Some(username), Some(password)) => builder = builder.user_and_password(username, password),
        (None, Some(password)) => builder = builder.password(password),
        // A user without a password is not a login: left to the URL.
        (Some(_) | None, None) => {}
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
    builder(url, options).await
}
