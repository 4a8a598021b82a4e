//! The connection every command that does not block goes through: to one server (a
//! [`ConnectionManager`], which reconnects by itself) or to a Redis Cluster (a
//! [`ClusterConnection`], which routes each command to the node that owns its key, follows
//! `MOVED`/`ASK` and reconnects by itself). Both are multiplexed: clones share the connection
//! and commands sent at once travel pipelined.
//!
//! It is a [`ConnectionLike`], so a command, a pipeline or a script call runs on it as on
//! either connection. What a cluster cannot take the way a single server does is handled by
//! the callers: a pipeline must stay in one slot ([`Multiplexed::is_cluster`] tells them to
//! split it), and a blocking command goes on a connection of its own to the owning node.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A multiplexed connection to one server or to a Redis Cluster; cheap to clone.
#[derive(Clone)]
pub(crate) enum Multiplexed {
    /// One server (or a primary).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Multiplexed {
    /// Whether this is a cluster connection: a pipeline must then stay in one slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Multiplexed::Cluster(_))
    }
}

impl From<ConnectionManager> for Multiplexed {
    fn from(manager: ConnectionManager) -> Self {
        Multiplexed::Single(manager)
    }
}

impl ConnectionLike for Multiplexed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Multiplexed::Single(manager) => manager.req_packed_command(cmd),
            Multiplexed::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Multiplexed::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Multiplexed::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Multiplexed::Single(manager) => manager.get_db(),
            Multiplexed::Cluster(cluster) => cluster.get_db(),
        }
    }
}
