//! Connecting: the builder [`RedisCache::connect`], [`RedisCache::connect_cluster`] and
//! [`RedisCache::with_connection`] return, awaited to connect. The transport's builder has
//! the same shape: setting an option records it, awaiting checks every option before any I/O.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use catga_core::secret::{REDACTED, redact_url};
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, RedisError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::config::CacheConfig;
use super::health::Health;
use super::{CONNECT_TIMEOUT, RedisCache, Scripts, Shared, StopOnDrop, invalidation};
use crate::connection::{
    ConnectOptions, Multiplexed, Opened, ReplicaOptions, Routing, connect_replicas,
};
use crate::error::ConnectError;
use crate::store::ReadFrom;

/// Configures a [`RedisCache`]; `.await` it to connect. Obtain one with
/// [`RedisCache::connect`], [`RedisCache::connect_cluster`] or [`RedisCache::with_connection`].
///
/// Setting an option only records it. Awaiting checks every option first, before anything is
/// sent, and refuses one the cache cannot use with [`ConnectError::InvalidOption`]: no value
/// is silently replaced by another. Then it connects (and, to read from replicas, to the
/// replicas), loads its three scripts (into every node, on a cluster) and (with the
/// near-cache on) subscribes to the invalidation channel, each within 5 s.
///
/// Its `Debug` output shows the URL with its credentials hidden and never the value of a
/// credential option or a private key.
///
/// # Errors
/// Awaiting it fails with [`ConnectError::InvalidOption`] for an option it cannot use,
/// [`ConnectError::InvalidUrl`] for a URL that does not parse, [`ConnectError::Unreachable`]
/// when the server cannot be reached (or does not answer within 5 s), and
/// [`ConnectError::Unauthorized`] when it refuses the credentials. For `rediss://`:
/// [`ConnectError::TlsUnsupported`] without the `tls` feature; with it,
/// [`ConnectError::InvalidTls`] for a certificate or key it cannot use and
/// [`ConnectError::TlsHandshake`] when the TLS handshake fails, as for the transport. On a
/// cluster, also [`ConnectError::InvalidOption`] for no node, for
/// [`read_from`](Self::read_from) other than [`ReadFrom::Primary`] and for a
/// [`replica`](Self::replica). With [`ReadFrom::Replica`], the error connecting to the last
/// replica when none can be reached (or [`ConnectError::InvalidOption`] when there is none).
/// Once connected, the cache never fails: see [`RedisCache`].
#[must_use = "a `RedisCacheConnect` does nothing until it is awaited"]
pub struct RedisCacheConnect {
    /// The URL, credentials and TLS options; with [`RedisCache::with_connection`], the
    /// address of the client's server (for `Debug`) and the options given, which are refused.
    connect: ConnectOptions,
    /// The client and connection given to [`RedisCache::with_connection`]. Boxed: a client
    /// built with TLS support is a few hundred bytes.
    given: Option<Box<(redis::Client, ConnectionManager)>>,
    config: CacheConfig,
    /// The replicas given with [`replica`](Self::replica), as URLs.
    replicas: Vec<String>,
}

impl fmt::Debug for RedisCacheConnect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisCacheConnect");
        self.connect.debug_fields(&mut out);
        let replicas: Vec<_> = self.replicas.iter().map(|u| redact_url(u)).collect();
        out.field("config", &self.config)
            .field("replicas", &replicas)
            .finish()
    }
}

/// The server a client connects to, without credentials.
fn shown(client: &redis::Client) -> String {
    format!("redis://{}", client.get_connection_info().addr())
}

