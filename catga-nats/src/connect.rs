//! Connecting: the builder [`NatsTransport::connect`] returns, awaited to connect.

use std::fmt;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use catga_core::secret::redact_url;
use futures::future::BoxFuture;

use crate::auth::Auth;
use crate::error::NatsError;
use crate::reconnect::Reconnects;
use crate::settings::Settings;
use crate::subject::{self, Subjects};
use crate::transport::{NatsTransport, Shared};

/// Configures a [`NatsTransport`]; `.await` it to connect. Obtain one with
/// [`NatsTransport::connect`].
///
/// Connecting creates the events stream, or updates it to this configuration: a JetStream
/// stream capturing `{prefix}.events.>`, stored on disk, keeping each event for its retention
/// period ([`max_age`](Connect::max_age), a week by default) whether or not it was consumed
/// yet (limits retention), so consumers re-created after a server lost its state still find
/// every event published since. A stream created earlier with another retention keeps it
/// (nats-server cannot change a stream's retention; a warning says so).
///
/// Its `Debug` output, the errors connecting returns and the transport's logs show the URL
/// with its credentials hidden ([`redact_url`]) and never the value of a credential option.
#[must_use = "a `Connect` does nothing until it is awaited"]
pub struct Connect {
    url: String,
    auth: Auth,
    settings: Settings,
}

impl fmt::Debug for Connect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("settings", &self.settings)
            .finish()
    }
}

impl NatsTransport {
    /// Connects to the NATS server at `url` (`nats://host:4222`, `tls://host:4222` for TLS).
    /// Credentials may be given in the URL, percent-encoded: `nats://user:password@host`, or
    /// `nats://token@host` for a token; or with [`Connect::user_and_password`],
    /// [`Connect::token`], [`Connect::nkey`] and [`Connect::credentials_file`]. Set options on
    /// the returned [`Connect`], then `.await` it.
    pub fn connect(url: impl Into<String>) -> Connect {
        Connect {
            url: url.into(),
            auth: Auth::default(),
            settings: Settings::default(),
        }
    }
}

impl Connect {
    /// The first token(s) of every subject (default `catga`): events go to
    /// `{prefix}.events.{wire name}`, requests to `{prefix}.requests.{wire name}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The JetStream stream holding the events (default: derived from the prefix,
    /// `catga-events` for `catga`). Letters, digits, `_` and `-`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.settings.stream = Some(name.into());
        self
    }

    /// How long the server remembers an event's message id (`Nats-Msg-Id`) to drop a
    /// republished copy (default 2 minutes).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.settings.duplicate_window = window;
        self
    }

    /// How long the stream keeps an event (default: a week). Every event is kept this long,
    /// consumed or not: this bounds the disk the stream uses, and how long a service may be
    /// down (or behind) without missing events, since one older than this is removed whether
    /// or not every service handled it. Zero keeps events for good.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.settings.max_age = age;
        self
    }

    /// How many times an event's handlers run for a service at most, first delivery included
    /// (default 5, at least 1): catga's delivery budget. A retryable failure before the last
    /// delivery is delivered again after the [`backoff`](Connect::backoff) delay; a failure on
    /// the last one (or a failure that is not retryable) is kept in the application's
    /// dead-letter store, then terminated on the server. A delivery that never settled (the
    /// process crashed or hung) counts too: delivery `n + 1` is set aside unrun. The server's
    /// own `max_deliver` is left unlimited, so it never drops an event silently.
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.settings.max_deliver = n.max(1);
        self
    }

    /// The delays before redelivering an event whose handler failed with a retryable error,
    /// by attempt; the last delay repeats (default 0.5 s, 2 s, 10 s).
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.settings.backoff = delays.into_iter().collect();
        self
    }

    /// How long the server waits for an event's acknowledgement before delivering it again
    /// (default 30 s). A running handler keeps extending it, so this bounds how long a
    /// crashed instance holds its events, not how long a handler may run.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.settings.ack_wait = wait;
        self
    }

    /// The most events one pull asks for (default 128). A pull also asks for no more than
    /// the service's free in-flight slots.
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.settings.fetch_batch = n;
        self
    }

    /// How long one pull waits on the server for events before it is renewed (default 5 s).
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.settings.fetch_wait = wait;
        self
    }

    /// How long publishing an event waits for JetStream's acknowledgement (default 5 s); also
    /// bounds the JetStream API calls made when connecting and serving.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.publish_timeout = timeout;
        self
    }

    /// The name the connection shows in the server's monitoring.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.settings.connection_name = Some(name.into());
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

    fn check(&self) -> Result<String, NatsError> {
        let settings = &self.settings;
        subject::check_prefix(&settings.prefix)?;
        let stream = match &settings.stream {
            Some(name) => {
                subject::check_stream_name(name)?;
                name.clone()
            }
            None => subject::default_stream_name(&settings.prefix),
        };
        let positive = [
            ("ack_wait", settings.ack_wait),
            ("fetch_wait", settings.fetch_wait),
            ("publish_timeout", settings.publish_timeout),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(NatsError::Config(format!(
                "`{name}` must be longer than zero"
            )));
        }
        if settings.fetch_batch == 0 {
            return Err(NatsError::Config(
                "`fetch_batch` must be at least 1".to_string(),
            ));
        }
        Ok(stream)
    }

    async fn run(self) -> Result<NatsTransport, NatsError> {
        let stream = self.check()?;
        // The only form of the URL that reaches an error or a log.
        let url = redact_url(&self.url).into_owned();
        let reconnects = Reconnects::new();
        let mut options = async_nats::ConnectOptions::new().event_callback(reconnects.callback());
        if let Some(name) = &self.settings.connection_name {
            options = options.name(name);
        }
        let (address, options) = self.auth.apply(&self.url, options).await?;
        tracing::debug!(target: "catga::nats", url = %url, auth = ?self.auth, "connecting to NATS");
        let client = options
            .connect(address)
            .await
            .map_err(|source| NatsError::Connect {
                url: url.clone(),
                source,
            })?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.settings.publish_timeout)
            // Many concurrent publishes wait for a free ack slot instead of failing.
            .backpressure_on_inflight(true)
            .build(client.clone());
        let subjects = Subjects::new(&self.settings.prefix);
        let shared = Shared {
            client,
            jetstream,
            subjects,
            stream,
            settings: self.settings,
            reconnects,
        };
        shared.ensure_stream().await?;
        tracing::info!(target: "catga::nats", url = %url, stream = %shared.stream,
            prefix = %shared.settings.prefix, "NATS transport ready");
        Ok(NatsTransport {
            shared: Arc::new(shared),
        })
    }
}

