//! What the Redis tests share beyond `catga_core::testkit`: the server (or a reason to skip), a
//! key prefix of each test's own (its keys deleted at the end), the transport in the
//! conformance suite, and raw access for looking at and injecting entries.

#![allow(dead_code)] // each test binary uses part of it

pub mod outage;
pub mod private_cluster;
pub mod private_redis;
pub mod redis_dead_letters;
pub mod round_trips;
pub mod scoped;
pub mod slice;
pub mod store_error;
pub mod transport;

use std::time::Duration;

use catga_core::testkit::{self, Capabilities, Settings, TransportUnderTest, services};
use catga_redis::RedisTransport;
use redis::aio::MultiplexedConnection;

pub use transport::Options;

/// The server the tests use: `CATGA_REDIS_URL`, else the local one.
pub fn url() -> String {
    services::url("CATGA_REDIS_URL", "redis://127.0.0.1:6379")
}

/// Answers `PING` within a few seconds.
pub async fn reachable(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".to_string()),
    }
}

/// The shared server's URL ([`url`]), or `None` (the test then returns, having printed why)
/// when it is unreachable, unless `CATGA_REQUIRE_SERVICES=1`, where that fails the test.
pub async fn shared_url(test: &str) -> Option<String> {
    let url = url();
    if let Err(why) = reachable(&url).await {
        // CATGA_REDIS_URL may hold a password: only its redacted form is printed.
        let shown = catga_core::secret::redact_url(&url);
        services::unavailable(
            test,
            &format!("redis at {shown} is unreachable ({why})"),
            "start redis-server or set CATGA_REDIS_URL",
        );
        return None;
    }
    Some(url)
}

/// A raw connection to the server at `url`, which answered a moment ago.
pub async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("the server answered a moment ago")
}

/// The Redis transport in the conformance suite: each scenario gets a key prefix of its own.
pub struct Redis;

impl TransportUnderTest for Redis {
    type Corner = Server;

    async fn open(&self, test: &str, settings: &Settings) -> Option<Server> {
        let options = Options {
            max_deliveries: Some(settings.max_deliveries),
            backoff: Some(vec![settings.redelivery_delay]),
            ack_wait: settings.takeover,
            ..Options::for_tests()
        };
        Server::open(test, options).await
    }
}

/// The test's slice of the server for the transport: a key prefix no other test uses.
/// Dropping it deletes every key under the prefix (both forms, [`slice::patterns`]), even when
/// the test panicked.
pub struct Server {
    pub url: String,
    pub prefix: String,
    options: Options,
    /// A transport of the slice's own, to name its keys.
    probe: RedisTransport,
}

impl Server {
    /// The server with the tests' usual settings ([`Options::for_tests`]), or `None` (the
    /// test then returns, having printed why) when it is unreachable, unless
    /// `CATGA_REQUIRE_SERVICES=1`, where that fails the test.
    pub async fn get(test: &str) -> Option<Server> {
        Server::open(test, Options::for_tests()).await
    }

    /// A slice whose transports have `options` (its prefix is the slice's).
    pub async fn open(test: &str, options: Options) -> Option<Server> {
        let url = shared_url(test).await?;
        let prefix = slice::prefix(test);
        let options = Options {
            prefix: Some(prefix.clone()),
            ..options
        };
        let probe = transport::connect(url.clone(), &options)
            .await
            .expect("the server answered a moment ago");
        Some(Server {
            url,
            prefix,
            options,
            probe,
        })
    }

    /// This slice's options, to change some for [`transport_with`](Self::transport_with).
    pub fn options(&self) -> Options {
        self.options.clone()
    }

    /// A transport with this slice's options.
    pub async fn transport(&self) -> RedisTransport {
        self.transport_with(self.options()).await
    }

    /// A transport with other `options` (keep the slice's prefix to reach its services: start
    /// from [`options`](Self::options)).
    pub async fn transport_with(&self, options: Options) -> RedisTransport {
        transport::connect(self.url.clone(), &options)
            .await
            .expect("the server answered a moment ago")
    }

    /// A raw connection, to look at or inject entries.
    pub async fn raw(&self) -> MultiplexedConnection {
        raw(&self.url).await
    }
}

impl testkit::Corner for Server {
    type Transport = RedisTransport;

    async fn connect(&self) -> RedisTransport {
        self.transport().await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            keeps_events_for_stopped_services: true,
            max_payload: 1 << 20,
            every_instance_shares_a_burst: true,
            answers_expired_requests: false,
        }
    }

    /// The service's group on the event's stream: entries read and not acknowledged, and
    /// entries not read yet (`XINFO GROUPS`: `pending` and `lag`).
    async fn unsettled(&self, service: &str, event: &str) -> Option<u64> {
        let stream = self.probe.event_stream(event);
        let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut self.raw().await)
            .await
            .ok()?;
        let group = reply.groups.into_iter().find(|g| g.name == service)?;
        let unsettled = group.pending + group.lag.unwrap_or(0);
        u64::try_from(unsettled).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        slice::delete_keys(&self.url, &self.prefix);
    }
}

/// How many entries of `stream` group `group` has read and not acknowledged.
pub async fn pending(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XPENDING");
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

/// The consumers of group `group` on `stream` (`XINFO CONSUMERS`), sorted by name.
pub async fn consumers(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<redis::streams::StreamInfoConsumer> {
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XINFO CONSUMERS");
    let mut consumers = reply.consumers;
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    consumers
}

/// Just the names of [`consumers`].
pub async fn consumer_names(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<String> {
    consumers(conn, stream, group)
        .await
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// How many entries `stream` holds.
pub async fn xlen(conn: &mut MultiplexedConnection, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .expect("XLEN")
}

/// Adds an entry with `fields` to `stream` by hand, as a foreign producer (or an attacker)
/// might; returns its id.
pub async fn inject(
    conn: &mut MultiplexedConnection,
    stream: &str,
    fields: &[(&str, &str)],
) -> String {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(stream).arg("*");
    for (k, v) in fields {
        xadd.arg(*k).arg(*v);
    }
    xadd.query_async(conn).await.expect("XADD")
}
