//! [`RedisTransport`]: catga's [`Transport`] over Redis Streams.
//!
//! Events are published to a stream per event ([`publish`]) and consumed by a consumer group
//! per service ([`serve`]: [`reader`], [`worker`], [`claimer`], [`reaper`], [`acker`]);
//! requests are entries of a request stream answered through a reply list ([`request`] on the
//! caller's side, [`responder`] on the serving side); events every instance must see are read
//! by each instance without a group ([`observe`]). Each serving instance samples its groups'
//! lag ([`lag`]).

mod acker;
mod claimer;
mod groups;
mod inflight;
mod lag;
pub(crate) mod link;
mod observe;
mod positions;
mod publish;
mod reader;
mod reaper;
mod redeliver;
pub(crate) mod request;
mod responder;
mod retry_delay;
mod same_name;
mod serve;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::health::CheckStatus;
use catga_core::transport::{Inbound, Reply, ServePlan, Serving, Transport, TransportError};
use futures::future::BoxFuture;

use self::request::RequestScript;
use crate::blocking::BlockingPool;
use crate::config::Config;
use crate::connection::Multiplexed;
use crate::keys::Keys;

pub use lag::{CONSUMER_ACK_PENDING, CONSUMER_PENDING};

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
    /// A client of the server (of the first node given, on a cluster), for stores that open
    /// a connection of their own (a pub/sub subscriber).
    pub client: redis::Client,
    /// The multiplexed connection for every command that does not block, to the server or
    /// to a cluster; it reconnects by itself after the server restarts.
    pub manager: Multiplexed,
    pub blocking: BlockingPool,
    pub request_script: RequestScript,
    pub keys: Keys,
    pub config: Config,
    /// What the reader and publishers last saw of the connection.
    pub link: link::Link,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("prefix", &self.shared.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        RedisTransport { shared }
    }

    /// Its multiplexed connection and key prefix, for stores that share them.
    pub(crate) fn store_connection(&self) -> (Multiplexed, &str) {
        (self.shared.manager.clone(), &self.shared.config.prefix)
    }

    /// Its client, for stores that open a connection of their own (a pub/sub subscriber).
    pub(crate) fn store_client(&self) -> redis::Client {
        self.shared.client.clone()
    }

    /// The key prefix everything this transport stores lives under
    /// ([`RedisConnect::prefix`](crate::RedisConnect::prefix)).
    pub fn prefix(&self) -> &str {
        &self.shared.config.prefix
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
        Box::pin(serve::serve(self.shared.clone(), plan, inbound))
    }

    /// What the consumers' reads and the publishes last saw (no I/O): up until a command
    /// fails for want of a connection (the server down or restarting, a dropped connection,
    /// no answer in time), up again at the next command answered.
    fn health(&self) -> Option<CheckStatus> {
        Some(self.shared.link.status())
    }
}