/// JetStream's error code for "stream configuration update can not change retention policy".
const RETENTION_FIXED: u64 = 10052;

impl Shared {
    /// The events stream's configuration, with `retention`.
    fn stream_config(&self, retention: RetentionPolicy) -> StreamConfig {
        StreamConfig {
            name: self.stream.clone(),
            subjects: vec![self.subjects.all_events()],
            retention,
            storage: StorageType::File,
            duplicate_window: self.settings.duplicate_window,
            max_age: self.settings.max_age,
            ..StreamConfig::default()
        }
    }

    /// Creates the events stream, or brings an existing one to this configuration, and says
    /// when the stream was created (a stream created again after a server lost its state has
    /// a new creation time: its sequences start again).
    ///
    /// Limits retention: every event is stored for `max_age`, whether or not a consumer exists
    /// yet. With interest retention the server stores an event only for the consumers that
    /// exist when it is published, so after a server lost its state, every event published
    /// before each service re-created its durable consumer would be acknowledged to its
    /// publisher and never delivered.
    pub(crate) async fn ensure_stream(&self) -> Result<StreamCreated, NatsError> {
        let failed = |source| NatsError::Stream {
            stream: self.stream.clone(),
            subjects: self.subjects.all_events(),
            source: Box::new(source),
        };
        let config = self.stream_config(RetentionPolicy::Limits);
        let info = match self.jetstream.create_or_update_stream(config).await {
            Ok(info) => info,
            Err(error) if is_jetstream_code(&error, RETENTION_FIXED) => {
                let current = self
                    .current_retention()
                    .await
                    .unwrap_or(RetentionPolicy::Interest);
                tracing::warn!(target: "catga::nats", stream = %self.stream, retention = ?current,
                    "the events stream exists with another retention than limits, which nats-server cannot change; it is kept. \
                     After a server loses its state, events published before each service re-created its consumer are not stored \
                     (see docs/nats.md to move the events to a stream with limits retention)");
                self.jetstream
                    .create_or_update_stream(self.stream_config(current))
                    .await
                    .map_err(failed)?
            }
            Err(error) => return Err(failed(error)),
        };
        Ok(StreamCreated(info.created.unix_timestamp_nanos()))
    }

    /// The retention of the existing events stream.
    async fn current_retention(&self) -> Option<RetentionPolicy> {
        let mut stream = self.jetstream.get_stream(&self.stream).await.ok()?;
        Some(stream.info().await.ok()?.config.retention)
    }
}

/// When a stream was created (nanoseconds since the epoch): a stream lost and created again
/// has another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamCreated(pub i128);

/// Whether `error` is the JetStream API error `code`.
fn is_jetstream_code(error: &jetstream::context::CreateStreamError, code: u64) -> bool {
    use jetstream::context::CreateStreamErrorKind as Kind;
    matches!(error.kind(), Kind::JetStream(e) if e.error_code().0 == code)
}

impl IntoFuture for Connect {
    type Output = Result<NatsTransport, NatsError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Connects and creates (or updates) the events stream.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
