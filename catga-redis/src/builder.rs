//! Configuring and connecting a [`RedisTransport`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use catga_core::secret::{REDACTED, redact_url};
use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::blocking::BlockingPool;
use crate::config::{Config, StartFrom};
use crate::error::ConnectError;
use crate::keys::Keys;
use crate::request::RequestScript;
use crate::transport::{RedisTransport, Shared};

/// How many idle connections for reply waits are kept (more are opened under load, and
/// closed when they come back).
const MAX_IDLE_BLOCKING: usize = 32;

/// Settings for a [`RedisTransport`], from [`RedisTransport::connect`]; finish with
/// [`build`](RedisTransportBuilder::build).
///
/// Its `Debug` output and the errors `build` returns show the URL with its credentials hidden
/// ([`redact_url`]) and never the [`username`](Self::username) or
/// [`password`](Self::password) options.
#[derive(Clone)]
#[must_use = "a builder does nothing until `build().await`"]
pub struct RedisTransportBuilder {
    url: String,
    username: Option<String>,
    password: Option<String>,
    config: Config,
}

impl fmt::Debug for RedisTransportBuilder {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| REDACTED);
        f.debug_struct("RedisTransportBuilder")
            .field("url", &redact_url(&self.url))
            .field("username", &hidden(&self.username))
            .field("password", &hidden(&self.password))
            .field("config", &self.config)
            .finish()
    }
}

impl RedisTransportBuilder {
    pub(crate) fn new(url: String) -> Self {
        RedisTransportBuilder {
            url,
            username: None,
            password: None,
            config: Config::default(),
        }
    }

    /// The password to authenticate with (`AUTH`), instead of one in the URL: the ACL user's
    /// with [`username`](Self::username), else the default user's (`requirepass`). Handy
    /// when the password comes from a secret store and the URL from configuration.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The ACL user to authenticate as, instead of one in the URL (with
    /// [`password`](Self::password) or the URL's password).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The prefix of every key (default `catga`): streams are `{prefix}:events:{name}` and
    /// `{prefix}:requests:{name}`, replies `{prefix}:replies:{id}`. Applications that must not
    /// see each other's messages use different prefixes.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Trims each stream to about `n` entries on every add (`XADD … MAXLEN ~ n`; default
    /// 100,000). Trimming does not wait for consumers: an entry a service has not read yet is
    /// dropped if `n` newer ones arrive first. Size it for the longest backlog you expect.
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

    /// How long one read waits for new entries before asking again (default 2 s). It bounds
    /// nothing a user sees: shutdown interrupts the wait.
    pub fn block(mut self, wait: Duration) -> Self {
        self.config.block = wait.max(Duration::from_millis(1));
        self
    }

