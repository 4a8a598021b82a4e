//! Connecting: the builder [`NatsTransport::connect`] returns, awaited to connect.
//!
//! The builder records options and does nothing else; `.await` checks every option (see
//! `config.rs`) before any I/O, then connects and sets up the events stream.
//! The Redis transport's builder has the same shape, the same names for the same options and
//! the same errors.

use std::fmt;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use catga_core::secret::redact_url;
use futures::future::BoxFuture;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::ConnectError;
use crate::reconnect::Reconnects;
use crate::subject::Subjects;
use crate::transport::{NatsTransport, Shared};

/// Configures a [`NatsTransport`]; `.await` it to connect. Obtain one with
/// [`NatsTransport::connect`].
///
/// Setting an option only records it. Awaiting checks every option first, before anything is
/// sent, and refuses one the transport cannot use with [`ConnectError::InvalidOption`] (a zero
/// [`batch`](Self::batch), an empty [`backoff`](Self::backoff), a prefix that cannot start a
/// subject, …): no value is silently replaced by another. Then it connects and creates the
/// events stream, or updates it to this configuration: a JetStream stream capturing
/// `{prefix}.events.>`, stored on disk, keeping each event for its retention period
/// ([`max_age`](Self::max_age), a week by default) whether or not it was consumed yet (limits
/// retention), so consumers re-created after a server lost its state still find every event
/// published since. A stream created earlier with another retention keeps it (nats-server
/// cannot change a stream's retention; a warning says so).
///
/// Its `Debug` output, the errors connecting returns and the transport's logs show the URL
/// with its credentials hidden ([`redact_url`]) and never the value of a credential option.
///
/// # Errors
/// Awaiting it fails with [`ConnectError::InvalidOption`] for an option it cannot use,
/// [`ConnectError::InvalidUrl`] for a URL that is not a NATS server's,
/// [`ConnectError::Credentials`] for a credentials file it cannot read,
/// [`ConnectError::Unreachable`] when the server cannot be reached,
/// [`ConnectError::Unauthorized`] when it refuses the credentials, and
/// [`ConnectError::Stream`] when it cannot set up the events stream (JetStream disabled).
#[must_use = "a `NatsConnect` does nothing until it is awaited"]
pub struct NatsConnect {
    url: String,
    auth: Auth,
    config: Config,
}

impl fmt::Debug for NatsConnect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConnect")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("config", &self.config)
            .finish()
    }
}

impl NatsTransport {
    /// Connects to the NATS server at `url` (`nats://host:4222`, `tls://host:4222` for TLS).
    /// Credentials may be given in the URL, percent-encoded: `nats://user:password@host`, or
    /// `nats://token@host` for a token; or with [`NatsConnect::user_and_password`],
    /// [`NatsConnect::token`], [`NatsConnect::nkey`] and [`NatsConnect::credentials_file`].
    /// Set options on the returned [`NatsConnect`], then `.await` it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_nats::ConnectError> {
    /// use std::time::Duration;
    /// use catga_nats::NatsTransport;
    ///
    /// let nats = NatsTransport::connect("nats://127.0.0.1:4222")
    ///     .prefix("shop")
    ///     .ack_wait(Duration::from_secs(60))
    ///     .await?;
    /// # let _ = nats;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(url: impl Into<String>) -> NatsConnect {
        NatsConnect {
            url: url.into(),
            auth: Auth::default(),
            config: Config::default(),
        }
    }
}

