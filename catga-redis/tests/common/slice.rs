//! A test's slice of a Redis server for the stores: a key prefix no other test uses, the
//! stores on it, and raw access to look at or inject entries. Dropping the slice deletes every
//! key of the prefix, also when the test panicked.
//!
//! A store names its keys `<prefix>:…`, or, where one script touches several keys of a family,
//! behind a hash tag that keeps them in one cluster slot: `{<prefix>:events}:stream:x`. Both
//! forms belong to the slice ([`patterns`]).

use std::time::Duration;

use catga_redis::RedisTransport;
use catga_redis::store::{
    RedisDeadLetterStore, RedisEventStore, RedisIdempotencyStore, RedisSagaStore, RedisStores,
};
use redis::aio::MultiplexedConnection;

/// A key prefix of the test's own on a server, and the stores on it.
pub struct Slice {
    /// The server's URL.
    pub url: String,
    pub prefix: String,
    /// Stores on the prefix, connected when the slice was made.
    pub stores: RedisStores,
    /// How long the slice's stores wait for an answer; `None`: the stores' default.
    response_timeout: Option<Duration>,
}

impl Slice {
    /// On the shared server ([`super::url`]) under a fresh prefix, or `None` (the test then
    /// returns, having printed why) when the server is unreachable, unless
    /// `CATGA_REQUIRE_SERVICES=1`, where that fails the test.
    pub async fn open(test: &str) -> Option<Slice> {
        let url = super::shared_url(test).await?;
        Some(Slice::connected(url, prefix(test), None).await)
    }

    /// Like [`open`](Self::open), with stores that give up on an answer after `timeout`.
    pub async fn open_within(test: &str, timeout: Duration) -> Option<Slice> {
        let url = super::shared_url(test).await?;
        Some(Slice::connected(url, prefix(test), Some(timeout)).await)
    }

    /// On the server at `url` (a private one, or a proxy) under exactly `prefix`.
    pub async fn at(url: &str, prefix: &str) -> Slice {
        Slice::connected(url.to_string(), prefix.to_string(), None).await
    }

    /// Like [`at`](Self::at), with stores that give up on an answer after `timeout`.
    pub async fn at_within(url: &str, prefix: &str, timeout: Duration) -> Slice {
        Slice::connected(url.to_string(), prefix.to_string(), Some(timeout)).await
    }

    async fn connected(url: String, prefix: String, response_timeout: Option<Duration>) -> Slice {
        let stores = stores(&url, &prefix, response_timeout).await;
        Slice {
            url,
            prefix,
            stores,
            response_timeout,
        }
    }

    /// Stores on this prefix with a connection of their own, as another instance (or a
    /// restarted process) would open them.
    pub async fn connect(&self) -> RedisStores {
        self.connect_at(&self.url).await
    }

    /// Stores on this prefix, connected to `url`: this server, or a proxy in front of it.
    pub async fn connect_at(&self, url: &str) -> RedisStores {
        stores(url, &self.prefix, self.response_timeout).await
    }

    /// An idempotency store with a connection of its own.
    pub async fn idempotency(&self) -> RedisIdempotencyStore {
        self.connect().await.idempotency()
    }

    /// A dead-letter store with a connection of its own.
    pub async fn dead_letters(&self) -> RedisDeadLetterStore {
        self.connect().await.dead_letters()
    }

    /// An event store with a connection of its own.
    pub async fn events(&self) -> RedisEventStore {
        self.connect().await.events()
    }

    /// A saga store with a connection of its own.
    pub async fn sagas(&self) -> RedisSagaStore {
        self.connect().await.sagas()
    }

    /// A transport on this prefix with the tests' usual options ([`super::Options::for_tests`]).
    pub async fn transport(&self) -> RedisTransport {
        let options = super::Options {
            prefix: Some(self.prefix.clone()),
            ..super::Options::for_tests()
        };
        super::transport::connect(self.url.clone(), &options)
            .await
            .expect("the server answered a moment ago")
    }

    /// A raw connection, to look at or inject entries.
    pub async fn raw(&self) -> MultiplexedConnection {
        super::raw(&self.url).await
    }

    /// Every key of the prefix, both forms, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut raw = self.raw().await;
        let mut keys = Vec::new();
        for pattern in patterns(&self.prefix) {
            let mut cursor = 0u64;
            loop {
                let (next, found): (u64, Vec<String>) = scan(cursor, &pattern)
                    .query_async(&mut raw)
                    .await
                    .expect("SCAN");
                keys.extend(found);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        delete_keys(&self.url, &self.prefix);
    }
}

/// A prefix no other test uses: the test's name and a fresh UUID.
pub fn prefix(test: &str) -> String {
    format!("catga-test:{test}:{}", uuid::Uuid::now_v7().simple())
}

/// The `SCAN MATCH` patterns of the keys under `prefix`: `<prefix>:*` and the hash-tagged
/// `{<prefix>:*` (glob characters in the prefix escaped).
pub fn patterns(prefix: &str) -> [String; 2] {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    [format!("{escaped}:*"), format!("{{{escaped}:*")]
}

/// Deletes every key under `prefix` on the server at `url` ([`patterns`]), for a `Drop`: a
/// server that does not answer within 2 s is left as it is.
pub fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    for pattern in patterns(prefix) {
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)) = scan(cursor, &pattern).query::<(u64, Vec<String>)>(&mut conn)
            else {
                break;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

/// One `SCAN` step from `cursor` over the keys matching `pattern`.
fn scan(cursor: u64, pattern: &str) -> redis::Cmd {
    let mut scan = redis::cmd("SCAN");
    scan.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    scan
}

async fn stores(url: &str, prefix: &str, response_timeout: Option<Duration>) -> RedisStores {
    let mut connect = RedisStores::connect(url).prefix(prefix);
    if let Some(timeout) = response_timeout {
        connect = connect.response_timeout(timeout);
    }
    connect.await.expect("the server answered a moment ago")
}
