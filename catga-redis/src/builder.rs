//! Connecting: the builder [`RedisTransport::connect`] returns, awaited to connect.
//!
//! The builder records options and does nothing else; `.await` checks every option (see
//! `config.rs`) before any I/O, then connects. The NATS transport's builder has the same
//! shape, the same names for the same options and the same errors.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::blocking::BlockingPool;
use crate::config::{Config, StartFrom};
use crate::connection::{ConnectOptions, Multiplexed, Nodes, Opened};
use crate::error::ConnectError;
use crate::keys::Keys;
use crate::transport::request::RequestScript;
use crate::transport::{RedisTransport, Shared};

/// How many idle connections for reply waits are kept (more are opened under load, and
/// closed when they come back).
const MAX_IDLE_BLOCKING: usize = 32;

/// Configures a [`RedisTransport`]; `.await` it to connect. Obtain one with
/// [`RedisTransport::connect`] or [`RedisTransport::connect_cluster`].
///
/// Setting an option only records it. Awaiting checks every option first, before anything is
/// sent, and refuses one the transport cannot use with [`ConnectError::InvalidOption`] (a zero
/// [`batch`](Self::batch), an empty [`backoff`](Self::backoff), a blank
/// [`instance`](Self::instance), …): no value is silently replaced by another. Then it
/// connects, checking that the server answers.
///
/// Its `Debug` output and the errors connecting returns show the URL with its credentials
/// hidden ([`redact_url`](catga_core::secret::redact_url)) and never the value of a
/// credential option or a private key.
///
/// # Errors
/// Awaiting it fails with [`ConnectError::InvalidOption`] for an option it cannot use,
/// [`ConnectError::InvalidUrl`] for a URL that does not parse,
/// [`ConnectError::Unreachable`] when the server cannot be reached, and
/// [`ConnectError::Unauthorized`] when it refuses the credentials. For `rediss://`:
/// [`ConnectError::TlsUnsupported`] without the `tls` feature; with it,
/// [`ConnectError::InvalidTls`] for a certificate or key it cannot use and
/// [`ConnectError::TlsHandshake`] when the TLS handshake fails (the server's certificate is
/// not trusted, say).
#[derive(Clone)]
#[must_use = "a `RedisConnect` does nothing until it is awaited"]
pub struct RedisConnect {
    connect: ConnectOptions,
    config: Config,
}

impl fmt::Debug for RedisConnect {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisConnect");
        self.connect.debug_fields(&mut out);
        out.field("config", &self.config).finish()
    }
}

impl RedisTransport {
    /// Connects to the server at `url` (`redis://host:port/db`, or `rediss://host:port/db`
    /// for TLS, which needs the `tls` feature: without it, `rediss://` is refused with
    /// [`ConnectError::TlsUnsupported`]). Credentials may be given in the URL,
    /// percent-encoded (`redis://user:password@host/0`, `redis://:password@host/0` for the
    /// default user), or with [`RedisConnect::user_and_password`] and
    /// [`RedisConnect::password`]. Set options on the returned [`RedisConnect`], then `.await`
    /// it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use std::time::Duration;
    /// use catga_redis::RedisTransport;
    ///
    /// let redis = RedisTransport::connect("redis://127.0.0.1:6379")
    ///     .prefix("shop")
    ///     .ack_wait(Duration::from_secs(60))
    ///     .await?;
    /// # let _ = redis;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(url: impl Into<String>) -> RedisConnect {
        RedisConnect::new(ConnectOptions::server(url.into()))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (`redis://host:port` each, or
    /// `rediss://` with the `tls` feature; one reachable node is enough, the others are found
    /// from it), with the same options as [`connect`](Self::connect).
    ///
    /// Each event and request stream (`{prefix}:events:{name}`, `{prefix}:requests:{name}`)
    /// is in its own slot, so the streams spread over the nodes; a request's reply list takes
    /// its stream's slot as hash tag (`{prefix}:replies:{{prefix}:requests:{name}}:{id}`), so
    /// the reply and the request's acknowledgement stay one transaction. Blocking reads and
    /// reply waits get connections of their own to the node owning their key; an instance
    /// reads its streams with one `XREADGROUP` per slot.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use catga_redis::RedisTransport;
    /// use catga_redis::store::RedisStores;
    ///
    /// let redis = RedisTransport::connect_cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ])
    /// .prefix("shop")
    /// .await?;
    /// let stores = RedisStores::sharing(&redis); // the stores on the same cluster
    /// # let _ = stores;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> RedisConnect {
        RedisConnect::new(ConnectOptions::cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }
}

impl RedisConnect {
    fn new(connect: ConnectOptions) -> RedisConnect {
        RedisConnect {
            connect,
            config: Config::default(),
        }
    }

