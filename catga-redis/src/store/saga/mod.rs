//! The saga store on Redis: saga instances saved with optimistic concurrency, stamped with the
//! server's clock, and an index per saga of the unfinished ones for recovery.
//! [`RedisSagaStore`]'s documentation says how; `scripts.rs` holds the Lua, `decode.rs` reads
//! instances back.

mod decode;
mod scripts;

use std::sync::Arc;
use std::time::SystemTime;

use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use redis::Value;
use uuid::Uuid;

use super::event::outcome::{Outcome, count, outcome, typed};
use super::event::write_limit;
use super::{DEFAULT_MAX_WRITE_BYTES, RedisStoreError, RedisStores, StoreConn};

impl RedisStores {
    /// The saga store of these stores' server and prefix, on their shared connection. Does no
    /// I/O.
    pub fn sagas(&self) -> RedisSagaStore {
        let tag = self.conn.tag("sagas");
        RedisSagaStore {
            conn: self.conn.clone(),
            keys: Arc::new(Keys {
                instance: format!("{tag}:instance:"),
                unfinished: format!("{tag}:unfinished:"),
            }),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }
}

struct Keys {
    /// An instance's key less its id.
    instance: String,
    /// An index's key less the saga's name.
    unfinished: String,
}

/// A [`SagaStore`] on Redis, shared by every instance on the same server and prefix; make
/// one with [`RedisStores::sagas`]. Cheap to clone.
///
/// **Keys.** Every key of the family starts with the hash tag `{<prefix>:sagas}`, so each
/// script runs on one Redis Cluster slot (one node holds all the saga instances of a prefix):
///
/// | key | type | holds |
/// |---|---|---|
/// | `{p:sagas}:instance:<id>` | hash | `saga`, `status` ([`SagaStatus::as_str`](catga_core::saga::SagaStatus::as_str)), `data` and `state` (bytes as saved), `version`, `updated_at` (µs since the epoch, the server's clock) |
/// | `{p:sagas}:unfinished:<saga>` | sorted set | the ids (hyphenated) of the saga's running and compensating instances, scored by `updated_at` |
///
/// **Saves.** One script (`EVALSHA`) compares the instance's version with the expected one
/// (a conflict carries the version found and writes nothing), reads the server's clock
/// (`TIME`: Redis 7 replicates a script's effects, not the script, so a script may read the
/// clock), writes the hash and adds the instance to its saga's index or, once finished, takes
/// it out, all at once. Redis runs one script at a time, so of concurrent saves at one
/// version exactly one wins. Every operation is one round trip:
/// [`unfinished`](SagaStore::unfinished) reads the index by score
/// (`updated_at`, then the id for ties) up to the cutoff and the limit, and the instances it
/// lists, in one script; [`delete`](SagaStore::delete) removes the hash and its index entry in
/// one; [`load`](SagaStore::load) is one `HMGET`.
///
/// **Durability** is the server's: with `appendonly no` a restart loses every instance and
/// index (a saga in flight then cannot be recovered: its next save conflicts with version 0
/// and it stops); with `appendfsync everysec` up to about a second of saves can be lost.
///
/// **Values.** `updated_at` is the Redis server's clock in whole
/// microseconds, so [`unfinished`](SagaStore::unfinished)'s cutoff compares times of one
/// clock whichever process saved. Errors are [`SagaStoreError::Backend`] with a
/// [`RedisStoreError`] as the source: [`Command`](RedisStoreError::Command) when the server
/// could not be reached or refused ([`is_retryable`](RedisStoreError::is_retryable) tells
/// which), [`Malformed`](RedisStoreError::Malformed) for a key holding what the store never
/// writes, [`TooLarge`](RedisStoreError::TooLarge) for a record over
/// [`max_write_bytes`](Self::max_write_bytes), refused before anything is sent.
///
/// A saga run with [`Saga::run_stored`](catga_core::saga::Saga::run_stored) on it, and the
/// recovery any instance runs after a restart:
///
/// ```rust,no_run,standalone_crate
/// use std::time::Duration;
/// use catga_core::prelude::*;
/// use catga_core::saga::{Recovery, Saga};
/// use catga_redis::store::RedisStores;
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct Charge { pub cents: u64 }
/// #[command]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct Refund { pub payment: u64 }
/// #[command]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct Ship { pub order: u64 }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("declined")]
/// pub struct Declined;
///
/// #[handler] async fn charge(_: Charge) -> Result<u64, Declined> { Ok(7) }
/// #[handler] async fn refund(_: Refund) -> Result<(), Declined> { Ok(()) }
/// #[handler] async fn ship(_: Ship) -> Result<(), Declined> { Ok(()) }
///
/// #[derive(Serialize, Deserialize)]
/// struct Order { id: u64, cents: u64 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stores = RedisStores::connect("redis://127.0.0.1:6379").prefix("shop").await?;
/// let sagas = stores.sagas();
/// let checkout = Saga::builder("checkout")
///     .step("charge", |o: &Order| Charge { cents: o.cents }, |_, payment| Refund { payment })
///     .last_step("ship", |o: &Order| Ship { order: o.id })
///     .build()?;
/// // Idempotency makes the step a resumed run sends again take effect once: give it a store
/// // every instance shares (the in-memory default only covers this process).
/// let app = Catga::builder().layer(Idempotency::default()).build()?;
///
/// let mut state = checkout.start();
/// checkout.run_stored(&app, &sagas, &Order { id: 1, cents: 500 }, &mut state).await?;
///
/// // In every instance, at start and then every minute: resume what nobody saved for a minute.
/// let resumed = checkout.recover(&app, &sagas, Recovery::after(Duration::from_secs(60))).await?;
/// # let _ = resumed;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSagaStore {
    conn: StoreConn,
    keys: Arc<Keys>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for RedisSagaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSagaStore")
            .field("instances", &self.keys.instance)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

const SAVE: &str = "saga store: save";
const LOAD: &str = "saga store: load";
const UNFINISHED: &str = "saga store: unfinished";
const DELETE: &str = "saga store: delete";

fn backend(error: RedisStoreError) -> SagaStoreError {
    SagaStoreError::backend(error)
}

fn no_answer(operation: &'static str, key: &str) -> SagaStoreError {
    backend(RedisStoreError::malformed(
        operation,
        key,
        "the script answered no result",
    ))
}

impl RedisSagaStore {
    /// The most bytes one save may hold in its data, state and saga name together: default
    /// [`DEFAULT_MAX_WRITE_BYTES`] (64 MiB). A larger record is refused with
    /// [`RedisStoreError::TooLarge`] before anything is sent.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for 0 or more than 512 MiB.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, RedisStoreError> {
        self.max_write_bytes = write_limit(bytes)?;
        Ok(self)
    }

