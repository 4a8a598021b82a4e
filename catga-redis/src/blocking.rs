//! Connections for blocking commands (`BLPOP`, `XREADGROUP … BLOCK`).
//!
//! Redis serves one connection's commands in order, so a command that blocks holds up every
//! command behind it on the same connection. The shared, multiplexed connection therefore
//! never carries one: each blocking call gets a connection of its own, and callers waiting for
//! replies reuse the idle ones kept here. On a Redis Cluster that connection goes to the node
//! owning the key the command blocks on ([`Nodes`]), and idle ones are kept per node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};

use crate::connection::{Multiplexed, NodeAddr, Nodes};

/// Opens a connection whose commands may block: it has no response timeout of its own (the
/// caller bounds the wait, since only it knows how long the command may block).
pub(crate) async fn connect(
    client: &Client,
    connect_timeout: Duration,
) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Names a blocking connection after what it does (`CLIENT SETNAME`, so `CLIENT LIST` shows
/// which instance and task holds it: characters Redis refuses in a name become `_`) and
/// returns its id, by which another connection can interrupt its blocked command. A name
/// the server refuses (an ACL) is only logged.
pub(crate) async fn identify(conn: &mut MultiplexedConnection, name: &str) -> RedisResult<i64> {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if let Err(e) = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&name)
        .query_async::<()>(conn)
        .await
    {
        tracing::debug!(target: "catga::redis", name, error = &e as &dyn std::error::Error,
            "could not name the connection");
    }
    redis::cmd("CLIENT").arg("ID").query_async(conn).await
}

/// Where blocking connections go: the server, or a cluster's nodes.
enum Target {
    /// Boxed: with TLS a client is large, and the pool holds one `Target` per transport.
    Server(Box<Client>),
    Cluster(Arc<Nodes>),
}

/// Connections for blocking commands, and the idle ones kept for callers waiting on reply
/// lists (per node, on a cluster).
pub(crate) struct BlockingPool {
    target: Target,
    idle: Mutex<HashMap<Option<NodeAddr>, Vec<MultiplexedConnection>>>,
    max_idle: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for BlockingPool {
    /// Without the client: its `Debug` shows the connection settings, the ACL username
    /// among them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("cluster", &matches!(self.target, Target::Cluster(_)))
            .field("max_idle", &self.max_idle)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl BlockingPool {
    /// Connections to the server `client` connects to.
    pub fn new(client: Client, max_idle: usize, connect_timeout: Duration) -> Self {
        BlockingPool::with_target(Target::Server(Box::new(client)), max_idle, connect_timeout)
    }

    /// Connections to the nodes of a cluster, each to the node owning the key.
    pub fn cluster(nodes: Arc<Nodes>, max_idle: usize, connect_timeout: Duration) -> Self {
        BlockingPool::with_target(Target::Cluster(nodes), max_idle, connect_timeout)
    }

    fn with_target(target: Target, max_idle: usize, connect_timeout: Duration) -> Self {
        BlockingPool {
            target,
            idle: Mutex::new(HashMap::new()),
            max_idle,
            connect_timeout,
        }
    }

    fn idle(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Option<NodeAddr>, Vec<MultiplexedConnection>>> {
        // A panic while holding the lock leaves at worst a connection too many or too few.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node a blocking command on `key` must be sent to: `None` for a single server;
    /// on a cluster the owner of `key`'s slot, the slot map asked for again when `fresh`
    /// (after a `MOVED` or a failed connection).
    pub async fn node_for(&self, key: &str, fresh: bool) -> RedisResult<Option<NodeAddr>> {
        match &self.target {
            Target::Server(_) => Ok(None),
            Target::Cluster(nodes) => nodes.owner(key, fresh).await.map(Some),
        }
    }

    /// A new connection of its own to `node` (the server for `None`), for a task that
    /// blocks on it for long (a reader).
    pub async fn open(&self, node: Option<&NodeAddr>) -> RedisResult<MultiplexedConnection> {
        match (&self.target, node) {
            (Target::Cluster(nodes), Some(node)) => {
                connect(&nodes.client(node)?, self.connect_timeout).await
            }
            (Target::Server(client), _) => connect(client, self.connect_timeout).await,
            (Target::Cluster(_), None) => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a blocking connection on a cluster needs its node",
            ))),
        }
    }

    /// An idle connection to `node`, or a new one.
    pub async fn get(&self, node: Option<&NodeAddr>) -> RedisResult<MultiplexedConnection> {
        let reused = self.idle().get_mut(&node.cloned()).and_then(Vec::pop);
        match reused {
            Some(conn) => Ok(conn),
            None => self.open(node).await,
        }
    }

    /// Gives back a connection to `node` whose last command completed (one abandoned
    /// mid-command may still deliver that command's reply, so it must be dropped instead).
    pub fn put(&self, node: Option<NodeAddr>, conn: MultiplexedConnection) {
        let mut idle = self.idle();
        let kept = idle.entry(node).or_default();
        if kept.len() < self.max_idle {
            kept.push(conn);
        }
    }

    /// Drops every idle connection (after an error, they may all be dead).
    pub fn clear(&self) {
        self.idle().clear();
    }

    /// Interrupts the blocked command of connection `id` on `node` (`CLIENT UNBLOCK`), through
    /// `shared` on a single server, through the cluster's connection to the node on a
    /// cluster.
    pub async fn unblock(
        &self,
        shared: &Multiplexed,
        node: Option<&NodeAddr>,
        id: i64,
    ) -> RedisResult<()> {
        match (&self.target, node) {
            (Target::Cluster(nodes), Some(node)) => nodes.unblock(node, id).await,
            _ => {
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async::<()>(&mut shared.clone())
                    .await
            }
        }
    }
}

/// The connection a task blocks on, for shutdown to interrupt it (`CLIENT UNBLOCK`): its id
/// and its node while it is connected.
#[derive(Debug, Default)]
pub(crate) struct BlockedConn {
    current: Mutex<Option<(Option<NodeAddr>, i64)>>,
}

impl BlockedConn {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<(Option<NodeAddr>, i64)>> {
        // Replaced whole under the lock.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The task is connected to `node` (the server for `None`) as connection `id`.
    pub fn connected(&self, node: Option<NodeAddr>, id: i64) {
        *self.current() = Some((node, id));
    }

    /// The task's connection is gone.
    pub fn disconnected(&self) {
        *self.current() = None;
    }

    /// Where the task is blocked, if it is connected.
    pub fn get(&self) -> Option<(Option<NodeAddr>, i64)> {
        self.current().clone()
    }
}