    /// The prefix of every key (default `catga`): streams are `{prefix}:events:{name}` and
    /// `{prefix}:requests:{name}`, replies `{prefix}:replies:{id}`. Applications that must not
    /// see each other's messages use different prefixes.
    ///
    /// Not empty, without whitespace, control characters or the glob characters
    /// `* ? [ ] \`, so `redis-cli --scan --pattern '{prefix}:*'` shows exactly its keys; such
    /// as `shop` or `shop:prod`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Names this process's instance (default: a random name for each `serve()`). The name is
    /// the instance's consumer name in each consumer group, so an instance restarted under the
    /// same name takes up the entries it had read and not acknowledged as soon as it serves
    /// again, instead of leaving them to another instance after
    /// [`ack_wait`](Self::ack_wait).
    ///
    /// The name must be unique among the live instances of a service: use something stable
    /// that no other running instance has, such as the pod name, a StatefulSet ordinal or the
    /// hostname. Run one `serve()` per name at a time: two consumers under one name would
    /// share, and handle twice, each other's unacknowledged entries. A blank name (empty or
    /// only whitespace) is refused.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use catga_redis::RedisTransport;
    ///
    /// // In Kubernetes, the pod name; unset, the name is blank and connecting says so.
    /// let pod = std::env::var("HOSTNAME").unwrap_or_default();
    /// let redis = RedisTransport::connect("redis://127.0.0.1:6379")
    ///     .instance(pod)
    ///     .await?;
    /// # let _ = redis;
    /// # Ok(())
    /// # }
    /// ```
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = Some(name.into());
        self
    }

    /// Trims each stream to about `n` entries on every add (`XADD … MAXLEN ~ n`; default
    /// 100,000, at least 1). Trimming does not wait for consumers: an entry a service has not
    /// read yet is dropped if `n` newer ones arrive first. Size it for the longest backlog
    /// you expect.
    pub fn max_len(mut self, n: usize) -> Self {
        self.config.max_len = Some(n);
        self
    }

    /// Never trims streams: nothing is lost to trimming, and the streams grow until trimmed
    /// by hand (`XTRIM`).
    pub fn untrimmed(mut self) -> Self {
        self.config.max_len = None;
        self
    }

