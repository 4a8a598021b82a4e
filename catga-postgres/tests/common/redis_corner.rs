//! A key prefix of a test's own on the shared Redis server (`CATGA_REDIS_URL`), for tests
//! that run a Redis transport beside Postgres; its keys are deleted when dropped.

use std::time::Duration;

use catga_core::testkit::services;
use catga_redis::RedisTransport;
use uuid::Uuid;

fn redis_url() -> String {
    services::url("CATGA_REDIS_URL", "redis://127.0.0.1:6379")
}

/// A key prefix of the test's own; its keys are deleted when dropped, even when the test
/// panicked.
pub struct RedisCorner {
    url: String,
    prefix: String,
}

impl RedisCorner {
    /// A corner, or `None` after saying why (a failure under `CATGA_REQUIRE_SERVICES=1`).
    pub async fn open(test: &str) -> Option<RedisCorner> {
        let url = redis_url();
        let ping = async {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        let why = match tokio::time::timeout(Duration::from_secs(3), ping).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer within 3 s".to_string()),
        };
        if let Some(why) = why {
            let shown = catga_core::secret::redact_url(&url);
            services::unavailable(
                test,
                &format!("redis at {shown} is unreachable ({why})"),
                "start redis-server or set CATGA_REDIS_URL",
            );
            return None;
        }
        Some(RedisCorner {
            url,
            prefix: format!("catga-test:{test}:{}", Uuid::now_v7().simple()),
        })
    }

    /// A transport on this corner's prefix.
    pub async fn transport(&self) -> RedisTransport {
        RedisTransport::connect(self.url.clone())
            .prefix(self.prefix.clone())
            .fetch_wait(Duration::from_millis(500))
            .backoff([Duration::from_millis(50)])
            .await
            .expect("connect to Redis")
    }
}

impl Drop for RedisCorner {
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
