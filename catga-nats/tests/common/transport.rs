//! The one place the tests build a `NatsTransport`: every test says what it wants in
//! [`Options`], in its own words, and only [`builder`] names the builder's methods.

use std::path::PathBuf;
use std::time::Duration;

use catga_nats::{ConnectError, NatsConnect, NatsTransport};

/// What a test sets on a transport; `None` leaves the transport's default.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub prefix: Option<String>,
    pub stream: Option<String>,
    /// The delivery budget: the most times an event's handlers run.
    pub max_deliveries: Option<u32>,
    /// The delays before redelivering an event after a retryable failure, by attempt.
    pub backoff: Option<Vec<Duration>>,
    pub ack_wait: Option<Duration>,
    pub fetch_wait: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub user_and_password: Option<(String, String)>,
    pub token: Option<String>,
    pub nkey: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

impl Options {
    /// Delays short enough for tests: a delivery taken back after 5 s, pulls renewed every
    /// second, redeliveries after 50 and 100 ms.
    pub fn for_tests() -> Options {
        Options {
            ack_wait: Some(Duration::from_secs(5)),
            fetch_wait: Some(Duration::from_secs(1)),
            backoff: Some(vec![Duration::from_millis(50), Duration::from_millis(100)]),
            ..Options::default()
        }
    }
}

/// The builder for `url` with `options`.
pub fn builder(url: impl Into<String>, options: &Options) -> NatsConnect {
    let mut builder = NatsTransport::connect(url);
    let o = options.clone();
    if let Some(prefix) = o.prefix {
        builder = builder.prefix(prefix);
    }
    if let Some(stream) = o.stream {
        builder = builder.stream(stream);
    }
    if let Some(n) = o.max_deliveries {
        builder = builder.max_deliveries(n);
    }
    if let Some(delays) = o.backoff {
        builder = builder.backoff(delays);
    }
    if let Some(wait) = o.ack_wait {
        builder = builder.ack_wait(wait);
    }
    if let Some(wait) = o.fetch_wait {
        builder = builder.fetch_wait(wait);
    }
    if let Some(timeout) = o.response_timeout {
        builder = builder.response_timeout(timeout);
    }
    if let Some((user, password)) = o.user_and_password {
        builder = builder.user_and_password(user, password);
    }
    if let Some(token) = o.token {
        builder = builder.token(token);
    }
    if let Some(seed) = o.nkey {
        builder = builder.nkey(seed);
    }
    if let Some(path) = o.credentials_file {
        builder = builder.credentials_file(path);
    }
    builder
}

/// A transport connected to `url` with `options`.
pub async fn connect(
    url: impl Into<String>,
    options: &Options,
) -> Result<NatsTransport, ConnectError> {
    builder(url, options).await
}