    /// How many times an event's handlers run for a service at most, first delivery included
    /// (default 5, at least 1): catga's delivery budget. A retryable failure before the last
    /// delivery is delivered again after the [`backoff`](Self::backoff) delay; a failure on
    /// the last one (or a failure that is not retryable) is kept in the application's
    /// dead-letter store (by a `DeadLetter` layer, or else by the application's own store)
    /// and then acknowledged. A `Retry` layer does not multiply the runs: events delivered by
    /// a transport are not retried in process. An entry delivered more often than this
    /// without ever being settled (it crashed or stalled its consumer each time) is set aside
    /// without running (code `exhausted`).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.config.max_deliveries = n;
        self
    }

    /// The delays before redelivering an event whose handler failed with a retryable error,
    /// by attempt: the first after delivery 1 failed, the second after delivery 2, …; the
    /// last repeats (default 0.5 s, 2 s, 10 s). At least one delay (`Duration::ZERO` for
    /// none). The entry stays pending with this instance, which takes it again (`XCLAIM`,
    /// counting the delivery) after the delay, holding the handler slot meanwhile; should the
    /// instance die, another claims it after [`ack_wait`](Self::ack_wait).
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.config.backoff = delays.into_iter().collect();
        self
    }

    /// How long a delivered entry may stay unacknowledged before another instance of the
    /// service claims it (`XAUTOCLAIM`; default 30 s, at least 200 ms): the time to recover
    /// the work of an instance that died. Its entries are taken over between one and about
    /// 1.25 `ack_wait` after it read them (the claimer looks every quarter of it). Short
    /// settings work (the crash test runs with 2 s); entries being handled are kept from going
    /// idle while their handler runs, so only an instance that stopped (killed, frozen, cut
    /// off) loses them.
    ///
    /// A request taken over this way may have run on the instance that died: a command not
    /// declared `#[command(idempotent)]` is then answered `in_doubt` and kept in the
    /// application's dead-letter store instead of being run again; queries and idempotent
    /// commands run again.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.config.ack_wait = wait;
        self
    }

    /// How many entries one read takes from each stream (default 64, at least 1). A read also
    /// takes no more than the service's free in-flight slots.
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n;
        self
    }

    /// How long one read waits on the server for new entries before asking again (default
    /// 2 s, at least 10 ms; `XREADGROUP … BLOCK`). It bounds nothing a user sees: shutdown
    /// interrupts the wait.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_wait = wait;
        self
    }

    /// How long another instance's consumer may stay idle, with nothing pending, before it is
    /// removed from its consumer group (`XGROUP DELCONSUMER`; default 5 minutes, at least
    /// 100 ms, and longer than [`fetch_wait`](Self::fetch_wait)). An instance that died leaves
    /// its consumer listed; besides the clutter, a request then counts it as serving and
    /// waits out its timeout instead of failing at once with `NoResponders`. A consumer with
    /// entries pending is kept until [`ack_wait`](Self::ack_wait) has moved them to a live
    /// instance, and forgotten afterwards.
    ///
    /// Keep it comfortably above `fetch_wait`: a live instance's idle time starts again at
    /// each read, which comes every `fetch_wait`, so a shorter time would remove live
    /// instances between reads (they come back with their next read, but in between a request
    /// may be refused); one that is not longer is refused.
    pub fn forget_idle(mut self, idle: Duration) -> Self {
        self.config.forget_idle = idle;
        self
    }

    /// How long connecting and each command that does not block may take before it fails
    /// (default 5 s, at least 1 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// The largest payload sent (default 1 MiB, at least 1 byte); a larger message fails with
    /// `TransportError::TooLarge` before anything is sent.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Where a service's new consumer group starts (default [`StartFrom::New`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.config.start = start;
        self
    }

    /// How long an unread reply is kept (default 60 s, at least 1 ms): a reply whose caller
    /// gave up expires.
    pub fn reply_ttl(mut self, ttl: Duration) -> Self {
        self.config.reply_ttl = ttl;
        self
    }

    /// Authenticates as an ACL user with its password (`AUTH user password`), instead of
    /// any credentials in the URL. Handy when the password comes from a secret store and the
    /// URL from configuration.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.connect
            .set_user_and_password(user.into(), password.into());
        self
    }

    /// Authenticates with a password only (`AUTH password`): the default user's
    /// (`requirepass`), or that of the user named in the URL; it replaces a password in the
    /// URL.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.connect.set_password(password.into());
        self
    }

    /// Trusts the CA certificate(s) in `pem` (PEM text, such as the server's
    /// `tls-ca-cert-file`) for `rediss://`, instead of the system's certificate authorities;
    /// call again to trust more. Checked when awaited: a PEM without a usable certificate is
    /// refused with [`ConnectError::InvalidTls`], as is a `redis://` URL with this option.
    /// With the `tls` feature.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use catga_redis::RedisTransport;
    ///
    /// let ca = std::fs::read("/etc/redis/tls/ca.crt")?;
    /// let redis = RedisTransport::connect("rediss://redis.internal:6380")
    ///     .tls_root_certificate(ca)
    ///     .await?;
    /// # let _ = redis;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connect.tls_mut().add_root_certificate(pem.into());
        self
    }

    /// Presents a client certificate for mutual TLS (a server with `tls-auth-clients yes`):
    /// `cert_pem` is the certificate chain, the client's own first, `key_pem` its private key
    /// (PKCS#8, PKCS#1 or SEC1 PEM). Checked when awaited: a PEM that does not parse or a key
    /// that does not belong to the certificate is refused with [`ConnectError::InvalidTls`],
    /// whose message never shows the key; `Debug` never shows it either. With the `tls`
    /// feature.
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

    async fn run(self) -> Result<RedisTransport, ConnectError> {
        // Every option first: nothing is sent for a configuration that cannot work.
        self.config.check()?;
        let timeout = self.config.response_timeout;
        match self.connect.open(timeout).await? {
            Opened::Server(server) => {
                let blocking = BlockingPool::new(server.client.clone(), MAX_IDLE_BLOCKING, timeout);
                tracing::info!(target: "catga::redis", url = %server.shown,
                    prefix = %self.config.prefix, "Redis transport ready");
                Ok(self.transport(server.client, server.manager.into(), blocking))
            }
            Opened::Cluster(cluster) => {
                let tls = self.connect.tls().clone();
                let nodes = Nodes::new(cluster.seed, tls, cluster.conn.clone());
                let blocking = BlockingPool::cluster(Arc::new(nodes), MAX_IDLE_BLOCKING, timeout);
                tracing::info!(target: "catga::redis", nodes = %cluster.shown,
                    prefix = %self.config.prefix, "Redis transport ready on a cluster");
                Ok(self.transport(cluster.client, Multiplexed::Cluster(cluster.conn), blocking))
            }
        }
    }

    fn transport(
        &self,
        client: redis::Client,
        manager: Multiplexed,
        blocking: BlockingPool,
    ) -> RedisTransport {
        RedisTransport::from_shared(Arc::new(Shared {
            keys: Keys::new(&self.config.prefix),
            client,
            manager,
            blocking,
            request_script: RequestScript::new(),
            config: self.config.clone(),
            link: Default::default(),
        }))
    }
}

impl IntoFuture for RedisConnect {
    type Output = Result<RedisTransport, ConnectError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Checks every option and connects, checking that the server answers.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_a_typed_error_that_hides_the_password() {
        let err = RedisTransport::connect("http://user:secret@host")
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.starts_with("`http://***@host` is not a redis url"),
            "{shown}"
        );
    }
}
