//! Opening a connection to a Redis Cluster from the URLs of some of its nodes: what
//! `RedisStores::connect_cluster` and `RedisTransport::connect_cluster` share, with the same
//! credentials, TLS options and errors as a single server's.

use std::time::Duration;

use catga_core::secret::redact_url;
use redis::ConnectionInfo;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use crate::error::ConnectError;
use crate::tls::TlsOptions;

/// A connection to a cluster, and what opening more connections to its nodes takes.
pub(crate) struct Cluster {
    /// The multiplexed connection that routes each command to the node owning its key.
    pub conn: ClusterConnection,
    /// The first node given, with the credentials: [`super::at`] turns it into any node's.
    pub seed: ConnectionInfo,
    /// A client of the first node given, for a pub/sub subscriber: Redis Cluster passes a
    /// `PUBLISH` on any node to the subscribers of every node.
    pub client: redis::Client,
    /// The nodes' URLs with credentials hidden, for errors and logs.
    pub shown: String,
}

/// Connects to the cluster that `nodes` (`redis://host:port`, or `rediss://` with the `tls`
/// feature) belong to, with the given credentials and TLS options, each command answering
/// within `timeout`. One reachable node is enough: the others are found from it.
///
/// # Errors
/// [`ConnectError::InvalidOption`] for no node, [`ConnectError::TlsUnsupported`],
/// [`ConnectError::InvalidUrl`] (also for nodes that disagree on credentials or TLS),
/// [`ConnectError::InvalidTls`], [`ConnectError::TlsHandshake`],
/// [`ConnectError::Unreachable`] (also for a server that is not in cluster mode) and
/// [`ConnectError::Unauthorized`].
pub(crate) async fn open(
    nodes: &[String],
    username: Option<&str>,
    password: Option<&str>,
    tls: &TlsOptions,
    timeout: Duration,
) -> Result<Cluster, ConnectError> {
    let Some(first) = nodes.first() else {
        return Err(ConnectError::InvalidOption {
            option: "connect_cluster",
            value: "[]".to_string(),
            reason: "give the URL of at least one node of the cluster",
        });
    };
    let shown = nodes
        .iter()
        .map(|url| redact_url(url).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let seed = super::connection_info(first, username, password)?;
    let infos = nodes
        .iter()
        .map(|url| super::connection_info(url, username, password))
        .collect::<Result<Vec<_>, _>>()?;
    let first_shown = redact_url(first).into_owned();
    // The client a pub/sub subscriber connects with; it also checks the TLS options against
    // the first node's URL, as a single server's connection does.
    let client = tls.client(seed.clone(), &first_shown)?;
    tracing::debug!(target: "catga::redis", nodes = %shown, "connecting to a Redis Cluster");
    let builder = ClusterClientBuilder::new(infos)
        .connection_timeout(timeout)
        .response_timeout(timeout);
    let builder = tls.cluster(builder, &first_shown)?;
    let cluster_client = builder.build().map_err(|source| ConnectError::InvalidUrl {
        url: shown.clone(),
        source,
    })?;
    let conn = match cluster_client.get_async_connection().await {
        Ok(conn) => conn,
        Err(source) => return Err(why_not(&client, shown, source, timeout).await),
    };
    Ok(Cluster {
        conn,
        seed,
        client,
        shown,
    })
}

/// Why connecting to the cluster failed, as the variant that says so. The cluster client
/// reports every failure to reach the nodes as an I/O error ("Failed to create initial
/// connections"), a refused password or TLS handshake included; a plain connection to the
/// first node tells those apart. If that one works, the node answers but not as a cluster
/// node (or the others do not answer): `Unreachable`, with the cluster client's error.
async fn why_not(
    client: &redis::Client,
    shown: String,
    source: redis::RedisError,
    timeout: Duration,
) -> ConnectError {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Err(probe) => match ConnectError::connect(shown.clone(), probe) {
            ConnectError::Unreachable { .. } => ConnectError::connect(shown, source),
            specific => specific,
        },
        Ok(_) => ConnectError::Unreachable { url: shown, source },
    }
}