impl NatsConnect {
    /// The first token(s) of every subject (default `catga`): events go to
    /// `{prefix}.events.{wire name}`, requests to `{prefix}.requests.{wire name}`.
    /// Applications that must not see each other's messages use different prefixes.
    ///
    /// Dot-separated tokens, none empty, without whitespace, control characters, `*` or `>`
    /// (NATS subject rules), such as `shop` or `shop.prod`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// The JetStream stream holding the events (default: derived from the prefix,
    /// `catga-events` for `catga`): ASCII letters, digits, `_` and `-`, at most 200 bytes.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.config.stream = Some(name.into());
        self
    }

    /// How long the server remembers an event's message id (`Nats-Msg-Id`) to drop a
    /// republished copy (default 2 minutes). Longer than zero, and no longer than
    /// [`max_age`](Self::max_age) unless that is zero.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.config.duplicate_window = window;
        self
    }

    /// How long the stream keeps an event (default: a week). Every event is kept this long,
    /// consumed or not: this bounds the disk the stream uses, and how long a service may be
    /// down (or behind) without missing events, since one older than this is removed whether
    /// or not every service handled it. Zero keeps events for good.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.config.max_age = age;
        self
    }

    /// How many times an event's handlers run for a service at most, first delivery included
    /// (default 5, at least 1): catga's delivery budget. A retryable failure before the last
    /// delivery is delivered again after the [`backoff`](Self::backoff) delay; a failure on
    /// the last one (or a failure that is not retryable) is kept in the application's
    /// dead-letter store, then terminated on the server. A delivery that never settled (the
    /// process crashed or hung) counts too: delivery `n + 1` is set aside unrun. The server's
    /// own `max_deliver` is left unlimited, so it never drops an event silently.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.config.max_deliveries = n;
        self
    }

    /// The delays before redelivering an event whose handler failed with a retryable error,
    /// by attempt: the first after delivery 1 failed, the second after delivery 2, …; the
    /// last repeats (default 0.5 s, 2 s, 10 s). At least one delay (`Duration::ZERO` for
    /// none). The event goes back to the server with the delay (`-NAK`), so waiting holds no
    /// handler slot.
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.config.backoff = delays.into_iter().collect();
        self
    }

    /// How long a delivered event may stay unacknowledged before the server delivers it to
    /// another instance (default 30 s, at least 200 ms). A running handler keeps extending it
    /// (progress every half `ack_wait`), so this bounds how long a crashed instance holds its
    /// events, not how long a handler may run.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.config.ack_wait = wait;
        self
    }

    /// The most events one pull asks for (default 128, at least 1). A pull also asks for no
    /// more than the service's free in-flight slots.
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n;
        self
    }

    /// How long one pull waits on the server for events before it is renewed (default 5 s,
    /// at least 10 ms). It bounds nothing a user sees (shutdown interrupts the wait); a pull
    /// that comes back empty also checks the durable consumer.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_wait = wait;
        self
    }

    /// How long connecting, publishing an event (until JetStream's acknowledgement) and each
    /// JetStream API call made when connecting and serving may take (default 5 s, at least
    /// 1 ms). A publish without an acknowledgement in time fails with
    /// `TransportError::Timeout` (in doubt).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// The name the connection shows in the server's monitoring.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.config.connection_name = Some(name.into());
        self
    }

    /// Authenticates with a user and password (instead of any given in the URL).
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth.user_password = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a token (instead of any credentials given in the URL).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth.token = Some(token.into());
        self
    }

    /// Authenticates with an NKey: `seed` is the user's seed (`SU…`), which signs the
    /// server's challenge and is never sent.
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.auth.nkey = Some(seed.into());
        self
    }

    /// Authenticates with a credentials file (a user JWT and its NKey seed, as `nsc`
    /// writes them), read when connecting.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth.credentials_file = Some(path.into());
        self
    }

    async fn run(self) -> Result<NatsTransport, ConnectError> {
        // Every option first: nothing is sent for a configuration that cannot work.
        self.config.check()?;
        let stream = self.config.stream_name();
        // The only form of the URL that reaches an error or a log.
        let url = redact_url(&self.url).into_owned();
        let reconnects = Reconnects::new();
        let mut options = async_nats::ConnectOptions::new()
            .event_callback(reconnects.callback())
            .connection_timeout(self.config.response_timeout);
        if let Some(name) = &self.config.connection_name {
            options = options.name(name);
        }
        let (address, options) = self.auth.apply(&self.url, options).await?;
        tracing::debug!(target: "catga::nats", url = %url, auth = ?self.auth, "connecting to NATS");
        let client = options
            .connect(address)
            .await
            .map_err(|source| ConnectError::connect(url.clone(), source))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.config.response_timeout)
            // Many concurrent publishes wait for a free ack slot instead of failing.
            .backpressure_on_inflight(true)
            .build(client.clone());
        let subjects = Subjects::new(&self.config.prefix);
        let shared = Shared {
            client,
            jetstream,
            subjects,
            stream,
            config: self.config,
            reconnects,
        };
        shared
            .ensure_stream()
            .await
            .map_err(|source| ConnectError::Stream {
                url: url.clone(),
                source,
            })?;
        tracing::info!(target: "catga::nats", url = %url, stream = %shared.stream,
            prefix = %shared.config.prefix, "NATS transport ready");
        Ok(NatsTransport {
            shared: Arc::new(shared),
        })
    }
}

impl IntoFuture for NatsConnect {
    type Output = Result<NatsTransport, ConnectError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Checks every option, connects and creates (or updates) the events stream.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
