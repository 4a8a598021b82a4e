//! Which node of a Redis Cluster owns which slot, for connections of their own to one node:
//! a blocking command (`XREADGROUP … BLOCK`, `BLPOP`) must not travel on the cluster's
//! shared connection to that node, where it would hold up every command behind it.
//!
//! The map comes from `CLUSTER SLOTS`, asked through the cluster connection when first needed
//! and again whenever a caller says the map may be stale (a blocking command met `MOVED`, or
//! its connection failed: a failover moves slots to another node).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionInfo, ErrorKind, RedisError, RedisResult, Value};

use super::key_slot;
use crate::tls::TlsOptions;

/// A node, as the cluster announces it: host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The slot map of a cluster and a client per node, reached like the nodes given.
pub(crate) struct Nodes {
    /// The first node given, with the credentials and TLS setting every node shares.
    seed: ConnectionInfo,
    tls: TlsOptions,
    conn: ClusterConnection,
    /// Slot ranges, first and last slot, and the primary serving them.
    map: Mutex<Vec<(u16, u16, NodeAddr)>>,
    clients: Mutex<HashMap<NodeAddr, redis::Client>>,
}

impl Nodes {
    pub(crate) fn new(seed: ConnectionInfo, tls: TlsOptions, conn: ClusterConnection) -> Nodes {
        Nodes {
            seed,
            tls,
            conn,
            map: Mutex::new(Vec::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, Vec<(u16, u16, NodeAddr)>> {
        // Replaced whole under the lock: a panic cannot leave it half written.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The primary owning `key`'s slot; the map is asked for again first when `fresh`.
    ///
    /// # Errors
    /// When `CLUSTER SLOTS` fails, or no node serves the slot.
    pub(crate) async fn owner(&self, key: &str, fresh: bool) -> RedisResult<NodeAddr> {
        let slot = key_slot(key.as_bytes());
        if !fresh && let Some(owner) = self.lookup(slot) {
            return Ok(owner);
        }
        self.refresh().await?;
        self.lookup(slot).ok_or_else(|| {
            RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                "no node serves the slot",
                format!("slot {slot} of `{key}`"),
            ))
        })
    }

    fn lookup(&self, slot: u16) -> Option<NodeAddr> {
        self.map()
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, node)| node.clone())
    }

    async fn refresh(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply = conn
            .route_command(
                slots,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let map = parse_slots(reply).ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "`CLUSTER SLOTS` answered something else than slot ranges",
            ))
        })?;
        *self.map() = map;
        Ok(())
    }

    /// A client of `node`, with the credentials and TLS options of the nodes given.
    ///
    /// # Errors
    /// When the client refuses the settings (they were checked when connecting).
    pub(crate) fn client(&self, node: &NodeAddr) -> RedisResult<redis::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(node) {
            return Ok(client.clone());
        }
        let info = super::at(&self.seed, node.host.clone(), node.port);
        let client = self.tls.client(info, &node.to_string()).map_err(|e| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cannot make a client for a cluster node",
                e.to_string(),
            ))
        })?;
        clients.insert(node.clone(), client.clone());
        Ok(client)
    }

    /// `CLIENT UNBLOCK id` on `node`, through the cluster's connection to it.
    ///
    /// # Errors
    /// When the node cannot be reached.
    pub(crate) async fn unblock(&self, node: &NodeAddr, id: i64) -> RedisResult<()> {
        let mut unblock = redis::cmd("CLIENT");
        unblock.arg("UNBLOCK").arg(id);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.host.clone(),
            port: node.port,
        });
        self.conn.clone().route_command(unblock, route).await?;
        Ok(())
    }
}

/// `CLUSTER SLOTS` as (first slot, last slot, primary); `None` if it is not that shape.
fn parse_slots(reply: Value) -> Option<Vec<(u16, u16, NodeAddr)>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let int = |value: &Value| match value {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    };
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(parts) = range else {
                return None;
            };
            let Value::Array(primary) = parts.get(2)? else {
                return None;
            };
            let node = NodeAddr {
                host: text(primary.first()?)?,
                port: int(primary.get(1)?)?,
            };
            Some((int(parts.first()?)?, int(parts.get(1)?)?, node))
        })
        .collect()
}
