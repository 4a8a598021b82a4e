//! A dead-letter store on Redis, for tests whose instances live in several processes: one
//! hash per test, one record per failed message and handler (`HSETNX`), so a failure kept
//! again after a crash (kept, then killed before the acknowledgement) is still one record.

use catga_core::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

#[derive(Clone)]
pub struct RedisDeadLetters {
    conn: MultiplexedConnection,
    key: String,
}

impl RedisDeadLetters {
    pub fn new(conn: MultiplexedConnection, key: String) -> Self {
        RedisDeadLetters { conn, key }
    }

    async fn all(&self) -> Result<Vec<DeadLetterRecord>, BoxError> {
        let values: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut records = values
            .iter()
            .map(|v| serde_json::from_slice(v))
            .collect::<Result<Vec<DeadLetterRecord>, _>>()?;
        records.sort_by_key(|r| r.id);
        Ok(records)
    }
}

impl DeadLetterStore for RedisDeadLetters {
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        let field = format!(
            "{}|{}|{}",
            record.message_id,
            record.handler.as_deref().unwrap_or("-"),
            record.code
        );
        let value = serde_json::to_vec(&record)?;
        redis::cmd("HSETNX")
            .arg(&self.key)
            .arg(field)
            .arg(value)
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        let mut records = self.all().await?;
        records.truncate(limit);
        Ok(records)
    }

    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        let pairs: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await?;
        for (field, value) in pairs {
            let record: DeadLetterRecord = serde_json::from_slice(&value)?;
            if record.id == id {
                redis::cmd("HDEL")
                    .arg(&self.key)
                    .arg(field)
                    .query_async::<()>(&mut self.conn.clone())
                    .await?;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    async fn count(&self) -> Result<usize, BoxError> {
        Ok(redis::cmd("HLEN")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}