impl RedisCache {
    /// Connects to the server at `url` (`redis://host:port/db`, credentials in the URL or
    /// with [`RedisCacheConnect::user_and_password`]; `rediss://` for TLS, which needs the
    /// `tls` feature: without it, `rediss://` is refused with
    /// [`ConnectError::TlsUnsupported`]). Set options on the returned builder, then `.await`
    /// it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use std::time::Duration;
    /// use catga_redis::RedisCache;
    ///
    /// let cache = RedisCache::connect("redis://127.0.0.1:6379")
    ///     .prefix("shop")
    ///     .near_capacity(50_000)
    ///     .near_ttl(Duration::from_secs(30))
    ///     .await?;
    /// # let _ = cache;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(url: impl Into<String>) -> RedisCacheConnect {
        RedisCacheConnect::new(ConnectOptions::server(url.into()), None)
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port` each, or
    /// `rediss://` with the `tls` feature; one reachable node is enough, the others are found
    /// from it), with the same options as [`connect`](Self::connect).
    ///
    /// A query's generation and replies share a hash tag (`{prefix}:cache:{Q}` and
    /// `{prefix}:cache:{Q}:{key}`), so each lookup (`MGET`), store and invalidation (a script)
    /// runs on the node owning the query's slot, and the queries spread over the nodes. The
    /// scripts are loaded into every node. The invalidation subscription is on the first
    /// node given: Redis Cluster passes a `PUBLISH` on any node to the subscribers of every
    /// node. Lookups read each query's primary: [`read_from`](RedisCacheConnect::read_from)
    /// other than [`ReadFrom::Primary`] and [`replica`](RedisCacheConnect::replica) are
    /// refused with [`ConnectError::InvalidOption`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use catga_redis::RedisCache;
    ///
    /// let cache = RedisCache::connect_cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ])
    /// .prefix("shop")
    /// .await?;
    /// # let _ = cache;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_cluster(
        nodes: impl IntoIterator<Item = impl Into<String>>,
    ) -> RedisCacheConnect {
        let nodes = nodes.into_iter().map(Into::into).collect();
        RedisCacheConnect::new(ConnectOptions::cluster(nodes), None)
    }

    /// Uses a connection manager you already have for the cache's commands, and `client`
    /// (normally the one the manager was made from) for the invalidation subscription, which
    /// needs a connection of its own (none without the near-cache). The credentials and TLS
    /// settings are those of `client` and `manager`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use catga_redis::RedisCache;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = client.get_connection_manager().await?;
    /// let cache = RedisCache::with_connection(client, manager).prefix("shop").await?;
    /// # let _ = cache;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_connection(client: redis::Client, manager: ConnectionManager) -> RedisCacheConnect {
        let connect = ConnectOptions::server(shown(&client));
        RedisCacheConnect::new(connect, Some(Box::new((client, manager))))
    }
}

impl RedisCacheConnect {
    fn new(
        connect: ConnectOptions,
        given: Option<Box<(redis::Client, ConnectionManager)>>,
    ) -> RedisCacheConnect {
        RedisCacheConnect {
            connect,
            given,
            config: CacheConfig::default(),
            replicas: Vec::new(),
        }
    }

    /// The prefix of every key and of the invalidation channel (default `catga`): replies are
    /// `{prefix}:cache:{Q}:{key}`, the channel `{prefix}:cache:invalidations`. The instances
    /// of a service share a cache by using the same prefix; the same prefix as the
    /// transport's is fine (the names do not meet).
    ///
    /// Not empty, without whitespace, control characters or the glob characters
    /// `* ? [ ] \`, as for the transport.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Whether replies are also kept in this process's memory (default on), so a repeated
    /// hit costs no round trip. Off, every lookup is one round trip, the cache is consistent
    /// across instances the moment an invalidation's script has run, and it does not
    /// subscribe to invalidations (one connection fewer).
    pub fn near_cache(mut self, on: bool) -> Self {
        self.config.near_cache = on;
        self
    }

    /// The most replies the near-cache keeps per query (default 10,000, at least 1; split
    /// between 8 shards, so up to the next multiple of 8). Beyond it, expired replies go
    /// first, then any.
    pub fn near_capacity(mut self, entries: usize) -> Self {
        self.config.near_capacity = entries;
        self
    }

