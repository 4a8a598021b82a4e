//! What the server-backed tests share: finding the server (or skipping), a key prefix of
//! their own, raw access for injecting entries, and cleaning up.

#![allow(dead_code)] // each test binary uses part of it

pub mod private_redis;
pub mod redis_dead_letters;

use std::future::Future;
use std::time::Duration;

use catga_redis::{RedisConnect, RedisTransport};
use redis::aio::MultiplexedConnection;

/// The server the tests use: `CATGA_REDIS_URL`, else the default local one.
pub fn url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Whether the tests must fail rather than skip when a server is missing.
pub fn required() -> bool {
    std::env::var("CATGA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
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

/// The test's slice of the server: a key prefix no other test uses. Deleting it deletes every
/// key under the prefix, even when the test panicked.
pub struct Server {
    pub url: String,
    pub prefix: String,
}

impl Server {
    /// The server, or `None` (the test then returns, having printed why) when it is
    /// unreachable, unless `CATGA_REQUIRE_SERVICES=1`, where that fails the test.
    pub async fn get(test: &str) -> Option<Server> {
        let url = url();
        if let Err(why) = reachable(&url).await {
            // CATGA_REDIS_URL may hold a password: only its redacted form is printed.
            let shown = catga_core::secret::redact_url(&url);
            assert!(
                !required(),
                "CATGA_REQUIRE_SERVICES=1 but redis at {shown} is unreachable: {why}"
            );
            eprintln!(
                "skipping {test}: redis at {shown} is unreachable ({why}); set CATGA_REDIS_URL"
            );
            return None;
        }
        let prefix = format!("catga-test:{test}:{}", uuid::Uuid::now_v7().simple());
        Some(Server { url, prefix })
    }

    /// A transport builder on the test's prefix, with times short enough for tests.
    pub fn builder(&self) -> RedisConnect {
        RedisTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .fetch_wait(Duration::from_millis(500))
            .backoff([Duration::from_millis(50)])
    }

    /// A transport with the test settings.
    pub async fn transport(&self) -> RedisTransport {
        self.builder()
            .await
            .expect("the server answered a moment ago")
    }

    /// A raw connection, to look at or inject entries.
    pub async fn raw(&self) -> MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("the server answered a moment ago")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Polls `done` until it holds, failing the test with `what` if it does not within a
/// generous bound (a bound against hanging, not a measurement).
pub async fn eventually<F, Fut>(what: &str, done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(Duration::from_secs(30), what, done).await;
}

/// As [`eventually`], with the bound given: for what must happen long before something else
/// could make it happen (a bound far below that other time, not a measurement).
pub async fn within<F, Fut>(bound: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(bound, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "not within {bound:?}: {what}");
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