    /// How many entries one read takes from each stream (default 64, at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n.max(1);
        self
    }

    /// Names this process's instance (default: a random name for each `serve()`). The name is
    /// the instance's consumer name in each consumer group, so an instance restarted under the
    /// same name takes up the entries it had read and not acknowledged as soon as it serves
    /// again, instead of leaving them to another instance after
    /// [`claim_idle`](Self::claim_idle).
    ///
    /// The name must be unique among the live instances of a service: use something stable
    /// that no other running instance has, such as the pod name, a StatefulSet ordinal or the
    /// hostname. Run one `serve()` per name at a time: two consumers under one name would
    /// share, and handle twice, each other's unacknowledged entries.
    ///
    /// [`build`](Self::build) refuses a blank name (empty or only whitespace) with
    /// [`ConnectError::BlankInstance`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_redis::ConnectError> {
    /// use catga_redis::RedisTransport;
    ///
    /// // In Kubernetes, the pod name; unset, the name is blank and `build` says so.
    /// let pod = std::env::var("HOSTNAME").unwrap_or_default();
    /// let redis = RedisTransport::connect("redis://127.0.0.1:6379")
    ///     .instance(pod)
    ///     .build()
    ///     .await?;
    /// # let _ = redis;
    /// # Ok(())
    /// # }
    /// ```
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = Some(name.into());
        self
    }

    /// How long another instance's consumer may stay idle, with nothing pending, before it is
    /// removed from its consumer group (`XGROUP DELCONSUMER`; default 5 minutes). An instance
    /// that died leaves its consumer listed; besides the clutter, a request then counts it as
    /// serving and waits out its timeout instead of failing at once with `NoResponders`. A
    /// consumer with entries pending is kept until [`claim_idle`](Self::claim_idle) has moved
    /// them to a live instance, and forgotten afterwards.
    ///
    /// Keep it comfortably above [`block`](Self::block): a live instance's idle time starts
    /// again at each read, which comes every `block`, so a shorter time would remove live
    /// instances between reads (they come back with their next read, but in between a request
    /// may be refused).
    pub fn forget_idle(mut self, idle: Duration) -> Self {
        self.config.forget_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// How long an entry stays unacknowledged before another instance of the service claims it
    /// (`XAUTOCLAIM`; default 30 s): the time to recover the work of an instance that died.
    /// Its entries are taken over between one and about 1.25 claim idle times after it read
    /// them (the claimer looks every quarter of it). Short settings work (the crash test runs
    /// with 2 s); keep it above the longest a handler runs without the process being able to
    /// mark it alive: entries being handled are kept from going idle while their handler runs,
    /// so only an instance that stopped (killed, frozen, cut off) loses them.
    ///
    /// A request taken over this way may have run on the instance that died: a command not
    /// declared `#[command(idempotent)]` is then answered `in_doubt` and kept in the
    /// application's dead-letter store instead of being run again; queries and idempotent
    /// commands run again.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.config.claim_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// The most times an event is delivered (default 5), which is also the most times its
    /// handlers run: a retryable failure before the last delivery is delivered again after
    /// [`redelivery_delay`](Self::redelivery_delay); a failure on the last delivery, or a
    /// failure that is not retryable, on any delivery, is kept once in the application's
    /// dead-letter store (by a `DeadLetter` layer, or else by the application's own store)
    /// and then acknowledged. A `Retry` layer does not multiply the runs: events delivered by
    /// a transport are not retried in process. An entry delivered more often than this without
    /// ever being settled (it crashed or stalled its consumer each time) is set aside without
    /// running (code `exhausted`).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.config.max_deliveries = n.max(1);
        self
    }

    /// How long after a retryable failure an event is delivered again (default 500 ms; keep it
    /// below [`claim_idle`](Self::claim_idle)).
    pub fn redelivery_delay(mut self, delay: Duration) -> Self {
        self.config.redelivery_delay = delay;
        self
    }

    /// The largest payload sent (default 1 MiB); a larger message fails with
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

    /// How long an unread reply is kept (default 60 s): a reply whose caller gave up expires.
    pub fn reply_ttl(mut self, ttl: Duration) -> Self {
        self.config.reply_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// How long a non-blocking command may take before it fails, and how long connecting may
    /// take (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = timeout;
        self
    }

    /// Connects (checking the server answers) and returns the transport.
    ///
    /// # Errors
    /// [`ConnectError::BlankInstance`] for a blank [`instance`](Self::instance) name,
    /// [`ConnectError::InvalidUrl`] for a URL that does not parse, and
    /// [`ConnectError::Unreachable`] when the server cannot be reached.
    pub async fn build(self) -> Result<RedisTransport, ConnectError> {
        if let Some(name) = &self.config.instance
            && name.trim().is_empty()
        {
            return Err(ConnectError::BlankInstance { name: name.clone() });
        }
        // The only form of the URL that reaches an error or a log.
        let url = redact_url(&self.url).into_owned();
        let invalid = |source| ConnectError::InvalidUrl {
            url: url.clone(),
            source,
        };
        let mut info = self.url.as_str().into_connection_info().map_err(invalid)?;
        if self.username.is_some() || self.password.is_some() {
            let mut settings = info.redis_settings().clone();
            if let Some(username) = &self.username {
                settings = settings.set_username(username);
            }
            if let Some(password) = &self.password {
                settings = settings.set_password(password);
            }
            info = info.set_redis_settings(settings);
        }
        tracing::debug!(target: "catga::redis", url = %url, "connecting to Redis");
        let client = redis::Client::open(info).map_err(invalid)?;
        let timeout = self.config.response_timeout;
        // Few, short reconnection attempts per command: a command fails within about a
        // second while the server is down, and the next command tries again, so callers (and
        // the consumers' own backoff) decide how long to keep trying.
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|source| ConnectError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let blocking = BlockingPool::new(client.clone(), MAX_IDLE_BLOCKING, timeout);
        Ok(RedisTransport::from_shared(Arc::new(Shared {
            keys: Keys::new(&self.config.key_prefix),
            client,
            manager,
            blocking,
            request_script: RequestScript::new(),
            config: self.config,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_a_typed_error_that_hides_the_password() {
        let err = RedisTransportBuilder::new("http://user:secret@host".into())
            .build()
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
