//! Connecting: the builder [`NatsTransport::connect`] returns, awaited to connect.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use futures::future::BoxFuture;

use crate::error::NatsError;
use crate::reconnect::Reconnects;
use crate::settings::Settings;
use crate::subject::{self, Subjects};
use crate::transport::{NatsTransport, Shared};

/// Configures a [`NatsTransport`]; `.await` it to connect. Obtain one with
/// [`NatsTransport::connect`].
///
/// Connecting creates the events stream, or updates it to this configuration: a JetStream
/// stream capturing `{prefix}.events.>`, stored on disk, keeping each event until every
/// service that consumes it acknowledged it (interest retention).
#[must_use = "a `Connect` does nothing until it is awaited"]
#[derive(Debug)]
pub struct Connect {
    url: String,
    settings: Settings,
}

impl NatsTransport {
    /// Connects to the NATS server at `url` (`nats://host:4222`; credentials may be given in
    /// the URL as `nats://user:password@host`). Set options on the returned [`Connect`], then
    /// `.await` it.
    pub fn connect(url: impl Into<String>) -> Connect {
        Connect {
            url: url.into(),
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

    /// How long the stream keeps an event that some service has not acknowledged (default:
    /// no limit). Bounds the disk used for services that stopped consuming for good.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.settings.max_age = age;
        self
    }

    /// How many times an event is delivered to a service at most, first delivery included
    /// (default 5, at least 1). The last delivery is acknowledged whatever the handler
    /// returns.
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
        let reconnects = Reconnects::new();
        let mut options = async_nats::ConnectOptions::new().event_callback(reconnects.callback());
        if let Some(name) = &self.settings.connection_name {
            options = options.name(name);
        }
        let client =
            options
                .connect(self.url.as_str())
                .await
                .map_err(|source| NatsError::Connect {
                    url: self.url.clone(),
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
        tracing::info!(target: "catga::nats", url = %self.url, stream = %shared.stream,
            prefix = %shared.settings.prefix, "NATS transport ready");
        Ok(NatsTransport {
            shared: Arc::new(shared),
        })
    }
}

impl Shared {
    /// Creates the events stream, or brings an existing one to this configuration.
    pub(crate) async fn ensure_stream(&self) -> Result<(), NatsError> {
        let subjects = self.subjects.all_events();
        let config = StreamConfig {
            name: self.stream.clone(),
            subjects: vec![subjects.clone()],
            // Each service's durable consumer shows interest: an event is kept until every
            // service that consumes it has acknowledged it, and one nobody consumes is not
            // kept, as on the in-memory transport.
            retention: RetentionPolicy::Interest,
            storage: StorageType::File,
            duplicate_window: self.settings.duplicate_window,
            max_age: self.settings.max_age,
            ..StreamConfig::default()
        };
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|source| NatsError::Stream {
                stream: self.stream.clone(),
                subjects,
                source: Box::new(source),
            })?;
        Ok(())
    }
}

impl IntoFuture for Connect {
    type Output = Result<NatsTransport, NatsError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Connects and creates (or updates) the events stream.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
