//! The NATS and Redis servers the cross-service tests use: a corner of each per test (its
//! own prefix, and stream on NATS), cleaned up when dropped; `None`, with the reason printed,
//! when a server is unreachable (a failure with `CATGA_REQUIRE_SERVICES=1`).

use std::time::Duration;

use catga_core::secret::redact_url;
use catga_core::testkit::{services, unique};
use catga_nats::NatsTransport;
use catga_redis::RedisTransport;

/// A prefix and stream of the test's own on the NATS server (`CATGA_NATS_URL`).
pub struct Nats {
    url: String,
    prefix: String,
    stream: String,
}

impl Nats {
    pub async fn open(test: &str) -> Option<Nats> {
        let url = services::url("CATGA_NATS_URL", "nats://127.0.0.1:4222");
        let probe = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url.as_str())
            .await;
        if let Err(e) = probe {
            services::unavailable(
                test,
                &format!("NATS is unreachable at {}: {e}", redact_url(&url)),
                "start `nats-server -js` or set CATGA_NATS_URL",
            );
            return None;
        }
        let prefix = unique("tel");
        let stream = format!("{prefix}-events");
        Some(Nats {
            url,
            prefix,
            stream,
        })
    }

    /// A connection of its own, as another process would have.
    pub async fn transport(&self) -> NatsTransport {
        NatsTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .stream(self.stream.clone())
            .fetch_wait(Duration::from_millis(500))
            .await
            .expect("connect to the NATS server that answered a moment ago")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await and runs inside the test's runtime: a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A key prefix of the test's own on the Redis server (`CATGA_REDIS_URL`).
pub struct Redis {
    url: String,
    prefix: String,
}

impl Redis {
    pub async fn open(test: &str) -> Option<Redis> {
        let url = services::url("CATGA_REDIS_URL", "redis://127.0.0.1:6379");
        if let Err(why) = ping(&url).await {
            services::unavailable(
                test,
                &format!("redis at {} is unreachable ({why})", redact_url(&url)),
                "start redis-server or set CATGA_REDIS_URL",
            );
            return None;
        }
        Some(Redis {
            url,
            prefix: unique("tel"),
        })
    }

    /// A connection of its own, as another process would have.
    pub async fn transport(&self) -> RedisTransport {
        RedisTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .fetch_wait(Duration::from_millis(500))
            .await
            .expect("connect to the Redis server that answered a moment ago")
    }
}

async fn ping(url: &str) -> Result<(), String> {
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

impl Drop for Redis {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            // Keys are `<prefix>:…` or hash-tagged `{<prefix>:…}…`.
            for pattern in [format!("{prefix}*"), format!("{{{prefix}*")] {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        });
        let _ = cleanup.join();
    }
}