    /// The longest a reply stays in the near-cache (default 10 s, at least 1 ms), whatever
    /// its own TTL (it never stays longer than that either). It bounds how long an instance
    /// can serve a reply another instance invalidated if the invalidation message is lost
    /// without the subscription visibly failing.
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.config.near_ttl = ttl;
        self
    }

    /// How long one cache command may take (default 500 ms, at least 1 ms) before the
    /// lookup counts as a miss and the cache as unreachable. A query waits at most this long
    /// for the cache before its handler runs, except when a replica it read from does not
    /// answer: with [`ReadFrom::PreferReplica`] it then waits as long again for the primary
    /// (once per [`REPLICA_BACKOFF`](crate::store::REPLICA_BACKOFF), the replica being left
    /// out meanwhile).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// How long the cache goes without Redis after a command failed for want of a connection
    /// or timed out (default 1 s, at least 10 ms); then one lookup tries again. Also the
    /// pause between attempts to subscribe again.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.config.retry_interval = interval;
        self
    }

    /// Which server a lookup's `MGET` reads (default [`ReadFrom::Primary`]); the store
    /// script and invalidations always run on the primary. With the others, the replicas
    /// are those given with [`replica`](Self::replica), else the ones the primary lists
    /// (`ROLE`), reached with the primary's credentials and TLS options: found when
    /// connecting, then again every [`REPLICA_REFRESH`](crate::store::REPLICA_REFRESH) (a
    /// replica down at connect time or started later is read once it answers and is in
    /// sync; one the primary no longer lists is no longer read).
    ///
    /// A replica may lag: after this process invalidates a query (the whole query or one
    /// key), or hears another instance's invalidation of it on the subscription, the query's
    /// lookups read the primary for [`read_your_writes_for`](Self::read_your_writes_for).
    /// A lagging replica can cause a miss, never put an old reply back (the store script
    /// refuses a reply whose miss saw an older generation). Without the near-cache there is
    /// no subscription: other instances' invalidations are then seen after the replica's
    /// lag. A replica that fails a lookup is left out for
    /// [`REPLICA_BACKOFF`](crate::store::REPLICA_BACKOFF); with
    /// [`ReadFrom::PreferReplica`] the lookup reads the primary at once, with
    /// [`ReadFrom::Replica`] it is a miss (the cache never fails a query). On a cluster
    /// ([`RedisCache::connect_cluster`]) only [`ReadFrom::Primary`] is accepted.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.config.read_from = read_from;
        self
    }

    /// A replica lookups may read (`redis://host:port/db`); call once per replica. The
    /// primary's credentials are used unless the URL has its own. Only with
    /// [`read_from`](Self::read_from) other than [`ReadFrom::Primary`] (refused otherwise,
    /// and on a cluster, with [`ConnectError::InvalidOption`]). One that cannot be reached
    /// when connecting is tried again every
    /// [`REPLICA_REFRESH`](crate::store::REPLICA_REFRESH), and read once it answers and is
    /// in sync.
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.replicas.push(url.into());
        self
    }

    /// How long after an invalidation of a query, made by this process or heard from
    /// another, the query's lookups read the primary instead of a replica (default
    /// [`DEFAULT_READ_YOUR_WRITES`](crate::store::DEFAULT_READ_YOUR_WRITES), 1 s). Set it
    /// above the replicas' lag (`INFO replication`); zero turns it off.
    pub fn read_your_writes_for(mut self, window: Duration) -> Self {
        self.config.read_your_writes = window;
        self
    }

    /// Authenticates as an ACL user with its password, instead of any credentials in the URL.
    /// Only with [`RedisCache::connect`]: with [`RedisCache::with_connection`] it is refused
    /// with [`ConnectError::InvalidOption`] (the client carries its own credentials).
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.connect
            .set_user_and_password(user.into(), password.into());
        self
    }

    /// Authenticates with a password only (the default user's, or that of the user named
    /// in the URL); it replaces a password in the URL. Only with [`RedisCache::connect`].
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.connect.set_password(password.into());
        self
    }

    /// Trusts the CA certificate(s) in `pem` for `rediss://` instead of the system's, as
    /// [`RedisConnect::tls_root_certificate`](crate::RedisConnect::tls_root_certificate)
    /// does; the invalidation subscription is reached with the same options. Only with
    /// [`RedisCache::connect`]: with [`RedisCache::with_connection`] it is refused with
    /// [`ConnectError::InvalidOption`] (the client carries its own TLS settings). With the
    /// `tls` feature.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connect.tls_mut().add_root_certificate(pem.into());
        self
    }

    /// Presents a client certificate chain and its private key (PEM) for mutual TLS, as
    /// [`RedisConnect::tls_client_auth`](crate::RedisConnect::tls_client_auth) does; the
    /// invalidation subscription presents the same. Only with [`RedisCache::connect`]. With
    /// the `tls` feature.
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

    async fn run(mut self) -> Result<RedisCache, ConnectError> {
        self.config.check()?;
        self.check_replicas()?;
        let (url, client, manager, routing) = match self.given.take() {
            None => match self.connect.open(CONNECT_TIMEOUT).await? {
                Opened::Server(server) => {
                    let routing = self.routing(&server.info, &server.manager).await?;
                    let manager = Multiplexed::Single(server.manager);
                    (server.shown, server.client, manager, routing)
                }
                Opened::Cluster(cluster) => {
                    let manager = Multiplexed::Cluster(cluster.conn);
                    (
                        cluster.shown,
                        cluster.client,
                        manager,
                        Arc::new(Routing::primary_only()),
                    )
                }
            },
            Some(given) => {
                let (client, manager) = *given;
                if let Some(option) = self.connect.credential_option() {
                    return Err(ConnectError::InvalidOption {
                        option,
                        value: REDACTED.to_string(),
                        reason: "the client given to `with_connection` carries its own \
                                 credentials\nhelp: put them in the client's URL, or use \
                                 `RedisCache::connect`",
                    });
                }
                if let Some(option) = self.connect.tls().first_option() {
                    return Err(ConnectError::InvalidOption {
                        option,
                        value: REDACTED.to_string(),
                        reason: "the client given to `with_connection` carries its own TLS \
                                 settings\nhelp: build the client with them \
                                 (`redis::Client::build_with_tls`), or use \
                                 `RedisCache::connect`",
                    });
                }
                let info = client.get_connection_info().clone();
                let routing = self.routing(&info, &manager).await?;
                (
                    shown(&client),
                    client,
                    Multiplexed::Single(manager),
                    routing,
                )
            }
        };
        let scripts = Scripts::new();
        load(&manager, &scripts)
            .await
            .map_err(|source| ConnectError::connect(url.clone(), source))?;
        let stop = CancellationToken::new();
        let replicas = routing.replica_count();
        let shared = Arc::new(Shared {
            manager,
            routing,
            health: Health::new(self.config.retry_interval, &self.config.prefix),
            channel: format!("{}:cache:invalidations", self.config.prefix),
            config: self.config,
            scripts,
            queries: Default::default(),
            subscribed: AtomicBool::new(false),
            stop: stop.clone(),
            url: url.clone(),
        });
        let near_cache = shared.config.near_cache;
        let cache = RedisCache {
            shared,
            _stop: Arc::new(StopOnDrop(stop)),
        };
        // Invalidation messages only ever drop near-cache entries: without a near-cache,
        // there is nothing to subscribe for.
        if near_cache {
            let (ready, subscribed) = oneshot::channel();
            tokio::spawn(invalidation::subscribe(cache.shared.clone(), client, ready));
            // Dropping `cache` on an error below stops the subscriber.
            match subscribed.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(ConnectError::connect(url, source)),
                Err(_) => {
                    let source = RedisError::from(std::io::Error::other("the subscriber stopped"));
                    return Err(ConnectError::connect(url, source));
                }
            }
        }
        tracing::info!(target: "catga::redis::cache", url = %url,
            prefix = %cache.shared.config.prefix, near_cache = cache.shared.config.near_cache,
            read_from = ?cache.shared.config.read_from, replicas, "Redis cache ready");
        Ok(cache)
    }
}

