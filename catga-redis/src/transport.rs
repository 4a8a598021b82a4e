//! The transport itself: what it holds, and publishing.

use std::sync::Arc;
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::transport::{Inbound, Reply, ServePlan, Serving, Transport, TransportError};
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use crate::blocking::BlockingPool;
use crate::builder::RedisTransportBuilder;
use crate::config::Config;
use crate::entry::each_field;
use crate::error::CommandError;
use crate::keys::Keys;
use crate::request::RequestScript;

/// A catga [`Transport`] over Redis Streams. See the [crate docs](crate) for how messages map
/// to streams, and for the delivery guarantees.
///
/// Cheap to clone: clones share one connection (and pool of connections for blocking waits).
#[derive(Clone)]
pub struct RedisTransport {
    shared: Arc<Shared>,
}

/// What every clone, and every consumer it starts, shares.
pub(crate) struct Shared {
    pub client: redis::Client,
    /// The multiplexed connection for every command that does not block; it reconnects by
    /// itself after the server restarts.
    pub manager: ConnectionManager,
    pub blocking: BlockingPool,
    pub request_script: RequestScript,
    pub keys: Keys,
    pub config: Config,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("key_prefix", &self.shared.config.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Starts configuring a transport to the server at `url` (`redis://host:port/db`,
    /// `rediss://` for TLS if the `redis` crate's TLS feature is enabled).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use std::time::Duration;
    /// use catga_redis::RedisTransport;
    ///
    /// let redis = RedisTransport::connect("redis://127.0.0.1:6379")
    ///     .key_prefix("shop")
    ///     .claim_idle(Duration::from_secs(60))
    ///     .build()
    ///     .await?;
    /// # let _ = redis;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(url: impl Into<String>) -> RedisTransportBuilder {
        RedisTransportBuilder::new(url.into())
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        RedisTransport { shared }
    }

    /// The key prefix everything this transport stores lives under.
    pub fn key_prefix(&self) -> &str {
        &self.shared.config.key_prefix
    }

    /// The stream an event named `name` is published to.
    pub fn event_stream(&self, name: &str) -> String {
        self.shared.keys.events(name)
    }

    /// The stream a command or query named `name` is sent to.
    pub fn request_stream(&self, name: &str) -> String {
        self.shared.keys.requests(name)
    }
}

impl Shared {
    pub(crate) fn check_size(&self, envelope: &Envelope) -> Result<(), TransportError> {
        let limit = self.config.max_payload;
        if envelope.payload.len() > limit {
            return Err(TransportError::TooLarge {
                size: envelope.payload.len(),
                limit,
            });
        }
        Ok(())
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.check_size(&envelope)?;
        let key = self.keys.events(&envelope.name);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key);
        if let Some(n) = self.config.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        each_field(&envelope, |name, value| {
            cmd.arg(name).arg(value);
        });
        let mut manager = self.manager.clone();
        self.bounded(cmd.query_async::<redis::Value>(&mut manager))
            .await
            .map_err(|e| CommandError::new("XADD", key, e).into_transport())?;
        Ok(())
    }

    /// Runs a command that must not keep its caller waiting: the response timeout covers an
    /// answer, not a reconnection in progress, so a caller is also bounded here, to twice
    /// that, and gets an I/O timeout (in doubt: the command may have been sent).
    pub(crate) async fn bounded<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let bound = self.config.response_timeout.saturating_mul(2);
        match tokio::time::timeout(bound, command).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}", catga_core::error::Millis(bound)),
            )
            .into()),
        }
    }
}

impl Transport for RedisTransport {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.shared.publish(envelope))
    }

    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(self.shared.request(envelope, timeout))
    }

    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        Box::pin(crate::serve::serve(self.shared.clone(), plan, inbound))
    }
}
