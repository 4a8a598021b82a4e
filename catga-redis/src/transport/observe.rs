//! The broadcast read: events every instance must see, not one instance per service
//! ([`ServePlan::observe`](catga_core::transport::ServePlan::observe), for cache
//! invalidation).
//!
//! A consumer group shares a stream's entries among a service's instances, so it cannot tell
//! every instance. Instead each instance reads the observed event streams without a group
//! (`XREAD`), on a connection of its own, blocking, from where each stream ended when serving
//! began, then from the last entry it saw; each entry is reported to
//! [`Inbound::observe`] under the name its stream carries. Nothing is acknowledged and nothing
//! is kept on the server for the reader: it only follows the streams as they grow.
//!
//! While the connection is down, entries may be added and trimmed away unseen; so after every
//! reconnection every observed name is reported once, and what depends on them (cached
//! replies) is dropped rather than trusted.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use catga_core::transport::{Inbound, TransportError};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::retry_delay::RetryDelay;
use crate::blocking::{self, BlockedConn};
use crate::entry::{self, ShapeError};
use crate::error::CommandError;

/// Why a read session ended.
#[derive(Debug, thiserror::Error)]
enum ObserveError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("no answer to `XREAD` long after its block time; the connection is presumed dead")]
    Stalled,
}

/// One instance's broadcast reader.
pub(crate) struct Observer {
    shared: Arc<Shared>,
    /// The observed streams, and the id after which each is read next.
    cursors: Vec<(String, String)>,
    /// The wire name each stream carries.
    names: HashMap<String, String>,
    inbound: Arc<dyn Inbound>,
    stop: CancellationToken,
    /// The connection's name in `CLIENT LIST`.
    client_name: String,
}

impl Observer {
    /// Prepares to observe the events named `names`, from where each stream ends now: an
    /// event added once this returns is observed.
    pub async fn new(
        shared: Arc<Shared>,
        names: &[String],
        inbound: Arc<dyn Inbound>,
        stop: CancellationToken,
        client_name: String,
    ) -> Result<Observer, TransportError> {
        let mut manager = shared.manager.clone();
        let mut cursors = Vec::with_capacity(names.len());
        let mut by_stream = HashMap::with_capacity(names.len());
        for name in names {
            let stream = shared.keys.events(name);
            let last: Value = redis::cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut manager)
                .await
                .map_err(|e| CommandError::new("XREVRANGE", &stream, e).into_transport())?;
            let last = entry::entries("XREVRANGE", &stream, last)
                .map_err(|e| TransportError::Protocol(e.to_string()))?;
            // An empty or missing stream: everything it will hold is new.
            let from = last
                .first()
                .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
            cursors.push((stream.clone(), from));
            by_stream.insert(stream, name.clone());
        }
        Ok(Observer {
            shared,
            cursors,
            names: by_stream,
            inbound,
            stop,
            client_name,
        })
    }

    /// Reads until stopped. `blocked` holds the reading connection while it is connected,
    /// for shutdown to interrupt a blocked read.
    pub async fn run(mut self, blocked: Arc<BlockedConn>) {
        let mut retry = RetryDelay::default();
        let mut reconnecting = false;
        while !self.stop.is_cancelled() {
            let ended = self.session(&blocked, &mut retry, reconnecting).await;
            blocked.disconnected();
            let Err(error) = ended else {
                return;
            };
            reconnecting = true;
            tracing::warn!(target: "catga::redis", error = &error as &dyn std::error::Error,
                "reading the observed event streams failed; reconnecting");
            tokio::select! {
                () = tokio::time::sleep(retry.next_delay()) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    async fn session(
        &mut self,
        blocked: &BlockedConn,
        retry: &mut RetryDelay,
        reconnected: bool,
    ) -> Result<(), ObserveError> {
        let first = self
            .cursors
            .first()
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        // On a cluster, the node owning these streams (all in one slot), looked up again
        // after a failure: a failover may have moved them.
        let pool = &self.shared.blocking;
        let node = pool
            .node_for(&first, reconnected)
            .await
            .map_err(|e| CommandError::new("CLUSTER SLOTS", &first, e))?;
        let mut conn = pool
            .open(node.as_ref())
            .await
            .map_err(|e| CommandError::new("CONNECT", &first, e))?;
        let id = blocking::identify(&mut conn, &self.client_name)
            .await
            .map_err(|e| CommandError::new("CLIENT ID", &first, e))?;
        blocked.connected(node, id);
        if reconnected {
            // Entries may have come and gone while the connection was down.
            tracing::info!(target: "catga::redis", observed = self.names.len(),
                "reconnected; reporting every observed event, since one may have been missed");
            for name in self.names.values() {
                self.report(name);
            }
        }
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            let reply = self.read(&mut conn).await?;
            retry.reset();
            for (stream, entries) in reply {
                let Some(name) = self.names.get(&stream) else {
                    continue;
                };
                for _ in &entries {
                    self.report(name);
                }
                if let (Some(last), Some(cursor)) = (
                    entries.last(),
                    self.cursors.iter_mut().find(|(s, _)| *s == stream),
                ) {
                    cursor.1.clone_from(&last.id);
                }
            }
        }
    }

    /// Tells the application; a panic in what it runs must not end the observation.
    fn report(&self, name: &str) {
        let reported = std::panic::catch_unwind(AssertUnwindSafe(|| self.inbound.observe(name)));
        if reported.is_err() {
            tracing::error!(target: "catga::redis", event = %name,
                "observing an event panicked; the observation goes on");
        }
    }

    /// One blocking `XREAD` of every observed stream after its cursor.
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Vec<(String, Vec<entry::Entry>)>, ObserveError> {
        let config = &self.shared.config;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(config.batch)
            .arg("BLOCK")
            .arg(u64::try_from(config.fetch_wait.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS");
        for (stream, _) in &self.cursors {
            cmd.arg(stream);
        }
        for (_, id) in &self.cursors {
            cmd.arg(id);
        }
        let limit = config.fetch_wait.saturating_add(config.response_timeout);
        let first = self.cursors.first().map_or("", |(s, _)| s.as_str());
        let value = tokio::time::timeout(limit, cmd.query_async::<Value>(conn))
            .await
            .map_err(|_| ObserveError::Stalled)?
            .map_err(|e| CommandError::new("XREAD", first, e))?;
        Ok(entry::read_reply("XREAD", value)?)
    }
}