impl RedisCacheConnect {
    /// Checks `read_from` and `replica` against each other and the target: a replica needs
    /// reads that may go to one, and a cluster reads each query's primary.
    fn check_replicas(&self) -> Result<(), ConnectError> {
        if self.connect.is_cluster() && self.config.read_from != ReadFrom::Primary {
            return Err(ConnectError::InvalidOption {
                option: "read_from",
                value: format!("ReadFrom::{:?}", self.config.read_from),
                reason: "on a Redis Cluster the cache reads each query's primary\nhelp: read \
                         from the primary (`ReadFrom::Primary`, the default)",
            });
        }
        let Some(replica) = self.replicas.first() else {
            return Ok(());
        };
        let reason = if self.connect.is_cluster() {
            "on a Redis Cluster the nodes are found from the cluster and lookups read each \
             query's primary\nhelp: give no replica"
        } else if self.config.read_from == ReadFrom::Primary {
            "lookups read the primary (`ReadFrom::Primary`, the default): the replica would \
             never be read\nhelp: add `.read_from(ReadFrom::PreferReplica)`"
        } else {
            return Ok(());
        };
        Err(ConnectError::InvalidOption {
            option: "replica",
            value: format!("{:?}", redact_url(replica)),
            reason,
        })
    }

    /// Where lookups read: the primary only, or also the replicas (those given, else those
    /// the primary lists), connected now and looked for again while running.
    async fn routing(
        &self,
        primary: &ConnectionInfo,
        manager: &ConnectionManager,
    ) -> Result<Arc<Routing>, ConnectError> {
        let options = ReplicaOptions {
            read_from: self.config.read_from,
            given: &self.replicas,
            tls: self.connect.tls(),
            timeout: CONNECT_TIMEOUT,
            read_your_writes: self.config.read_your_writes,
            user: "redis cache",
        };
        connect_replicas(options, primary, manager).await
    }
}

/// Loads the scripts, so the first store and invalidation are one `EVALSHA` each (after a
/// server restart, the client loads them again when the server says `NOSCRIPT`). On one
/// server, in one pipeline; on a cluster, one `SCRIPT LOAD` per script, each sent alone so
/// that it reaches every node (in a pipeline it would reach one), all at once.
async fn load(manager: &Multiplexed, scripts: &Scripts) -> Result<(), RedisError> {
    let loading = async {
        if manager.is_cluster() {
            let loads = scripts.all().map(|script| {
                let mut conn = manager.clone();
                async move { script.prepare_invoke().load_async(&mut conn).await }
            });
            for loaded in futures::future::join_all(loads).await {
                loaded?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for script in scripts.all() {
            pipe.load_script(script).ignore();
        }
        let mut conn = manager.clone();
        pipe.query_async::<()>(&mut conn).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, loading).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

impl IntoFuture for RedisCacheConnect {
    type Output = Result<RedisCache, ConnectError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Checks every option, connects, loads the scripts and subscribes.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