    /// The key of instance `id`: `{<prefix>:sagas}:instance:<id, hyphenated>`.
    pub fn instance_key(&self, id: Uuid) -> String {
        format!("{}{}", self.keys.instance, id.hyphenated())
    }

    /// The key of the index of `saga`'s unfinished instances:
    /// `{<prefix>:sagas}:unfinished:<saga>`.
    pub fn unfinished_key(&self, saga: &str) -> String {
        format!("{}{saga}", self.keys.unfinished)
    }
}

impl SagaStore for RedisSagaStore {
    /// One `EVALSHA`.
    async fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> Result<u64, SagaStoreError> {
        let size = record
            .saga
            .len()
            .saturating_add(record.data.len())
            .saturating_add(record.state.len());
        if size > self.max_write_bytes {
            return Err(backend(RedisStoreError::TooLarge {
                operation: SAVE,
                size,
                limit: self.max_write_bytes,
            }));
        }
        let key = self.instance_key(record.id);
        let mut invocation = scripts::SAVE.prepare_invoke();
        invocation
            .key(&key)
            .key(self.unfinished_key(&record.saga))
            .arg(expected_version)
            .arg(record.id.hyphenated().to_string())
            .arg(&record.saga)
            .arg(record.status.as_str())
            .arg(&record.data[..])
            .arg(&record.state[..])
            .arg(if record.status.is_finished() {
                "0"
            } else {
                "1"
            })
            .arg(&self.keys.unfinished);
        let reply: Value = self
            .conn
            .invoke(SAVE, &key, &invocation)
            .await
            .map_err(|e| backend(typed(e)))?;
        match outcome(SAVE, &key, reply).map_err(backend)? {
            Outcome::Conflict(actual) => Err(SagaStoreError::Conflict {
                id: record.id,
                expected: expected_version,
                actual,
            }),
            Outcome::Done(values) => values
                .first()
                .and_then(count)
                .ok_or_else(|| no_answer(SAVE, &key)),
        }
    }

    /// One `HMGET` (a read: it may go to a replica when the stores read from replicas).
    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        let key = self.instance_key(id);
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&key).arg(&decode::FIELDS[..]);
        let reply: Value = self
            .conn
            .run_read(LOAD, &key, &cmd)
            .await
            .map_err(|e| backend(typed(e)))?;
        let Value::Array(fields) = reply else {
            return Err(backend(RedisStoreError::malformed(
                LOAD,
                &key,
                "`HMGET` answered no list of fields",
            )));
        };
        decode::instance(LOAD, &key, id, fields).map_err(backend)
    }

    /// One `EVALSHA` on the primary: the index and the instances it lists, read at once.
    async fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        let index = self.unfinished_key(saga);
        let mut invocation = scripts::UNFINISHED.prepare_invoke();
        invocation
            .key(&index)
            .arg(decode::cutoff(updated_before))
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .arg(&self.keys.instance);
        let reply: Value = self
            .conn
            .invoke(UNFINISHED, &index, &invocation)
            .await
            .map_err(|e| backend(typed(e)))?;
        match outcome(UNFINISHED, &index, reply).map_err(backend)? {
            Outcome::Done(values) => {
                decode::unfinished(UNFINISHED, &index, saga, |id| self.instance_key(id), values)
                    .map_err(backend)
            }
            Outcome::Conflict(_) => Err(no_answer(UNFINISHED, &index)),
        }
    }

    /// One `EVALSHA`.
    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        let key = self.instance_key(id);
        let mut invocation = scripts::DELETE.prepare_invoke();
        invocation
            .key(&key)
            .arg(id.hyphenated().to_string())
            .arg(&self.keys.unfinished);
        let reply: Value = self
            .conn
            .invoke(DELETE, &key, &invocation)
            .await
            .map_err(|e| backend(typed(e)))?;
        match outcome(DELETE, &key, reply).map_err(backend)? {
            Outcome::Done(values) => match values.first().and_then(count) {
                Some(deleted) => Ok(deleted == 1),
                None => Err(no_answer(DELETE, &key)),
            },
            Outcome::Conflict(_) => Err(no_answer(DELETE, &key)),
        }
    }
}
