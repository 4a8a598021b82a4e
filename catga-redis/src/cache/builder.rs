//! Connecting: the builder [`RedisCache::connect`] and [`RedisCache::with_connection`]
//! return, awaited to connect. The transport's builder has the same shape: setting an option
//! records it, awaiting checks every option before any I/O.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use catga_core::secret::REDACTED;
use futures::future::BoxFuture;
use redis::RedisError;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::config::CacheConfig;
use super::health::Health;
use super::{CONNECT_TIMEOUT, RedisCache, Scripts, Shared, StopOnDrop, invalidation};
use crate::connection::{ConnectOptions, Opened};
use crate::error::ConnectError;

/// Configures a [`RedisCache`]; `.await` it to connect. Obtain one with
/// [`RedisCache::connect`] or [`RedisCache::with_connection`].
///
/// Setting an option only records it. Awaiting checks every option first, before anything is
/// sent, and refuses one the cache cannot use with [`ConnectError::InvalidOption`]: no value
/// is silently replaced by another. Then it connects, loads its two scripts and (with the
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
/// [`ConnectError::TlsHandshake`] when the TLS handshake fails, as for the transport.
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
}

impl fmt::Debug for RedisCacheConnect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisCacheConnect");
        self.connect.debug_fields(&mut out);
        out.field("config", &self.config).finish()
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
        RedisCacheConnect {
            connect: ConnectOptions::server(url.into()),
            given: None,
            config: CacheConfig::default(),
        }
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
        RedisCacheConnect {
            connect: ConnectOptions::server(shown(&client)),
            given: Some(Box::new((client, manager))),
            config: CacheConfig::default(),
        }
    }
}

impl RedisCacheConnect {
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
    /// for the cache before its handler runs.
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

    async fn run(self) -> Result<RedisCache, ConnectError> {
        self.config.check()?;
        let (url, client, manager) = match self.given {
            None => {
                let Opened::Server(server) = self.connect.open(CONNECT_TIMEOUT).await? else {
                    unreachable!("`RedisCache::connect` takes one server's URL");
                };
                (server.shown, server.client, server.manager)
            }
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
                (shown(&client), client, manager)
            }
        };
        load(&manager)
            .await
            .map_err(|source| ConnectError::connect(url.clone(), source))?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            manager,
            health: Health::new(self.config.retry_interval, &self.config.prefix),
            channel: format!("{}:cache:invalidations", self.config.prefix),
            config: self.config,
            scripts: Scripts::new(),
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
            "Redis cache ready");
        Ok(cache)
    }
}

/// Loads both scripts, so the first store and invalidation are one `EVALSHA` each (after a
/// server restart, the client loads them again when the server says `NOSCRIPT`).
async fn load(manager: &ConnectionManager) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    for code in [super::value::STORE, super::value::INVALIDATE] {
        pipe.cmd("SCRIPT").arg("LOAD").arg(code).ignore();
    }
    let mut manager = manager.clone();
    match tokio::time::timeout(CONNECT_TIMEOUT, pipe.query_async::<()>(&mut manager)).await {
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
