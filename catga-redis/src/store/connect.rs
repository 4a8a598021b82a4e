//! Connecting the stores: [`RedisStores::connect`], or [`RedisStores::sharing`] a transport's
//! connection.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use catga_core::secret::redact_url;
use futures::future::BoxFuture;

use super::conn::StoreConn;
use super::read_from::{
    DEFAULT_READ_YOUR_WRITES, ReadFrom, ReplicaOptions, Routing, connect_replicas,
};
use crate::connection::cluster::Cluster;
use crate::connection::{ConnectOptions, Multiplexed, Opened};
use crate::error::ConnectError;
use crate::transport::RedisTransport;

/// The stores of one Redis server (or Redis Cluster) and key prefix: cheap to clone, one
/// multiplexed connection shared by every store made from it. Make one with
/// [`RedisStores::connect`], [`RedisStores::connect_cluster`], or [`RedisStores::sharing`]
/// the connection of a [`RedisTransport`].
#[derive(Clone)]
pub struct RedisStores {
    pub(crate) conn: StoreConn,
}

impl fmt::Debug for RedisStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStores")
            .field("prefix", &self.conn.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// Connects to the server at `url` (`redis://host:port/db`, credentials in the URL or
    /// set on the builder; `rediss://` for TLS, with the `tls` feature). Set options on the
    /// returned [`RedisStoresConnect`], then `.await` it.
    pub fn connect(url: impl Into<String>) -> RedisStoresConnect {
        RedisStoresConnect::new(ConnectOptions::server(url.into()))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port` each, or
    /// `rediss://` with the `tls` feature; one reachable node is enough, the others are found
    /// from it). Set options on the returned [`RedisStoresConnect`] (prefix, credentials,
    /// response timeout, TLS certificates), then `.await` it.
    ///
    /// Each store family keeps its keys under one hash tag (`{shop:events}`,
    /// `{shop:sagas}`, `{shop:dead_letters}`, `{shop:leases}`, `{shop:schedule}`, `{shop:outbox}`), so every
    /// script runs on one node, and the families of a prefix spread over the cluster's nodes;
    /// idempotency keys spread key by key. Reads go to each key's primary: [`read_from`]
    /// other than [`ReadFrom::Primary`] and [`replica`] are refused with
    /// [`ConnectError::InvalidOption`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use catga_redis::store::RedisStores;
    ///
    /// let stores = RedisStores::connect_cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ])
    /// .prefix("shop")
    /// .await?;
    /// let events = stores.events(); // `{shop:events}…`, on the node owning that slot
    /// # let _ = events;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`read_from`]: RedisStoresConnect::read_from
    /// [`replica`]: RedisStoresConnect::replica
    pub fn connect_cluster(
        nodes: impl IntoIterator<Item = impl Into<String>>,
    ) -> RedisStoresConnect {
        RedisStoresConnect::new(ConnectOptions::cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    /// The stores on `transport`'s server and prefix, sharing its connection (no new one).
    /// On a transport connected to a Redis Cluster, the stores are on that cluster too.
    pub fn sharing(transport: &RedisTransport) -> RedisStores {
        let (manager, prefix) = transport.store_connection();
        RedisStores {
            conn: StoreConn::new(manager, prefix).with_client(transport.store_client()),
        }
    }

    /// The key prefix every store of these writes under.
    pub fn prefix(&self) -> &str {
        self.conn.prefix()
    }

    /// Where reads go, as configured with [`RedisStoresConnect::read_from`].
    pub fn read_from(&self) -> ReadFrom {
        self.conn.read_from()
    }
}

impl RedisStoresConnect {
    fn new(connect: ConnectOptions) -> RedisStoresConnect {
        RedisStoresConnect {
            connect,
            prefix: "catga".to_string(),
            response_timeout: Duration::from_secs(5),
            read_from: ReadFrom::Primary,
            replicas: Vec::new(),
            read_your_writes: DEFAULT_READ_YOUR_WRITES,
        }
    }
}

/// Configures [`RedisStores`]; `.await` it to connect. Obtain one with
/// [`RedisStores::connect`] or [`RedisStores::connect_cluster`].
///
/// # Errors
/// Awaiting it fails with [`ConnectError::InvalidOption`] for a prefix or timeout it cannot
/// use, [`ConnectError::InvalidUrl`], [`ConnectError::TlsUnsupported`] (without the `tls`
/// feature), [`ConnectError::InvalidTls`], [`ConnectError::TlsHandshake`],
/// [`ConnectError::Unreachable`] and [`ConnectError::Unauthorized`], as the transport's
/// builder does. On a cluster, also [`ConnectError::InvalidOption`] for no node, for
/// [`read_from`](Self::read_from) other than [`ReadFrom::Primary`] and for a
/// [`replica`](Self::replica).
#[derive(Clone)]
#[must_use = "a `RedisStoresConnect` does nothing until it is awaited"]
pub struct RedisStoresConnect {
    connect: ConnectOptions,
    prefix: String,
    response_timeout: Duration,
    read_from: ReadFrom,
    replicas: Vec<String>,
    read_your_writes: Duration,
}

impl fmt::Debug for RedisStoresConnect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisStoresConnect");
        self.connect.debug_fields(&mut out);
        out.field("prefix", &self.prefix)
            .field("response_timeout", &self.response_timeout)
            .field("read_from", &self.read_from)
            .field(
                "replicas",
                &self
                    .replicas
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("read_your_writes", &self.read_your_writes)
            .finish()
    }
}

impl RedisStoresConnect {
    /// The prefix of every key (default `catga`), the transport's rules: not empty, no
    /// whitespace, control characters, braces or glob characters (`* ? [ ] \`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates as `user` (`AUTH user password`, Redis 6 ACLs).
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.connect
            .set_user_and_password(user.into(), password.into());
        self
    }

    /// Authenticates with a password only (`AUTH password`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.connect.set_password(password.into());
        self
    }

    /// Trusts the CA certificate(s) in `pem` for `rediss://` instead of the system's, as
    /// [`RedisConnect::tls_root_certificate`](crate::RedisConnect::tls_root_certificate)
    /// does; replicas are reached with the same options. With the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connect.tls_mut().add_root_certificate(pem.into());
        self
    }

    /// Presents a client certificate chain and its private key (PEM) for mutual TLS, as
    /// [`RedisConnect::tls_client_auth`](crate::RedisConnect::tls_client_auth) does;
    /// replicas get the same. With the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn tls_client_auth(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.connect
            .tls_mut()
            .set_client_auth(cert_pem.into(), key_pem.into());
        self
    }

    /// How long a command may take before it fails (default 5 s, at least 1 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Which servers serve reads (default [`ReadFrom::Primary`]). With the others, the
    /// replicas are those given with [`replica`](Self::replica), else the ones the primary
    /// lists (`ROLE`), reached with the primary's credentials: found when connecting, then
    /// again every [`REPLICA_REFRESH`](super::REPLICA_REFRESH) (a replica down at connect
    /// time or started later is read from once it answers and is in sync; one the primary
    /// no longer lists is no longer read). On a cluster ([`RedisStores::connect_cluster`])
    /// only [`ReadFrom::Primary`] is accepted.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// A replica reads may go to (`redis://host:port/db`); call once per replica. The
    /// primary's credentials are used unless the URL has its own. One that cannot be reached
    /// when connecting is tried again every [`REPLICA_REFRESH`](super::REPLICA_REFRESH), and
    /// read from once it answers and is in sync.
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
    }

    /// How long after this process wrote a key its reads stay on the primary (default
    /// [`DEFAULT_READ_YOUR_WRITES`], 1 s): read-your-writes for a read that follows a write
    /// in the same conversation. Zero turns it off.
    pub fn read_your_writes_for(mut self, window: Duration) -> Self {
        self.read_your_writes = window;
        self
    }

    async fn run(self) -> Result<RedisStores, ConnectError> {
        crate::config::check_prefix(&self.prefix).map_err(|reason| {
            ConnectError::InvalidOption {
                option: "prefix",
                value: format!("{:?}", self.prefix),
                reason,
            }
        })?;
        if self.response_timeout < Duration::from_millis(1) {
            return Err(ConnectError::InvalidOption {
                option: "response_timeout",
                value: format!("{:?}", self.response_timeout),
                reason: "Redis counts time in whole milliseconds: give at least 1 ms",
            });
        }
        if self.connect.is_cluster() {
            self.check_cluster()?;
        }
        match self.connect.open(self.response_timeout).await? {
            Opened::Server(server) => {
                let routing = self.routing(&server.info, &server.manager).await?;
                Ok(RedisStores {
                    conn: StoreConn::routed(server.manager, routing, &self.prefix)
                        .with_client(server.client),
                })
            }
            Opened::Cluster(cluster) => Ok(self.on_cluster(cluster)),
        }
    }

    /// Checks the options for a cluster: reads go to each key's primary, as every write does.
    fn check_cluster(&self) -> Result<(), ConnectError> {
        if self.read_from != ReadFrom::Primary {
            return Err(ConnectError::InvalidOption {
                option: "read_from",
                value: format!("ReadFrom::{:?}", self.read_from),
                reason: "on a Redis Cluster the stores read from each key's primary; read from the primary (`ReadFrom::Primary`)",
            });
        }
        if let Some(replica) = self.replicas.first() {
            return Err(ConnectError::InvalidOption {
                option: "replica",
                value: format!("{:?}", redact_url(replica)),
                reason: "on a Redis Cluster the nodes are found from the cluster and reads go to each key's primary; give no replica",
            });
        }
        Ok(())
    }

    /// The stores on a cluster connected to.
    fn on_cluster(&self, cluster: Cluster) -> RedisStores {
        tracing::info!(target: "catga::redis", nodes = %cluster.shown, prefix = %self.prefix,
            "Redis stores ready on a cluster");
        RedisStores {
            conn: StoreConn::new(Multiplexed::Cluster(cluster.conn), &self.prefix)
                .with_client(cluster.client),
        }
    }

    /// Where reads go: the primary only, or also the replicas (those given, else those the
    /// primary lists), connected now and looked for again while running. One that cannot be
    /// reached now is left out with a warning (`PreferReplica`), or fails connecting
    /// (`Replica`, if none is left).
    async fn routing(
        &self,
        primary: &redis::ConnectionInfo,
        manager: &redis::aio::ConnectionManager,
    ) -> Result<Arc<Routing>, ConnectError> {
        let options = ReplicaOptions {
            read_from: self.read_from,
            given: &self.replicas,
            tls: self.connect.tls(),
            timeout: self.response_timeout,
            read_your_writes: self.read_your_writes,
            user: "redis stores",
        };
        connect_replicas(options, primary, manager).await
    }
}

impl IntoFuture for RedisStoresConnect {
    type Output = Result<RedisStores, ConnectError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Checks every option, then connects, checking that the server answers.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
